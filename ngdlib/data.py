"""Data sets that satisfy (or deliberately violate) Assumption 1."""
from __future__ import annotations

import torch

from .device import generator

__all__ = ["sphere", "forster"]


def sphere(n: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """``n`` points drawn i.i.d. uniformly from the unit sphere in R^d (rows of an n x d matrix).

    Normalised Gaussians, drawn in float64 on the CPU from ``seed``, then rounded to ``dtype`` and moved to ``device``. With probability one no two rows
    are parallel, so the result satisfies Assumption 1 (Zhang et al. 2019, Sec. 4.2).

    >>> X = sphere(5, 3, seed=0)
    >>> X.shape, bool(torch.allclose(X.norm(dim=1), torch.ones(5, dtype=torch.float64)))
    (torch.Size([5, 3]), True)
    """
    from ._checks import check_device, check_dtype, check_int

    check_int("n", n, 1)
    check_int("d", d, 1)
    check_dtype(dtype)
    check_device(device)
    if d == 1 and n > 1:
        raise ValueError("sphere with d = 1 has only the two points +-1, which are parallel (Assumption 1)")
    Z = torch.randn(n, d, generator=generator(seed), dtype=torch.float64)   # float64 draw: same points in any dtype
    Z = (Z / torch.linalg.vector_norm(Z, dim=1, keepdim=True)).to(dtype)
    return Z.to(device) if device is not None else Z


def forster(X: torch.Tensor, tol: float | None = None, max_iter: int = 10_000, callback=None):
    r"""Radial isotropic position (Forster's transform): an invertible A with :math:`X'^\top X' = (n/d) I`.

    Finds :math:`A \in \mathbb R^{d \times d}` such that the normalised rows :math:`x_i' = A x_i / \|A x_i\|`
    satisfy :math:`\sum_i x_i' x_i'^\top = (n/d) I_d` {cite}`forster2002linear`, by the fixed-point iteration
    :math:`A \leftarrow M^{-1/2} A` with :math:`M = (d/n) \sum_i x_i' x_i'^\top` (the paper's Remark 4 / Appendix A,
    reconstructed). Such an A exists when the inputs are in general position (no k-dimensional subspace holds
    :math:`nk/d` or more of them, for k < d).

    Args:
        X: n x d inputs, n >= d, rank d (rows need not be unit norm).
        tol: stop when :math:`\|(d/n) X'^\top X' - I\|_2 \le` tol (default: 1e3 eps of the dtype).
        max_iter: iteration cap; a ``ValueError`` if it is reached (inputs not in general position).
        callback: optional ``callback(k, U, A, err)`` called at every iterate k = 0, 1, ... (before the stopping
            test) with the current normalised rows U, matrix A and error; for watching the iteration converge.

    Returns:
        ``(X_prime, A)``: the n x d unit-norm rows in radial isotropic position, and the d x d matrix A.
    """
    from ._checks import check_data, check_int, check_number
    from ._linalg import check_full_column_rank

    check_data(X)
    n, d = X.shape
    check_full_column_rank(X, "Forster's transform needs rank(X) = d")
    tol = 1e3 * torch.finfo(X.dtype).eps if tol is None else check_number("tol", tol, low=0.0, low_open=True)
    check_int("max_iter", max_iter, 1)
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable (k, U, A, err) or None, got {callback!r}")
    eye = torch.eye(d, dtype=X.dtype, device=X.device)
    A = eye.clone()
    err = float("inf")
    _k = -1
    for _k in range(max_iter):
        Y = X @ A.T
        U = Y / torch.linalg.vector_norm(Y, dim=1, keepdim=True)
        if not bool(torch.isfinite(U).all()):   # A collapsed a direction that some inputs lie in
            break
        M = (d / n) * (U.T @ U)
        err = float(torch.linalg.matrix_norm(M - eye, ord=2))
        if callback is not None:
            callback(_k, U, A, err)
        if err <= tol:
            return U, A
        evals, evecs = torch.linalg.eigh(M)
        if float(evals[0]) <= 0:
            break
        A = (evecs * evals.rsqrt()) @ evecs.T @ A
        A = A / torch.linalg.matrix_norm(A, ord=2)   # the scale of A is irrelevant; keep it O(1)
    raise ValueError(
        f"Forster's transform did not reach radial isotropic position (||(d/n) X'^T X' - I||_2 = {err:.2e} > {tol:.1e} "
        f"after {_k + 1} iterations): the inputs are probably not in general position (some k-dimensional "
        f"subspace holds n k / d = {n}k/{d} or more of them)"
    )
