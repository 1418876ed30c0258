r"""Separated inputs (footnote 3 of Zhang, Martens & Grosse 2019): :math:`\lambda_0` as the inputs come close.

Footnote 3 says the unit-sphere assumption of Theorem 5 can be relaxed to *separable* inputs, citing Oymak &
Soltanolkotabi (2019, Theorem I.1). The separation of unit inputs is

.. math::
    \delta(X) = \min_{i \ne j} \min(\|x_i - x_j\|_2, \|x_i + x_j\|_2),

the distance between the two closest inputs, counting :math:`-x_j` too (Oymak & Soltanolkotabi's definition, as
recalled; the paper's Section 4.5 uses :math:`\|x_i - x_j\|` only). For the closest pair at angle :math:`\theta`
(:math:`\delta = 2\sin(\theta/2)`) the Rayleigh quotient of :math:`G^\infty` at :math:`(e_i - e_j)/\sqrt2` gives the
book's upper bound

.. math::
    \lambda_0 \le \tfrac12 - \cos\theta\,\frac{\pi - \theta}{2\pi} = \frac{\theta}{2\pi} + O(\theta^2)

(:func:`pair_upper_bound`), and Oymak & Soltanolkotabi's lower bound, as recalled (the appendix is not available here), is
:math:`\lambda_0 \ge \delta / (100 n^2)` (:func:`oymak_soltanolkotabi_bound`). Both are linear in :math:`\delta`.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_data, check_unit_rows
from .data import sphere

__all__ = ["separation", "close_pair_data", "cap_data", "pair_upper_bound", "oymak_soltanolkotabi_bound"]


def _check_delta(delta) -> float:
    if not (isinstance(delta, (int, float)) and not isinstance(delta, bool) and math.isfinite(delta)
            and 0 < delta <= math.sqrt(2)):
        raise ValueError(f"the separation delta must be a number in (0, sqrt 2] (a distance between two unit inputs "
                         f"at most 90 degrees apart), got {delta!r}")
    return float(delta)


def _check_n_d(n, d, n_min: int = 2, d_min: int = 2) -> None:
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= n_min
            and isinstance(d, int) and not isinstance(d, bool) and d >= d_min):
        raise ValueError(f"need integers n >= {n_min} and d >= {d_min}, got n = {n!r}, d = {d!r}")


def separation(X: torch.Tensor, *, antipodal: bool = True) -> float:
    r""":math:`\min_{i \ne j} \min(\|x_i - x_j\|, \|x_i + x_j\|)` over the rows of X (unit rows; ``ValueError``
    otherwise). ``antipodal=False`` drops the :math:`\|x_i + x_j\|` term (the paper's :math:`\delta`-separability).
    Needs at least two rows.

    Raises:
        ValueError: if X is not a finite float matrix, a row is not unit-norm (Assumption 1's first half), or X has
            fewer than two rows.
    """
    check_data(X)
    check_unit_rows(X)
    if X.shape[0] < 2:
        raise ValueError(f"separation needs at least two inputs, got n = {X.shape[0]}")
    D = torch.cdist(X, X)
    if antipodal:
        D = torch.minimum(D, torch.cdist(X, -X))
    D.fill_diagonal_(float("inf"))
    return float(D.min())


def close_pair_data(n: int, d: int, delta: float, seed: int = 0, dtype: torch.dtype = torch.float64,
                    device=None) -> torch.Tensor:
    r"""n unit inputs: n - 1 uniform on the sphere (:func:`ngdlib.data.sphere`) and :math:`x_n` at distance exactly
    ``delta`` from :math:`x_1`, rotated towards a random direction orthogonal to :math:`x_1`.

    The separation of the set is ``delta`` when ``delta`` is below the separation of the first n - 1 points.
    """
    _check_n_d(n, d)
    delta = _check_delta(delta)
    X = sphere(n - 1, d, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 7_919)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    v = v - (v @ X[0]) * X[0]
    v = v / torch.linalg.vector_norm(v)
    theta = 2 * math.asin(delta / 2)
    x_new = math.cos(theta) * X[0] + math.sin(theta) * v
    X = torch.cat([X, (x_new / torch.linalg.vector_norm(x_new))[None]])
    return X.to(dtype=dtype, device=device)


def cap_data(n: int, d: int, delta: float, seed: int = 0, dtype: torch.dtype = torch.float64,
             device=None) -> torch.Tensor:
    r"""n unit inputs crowded into a small cap: :math:`x_i = (e + s z_i)/\|e + s z_i\|` with :math:`z_i` uniform on
    the unit sphere of the tangent space at a random pole e, and the scale s chosen (by bisection) so that
    :func:`separation` is ``delta`` (to 1e-12 relative). Every pair is then within a few ``delta`` of every other:
    the opposite of :func:`close_pair_data`, where one pair is close and the rest are spread.

    Raises:
        ValueError: if n is not an int >= 2 or d not an int >= 3, delta is not in (0, sqrt 2], or the bisection
            cannot reach separation delta (at most the separation of the n random tangent directions).
    """
    _check_n_d(n, d, d_min=3)
    delta = _check_delta(delta)
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(d, generator=g, dtype=torch.float64)
    e = e / torch.linalg.vector_norm(e)
    Z = torch.randn(n, d, generator=g, dtype=torch.float64)
    Z = Z - (Z @ e)[:, None] * e
    Z = Z / torch.linalg.vector_norm(Z, dim=1, keepdim=True)

    def points(s):
        P = e + s * Z
        return P / torch.linalg.vector_norm(P, dim=1, keepdim=True)

    lo, hi = 0.0, 1.0
    while separation(points(hi)) < delta:
        lo, hi = hi, 2 * hi
        if hi > 1e6:
            raise ValueError(f"cap_data cannot reach separation {delta} with n = {n} points in dimension {d}")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if separation(points(mid)) < delta:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return points(hi).to(dtype=dtype, device=device)


def pair_upper_bound(delta: float) -> float:
    r"""The book's upper bound on :math:`\lambda_0` for unit inputs whose closest pair is at distance ``delta``:
    :math:`\frac12 - \cos\theta\,(\pi - \theta)/(2\pi)`, :math:`\theta = 2\arcsin(\delta/2)` (the Rayleigh quotient of
    :math:`G^\infty` at :math:`(e_i - e_j)/\sqrt2`). Computed as
    :math:`(1 - \cos\theta)/2 + \theta\cos\theta/(2\pi)` with :math:`1 - \cos\theta = \delta^2/2`, without
    cancellation."""
    delta = _check_delta(delta)
    theta = 2 * math.asin(delta / 2)
    return delta ** 2 / 4 + theta * math.cos(theta) / (2 * math.pi)


def oymak_soltanolkotabi_bound(delta: float, n: int) -> float:
    r"""Oymak & Soltanolkotabi's lower bound :math:`\lambda_0 \ge \delta/(100 n^2)` for :math:`\delta`-separated unit
    inputs, **as recalled** (their Theorem I.1 / its corollary is not available here; chapter Z-SEP tests it).

    Raises:
        ValueError: if delta is not in (0, sqrt 2] (a distance between two unit inputs at most 90 degrees apart), or
            n is not an int >= 2.
    """
    delta = _check_delta(delta)
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 2):
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    return delta / (100 * n ** 2)
