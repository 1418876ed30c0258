r"""Training both layers (footnote 2 of Zhang, Martens & Grosse 2019): NGD on :math:`\theta = (w, a)` jointly.

The network is eq. (8), :math:`f(W, a, x) = m^{-1/2}\sum_r a_r\,\mathrm{relu}(w_r^\top x)`, now with the output weights
a trained too. The joint Jacobian is :math:`J = [J_W, J_a]` (n x (md + m)) with

.. math::
    (J_W)_{i,(r,:)} = m^{-1/2} a_r \mathbb 1\{w_r^\top x_i > 0\}\, x_i^\top, \qquad
    (J_a)_{i,r} = m^{-1/2}\,\mathrm{relu}(w_r^\top x_i),

and its Gram matrix, formed without J,

.. math::
    G = J J^\top = (X X^\top) \odot \frac{P\,\mathrm{diag}(a^2)\,P^\top}{m} + \frac{R R^\top}{m},
    \qquad P_{ir} = \mathbb 1\{w_r^\top x_i > 0\},\ R = \mathrm{relu}(X W^\top)

(:math:`a_r^2 = 1` only at initialisation). At :math:`w_r \sim N(0, \nu^2 I)`, :math:`a_r = \pm 1` its limit is

.. math::
    G^\infty_{\mathrm{joint}} = G^\infty + \nu^2 K_1, \qquad
    (K_1)_{ij} = \frac{\sin\theta_{ij} + (\pi - \theta_{ij})\cos\theta_{ij}}{2\pi}

for unit inputs (the arc-cosine kernel of degree 1: :math:`\mathbb E[\mathrm{relu}(w^\top x_i)\mathrm{relu}(w^\top
x_j)] = \nu^2 (K_1)_{ij}`). Since :math:`K_1` is positive semi-definite,
:math:`\lambda_{\min}(G^\infty_{\mathrm{joint}}) \ge \lambda_0`. The NGD step for squared error is eq. (9) with the
joint Jacobian, :math:`\theta \leftarrow \theta - \eta J^\top G^{-1}(u - y)`.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_int, check_number, check_same_dtype_device, check_tensor, check_vector
from ._history import History, run_loop
from ._linalg import max_trusted_cond, psd_eigh
from .curvature import validate
from .kernels import angles, limiting_gram

__all__ = ["joint_gram", "joint_direction", "joint_jacobian_change", "limiting_output_gram",
           "joint_limiting_gram", "train_joint_ngd"]


def _parts(W: torch.Tensor, a: torch.Tensor, X: torch.Tensor):
    P = (X @ W.T > 0).to(X.dtype)
    R = torch.relu(X @ W.T)
    return P, R


def _gram(W, a, X):
    """The joint Gram matrix and the pattern P and features R it is built from."""
    m = W.shape[0]
    P, R = _parts(W, a, X)
    return (X @ X.T) * ((P * a ** 2) @ P.T) / m + R @ R.T / m, P, R


def _check_state(model, X, W, a):
    W = model.W.detach() if W is None else W
    a = model.a if a is None else a
    check_tensor("W", W, ndim=2)
    check_tensor("a", a, ndim=1)
    if W.shape != model.W.shape or a.shape != model.a.shape:
        raise ValueError(f"W and a must have the model's shapes {tuple(model.W.shape)} and {tuple(model.a.shape)}, "
                         f"got {tuple(W.shape)} and {tuple(a.shape)}")
    check_same_dtype_device("W", W, "X", X)
    check_same_dtype_device("a", a, "X", X)
    return W, a


def joint_gram(model, X: torch.Tensor, W: torch.Tensor | None = None, a: torch.Tensor | None = None) -> torch.Tensor:
    r"""The joint Gram matrix :math:`J J^\top = (XX^\top)\odot P\,\mathrm{diag}(a^2)P^\top/m + RR^\top/m` (n x n) at
    (W, a) (default: the model's), without forming J. Cost :math:`O(n m d + n^2 m)`."""
    validate(model, X, None, False)
    W, a = _check_state(model, X, W, a)
    return _gram(W, a, X)[0]


def joint_direction(model, X: torch.Tensor, r: torch.Tensor, W: torch.Tensor | None = None,
                    a: torch.Tensor | None = None):
    r"""NGD direction for both layers, :math:`J^\top G^{-1} r`, returned as ``(D_W, D_a)`` with shapes (m, d), (m,):
    :math:`D_W = \mathrm{diag}(a) P^\top \mathrm{diag}(z) X/\sqrt m`, :math:`D_a = R^\top z/\sqrt m`,
    :math:`z = G^{-1} r`. ``ValueError`` (Condition 1) if the joint Gram matrix is numerically singular."""
    validate(model, X, r, False)
    W, a = _check_state(model, X, W, a)
    m = W.shape[0]
    G, P, R = _gram(W, a, X)
    evals, evecs = psd_eigh(G, "Condition 1 for the joint Jacobian: G = J J^T",
                            "increase the width or remove (nearly) parallel inputs")
    z = evecs @ ((evecs.T @ r) / evals)
    return (P.T @ (z[:, None] * X)) * (a[:, None] / math.sqrt(m)), R.T @ z / math.sqrt(m)


def joint_jacobian_change(model, X: torch.Tensor, W: torch.Tensor, a: torch.Tensor, W0: torch.Tensor,
                          a0: torch.Tensor) -> float:
    r""":math:`\|J(W, a) - J(W_0, a_0)\|_2` for the joint Jacobian, from the n x n matrix
    :math:`\Delta J\,\Delta J^\top = (XX^\top)\odot(\Delta S\,\Delta S^\top) + \Delta R\,\Delta R^\top/m`,
    :math:`\Delta S = (P \mathrm{diag}(a) - P_0 \mathrm{diag}(a_0))/\sqrt m`."""
    validate(model, X, None, False)
    W, a = _check_state(model, X, W, a)
    W0, a0 = _check_state(model, X, W0, a0)
    m = W.shape[0]
    P, R = _parts(W, a, X)
    P0, R0 = _parts(W0, a0, X)
    dS = P * a - P0 * a0
    M = (X @ X.T) * (dS @ dS.T) / m + (R - R0) @ (R - R0).T / m
    return math.sqrt(max(float(torch.linalg.eigvalsh(M)[-1]), 0.0))


def limiting_output_gram(X: torch.Tensor, nu: float = 1.0) -> torch.Tensor:
    r""":math:`\nu^2 K_1`: the limit of :math:`J_a J_a^\top = RR^\top/m`, with
    :math:`(K_1)_{ij} = (\sin\theta_{ij} + (\pi - \theta_{ij})\cos\theta_{ij})/(2\pi)` for unit rows (``ValueError``
    otherwise; angles from :func:`ngdlib.kernels.angles`)."""
    nu = check_number("nu", nu, low=0.0, low_open=True)
    th = angles(X, X)
    return nu ** 2 * (torch.sin(th) + (math.pi - th) * torch.cos(th)) / (2 * math.pi)


def joint_limiting_gram(X: torch.Tensor, nu: float = 1.0) -> torch.Tensor:
    r""":math:`G^\infty + \nu^2 K_1`, the infinite-width joint Gram matrix at initialisation (unit rows)."""
    return limiting_gram(X) + limiting_output_gram(X, nu)


def train_joint_ngd(model, X: torch.Tensor, y: torch.Tensor, eta: float = 1.0, steps: int = 10, *,
                    tol: float = 0.0, diverge_factor: float = 1e6) -> History:
    r"""NGD on both layers, :math:`(W, a) \leftarrow (W, a) - \eta J^\top G^{-1}(u - y)` with the joint Jacobian,
    for ``steps`` steps (the model is not modified: W and a are copied), on the library's one training loop
    (``ngdlib._history.run_loop``, with its divergence rule).

    Returns a :class:`ngdlib.train.History` (method ``"joint-ngd"``) with one entry per iterate k = 0 .. K of the
    series ``residual_norm`` (:math:`\|u(k) - y\|`, monitored), ``lambda_min_gram`` (of the joint Gram),
    ``jacobian_change`` (:math:`\|J(k) - J(0)\|_2`), ``dist_from_init`` (:math:`\|\theta(k) - \theta(0)\|`) and
    ``output_weight_change`` (:math:`\|a(k) - a(0)\|`).

    Raises:
        ValueError: if eta is not positive, steps not a non-negative int, the shapes or dtypes disagree, or G(0) is
            singular (Condition 1); a G(k) that turns singular later stops the run (``diverged``).
    """
    eta = check_number("eta (the step size)", eta, low=0.0, low_open=True)
    steps = check_int("steps", steps, 0)
    validate(model, X, None, True)
    check_vector("y", y, X.shape[0], "one target per input")
    if y.dtype != X.dtype or y.device != X.device:
        raise ValueError(f"y has dtype {y.dtype} on {y.device}, X has {X.dtype} on {X.device}; they must match")
    m = model.m
    W0, a0 = model.W.detach().clone(), model.a.detach().clone()
    state = {"W": W0.clone(), "a": a0.clone()}
    hist = History(method="joint-ngd", eta=float(eta))

    def observe(k):
        W, a = state["W"], state["a"]
        G, P, R = _gram(W, a, X)
        r = R @ a / math.sqrt(m) - y
        if k == 0:
            evals, evecs = psd_eigh(G, "Condition 1 for the joint Jacobian: G(0) = J(0) J(0)^T",
                                    "increase the width or remove (nearly) parallel inputs")
        else:
            evals, evecs = torch.linalg.eigh(G)
        state.update(P=P, R=R, r=r, evals=evals, evecs=evecs)
        return float(torch.linalg.vector_norm(r)), {
            "lambda_min_gram": float(evals[0]),
            "jacobian_change": joint_jacobian_change(model, X, W, a, W0, a0),
            "dist_from_init": math.sqrt(float(((W - W0) ** 2).sum() + ((a - a0) ** 2).sum())),
            "output_weight_change": float(torch.linalg.vector_norm(a - a0))}

    def advance(k):
        evals, evecs, r = state["evals"], state["evecs"], state["r"]
        if not (float(evals[0]) > 0 and float(evals[-1] / evals[0]) < max_trusted_cond(X.dtype)):
            return f"G(k) singular at iterate {k} (Condition 1 lost)"
        z = evecs @ ((evecs.T @ r) / evals)
        a = state["a"]
        DW = (state["P"].T @ (z[:, None] * X)) * (a[:, None] / math.sqrt(m))
        Da = state["R"].T @ z / math.sqrt(m)
        state["W"], state["a"] = state["W"] - eta * DW, a - eta * Da
        return None

    return run_loop(hist, observe, advance, steps, tol=tol, diverge_factor=diverge_factor, monitor="residual_norm")
