"""Tolerances and comparison helpers shared by the unit tests and the notebooks.

One table keyed by dtype; Monte-Carlo comparisons are stated in standard errors; every helper raises an
``AssertionError`` that prints the worst entries, the measured error and the tolerance, so a failing notebook cell
says why it failed.
"""
from __future__ import annotations

import warnings

import torch

__all__ = ["TOLERANCES", "tolerance", "assert_close", "assert_within_se", "fit_loglog_slope", "verdict",
           "PrecisionWarning"]


class PrecisionWarning(UserWarning):
    """A verification was attempted in a precision below float64 (verification belongs in float64)."""

#: rtol/atol per dtype for comparing two exact formulas of the same quantity. float64: round-off of an
#: O(n^3) solve with condition number up to ~1e4 stays below 1e-11; float32: 2^-23 ~ 1.2e-7 times the same.
TOLERANCES = {
    torch.float64: {"rtol": 1e-10, "atol": 1e-12},
    torch.float32: {"rtol": 1e-4, "atol": 1e-6},
}


def tolerance(dtype: torch.dtype) -> dict:
    """The ``{"rtol", "atol"}`` entry of :data:`TOLERANCES` for ``dtype``.

    Raises:
        ValueError: for a dtype without an entry (anything but float32 / float64).
    """
    try:
        return dict(TOLERANCES[dtype])
    except KeyError:
        raise ValueError(f"no tolerance defined for dtype {dtype}; use float32 or float64") from None


def assert_close(actual, expected, *, rtol: float | None = None, atol: float | None = None, what: str = "value",
                 worst: int = 3) -> float:
    """Assert ``|actual - expected| <= atol + rtol * |expected|`` entry-wise; return the max relative error.

    Defaults come from :data:`TOLERANCES` for the dtype of ``actual``. On failure the message lists the ``worst``
    offending entries with both values, their ratio and the tolerance. Warns (:class:`PrecisionWarning`) when
    ``actual`` is not float64.

    Raises:
        AssertionError: when the shapes differ or an entry lies outside ``atol + rtol * |expected|`` (the worst
            entries are printed).
        ValueError: when a tolerance is negative or NaN.
    """
    from ._checks import check_int, check_number

    if rtol is not None:
        check_number("rtol", rtol, low=0.0)
    if atol is not None:
        check_number("atol", atol, low=0.0)
    check_int("worst", worst, 1)
    a = torch.as_tensor(actual)
    if a.is_floating_point() and a.dtype != torch.float64:
        warnings.warn(f"{what}: verification attempted in {a.dtype}; verify in float64 (float32 is for speed only)",
                      PrecisionWarning, stacklevel=2)
    e = torch.as_tensor(expected, dtype=a.dtype, device=a.device)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(e.shape)}")
    tol = tolerance(a.dtype) if a.is_floating_point() and a.dtype in TOLERANCES else {"rtol": 0.0, "atol": 0.0}
    rtol = tol["rtol"] if rtol is None else rtol
    atol = tol["atol"] if atol is None else atol
    a64, e64 = a.detach().to("cpu", torch.float64), e.detach().to("cpu", torch.float64)
    err = (a64 - e64).abs()
    allowed = atol + rtol * e64.abs()
    rel = float((err / e64.abs().clamp_min(1e-300)).max()) if err.numel() else 0.0
    bad = ~(err <= allowed)  # also catches NaN
    if bool(bad.any()):
        excess = torch.where(bad, err / allowed.clamp_min(1e-300), torch.zeros_like(err)).reshape(-1)
        idx = torch.argsort(excess.nan_to_num(float("inf")), descending=True)[:worst]
        lines = []
        for i in idx.tolist():
            pos = tuple(int(p) for p in torch.unravel_index(torch.tensor(i), a.shape)) if a.ndim else ()
            av, ev = float(a64.reshape(-1)[i]), float(e64.reshape(-1)[i])
            lines.append(f"  at {pos}: actual {av:.17g}, expected {ev:.17g}, |diff| {abs(av - ev):.3e}, "
                         f"ratio {av / ev if ev != 0 else float('nan'):.12g}")
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.numel()} entries outside atol={atol:g} + rtol={rtol:g}*|expected| "
            f"(max |diff| {float(err.max()):.3e}, max rel {rel:.3e}); worst:\n" + "\n".join(lines)
        )
    return rel


def assert_within_se(estimate, truth, se, *, k: float = 5.0, what: str = "Monte-Carlo estimate") -> float:
    """Assert ``|estimate - truth| <= k * se`` entry-wise; return the largest ``|estimate - truth| / se``.

    With k = 5 a correct estimator fails a single comparison with probability about 6e-7 (normal tails).

    Raises:
        AssertionError: when an entry deviates by more than ``k`` standard errors.
        ValueError: when se is negative or not finite, or the shapes do not broadcast.
    """
    from ._checks import check_number

    check_number("k (the number of standard errors allowed)", k, low=0.0, low_open=True)
    est = torch.as_tensor(estimate, dtype=torch.float64).cpu()
    tru = torch.as_tensor(truth, dtype=torch.float64).cpu()
    s = torch.as_tensor(se, dtype=torch.float64).cpu()
    if not bool((torch.isfinite(s) & (s >= 0)).all()):
        raise ValueError(f"{what}: the standard error se must be finite and >= 0, got {s.tolist()}")
    try:
        s = s.expand_as(est)
        z = (est - tru).abs() / s.clamp_min(1e-300)
    except RuntimeError:
        raise ValueError(f"{what}: estimate {tuple(est.shape)}, truth {tuple(tru.shape)} and standard error "
                         f"{tuple(s.shape)} must have broadcastable shapes (se broadcast to the estimate's shape)"
                         ) from None
    zmax = float(z.max())
    if not zmax <= k:
        i = int(z.reshape(-1).argmax())
        raise AssertionError(f"{what}: deviation of {zmax:.2f} standard errors > {k} at flat index {i} "
                             f"(estimate {float(est.reshape(-1)[i]):.6g}, truth {float(tru.reshape(-1)[i]):.6g}, "
                             f"se {float(s.reshape(-1)[i]):.3g})")
    return zmax


def fit_loglog_slope(x, y) -> tuple[float, float]:
    """Least-squares fit of log y = slope * log x + intercept; returns ``(slope, intercept)``.

    Raises:
        ValueError: if x or y has a non-positive or non-finite entry, the lengths differ, fewer than two points are
            given, or the x values are all equal.
    """
    from ._linalg import check_full_column_rank

    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    if xt.ndim != 1 or yt.ndim != 1:
        raise ValueError(f"fit_loglog_slope needs 1-D x and y, got shapes {tuple(xt.shape)} and {tuple(yt.shape)}")
    if xt.numel() < 2 or yt.numel() < 2:
        raise ValueError("fit_loglog_slope needs at least two positive, finite points")
    if xt.shape != yt.shape:
        raise ValueError(f"x and y must have the same length, got {xt.numel()} and {yt.numel()}")
    lx = torch.log(xt)
    ly = torch.log(yt)
    if lx.numel() < 2 or not bool(torch.isfinite(lx).all() and torch.isfinite(ly).all()):
        raise ValueError("fit_loglog_slope needs at least two positive, finite points")
    A = torch.stack([lx, torch.ones_like(lx)], dim=1)
    check_full_column_rank(A, "fit_loglog_slope: the x values must not all be equal (the design [log x, 1] needs "
                              "rank 2)")
    sol = torch.linalg.lstsq(A, ly[:, None]).solution[:, 0]
    return float(sol[0]), float(sol[1])


def verdict(claim: str, ok: bool, detail: str, status: str = "verified") -> str:
    """A one-line verdict for a notebook to print after its asserts, e.g. ``Z-NGD verified: ...``.

    ``status`` is the outcome when the checks passed (one of ``ngdlib.records.STATUSES``: a claim can be checked
    successfully and still be "refuted as printed" or "corrected").

    Raises:
        ValueError: if the claim ID or status is malformed.
    """
    from .records import STATUSES

    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    line = f"{claim} {status if ok else 'FAILED'}: {detail}"
    print(line)
    return line
