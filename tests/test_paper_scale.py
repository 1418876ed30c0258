"""The ``SCALE = "paper"`` branch of a notebook, run at reduced sizes (the paper's own sizes need a GPU).

The convention (running.md): the parameters cell defines ``SCALE = "ci"`` and a dict ``SIZES`` keyed by SCALE; a
``paper`` run writes its record beside the chapter as JSON with device, versions, time and date. Here the cost
notebook runs with ``SCALE = "paper"`` and small ``SIZES["paper"]`` injected after its parameters cell (as papermill
would), writing its record to a temporary folder, and the record must name the device, versions and date and list
every size it ran with all count paths exact.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ngdlib.records import STATUSES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "chapters" / "perf" / "cost-check.ipynb"


def parameters_cell(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", []))


def execute_at_paper_scale(path: Path, sizes: dict, tmp_path: Path) -> None:
    """Execute the notebook with ``SCALE = "paper"``, ``SIZES["paper"] = sizes`` and its ``PAPER_JSON`` in
    ``tmp_path`` injected after its parameters cell (as papermill would), in the notebook's folder."""
    stem = path.name[:-len("-check.ipynb")]
    nb = nbformat.read(path, as_version=4)
    cell = nbformat.v4.new_code_cell(f'SCALE = "paper"\nSIZES["paper"] = {sizes!r}\n'
                                     f'PAPER_JSON = "{tmp_path}/{stem}-paper-{{device}}.json"')
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(parameters_cell(nb) + 1, cell)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()


def test_cost_notebook_paper_scale_writes_its_record(tmp_path, monkeypatch):
    monkeypatch.setenv("NGDLIB_RECORDS", str(tmp_path / "records"))
    sizes = {"live": (32, 512, 8), "scale": [(40, 1000, 8), (48, 3000, 8)]}
    execute_at_paper_scale(NOTEBOOK, sizes, tmp_path)
    rec = json.loads((tmp_path / "cost-paper-cpu.json").read_text())
    assert rec["scale"] == "paper" and rec["device"] == "cpu"
    assert rec["torch"] and rec["python"] and rec["date"].endswith("UTC")
    assert [(x["n"], x["m"], x["d"]) for x in rec["rows"]] == [tuple(s) for s in sizes["scale"]]
    for x in rec["rows"]:
        assert {"float32", "tf32", "float64", "auto"} <= set(x["exact_count_paths"]) and x["ngd_step_seconds"] > 0
    assert not list(NOTEBOOK.parent.glob("cost-paper-*.json")), "a test run must not write beside the chapter"


# ------------------------------------------------------------------------------ every notebook with a paper scale
#: Each notebook with ``SCALE = "paper"`` (running.md lists them with their paper sizes), and the reduced sizes at
#: which its paper branch runs here: the smallest that exercise every branch and keep every assert meaningful.
REDUCED = {
    "zmg/z-c1": dict(N=20, D=10, WIDTHS=[2**k for k in range(4, 13)], REPS=4),
    "zmg/z-c2": dict(N=20, D=10, WIDTHS=[2**k for k in range(8, 14)], DRAWS=2),
    "zmg/z-t3": "ci",                      # fewer widths or draws leave its one-step slope fit too noisy
    "ko/k-exact": dict(N=32, M0=40, N_TEST=64, WIDTH=256, WIDTHS=(64, 256, 1024), SEEDS_PER_WIDTH=1),
    "ko/k-bd": dict(N=16, M0=20, WIDTH=256, WIDE=512, OVERSHOOT_WIDTHS=(128, 512), SEEDS_PER_WIDTH=1),
    "ko/k-tri": dict(N=16, M0=20, WIDTH=128, WIDE=512),
    "ko/k-kfac": dict(N=16, M0_BIG=20, M0_SMALL=8, WIDTH=128, WIDE=512),
    "ko/k-unit": dict(N=16, M0=20, WIDTH=128, SPREAD_WIDTHS=(64, 256, 1024), STAB_WIDTHS=(128, 512)),
    "ko/k-test": dict(N=16, M0=20, N_TEST=50, WIDTH=512, WIDTHS=(256, 1024)),
    "ko/k-width": dict(N=16, M0=20, WIDTHS=(64, 256, 1024), SEEDS=3),
    "arora/a-bal": "ci",
    "arora/a-fail": dict(DEPTHS=(2, 3, 4)),          # its large-step part needs N = 3 and 4
    "arora/a-init": dict(D_IN=8, FIG_SAMPLES=200, FIG_DEPTHS=(3,)),
    # "ci": the paper branch runs at the notebook's own CI sizes (already small; smaller ones would starve its fits)
    "zmg/z-t1": "ci",
    "zmg/z-t4": "ci",
    "zmg/z-gd": "ci",
    "zmg/z-kfw": "ci",
    "zmg/z-r3": "ci",
    "ko/k-damp": "ci",
    "ko/k-eta": "ci",
    "ko/k-multi": "ci",
    # Second-round chapters: the papers give no sizes for these statements, so "paper" is the book's larger-than-CI
    # scale (running.md says which); their paper branch runs here at the CI sizes, which the seed sweeps cover
    "arora/a-gauss": "ci",
    "arora/a-t2": "ci",
    "ko/k-gd": "ci",
    "ko/k-inf": "ci",
    "zmg/z-c3": "ci",
    "zmg/z-joint": "ci",
    "zmg/z-prob": "ci",
    "zmg/z-sep": "ci",
}


def run_paper_branch(rel: str, sizes: dict | str, tmp_path: Path) -> tuple[dict, dict]:
    """Run ``chapters/<rel>-check.ipynb`` at ``SCALE = "paper"`` with ``sizes`` (a dict, or ``"ci"``: the notebook's
    CI sizes) injected after its parameters cell (as papermill would), its record written to ``tmp_path``; return the
    record and the sizes it must name."""
    path = ROOT / "chapters" / f"{rel}-check.ipynb"
    stem = path.name[:-len("-check.ipynb")]
    committed = {p: p.read_bytes() for p in path.parent.glob(f"{stem}-paper-*.json")}
    nb = nbformat.read(path, as_version=4)
    params = nb.cells[parameters_cell(nb)].source
    assert 'SCALE = "ci"' in params and "SIZES = {" in params and f'PAPER_JSON = "{stem}-paper-{{device}}.json"' in params
    defaults: dict = {}
    exec(params, defaults)                                   # the parameters cell: plain assignments
    ci, paper = defaults["SIZES"]["ci"], defaults["SIZES"]["paper"]
    assert set(defaults["SIZES"]) == {"ci", "paper"} and ci.keys() == paper.keys()
    sizes = ci if sizes == "ci" else sizes
    assert sizes.keys() == paper.keys(), "the reduced sizes must name every paper size"
    execute_at_paper_scale(path, sizes, tmp_path)
    assert {p: p.read_bytes() for p in path.parent.glob(f"{stem}-paper-*.json")} == committed, \
        "a test run must not write beside the chapter"
    return json.loads((tmp_path / f"{stem}-paper-cpu.json").read_text()), sizes


@pytest.mark.parametrize("rel", sorted(REDUCED))
def test_paper_branch_writes_its_record(rel, tmp_path, monkeypatch):
    monkeypatch.setenv("NGDLIB_RECORDS", str(tmp_path / "records"))
    rec, sizes = run_paper_branch(rel, REDUCED[rel], tmp_path)
    assert rec["scale"] == "paper" and rec["device"] == "cpu" and rec["gpu"] is None and rec["processor"]
    assert rec["python"] and rec["torch"] and rec["numpy"] and rec["threads"] >= 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", rec["date"]) and rec["seconds"] > 0
    assert rec["sizes"] == json.loads(json.dumps(sizes)), "the record must name the sizes it ran with"
    # the numbers that decided the claims: every claim the notebook recorded in this run, with its status
    recorded = {p.stem for p in (tmp_path / "records").glob("*.json")}
    assert recorded and {c["claim"] for c in rec["claims"]} == recorded
    for c in rec["claims"]:
        assert c["status"] in STATUSES and c["summary"] and isinstance(c["values"], dict)


def test_every_notebook_with_a_paper_scale_is_tested_and_listed():
    """A notebook whose parameters cell has ``SCALE = "ci"`` must have reduced sizes here and a row in running.md."""
    running = (ROOT / "running.md").read_text()
    found = set()
    for path in sorted((ROOT / "chapters").glob("*/*-check.ipynb")):
        nb = nbformat.read(path, as_version=4)
        params = next(c.source for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
        if re.search(r'^SCALE = "ci"', params, re.M):
            found.add(str(path.relative_to(ROOT / "chapters"))[:-len("-check.ipynb")])
    assert set(REDUCED) <= found, sorted(set(REDUCED) - found)
    others = {"perf/cost", "zmg/z-f1"}       # tested by their own functions above
    assert not (found - set(REDUCED) - others), sorted(found - set(REDUCED) - others)
    for rel in sorted(set(REDUCED)):
        assert f"chapters/{rel}-check.ipynb" in running, f"running.md does not list {rel}"


def test_paper_record_keeps_the_claims_of_its_run_only(tmp_path, monkeypatch):
    """``paper_record`` takes the claims recorded since ``started`` (not earlier ones), and its fields are what the
    page's ``{paper-record}`` directive reads."""
    import sys
    import time

    import ngdlib
    from ngdlib.records import paper_record

    monkeypatch.setenv("NGDLIB_RECORDS", str(tmp_path / "records"))
    ngdlib.record("Z-BEFORE", "verified", summary="an earlier run", slack=1.0)
    started = time.perf_counter()
    ngdlib.record("Z-DURING", "corrected", summary="this run", slack=0.5, slack_meaning="a slack", seed=3,
                  widths=[4, 8])
    path = paper_record(tmp_path / "x-paper-cpu.json", scale="paper", sizes={"N": 4, "WIDTHS": (4, 8)},
                        device="cpu", started=started, results={"worst": 0.25})
    rec = json.loads(path.read_text())
    assert [c["claim"] for c in rec["claims"]] == ["Z-DURING"]
    assert rec["claims"][0]["values"] == {"seed": 3, "widths": [4, 8]} and rec["claims"][0]["slack"] == 0.5
    assert rec["sizes"] == {"N": 4, "WIDTHS": [4, 8]} and rec["results"] == {"worst": 0.25}
    assert rec["device"] == "cpu" and rec["gpu"] is None and rec["date"].endswith(" UTC") and rec["seconds"] >= 0
    sys.path.insert(0, str(ROOT / "_ext"))
    try:
        import paperrecord
    finally:
        sys.path.remove(str(ROOT / "_ext"))
    assert set(paperrecord.FIELDS) <= set(rec)
    text = paperrecord.describe(rec)
    assert "SCALE = \"paper\"" in text and "device cpu" in text and "N = 4, WIDTHS = (4, 8)" in text


ZF1 = ROOT / "chapters" / "zmg" / "z-f1-check.ipynb"


def test_figure1_notebook_paper_scale_writes_its_record(tmp_path, monkeypatch):
    """Z-F1's ``SCALE = "paper"`` branch (the paper's widths 100 and 6000) at reduced sizes: it runs every assert of
    the chapter (NGD and GD rows) on its own draw, writes its record, and shows it beside the run."""
    monkeypatch.setenv("NGDLIB_RECORDS", str(tmp_path / "records"))
    sizes = dict(N_PER_CLASS=4, NARROW=16, WIDE=256, DRAWS=1)
    committed = {p: p.read_bytes() for p in ZF1.parent.glob("z-f1-paper-*.json")}
    execute_at_paper_scale(ZF1, sizes, tmp_path)
    rec = json.loads((tmp_path / "z-f1-paper-cpu.json").read_text())
    assert rec["scale"] == "paper" and rec["device"] == "cpu" and rec["sizes"] == sizes
    assert rec["torch"] and rec["python"] and rec["date"].endswith("UTC") and rec["seconds"] > 0
    (draw,) = rec["draws"]
    assert [s["width"] for s in draw] == [16, 256]
    assert all({"cos", "cos_gd", "after", "after_gd", "bend", "bend_gd"} <= set(s) for s in draw)
    assert {p: p.read_bytes() for p in ZF1.parent.glob("z-f1-paper-*.json")} == committed, \
        "a test run must not write beside the chapter"
