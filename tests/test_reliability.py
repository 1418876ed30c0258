"""Reproducibility and loud failure: same seed, same bits; no NaN reaches a record; float32 verification warns."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ngdlib
from ngdlib.testing import PrecisionWarning, assert_close

ROOT = Path(__file__).resolve().parents[1]


def _run(method):
    X = ngdlib.sphere(10, 4, seed=3)
    y = torch.randn(10, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    model = ngdlib.TwoLayerReLU(4, 300, seed=5)
    hist = ngdlib.train(model, X, y, method=method, eta=0.5, steps=4, progress=False)
    return hist, model.W.detach().clone()


@pytest.mark.parametrize("method", ["ngd", "kfac", "gd"])
def test_same_seed_bit_identical(method):
    h1, W1 = _run(method)
    h2, W2 = _run(method)
    assert h1.residual_norm == h2.residual_norm and h1.lambda_min_gram == h2.lambda_min_gram
    assert torch.equal(W1, W2)


def test_notebook_records_are_bit_identical_across_runs(tmp_path):
    """The same notebook run twice with the same seed records exactly the same numbers."""
    code = ("import os, sys, nbformat; from nbclient import NotebookClient; p = sys.argv[1]; "
            "nb = nbformat.read(p, as_version=4); "
            "NotebookClient(nb, kernel_name='python3', resources={'metadata': {'path': os.path.dirname(p)}}).execute()")
    nb = ROOT / "chapters" / "zmg" / "z-ginf-check.ipynb"
    values = []
    for run in range(2):
        folder = tmp_path / f"run{run}"
        env = {**__import__("os").environ, "NGDLIB_RECORDS": str(folder)}
        subprocess.run([sys.executable, "-c", code, str(nb)], check=True, env=env, capture_output=True, timeout=600)
        values.append(json.loads((folder / "Z-Ginf.json").read_text())["values"])
    assert values[0] == values[1]


def test_record_refuses_nan(tmp_path, monkeypatch):
    monkeypatch.setenv("NGDLIB_RECORDS", str(tmp_path))
    with pytest.raises(ValueError, match="not finite"):
        ngdlib.record("Z-NGD", "verified", summary="x", slack=float("nan"))
    with pytest.raises(ValueError, match="NaN or Inf"):
        ngdlib.record("Z-NGD", "verified", summary="x", err=torch.tensor([1.0, float("inf")]))
    assert not list(tmp_path.iterdir())


def test_record_writes_provenance(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NGDLIB_RECORDS", str(tmp_path))
    path = ngdlib.record("Z-NGD", "verified", summary="s", slack=1.5, seed=3, dtype=torch.float64)
    rec = json.loads(path.read_text())
    assert rec["environment"]["torch"] == torch.__version__ and rec["values"] == {"seed": 3, "dtype": "torch.float64"}
    assert "torch " + torch.__version__ in capsys.readouterr().out


def test_float32_verification_warns():
    with pytest.warns(PrecisionWarning):
        assert_close(torch.ones(3, dtype=torch.float32), torch.ones(3, dtype=torch.float32))


def test_ill_conditioned_solve_names_condition_number():
    """A numerically singular Gram matrix is refused with its measured condition number, in float32 and float64."""
    for dtype in (torch.float32, torch.float64):
        X = ngdlib.sphere(6, 3, seed=0, dtype=dtype)
        X[5] = (X[4] + 1e-9 * X[3]) / torch.linalg.vector_norm(X[4] + 1e-9 * X[3])   # nearly parallel pair
        model = ngdlib.TwoLayerReLU(3, 2000, seed=1, dtype=dtype)
        with pytest.raises(ValueError, match="condition number"):
            ngdlib.ngd_direction(model, X, torch.ones(6, dtype=dtype), check_assumption1=False)
