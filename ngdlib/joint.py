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
from dataclasses import dataclass, field

import torch

from ._checks import check_number, check_same_dtype_device, check_tensor, check_vector, psd_eigh
from ._history import SeriesHistory
from .curvature import validate
from .kernels import angles, limiting_gram

__all__ = ["joint_gram", "joint_direction", "joint_jacobian_change", "limiting_output_gram",
           "joint_limiting_gram", "JointTrace", "train_joint_ngd"]


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


@dataclass
class JointTrace(SeriesHistory):
    """What :func:`train_joint_ngd` records, per iterate k = 0 .. K: residual norms :math:`\\|u(k) - y\\|`,
    :math:`\\lambda_{\\min}(G(k))` of the joint Gram, :math:`\\|J(k) - J(0)\\|_2`, :math:`\\|\\theta(k) - \\theta(0)\\|`
    and :math:`\\|a(k) - a(0)\\|`; ``diverged`` and ``stop_reason``."""

    lr: float
    residual_norm: list = field(default_factory=list)
    lambda_min_gram: list = field(default_factory=list)
    jacobian_change: list = field(default_factory=list)
    dist_from_init: list = field(default_factory=list)
    output_weight_change: list = field(default_factory=list)
    diverged: bool = False
    stop_reason: str = ""


def train_joint_ngd(model, X: torch.Tensor, y: torch.Tensor, lr: float = 1.0, steps: int = 10, *,
                    tol: float = 0.0, diverge_factor: float = 1e6) -> JointTrace:
    r"""NGD on both layers, :math:`(W, a) \leftarrow (W, a) - \eta J^\top G^{-1}(u - y)` with the joint Jacobian,
    for ``steps`` steps (the model is not modified: W and a are copied). Records a :class:`JointTrace`.

    ``ValueError`` if G(0) is singular (Condition 1); a G(k) that turns singular later stops the run
    (``diverged``)."""
    lr = check_number("lr (the step size eta)", lr, low=0.0, low_open=True)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    validate(model, X, None, True)
    check_vector("y", y, X.shape[0], "one target per input")
    if y.dtype != X.dtype or y.device != X.device:
        raise ValueError(f"y has dtype {y.dtype} on {y.device}, X has {X.dtype} on {X.device}; they must match")
    m = model.m
    W0, a0 = model.W.detach().clone(), model.a.detach().clone()
    W, a = W0.clone(), a0.clone()
    out = JointTrace(lr=float(lr))
    for k in range(steps + 1):
        G, P, R = _gram(W, a, X)
        u = R @ a / math.sqrt(m)
        r = u - y
        rn = float(torch.linalg.vector_norm(r))
        if not math.isfinite(rn) or (out.residual_norm and rn > diverge_factor * max(out.residual_norm[0], 1e-300)):
            out.diverged, out.stop_reason = True, f"residual {rn:.3e} blew up at iterate {k}"
            break
        if k == 0:
            evals, evecs = psd_eigh(G, "Condition 1 for the joint Jacobian: G(0) = J(0) J(0)^T",
                                    "increase the width or remove (nearly) parallel inputs")
        else:
            evals, evecs = torch.linalg.eigh(G)
        out.residual_norm.append(rn)
        out.lambda_min_gram.append(float(evals[0]))
        out.jacobian_change.append(joint_jacobian_change(model, X, W, a, W0, a0))
        out.dist_from_init.append(math.sqrt(float(((W - W0) ** 2).sum() + ((a - a0) ** 2).sum())))
        out.output_weight_change.append(float(torch.linalg.vector_norm(a - a0)))
        if k == steps or rn <= tol:
            out.stop_reason = "tolerance reached" if rn <= tol else "steps done"
            break
        if not (float(evals[0]) > 0 and float(evals[-1] / evals[0]) < 1e-2 / torch.finfo(X.dtype).eps):
            out.diverged, out.stop_reason = True, f"G(k) singular at iterate {k} (Condition 1 lost)"
            break
        z = evecs @ ((evecs.T @ r) / evals)
        DW = (P.T @ (z[:, None] * X)) * (a[:, None] / math.sqrt(m))
        Da = R.T @ z / math.sqrt(m)
        W, a = W - lr * DW, a - lr * Da
    return out
