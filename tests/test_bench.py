"""`python -m ngdlib.bench --quick` as part of `make test`: correctness asserted, speed reported (never asserted).

The table is printed (see it with `pytest -s tests/test_bench.py`) and written to `_build/bench/quick.json`.
"""
import json
from pathlib import Path

import pytest
import torch

from ngdlib import bench
from ngdlib.testing import tolerance

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick():
    res = bench.run(quick=True, verbose=True)
    out = ROOT / "_build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "quick.json").write_text(json.dumps(res, indent=1))
    return res


def test_quick_bench_directions_agree(quick):
    rows = quick["rows"]
    assert {r["method"] for r in rows} >= {"ngdlib", "ngdlib-f32", "dense", "cg"}
    for r in rows:
        if r["method"] in ("ngdlib", "ngdlib-f32"):
            assert r["status"] == "ok" and r["seconds"] > 0 and 0 < r["throughput_fraction"] and 0 < r["utilisation"]
        if r["method"] in ("ngdlib-f32", "dense", "cg"):
            assert r["status"] == "ok", r
            dtype = bench.DTYPES[r["dtype"]]
            # dense: two exact formulas (float round-off); CG: its stopping tolerance (1e-10 / 1e-5 relative residual)
            # amplified by at most sqrt(cond(G)) ~ 10 at these sizes
            # ngdlib-f32 and dense are exact formulas (float round-off); CG stops at its residual tolerance
            allowed = 100 * tolerance(dtype)["rtol"] if r["method"] != "cg" else (1e-8 if dtype == torch.float64
                                                                                  else 1e-3)
            assert r["rel_diff_to_ngdlib"] <= allowed, r
        if r["method"] == "curvlinops":
            # runs where curvlinops imports (the oracle environment, .venv-oracles); CG in parameter space with the
            # same stopping tolerance as cg, amplified by at most sqrt(cond(G)) ~ 10 at these sizes
            assert r["status"] == "ok" or r["status"].startswith("not available"), r
            if r["status"] == "ok":
                assert r["rel_diff_to_ngdlib"] <= (1e-8 if r["dtype"] == "float64" else 1e-3), r


def test_flop_model():
    assert bench.ngd_flops(2, 3, 5) == {"counts": 24, "model_dtype": 4 * 2 * 3 * 5 + 2 * 4 * 5}


def test_quick_bench_records_device_versions_and_date(quick):
    """What the cost chapter shows beside each table: the device, the versions, the date and the wall time."""
    mc = quick["machine"]
    assert {"device", "gpu", "processor", "python", "torch", "cuda", "date", "wall_seconds"} <= set(mc)
    assert mc["date"].endswith("UTC") and mc["wall_seconds"] > 0
    assert all(r["counts"] in ("int8", "float32", "tf32", "float64") for r in quick["rows"]
               if r["method"].startswith("ngdlib") and r.get("status") == "ok")
