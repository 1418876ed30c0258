r"""K-FAC on the two-layer ReLU network in output space: Theorem 4, eq. (14) and Remarks 3-4 of Zhang, Martens &
Grosse (2019).

Conventions (the book's page "Notation and conventions"; reconstructed, because they are the ones that make eq. (14) exact in the linear
limit): :math:`S_{ir} = a_r \mathrm{relu}'(w_r^\top x_i)/\sqrt m` carries the output weights, the m x m factor
:math:`S^\top S` (rank at most n) is pseudo-inverted, the factors are not divided by n, and for the row-stacked
:math:`w = [w_1; \dots; w_m]` the preconditioner of eq. (12) is

.. math::
    F_{\mathrm{K\text{-}FAC}}^{+} = (S^\top S)^+ \otimes (X^\top X)^{-1},
    \qquad w \leftarrow w - \eta\, F_{\mathrm{K\text{-}FAC}}^{+} J^\top (u - y).

Because :math:`J_i = S_i \otimes x_i^\top`, the output-space kernel of this step is a Hadamard product of two
projections (the "dual form", n x n, never the md x md preconditioner):

.. math::
    J F_{\mathrm{K\text{-}FAC}}^{+} J^\top = P_X \odot P_S,\qquad P_X = X (X^\top X)^{-1} X^\top,\quad
    P_S = S (S^\top S)^+ S^\top ,

and :math:`P_S = I_n` when rank S = n. To first order the step therefore changes the outputs by
:math:`-\eta (P_X \odot I)(u - y)`, i.e. residual i shrinks by the factor :math:`1 - \eta h_i` with the leverage
:math:`h_i = (P_X)_{ii}` (eq. 14 with the step size the printed equation drops). For unit-norm rows
:math:`1/\lambda_{\max}(X^\top X) \le h_i \le \min(1, 1/\lambda_{\min}(X^\top X))`, which gives Theorem 4's rate
:math:`1 - \eta/\lambda_{\max}(X^\top X)` whenever :math:`\eta h_i \le 1` for all i.

Every function validates its inputs through :mod:`ngdlib._checks`; device and dtype follow the inputs.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_data, check_positive, check_tensor, check_unit_rows, check_vector
from ._linalg import check_full_column_rank, psd_eigh_floor, solve_psd
from .curvature import validate

__all__ = [
    "input_projection",
    "leverages",
    "activation_projection",
    "kfac_output_kernel",
    "eq14_prediction",
    "output_change",
    "kfac_rate_bound",
    "kfac_step_limit",
]

_RANK_MSG = "Theorem 4 (K-FAC) assumption violated"


def _check_X(X: torch.Tensor) -> torch.Tensor:
    check_data(X)
    check_full_column_rank(X, _RANK_MSG)
    return X


def input_projection(X: torch.Tensor) -> torch.Tensor:
    r"""The n x n projection :math:`P_X = X (X^\top X)^{-1} X^\top` onto the column space of X.

    Args:
        X: n x d inputs with rank(X) = d (Theorem 4); a ``ValueError`` naming the assumption otherwise.

    Returns:
        :math:`P_X` (n x n), symmetric and idempotent, trace d. Invariant under :math:`X \mapsto X B^\top` for any
        invertible d x d B (the column space does not change), not under row scaling :math:`X \mapsto C X`.
    """
    _check_X(X)
    Z = solve_psd(X.T @ X, X.T, "K-FAC input factor X^T X", "rank(X) = d is required (Theorem 4)")  # (X^T X)^{-1} X^T
    P = X @ Z
    return (P + P.T) / 2


def leverages(X: torch.Tensor) -> torch.Tensor:
    r"""Leverage scores :math:`h_i = (P_X)_{ii} = x_i^\top (X^\top X)^{-1} x_i` (length n), in O(n d^2).

    They lie in [0, 1] and sum to d. For unit-norm rows (Assumption 1)
    :math:`1/\lambda_{\max}(X^\top X) \le h_i \le 1/\lambda_{\min}(X^\top X)`; in radial isotropic position
    (:math:`X^\top X = (n/d) I`) all equal d/n. Under K-FAC residual i contracts by :math:`1 - \eta h_i` per step
    in the linear limit (eq. 14).

    >>> import torch
    >>> leverages(torch.eye(3, dtype=torch.float64)[:, :2])
    tensor([1., 1., 0.], dtype=torch.float64)

    Raises:
        ValueError: naming Theorem 4's rank(X) = d when X has rank < d (or n < d).
    """
    _check_X(X)
    Z = solve_psd(X.T @ X, X.T, "K-FAC input factor X^T X", "rank(X) = d is required (Theorem 4)")
    return (X * Z.T).sum(dim=1)


def activation_projection(model, X: torch.Tensor) -> torch.Tensor:
    r"""The n x n projection :math:`P_S = S (S^\top S)^+ S^\top` onto the column space of S (n x m).

    Computed in the dual form :math:`P_S = V_+ V_+^\top` from the eigenvectors of the n x n matrix
    :math:`S S^\top` whose eigenvalues exceed the rank cut-off :math:`n \varepsilon \lambda_{\max}` of
    :mod:`ngdlib._linalg` (the library's one policy, also used by :func:`ngdlib.curvature.kfac_direction`).
    Equals :math:`I_n` exactly when rank S = n.
    """
    model.check_inputs(X)
    S = model.features(X)
    _, evecs, keep = psd_eigh_floor(S @ S.T, "S S^T")
    V = evecs[:, keep]
    return V @ V.T


def kfac_output_kernel(model, X: torch.Tensor, *, check_assumption1: bool = True) -> torch.Tensor:
    r"""The output-space kernel of the K-FAC step, :math:`J F_{\mathrm{K\text{-}FAC}}^{+} J^\top = P_X \odot P_S`
    (n x n), without forming J or the md x md preconditioner.

    The first-order change of the outputs under :math:`w \leftarrow w - \eta F_{\mathrm{K\text{-}FAC}}^{+} J^\top r`
    is :math:`-\eta (P_X \odot P_S) r`. Exact NGD has kernel :math:`I_n` here (eq. 3).

    Args:
        model: a :class:`~ngdlib.models.TwoLayerReLU`.
        X: n x d inputs, rank(X) = d (Theorem 4).
        check_assumption1: check unit norms and non-parallel rows (pass False to study un-normalised inputs).
    """
    validate(model, X, None, check_assumption1)
    return input_projection(X) * activation_projection(model, X)


def eq14_prediction(X: torch.Tensor, r: torch.Tensor, eta: float) -> torch.Tensor:
    r"""Eq. (14) with the step size restored: the predicted one-step change
    :math:`u(k+1) - u(k) \approx -\eta\, (P_X \odot I)(u(k) - y) = -\eta\, h \odot r` (length n).

    Exact for the linearised network when rank S = n (then :math:`P_S = I`); the printed eq. (14) omits
    :math:`\eta`.

    Args:
        X: n x d inputs, rank(X) = d.
        r: the residual u(k) - y (length n).
        eta: the step size :math:`\eta > 0`.

    Raises:
        ValueError: if eta is not a positive finite number, X has rank < d, or r is not a length-n vector.
    """
    eta = check_positive("eta (the step size)", eta)
    h = leverages(X)
    check_vector("r", r, X.shape[0], "the residual u - y has one entry per input")
    return -eta * h * r


def output_change(model, X: torch.Tensor, D: torch.Tensor, eta: float) -> torch.Tensor:
    r"""The actual change of the outputs :math:`u(W - \eta D) - u(W)` (length n), leaving the model untouched.

    Computed from the definition (eq. 8), :math:`m^{-1/2}\sum_r a_r [\mathrm{relu}((w_r - \eta d_r)^\top x_i) -
    \mathrm{relu}(w_r^\top x_i)]`, so it contains every non-linear effect of the step (activation flips).

    Raises:
        ValueError: if D does not have W's shape, X does not fit the model, or eta is not a positive finite number.
    """
    model.check_inputs(X)
    check_tensor("D", D, ndim=2)
    if D.shape != model.W.shape:
        raise ValueError(f"D must have the shape of W, {tuple(model.W.shape)}, got {tuple(D.shape)}")
    eta = check_positive("eta (the step size)", eta)
    W = model.W.detach()
    scale = model.a / math.sqrt(model.m)
    return (torch.relu(X @ (W - eta * D).T) - torch.relu(X @ W.T)) @ scale


def kfac_rate_bound(X: torch.Tensor, eta: float) -> float:
    r"""Theorem 4's per-step factor on the squared residual, :math:`1 - \eta / \lambda_{\max}(X^\top X)` (eq. 13).

    Args:
        X: n x d inputs with unit-norm rows (Assumption 1) and rank d.
        eta: the step size :math:`\eta > 0`.

    Raises:
        ValueError: if eta is not a positive finite number or X violates Assumption 1 (unit rows).
    """
    eta = check_positive("eta (the step size)", eta)
    _check_X(X)
    check_unit_rows(X)
    return 1.0 - eta / float(torch.linalg.eigvalsh(X.T @ X)[-1])


def kfac_step_limit(X: torch.Tensor) -> float:
    r"""The largest step size for which the linearised K-FAC dynamics obeys eq. (13): :math:`1 / \max_i h_i`
    (reconstructed).

    For :math:`\eta h_i \le 1`, :math:`(1 - \eta h_i)^2 \le 1 - \eta h_i \le 1 - \eta/\lambda_{\max}(X^\top X)`.
    Since :math:`h_i \le 1/\lambda_{\min}(X^\top X)`, the paper's :math:`\eta = O(\lambda_{\min}(X^\top X))` is
    below this limit. Above :math:`2/\max_i h_i` the residual of the highest-leverage input grows.
    """
    return 1.0 / float(leverages(X).max())
