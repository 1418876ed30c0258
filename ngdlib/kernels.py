r"""Limiting (infinite-width) Gram matrices of the two-layer ReLU network.

Definition 1 of Zhang, Martens & Grosse (2019):

.. math::
    G^\infty_{ij} = \mathbb{E}_{w \sim N(0, \nu^2 I)}\big[x_i^\top x_j\, \mathbb{1}\{w^\top x_i \ge 0, w^\top x_j \ge 0\}\big]
                  = x_i^\top x_j \,\frac{\pi - \arccos(x_i^\top x_j)}{2\pi},

which does not depend on :math:`\nu` (the indicator is scale invariant). Its activation factor is
:math:`[S^\infty S^{\infty\top}]_{ij} = (\pi - \arccos(x_i^\top x_j)) / (2\pi)`, so that
:math:`G^\infty = (X X^\top) \odot S^\infty S^{\infty\top}`.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_data, check_unit_rows

__all__ = ["limiting_gram", "limiting_activation_gram"]


def limiting_activation_gram(X: torch.Tensor) -> torch.Tensor:
    r"""The infinite-width activation kernel :math:`(\pi - \theta_{ij}) / (2\pi)` (n x n), with :math:`\theta_{ij}` the
    angle between :math:`x_i` and :math:`x_j`.

    Raises ``ValueError`` unless the rows of X have unit norm (Assumption 1): the closed form is only valid there.
    """
    check_data(X)
    check_unit_rows(X)
    return (math.pi - _angles(X)) / (2 * math.pi)


def _angles(X: torch.Tensor) -> torch.Tensor:
    # theta_ij = 2 atan2(||x_i - x_j||, ||x_i + x_j||): accurate to eps everywhere, where arccos(x_i^T x_j) loses half
    # the digits near +-1 (a round-off of 1e-16 in the cosine moves arccos by 1e-8). Exactly 0 on the diagonal and
    # exactly pi for x_j = -x_i.
    mode = "donot_use_mm_for_euclid_dist"
    minus = torch.cdist(X, X, compute_mode=mode)
    plus = torch.cdist(X, -X, compute_mode=mode)
    return _mirror_upper(2 * torch.atan2(minus, plus))


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
