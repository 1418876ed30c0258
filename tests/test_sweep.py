"""The sweep runner (`python -m ngdlib.sweep`): a small grid on a two-process LocalCluster, a worker killed in the
middle of a sweep, and a rerun that does no work.

The grids use the fixture notebooks (tests/fixtures: a true claim, a false claim, and a true claim that sleeps and
records itself through ngdlib.record), so that the whole file runs in well under a minute.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("papermill")

from ngdlib import sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIX = "tests/fixtures"
TRUE, FALSE, SLEEP = f"{FIX}/true_claim.ipynb", f"{FIX}/false_claim.ipynb", f"{FIX}/sleep_claim.ipynb"


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _rows(out):
    return sweep.load_results(Path(out) / "results.jsonl")


def test_small_grid_then_rerun_does_no_work(client, tmp_path):
    out = tmp_path / "grid"
    res = sweep.run_sweep("grid", [TRUE, FALSE], [0, 1], out=out, root=ROOT, client=client, progress=False,
                          echo=lambda s: None)
    assert res["ran"] == 4
    rows = _rows(out)
    assert len(rows) == 4 and len({r["key"] for r in rows}) == 4
    by = {(Path(r["notebook"]).name, r["seed"]): r for r in rows}
    assert {k: r["status"] for k, r in by.items()} == {
        ("true_claim.ipynb", 0): "passed", ("true_claim.ipynb", 1): "passed",
        ("false_claim.ipynb", 0): "failed", ("false_claim.ipynb", 1): "failed"}
    assert by[("false_claim.ipynb", 1)]["message"] == "AssertionError: the claim is false"
    assert by[("true_claim.ipynb", 1)]["parameters"] == {"SEED": 1}   # no SCALE/DEVICE: the fixture defines neither
    for r in rows:   # the executed notebook is kept, with the injected parameters cell after the parameters cell
        nb = json.loads((out / r["executed_notebook"]).read_text())
        tags = [c["metadata"].get("tags", []) for c in nb["cells"]]
        i = next(i for i, t in enumerate(tags) if "parameters" in t)
        assert "injected-parameters" in tags[i + 1] and f"SEED = {r['seed']}" in "".join(nb["cells"][i + 1]["source"])
        assert r["environment"]["python"] and r["wall_s"] > 0 and r["attempt"] == 1
    s = res["summary"]
    assert s["checks"]["false_claim"]["passed"] == 0 and s["checks"]["true_claim"]["passed"] == 2
    assert [f["seed"] for f in s["failing"]] == [0, 1]
    text = (out / "summary.txt").read_text()
    assert "python -m papermill tests/fixtures/false_claim.ipynb" in text and "-p SEED 1" in text

    # the same sweep again: every cell is done, nothing is submitted (not even a cluster is needed), nothing added
    t0 = time.perf_counter()
    again = sweep.run_sweep("grid", [TRUE, FALSE], [0, 1], out=out, root=ROOT, progress=False, echo=lambda s: None)
    assert again["todo"] == 0 and again["ran"] == 0 and time.perf_counter() - t0 < 10
    assert _rows(out) == rows
    # one more seed for one notebook: only that cell runs
    more = sweep.run_sweep("grid", [TRUE], [0, 1, 2], out=out, root=ROOT, client=client, progress=False,
                           echo=lambda s: None)
    assert more["ran"] == 1 and len(_rows(out)) == 5 and more["summary"]["cells"] == 3


def test_a_killed_worker_loses_no_cell_and_counts_none_twice(client, tmp_path):
    out = tmp_path / "kill"
    killed = {}
    finished = threading.Event()

    def killer():
        """Kill the worker process of a running cell on a worker that has already finished another cell (so the
        dead worker held a finished result too), as soon as there is one."""
        while not finished.is_set():
            done = {r["key"]: r for r in _rows(out)}
            pids = {r["pid"] for r in done.values()}
            for mark in sorted((out / "attempts").glob("*/attempt-1")) if done else []:
                info = json.loads(mark.read_text())
                if mark.parent.name not in done and info["pid"] in pids:
                    time.sleep(1.0)    # the kernel is running the notebook's sleep by now
                    killed.update(info, key=mark.parent.name)
                    os.kill(info["pid"], signal.SIGKILL)
                    return
            time.sleep(0.1)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    res = sweep.run_sweep("kill", [SLEEP], [0, 1, 2], out=out, root=ROOT, client=client, progress=False,
                          echo=lambda s: None, parameters={"SLEEP": 3})
    finished.set()
    t.join(5)
    assert killed, "no worker was killed: the test did not test anything"
    rows = _rows(out)
    assert sorted(r["seed"] for r in rows) == [0, 1, 2], "every cell recorded exactly once"
    assert all(r["status"] == "passed" for r in rows), [r["message"] for r in rows]
    victim = next(r for r in rows if r["key"] == killed["key"])
    assert victim["attempt"] == 2 and victim["retried"]
    assert victim["lost_attempts"][0]["pid"] == killed["pid"]
    # no finished cell ran again (a result held by the dead worker is not recomputed: the driver released it)
    assert sorted(p.name for p in (out / "attempts").glob("*/attempt-*")) == ["attempt-1"] * 3 + ["attempt-2"]
    assert "retried" in (out / "summary.txt").read_text()
    # the records come from the finishing attempt only; the slack recorded is 1 + SEED
    assert all([rec["slack"] for rec in r["records"]] == [1.0 + r["seed"]] for r in rows)
    assert res["summary"]["checks"]["sleep_claim"]["passed"] == 3


def test_grid_helpers():
    assert sweep.parse_seeds("0-3,7, 2") == [0, 1, 2, 3, 7]
    with pytest.raises(ValueError, match="integers or ranges"):
        sweep.parse_seeds("a")
    nbs = sweep.find_notebooks(ROOT, ["Z-T4", "chapters/zmg/z-ngd-check.ipynb"])
    assert [p.name for p in nbs] == ["z-ngd-check.ipynb", "z-t4-check.ipynb"]
    with pytest.raises(ValueError, match="neither a notebook path nor a claim ID"):
        sweep.find_notebooks(ROOT, ["NO-SUCH-CLAIM"])
    cells = sweep.plan(ROOT, sweep.find_notebooks(ROOT, ["Z-C1", "Z-NGD"]), [3], scale="paper", device="cuda")
    params = {Path(c["notebook"]).name: c["parameters"] for c in cells}
    assert params == {"z-c1-check.ipynb": {"SEED": 3, "SCALE": "paper", "DEVICE": "cuda"},
                      "z-ngd-check.ipynb": {"SEED": 3, "DEVICE": "cuda"}}
    assert sweep.wilson(0, 0) == (0.0, 1.0)
    lo, hi = sweep.wilson(7, 10)
    assert lo < 0.7 < hi


def test_code_hash_sees_code_only():
    from ngdlib.sweep import code_hash

    nb = {"cells": [{"cell_type": "markdown", "source": ["# Title\n"], "metadata": {}},
                    {"cell_type": "code", "source": ["SEED = 0\n"], "metadata": {"tags": ["parameters"]}},
                    {"cell_type": "code", "source": ["assert SEED >= 0\n"], "metadata": {}}]}
    h = code_hash(nb)
    prose = json.loads(json.dumps(nb))
    prose["cells"][0]["source"] = ["# Another title\n"]
    injected = json.loads(json.dumps(nb))
    injected["cells"].insert(2, {"cell_type": "code", "source": ["SEED = 7\n"],
                                 "metadata": {"tags": ["injected-parameters"]}})
    code = json.loads(json.dumps(nb))
    code["cells"][2]["source"] = ["assert SEED >= 1\n"]
    assert code_hash(prose) == h == code_hash(injected) and code_hash(code) != h
