r"""Limiting (infinite-width) kernels: the one home of the ReLU arc-cosine kernel in ngdlib.

Definition 1 of Zhang, Martens & Grosse (2019):

.. math::
    G^\infty_{ij} = \mathbb{E}_{w \sim N(0, \nu^2 I)}\big[x_i^\top x_j\, \mathbb{1}\{w^\top x_i \ge 0, w^\top x_j \ge 0\}\big]
                  = x_i^\top x_j \,\frac{\pi - \arccos(x_i^\top x_j)}{2\pi},

which does not depend on :math:`\nu` (the indicator is scale invariant). Its activation factor is
:math:`[S^\infty S^{\infty\top}]_{ij} = (\pi - \arccos(x_i^\top x_j)) / (2\pi)`, so that
:math:`G^\infty = (X X^\top) \odot S^\infty S^{\infty\top}`.

The same arc-cosine expectations, layer after layer, give the infinite-width kernels of deep ReLU networks
(:func:`relu_layer`, used by :func:`ngdlib.approx_fisher.limiting_factors`). Every angle here is computed from a
quantity that is small when the angle is small (a distance, or :math:`1 - \rho` carried in closed form from layer to
layer), never as the arccos of a rounded cosine, which loses half the digits near 0 and pi: a round-off of 1e-16 in
the cosine moves arccos by 1e-8.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_data, check_finite_result, check_number, check_tensor, check_unit_rows

__all__ = ["limiting_gram", "limiting_activation_gram", "angles", "relu_input_layer", "relu_layer"]


def limiting_activation_gram(X: torch.Tensor) -> torch.Tensor:
    r"""The infinite-width activation kernel :math:`(\pi - \theta_{ij}) / (2\pi)` (n x n), with :math:`\theta_{ij}` the
    angle between :math:`x_i` and :math:`x_j`.

    Raises ``ValueError`` unless the rows of X have unit norm (Assumption 1): the closed form is only valid there.
    """
    check_data(X)
    check_unit_rows(X)
    return (math.pi - _angles(X)) / (2 * math.pi)


def _angles(X: torch.Tensor) -> torch.Tensor:
    return _mirror_upper(_stable_angles(X, X))   # X already checked by the caller


def angles(X1: torch.Tensor, X2: torch.Tensor) -> torch.Tensor:
    r"""Angles between unit rows, :math:`\theta_{ij} = 2\,\mathrm{atan2}(\|x_i - x'_j\|, \|x_i + x'_j\|)` (n1 x n2).

    Accurate to a few eps everywhere, where :math:`\arccos(x_i^\top x'_j)` loses half the digits near 0 and pi.
    Exactly 0 for :math:`x'_j = x_i` and exactly pi for :math:`x'_j = -x_i`. The rows are assumed to have unit norm
    (checked: ``ValueError`` otherwise, since the formula is the angle only between unit vectors).

    Raises:
        ValueError: naming Assumption 1 when a row of X1 or X2 is not unit-norm, or when their numbers of columns
            differ.
    """
    for name, Z in (("X1", X1), ("X2", X2)):
        check_tensor(name, Z, ndim=2)
    if X1.shape[1] != X2.shape[1]:
        raise ValueError(f"X1 and X2 must have the same number of columns, got {X1.shape[1]} and {X2.shape[1]}")
    for name, Z in (("X1", X1), ("X2", X2)):
        try:
            check_unit_rows(Z)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    return _stable_angles(X1, X2)


def _stable_angles(X1: torch.Tensor, X2: torch.Tensor) -> torch.Tensor:
    # The formula of angles() without its input checks, for callers that have checked X1 and X2 already.
    mode = "donot_use_mm_for_euclid_dist"
    return 2 * torch.atan2(torch.cdist(X1, X2, compute_mode=mode), torch.cdist(X1, -X2, compute_mode=mode))


def _theta_cos_minus_sin(theta: torch.Tensor) -> torch.Tensor:
    # theta cos(theta) - sin(theta) = sum_{k>=1} (-1)^k 2k theta^(2k+1) / (2k+1)!  (= -theta^3/3 + theta^5/30 - ...).
    # Below theta = 1/2 the series to k = 6 (next term < 1e-15 relative); above, the direct form (cancellation
    # <= 3 eps / theta^2 < 1.2e-14 relative).
    series = torch.zeros_like(theta)
    t2 = theta * theta
    power = theta.clone()
    for k in range(1, 7):
        power = power * t2
        series = series + (-1) ** k * (2 * k) / math.factorial(2 * k + 1) * power
    return torch.where(theta < 0.5, series, theta * torch.cos(theta) - torch.sin(theta))


def _next_layer(p: float, s: float, var: torch.Tensor, gap: torch.Tensor, cogap: torch.Tensor):
    # K'_ij = p sqrt(v_i v_j) kappa_ij + s, given gap = 1 - kappa and cogap = 1 + kappa, each computed without
    # cancellation by the caller; the diagonal is c'_i = p v_i + s. Returns (K', c', 1 - rho', 1 + rho') for
    # rho' = K'_ij / sqrt(c'_i c'_j), again from non-negative terms only: with r = sqrt(v_i v_j) and
    # e = sqrt(c'_i c'_j) - p r - s = p s (sqrt(v_i) - sqrt(v_j))^2 / (sqrt(c'_i c'_j) + p r + s) >= 0
    # (Cauchy-Schwarz), sqrt(c'_i c'_j) - K'_ij = e + p r gap and sqrt(c'_i c'_j) + K'_ij = e + 2 s + p r cogap.
    r = torch.sqrt(var[:, None] * var[None, :])
    c = p * var + s
    root = torch.sqrt(c[:, None] * c[None, :]).clamp_min(torch.finfo(var.dtype).tiny)
    sq = torch.sqrt(var)
    e = p * s * (sq[:, None] - sq[None, :]) ** 2 / (root + p * r + s)
    K = p * r * (1 - gap) + s
    # 1 - rho and 1 + rho lie in [0, 2]; the clamp only removes round-off (a few eps) at the ends.
    q = ((e + p * r * gap) / root).clamp(0.0, 2.0)
    w = ((e + 2 * s + p * r * cogap) / root).clamp(0.0, 2.0)
    return check_finite_result("the infinite-width layer kernel", (K, c, q, w))


def relu_input_layer(Z: torch.Tensor, sigma_w2: float, sigma_b2: float):
    r"""The first layer's pre-activation kernel :math:`K_0 = \sigma_w^2 Z Z^\top / M_0 + \sigma_b^2` (N x N) of a deep
    network in NTK parameterisation, with the state :func:`relu_layer` carries to the next layer: the diagonal and
    :math:`1 \mp \rho` (:math:`\rho` the correlation), the latter from the distances :math:`\|\hat z_i \mp \hat z_j\|`
    between the normalised rows, so without cancellation for near-parallel and near-antiparallel inputs.

    Returns:
        ``(K0, diag, one_minus_rho, one_plus_rho)``.

    Raises:
        ValueError: Z is not a finite floating N x M_0 matrix, or sigma_w2 <= 0 or sigma_b2 < 0.
    """
    check_tensor("Z", Z, ndim=2)
    sigma_w2 = check_number("sigma_w2", sigma_w2, low=0.0, low_open=True)
    sigma_b2 = check_number("sigma_b2", sigma_b2, low=0.0)
    norms = check_finite_result("the input norms", torch.linalg.vector_norm(Z, dim=1))
    U = Z / norms.clamp_min(torch.finfo(Z.dtype).tiny)[:, None]
    mode = "donot_use_mm_for_euclid_dist"
    gap = torch.cdist(U, U, compute_mode=mode) ** 2 / 2      # 1 - cos, from a distance
    cogap = torch.cdist(U, -U, compute_mode=mode) ** 2 / 2   # 1 + cos
    return _next_layer(sigma_w2 / Z.shape[1], sigma_b2, norms**2, gap, cogap)


def relu_layer(diag: torch.Tensor, one_minus_rho: torch.Tensor, one_plus_rho: torch.Tensor, sigma_w2: float,
               sigma_b2: float):
    r"""One ReLU layer of the infinite-width recursion, for :math:`u \sim \mathcal N(0, K)` given by its diagonal
    :math:`c` and :math:`1 \mp \rho` (:math:`\rho_{ij} = K_{ij} / \sqrt{c_i c_j}`), with the angle
    :math:`\theta = 2\,\mathrm{atan2}(\sqrt{1 - \rho}, \sqrt{1 + \rho})` (so :math:`\cos\theta = \rho`):

    .. math::
        \mathbb E[\phi(u_i)\phi(u_j)] = \frac{\sqrt{c_i c_j}}{2\pi}\,(\sin\theta + (\pi - \theta)\cos\theta),\qquad
        \mathbb E[\phi'(u_i)\phi'(u_j)] = \frac{\pi - \theta}{2\pi},

    and the next layer's :math:`K' = \sigma_w^2\, \mathbb E[\phi\phi'] + \sigma_b^2` with its diagonal and
    :math:`1 \mp \rho'`. Near :math:`\theta = 0`, :math:`1 - (\sin\theta + (\pi - \theta)\cos\theta)/\pi
    = (2\pi \sin^2(\theta/2) + \theta\cos\theta - \sin\theta)/\pi` is evaluated without cancellation, and
    :math:`\pi - \theta = 2\,\mathrm{atan2}(\sqrt{1 + \rho}, \sqrt{1 - \rho})` keeps its digits near pi.

    Returns:
        ``(K_next, diag_next, one_minus_rho_next, one_plus_rho_next, E_dphi)``, ``E_dphi`` the derivative kernel.

    Raises:
        ValueError: the state is not finite floating tensors of shapes (N,), (N, N), (N, N), or
            :math:`1 \mp \rho` leaves [0, 2] (it is not the state of a Gaussian kernel), or sigma_w2 <= 0 or
            sigma_b2 < 0.
    """
    check_tensor("diag", diag, ndim=1)
    for name, t in (("one_minus_rho", one_minus_rho), ("one_plus_rho", one_plus_rho)):
        check_tensor(name, t, ndim=2)
        if t.shape != (diag.shape[0], diag.shape[0]):
            raise ValueError(f"{name} must be N x N with N = {diag.shape[0]} (the length of diag), got "
                             f"{tuple(t.shape)}")
        if bool((t < 0).any()) or bool((t > 2).any()):
            raise ValueError(f"{name} must lie in [0, 2] (one minus / plus a correlation)")
    sigma_w2 = check_number("sigma_w2", sigma_w2, low=0.0, low_open=True)
    sigma_b2 = check_number("sigma_b2", sigma_b2, low=0.0)
    a, b = torch.sqrt(one_minus_rho), torch.sqrt(one_plus_rho)
    theta, rest = 2 * torch.atan2(a, b), 2 * torch.atan2(b, a)   # theta and pi - theta
    gap = (2 * math.pi * torch.sin(theta / 2) ** 2 + _theta_cos_minus_sin(theta)) / math.pi   # 1 - J/pi, in [0, 1]
    K, c, q, w = _next_layer(sigma_w2 / 2, sigma_b2, diag, gap, 2 - gap)
    return K, c, q, w, rest / (2 * math.pi)


def _mirror_upper(A: torch.Tensor) -> torch.Tensor:
    # Exactly symmetric by construction: the upper triangle, mirrored. cdist and X @ X.T are symmetric only up to
    # round-off (entries differed by 5.6e-17 with one BLAS thread, a path that blocks the two halves differently).
    return torch.triu(A) + torch.triu(A, 1).T


def _cosines(X: torch.Tensor) -> torch.Tensor:
    # x_i^T x_j for unit rows, with the diagonal set to exactly 1.
    C = _mirror_upper((X @ X.T).clamp(-1.0, 1.0))
    C.fill_diagonal_(1.0)
    return C


def limiting_gram(X: torch.Tensor) -> torch.Tensor:
    r"""Definition 1: :math:`G^\infty_{ij} = x_i^\top x_j (\pi - \arccos(x_i^\top x_j)) / (2\pi)`.

    Args:
        X: n x d inputs with unit-norm rows (Assumption 1); a ``ValueError`` otherwise.

    Returns:
        The n x n limiting Gram matrix; its diagonal is exactly 1/2, so :math:`\lambda_0 \le 1/2`.

    >>> import torch
    >>> limiting_gram(torch.eye(2, dtype=torch.float64))
    tensor([[0.5000, 0.0000],
            [0.0000, 0.5000]], dtype=torch.float64)
    """
    K = limiting_activation_gram(X)
    return _cosines(X) * K
