"""The ``SCALE = "paper"`` branch of a notebook, run at reduced sizes (the paper's own sizes need a GPU).

The convention (running.md): the parameters cell defines ``SCALE = "ci"`` and a dict ``SIZES`` keyed by SCALE; a
``paper`` run writes its record beside the chapter as JSON with device, versions, time and date. Here the cost
notebook runs with ``SCALE = "paper"`` and small ``SIZES["paper"]`` injected after its parameters cell (as papermill
would), writing its record to a temporary folder, and the record must name the device, versions and date and list
every size it ran with all count paths exact.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "chapters" / "perf" / "cost-check.ipynb"


def run_paper_branch(notebook: Path, sizes, tmp_path: Path, stem: str) -> dict:
    """Execute ``notebook`` with ``SCALE = "paper"``, ``SIZES["paper"] = sizes`` and its record redirected to
    ``tmp_path`` (injected after the parameters cell, as papermill would); return the record it wrote."""
    nb = nbformat.read(notebook, as_version=4)
    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    cell = nbformat.v4.new_code_cell(f'SCALE = "paper"\nSIZES["paper"] = {sizes!r}\n'
                                     f'PAPER_JSON = "{tmp_path}/{stem}-{{device}}.json"')
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(idx + 1, cell)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    return json.loads((tmp_path / f"{stem}-cpu.json").read_text())


def test_cost_notebook_paper_scale_writes_its_record(tmp_path, monkeypatch):
    monkeypatch.setenv("NGDLIB_RECORDS", str(tmp_path / "records"))
    sizes = {"live": (32, 512, 8), "scale": [(40, 1000, 8), (48, 3000, 8)]}
    rec = run_paper_branch(NOTEBOOK, sizes, tmp_path, "cost-paper")
    assert rec["scale"] == "paper" and rec["device"] == "cpu"
    assert rec["torch"] and rec["python"] and rec["date"].endswith("UTC")
    assert [(x["n"], x["m"], x["d"]) for x in rec["rows"]] == [tuple(s) for s in sizes["scale"]]
    for x in rec["rows"]:
        assert {"float32", "tf32", "float64", "auto"} <= set(x["exact_count_paths"]) and x["ngd_step_seconds"] > 0
    assert not list(NOTEBOOK.parent.glob("cost-paper-*.json")), "a test run must not write beside the chapter"


ZF1 = ROOT / "chapters" / "zmg" / "z-f1-check.ipynb"


def test_figure1_notebook_paper_scale_writes_its_record(tmp_path, monkeypatch):
    """Z-F1's ``SCALE = "paper"`` branch (the paper's widths 100 and 6000) at reduced sizes: it runs every assert of
    the chapter (NGD and GD rows) on its own draw, writes its record, and shows it beside the run."""
    monkeypatch.setenv("NGDLIB_RECORDS", str(tmp_path / "records"))
    sizes = dict(N_PER_CLASS=4, NARROW=16, WIDE=256, DRAWS=1)
    committed = {p: p.read_bytes() for p in ZF1.parent.glob("z-f1-paper-*.json")}
    rec = run_paper_branch(ZF1, sizes, tmp_path, "z-f1-paper")
    assert rec["scale"] == "paper" and rec["device"] == "cpu" and rec["sizes"] == sizes
    assert rec["torch"] and rec["python"] and rec["date"].endswith("UTC") and rec["seconds"] > 0
    (draw,) = rec["draws"]
    assert [s["width"] for s in draw] == [16, 256]
    assert all({"cos", "cos_gd", "after", "after_gd", "bend", "bend_gd"} <= set(s) for s in draw)
    assert {p: p.read_bytes() for p in ZF1.parent.glob("z-f1-paper-*.json")} == committed, \
        "a test run must not write beside the chapter"
