"""The field's own libraries as independent oracles for ngdlib (``make test-oracles``, environment .venv-oracles).

Each comparison goes through :func:`compare`, which states the convention mapping in one line, measures the max
relative difference ``max |actual - expected| / max |expected|`` (relative to the largest entry, so that exact zeros
such as the activation kernel at angle pi do not divide by zero), asserts it against a tolerance whose reason is
written at the call, and adds a row to the table printed at the end of the run (and written as JSON to
``$ORACLES_TABLE`` when that is set):

    comparison | oracle | ngdlib function | max relative difference | tolerance | mapping

Inputs and seeds are the tests' own (seeds 1000+, shapes that no chapter uses), so agreement is not an artefact of
a shared fixture.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)

EPS = float(np.finfo(np.float64).eps)  # 2.2e-16
#: Every seed in these tests is S(k): k shifted by $ORACLE_SEED_OFFSET (default 0), to rerun all of them on other
#: draws (e.g. ORACLE_SEED_OFFSET=7 make test-oracles).
SEED_OFFSET = int(os.environ.get("ORACLE_SEED_OFFSET", "0"))


def S(seed: int) -> int:
    return seed + SEED_OFFSET
ROWS: list[dict] = []


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def max_rel(actual, expected) -> float:
    """``max |actual - expected| / max |expected|`` (entry-wise over all entries of the two arrays)."""
    a, e = np.asarray(_np(actual), dtype=np.float64), np.asarray(_np(expected), dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"shapes differ: {a.shape} vs {e.shape}")
    scale = np.max(np.abs(e))
    if scale == 0:
        return float(np.max(np.abs(a)))
    return float(np.max(np.abs(a - e)) / scale)


def compare(comparison: str, oracle: str, function: str, actual, expected, tol: float, mapping: str,
            record: bool = True) -> float:
    """Assert ``max_rel(actual, expected) <= tol`` and record a row of the oracle table."""
    rel = max_rel(actual, expected)
    if record:
        ROWS.append(dict(comparison=comparison, oracle=oracle, function=function, max_rel=rel, tol=tol,
                         mapping=mapping))
    assert rel <= tol, (f"{comparison}: ngdlib's {function} differs from {oracle} by {rel:.3e} (relative to the "
                        f"largest entry) > tolerance {tol:.1e}; convention: {mapping}")
    return rel


def note(comparison: str, oracle: str, function: str, value: float, tol: float, mapping: str) -> None:
    """Record a measured number that the test asserted some other way (e.g. an oracle's own error)."""
    ROWS.append(dict(comparison=comparison, oracle=oracle, function=function, max_rel=float(value), tol=tol,
                     mapping=mapping))


def pinv_known_rank(M, rank: int, what: str, min_gap: float = 1e6):
    """Dense pseudo-inverse of a symmetric matrix whose rank is known from the structure.

    Keeps the ``rank`` eigenvalues of largest modulus (the tri-diagonal truncation of a PSD matrix is indefinite)
    and asserts that they are separated from the rest by at least ``min_gap`` (ratio of the smallest kept modulus
    to the largest dropped one, the latter floored at ``eps * max modulus``): a cut-off decided by the structure,
    verified on the numbers, instead of a tuned threshold.
    """
    M = torch.as_tensor(M)
    M = (M + M.T) / 2
    evals, evecs = torch.linalg.eigh(M)
    order = torch.argsort(evals.abs(), descending=True)
    evals, evecs = evals[order], evecs[:, order]
    n = M.shape[0]
    top = float(evals.abs()[0])
    kept = evals[:rank]
    dropped = float(evals[rank:].abs().max()) if rank < n else 0.0
    floor = max(dropped, EPS * top)
    assert float(kept.abs().min()) > min_gap * floor, (f"{what}: no eigen-gap at the structural rank {rank}: "
                                                       f"kept {float(kept.abs().min()):.3e}, dropped {dropped:.3e}")
    V = evecs[:, :rank]
    return (V / kept) @ V.T


def pinv_numerical_rank(M, what: str, rel: float = 1e-10, min_gap: float = 1e4):
    """Pseudo-inverse at the numerical rank #{|lambda| > rel * max |lambda|}, asserting a clean gap of ``min_gap``
    around the cut (used for K-FAC factors, whose rank depends on which ReLU units are active)."""
    M = torch.as_tensor(M)
    ev = torch.linalg.eigvalsh((M + M.T) / 2).abs()
    rank = int((ev > rel * ev.max()).sum())
    return pinv_known_rank(M, rank, what, min_gap=min_gap)


def pytest_terminal_summary(terminalreporter):
    if not ROWS:
        return
    tr = terminalreporter
    tr.section("oracle comparisons")
    tr.write_line("| comparison | oracle | ngdlib function | max relative difference | tolerance |")
    tr.write_line("|---|---|---|---|---|")
    for r in ROWS:
        tr.write_line(f"| {r['comparison']} | {r['oracle']} | `{r['function']}` | {r['max_rel']:.1e} | "
                      f"{r['tol']:.0e} |")
    path = os.environ.get("ORACLES_TABLE")
    if path:
        with open(path, "w") as f:
            json.dump(ROWS, f, indent=1)
        tr.write_line(f"wrote {path}")


@pytest.fixture
def rng():
    return np.random.default_rng(1000)
