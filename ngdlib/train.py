"""Training loops for the two-layer network, with a per-step history."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._history import SeriesHistory
from ._checks import check_number, check_vector
from .curvature import gd_direction, kfac_direction, ngd_step, validate

__all__ = ["History", "train", "METHODS"]

METHODS = ("ngd", "kfac", "gd")


@dataclass
class History(SeriesHistory):
    """What :func:`train` records, one entry per iterate k = 0 .. steps (index k is before step k+1).

    Attributes:
        method, lr: the run's settings.
        residual_norm: ||u(k) - y||_2.
        loss: L(k) = ||u(k) - y||^2 / (2n).
        lambda_min_gram: lambda_min(G(k)) (NaN where not tracked).
        dist_from_init: ||W(k) - W(0)||_F = ||w(k) - w(0)||_2.
        diverged: True if the run stopped because the residual grew past ``diverge_factor`` times its start
            or became non-finite (the last finite iterate is the last entry).
    """

    method: str
    lr: float
    residual_norm: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    lambda_min_gram: list = field(default_factory=list)
    dist_from_init: list = field(default_factory=list)
    diverged: bool = False


def train(model, X: torch.Tensor, y: torch.Tensor, method: str = "ngd", lr: float = 1.0, steps: int = 10, *,
          progress: bool = True, track_gram: bool = True, tol: float = 0.0, diverge_factor: float = 1e6,
          check_assumption1: bool = True) -> History:
    """Run ``steps`` iterations of :math:`W \\leftarrow W - \\eta\\, D(W)` in place and return the :class:`History`.

    ``method`` picks D: ``"ngd"`` :math:`J^\\top G^{-1}(u - y)` (eq. 9), ``"kfac"`` eq. (12), ``"gd"``
    :math:`J^\\top (u - y)` (gradient of :math:`\\frac12\\|u - y\\|^2`).

    Args:
        model: a :class:`~ngdlib.models.TwoLayerReLU` (modified in place).
        X: inputs (n x d), unit rows (Assumption 1).
        y: targets (n,).
        method: ``"ngd"``, ``"kfac"`` or ``"gd"`` (the direction D above).
        lr: step size :math:`\\eta > 0`.
        steps: number of steps.
        progress: show a tqdm progress bar.
        track_gram: record :math:`\\lambda_{\\min}(G(k))` at every iterate (free for NGD, one extra eigvalsh else).
        tol: stop early once ``||u - y|| <= tol``.
        diverge_factor: stop (and set ``history.diverged``) once ``||u - y||`` exceeds this times its start.
        check_assumption1: validate X against Assumption 1 once, before the first step.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 and lr == lr and lr != float("inf")):
        raise ValueError(f"lr (the step size eta) must be a positive finite number, got {lr!r}")
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    check_number("tol (the early-stopping residual)", tol, low=0.0, allow_inf=True)
    check_number("diverge_factor", diverge_factor, low=0.0, low_open=True, allow_inf=True)
    validate(model, X, None, check_assumption1)
    check_vector("y", y, X.shape[0], "one target per input")
    if y.dtype != X.dtype or y.device != X.device:
        raise ValueError(f"y has dtype {y.dtype} on {y.device}, X has {X.dtype} on {X.device}; they must match")

    hist = History(method=method, lr=float(lr))
    W0 = model.W.detach().clone()
    n = X.shape[0]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"{method} lr={lr:g}")
    with torch.no_grad():
        r0 = None
        for k in range(steps + 1):
            r = model(X) - y
            rn = float(torch.linalg.vector_norm(r))
            if r0 is None:
                r0 = rn
            if rn != rn or rn == float("inf") or rn > diverge_factor * max(r0, 1e-300):
                hist.diverged = True
                break
            D = None
            if method == "ngd" and k < steps and rn > tol:
                D, evals = ngd_step(model, X, r)
                lmin = float(evals[0])
            elif track_gram:
                lmin = float(torch.linalg.eigvalsh(model.gram(X))[0])
            else:
                lmin = float("nan")
            hist.residual_norm.append(rn)
            hist.loss.append(rn * rn / (2 * n))
            hist.lambda_min_gram.append(lmin)
            hist.dist_from_init.append(float(torch.linalg.vector_norm(model.W - W0)))
            if k == steps or rn <= tol:
                break
            if method == "kfac":
                D = kfac_direction(model, X, r, check_assumption1=False)
            elif method == "gd":
                D = gd_direction(model, X, r, check_assumption1=False)
            # (for "ngd", D was computed above together with the eigenvalues of G)
            model.W.sub_(lr * D)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return hist
