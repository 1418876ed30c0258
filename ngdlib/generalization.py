r"""Every term of the generalization bound of Theorem 6 of Zhang, Martens & Grosse (2019) (eq. 18), and the
infinite-width function both NGD and GD converge to.

Theorem 6 (as printed, with the hypotheses its proof needs, after Arora et al. 2019, Theorem 5.1): for a loss
:math:`\ell(u, y)` that is 1-Lipschitz in u, bounded in [0, 1] and has :math:`\ell(y, y) = 0`, with probability at
least :math:`1 - \delta`,

.. math::
    \mathcal L_{\mathcal D}(f) \le \underbrace{\sqrt{\frac{2\, y^\top (G^\infty)^{-1} y}{n}}}_{\text{complexity}}
    + \underbrace{3\sqrt{\frac{\log(6/\delta)}{2n}}}_{\text{confidence}} + \epsilon .

The complexity term is :math:`2 \times` the Rademacher bound :math:`B/\sqrt{2n}` with
:math:`B = \sqrt{y^\top (G^\infty)^{-1} y}`, the distance :math:`\|W - W(0)\|_F` that training travels in the
infinite-width limit (for :math:`u(0) \approx 0`, which the theorem's small :math:`\nu` ensures). The confidence term
is the McDiarmid term of the standard Rademacher bound (it is where the loss must be bounded in [0, 1]).
:math:`\epsilon` collects the training loss and the finite-width corrections, which vanish as :math:`m \to \infty`.

All kernels use unit-norm inputs (Assumption 1); device and dtype follow the inputs.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_data, check_int, check_positive, check_probability, check_unit_rows, check_vector
from ._linalg import solve_psd
from .kernels import _stable_angles, limiting_gram

__all__ = [
    "ramp_loss",
    "limiting_cross_gram",
    "rkhs_norm",
    "complexity_term",
    "confidence_term",
    "zmg_theorem6_bound",
    "kernel_predict",
]

_REMEDY = "lambda_0 = 0: two inputs are (anti)parallel, which Assumption 1 excludes"


def ramp_loss(u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r""":math:`\ell(u, y) = \min(1, |u - y|)`, entry-wise: 1-Lipschitz in u, bounded in [0, 1], :math:`\ell(y, y) = 0`.

    The loss Theorem 6 is stated for (the truncated absolute error; Arora et al. 2019 use the same class).

    >>> import torch
    >>> ramp_loss(torch.tensor([0.0, 0.5, 3.0]), torch.zeros(3))
    tensor([0.0000, 0.5000, 1.0000])

    Raises:
        ValueError: if u and y are not finite float tensors of the same shape.
    """
    if u.shape != y.shape:
        raise ValueError(f"u and y must have the same shape, got {tuple(u.shape)} and {tuple(y.shape)}")
    return (u - y).abs().clamp(max=1.0)


def limiting_cross_gram(X1: torch.Tensor, X2: torch.Tensor) -> torch.Tensor:
    r"""Definition 1 between two sets of unit vectors: :math:`k(x, x') = x^\top x' (\pi - \theta(x, x'))/(2\pi)`
    (n1 x n2), with the angle :math:`\theta = 2\,\mathrm{atan2}(\|x - x'\|, \|x + x'\|)` (accurate near 0 and pi).

    ``limiting_cross_gram(X, X)`` equals :func:`ngdlib.kernels.limiting_gram` (X).

    Raises:
        ValueError: naming Assumption 1 for X1 or X2 (unit-norm rows) or when their input dimensions differ.
    """
    for name, Z in (("X1", X1), ("X2", X2)):
        check_data(Z)
        try:
            check_unit_rows(Z)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    if X1.shape[1] != X2.shape[1]:
        raise ValueError(f"X1 and X2 must have the same input dimension d, got {X1.shape[1]} and {X2.shape[1]}")
    return (X1 @ X2.T).clamp(-1.0, 1.0) * (math.pi - _stable_angles(X1, X2)) / (2 * math.pi)


def rkhs_norm(X: torch.Tensor, y: torch.Tensor) -> float:
    r""":math:`\sqrt{y^\top (G^\infty)^{-1} y}`: the distance :math:`\|W(\infty) - W(0)\|_F` in the infinite-width
    limit with :math:`u(0) = 0`, and the norm of the kernel interpolant of y in the RKHS of :math:`G^\infty`.

    Raises:
        ValueError: naming lambda_0 = 0 when :math:`G^\infty` is singular (two inputs parallel), or when X, y are
            malformed.
    """
    G = limiting_gram(X)
    check_vector("y", y, X.shape[0], "one target per input")
    z = solve_psd(G, y, "the limiting Gram matrix G^inf", _REMEDY)
    return float(y @ z) ** 0.5


def complexity_term(X: torch.Tensor, y: torch.Tensor) -> float:
    r"""First term of eq. (18): :math:`\sqrt{2\, y^\top (G^\infty)^{-1} y / n}`."""
    return math.sqrt(2.0 / X.shape[0]) * rkhs_norm(X, y)


def confidence_term(n: int, delta: float) -> float:
    r"""Second term of eq. (18): :math:`3 \sqrt{\log(6/\delta) / (2n)}`, for failure probability :math:`\delta`.

    >>> round(confidence_term(100, 0.06), 4)
    0.4552

    Raises:
        ValueError: if n is not a positive int or delta (the failure probability) is not in (0, 1).
    """
    check_int("n", n, 1)
    delta = check_probability("delta (the failure probability)", delta)
    return 3.0 * math.sqrt(math.log(6.0 / delta) / (2 * n))


def zmg_theorem6_bound(X: torch.Tensor, y: torch.Tensor, delta: float, eps: float = 0.0) -> dict:
    r"""Every term of Theorem 6's bound (eq. 18) on the expected loss, and their sum.

    Args:
        X: n x d training inputs with unit-norm rows, no two (anti)parallel (so :math:`G^\infty` is invertible).
        y: the n training targets.
        delta: failure probability in (0, 1).
        eps: the target error :math:`\epsilon` (the training loss reached plus the finite-width corrections; the
            theorem takes it as given). Must be >= 0.

    Returns:
        ``{"complexity", "confidence", "eps", "total", "rkhs_norm"}``, floats. The bound is informative only when
        ``total < 1`` (the loss is bounded by 1).

    Raises:
        ValueError: if delta is not in (0, 1), eps is negative, or :math:`G^\infty` is singular (see
            :func:`rkhs_norm`).
    """
    eps = check_positive("eps (the target error)", eps, allow_zero=True)
    norm = rkhs_norm(X, y)
    n = X.shape[0]
    comp = math.sqrt(2.0 / n) * norm
    conf = confidence_term(n, delta)
    return {"complexity": comp, "confidence": conf, "eps": float(eps), "total": comp + conf + float(eps),
            "rkhs_norm": norm}


def kernel_predict(X_train: torch.Tensor, r: torch.Tensor, X_test: torch.Tensor) -> torch.Tensor:
    r"""The infinite-width change of the function after training to zero residual:
    :math:`G^\infty(X_{test}, X) (G^\infty)^{-1} r`, with :math:`r = y - u(0)` the residual to be fitted.

    Both NGD and GD move :math:`W` in the row space of :math:`J(0)`; in the limit where J stays fixed they both end
    at the minimum-norm interpolant, whose test outputs are :math:`f_0(x)` plus this (a reconstruction of the
    argument behind "NGD generalizes as GD").
    """
    G = limiting_gram(X_train)
    check_vector("r", r, X_train.shape[0], "one residual per training input")
    z = solve_psd(G, r, "the limiting Gram matrix G^inf", _REMEDY)
    return limiting_cross_gram(X_test, X_train) @ z
