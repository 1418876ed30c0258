"""Training the two-layer network, and the one history type of every trainer in ngdlib.

:func:`train` runs NGD, K-FAC or GD on :class:`~ngdlib.models.TwoLayerReLU`. Every trainer of the library (this one,
:func:`ngdlib.approx_fisher.train_ngd`, :func:`ngdlib.losses.train_loss`, :func:`ngdlib.stability.trace_ngd`,
:func:`ngdlib.deep_linear.train_gd`, :func:`ngdlib.deep_linear.train_gd_batched`, :func:`ngdlib.chatterjee.gradient_descent`,
:func:`ngdlib.joint.train_joint_ngd`) runs on one loop (``ngdlib._history.run_loop``) and returns one
:class:`History`, with one divergence rule: a start that is not finite raises ``ValueError``; later, the run stops and
sets ``history.diverged = True`` (reason in ``history.stop_reason``) once the monitored quantity is not finite or
exceeds ``diverge_factor`` times its start, and never records the diverged iterate.
"""
from __future__ import annotations

import torch

from ._history import History, run_loop
from ._checks import check_number, check_vector
from .curvature import gd_direction, kfac_direction, ngd_step, validate

__all__ = ["History", "train", "METHODS"]

METHODS = ("ngd", "kfac", "gd")


def train(model, X: torch.Tensor, y: torch.Tensor, method: str = "ngd", eta: float = 1.0, steps: int = 10, *,
          progress: bool = True, track_gram: bool = True, tol: float = 0.0, diverge_factor: float = 1e6,
          check_assumption1: bool = True) -> History:
    """Run ``steps`` iterations of :math:`W \\leftarrow W - \\eta\\, D(W)` in place and return the :class:`History`.

    ``method`` picks D: ``"ngd"`` :math:`J^\\top G^{-1}(u - y)` (eq. 9), ``"kfac"`` eq. (12), ``"gd"``
    :math:`J^\\top (u - y)` (gradient of :math:`\\frac12\\|u - y\\|^2`).

    Recorded series (one entry per iterate k = 0 .. steps): ``residual_norm`` :math:`\\|u(k) - y\\|_2` (monitored),
    ``loss`` :math:`L(k) = \\|u(k) - y\\|^2 / (2n)`, ``lambda_min_gram`` :math:`\\lambda_{\\min}(G(k))` (NaN where not
    tracked), ``dist_from_init`` :math:`\\|W(k) - W(0)\\|_F`.

    Args:
        model: a :class:`~ngdlib.models.TwoLayerReLU` (modified in place).
        X: inputs (n x d), unit rows (Assumption 1).
        y: targets (n,).
        method: ``"ngd"``, ``"kfac"`` or ``"gd"`` (the direction D above).
        eta: step size :math:`\\eta > 0`.
        steps: number of steps.
        progress: show a tqdm progress bar.
        track_gram: record :math:`\\lambda_{\\min}(G(k))` at every iterate (free for NGD, one extra eigvalsh else).
        tol: stop early once ``||u - y|| <= tol``.
        diverge_factor: stop (and set ``history.diverged``) once ``||u - y||`` exceeds this times its start or is not
            finite (the rule of :mod:`ngdlib.train`).
        check_assumption1: validate X against Assumption 1 once, before the first step.

    Raises:
        ValueError: for an unknown method, a step size that is not a positive finite number, a negative step count,
            inputs that violate Assumption 1 (when checked), targets of the wrong length, dtype or device, or a start
            whose residual is not finite.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_number("eta (the step size)", eta, low=0.0, low_open=True)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    check_number("tol (the early-stopping residual)", tol, low=0.0, allow_inf=True)
    check_number("diverge_factor", diverge_factor, low=0.0, low_open=True, allow_inf=True)
    validate(model, X, None, check_assumption1)
    check_vector("y", y, X.shape[0], "one target per input")
    if y.dtype != X.dtype or y.device != X.device:
        raise ValueError(f"y has dtype {y.dtype} on {y.device}, X has {X.dtype} on {X.device}; they must match")

    eta = float(eta)
    hist = History(method=method, eta=eta, series={k: [] for k in ("residual_norm", "loss", "lambda_min_gram",
                                                                   "dist_from_init")})
    W0 = model.W.detach().clone()
    n = X.shape[0]
    state = {}

    def observe(k):
        r = model(X) - y
        rn = float(torch.linalg.vector_norm(r))
        state["r"], state["D"] = r, None
        r0 = state.setdefault("r0", rn)
        live = rn <= diverge_factor * max(r0, 1e-300)        # (False for NaN: the loop stops on it)
        state["refused"] = None
        if method == "ngd" and k < steps and rn > tol and live:
            try:
                state["D"], evals = ngd_step(model, X, r)   # the direction and the eigenvalues of G, together
                lmin = float(evals[0])
            except ValueError as err:                    # G(k) singular: the step is refused (at k = 0: raised)
                if k == 0:
                    raise
                state["refused"], lmin = err, float("nan")
        elif track_gram and live:
            lmin = float(torch.linalg.eigvalsh(model.gram(X))[0])
        else:
            lmin = float("nan")
        return rn, {"loss": rn * rn / (2 * n), "lambda_min_gram": lmin,
                    "dist_from_init": float(torch.linalg.vector_norm(model.W - W0))}

    def advance(k):
        if state["refused"] is not None:
            raise state["refused"]
        D = state["D"]
        if method == "kfac":
            D = kfac_direction(model, X, state["r"], check_assumption1=False)
        elif method == "gd":
            D = gd_direction(model, X, state["r"], check_assumption1=False)
        model.W.sub_(eta * D)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"{method} eta={eta:g}")
    with torch.no_grad():
        run_loop(hist, observe, advance, steps, tol=tol, diverge_factor=diverge_factor, monitor="residual_norm",
                 bar=bar)
    if bar is not None:
        bar.close()
    return hist
