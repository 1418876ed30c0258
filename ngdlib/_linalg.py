r"""Checked linear algebra: the one home of every solve, pseudo-inverse, eigen floor and matrix power in ngdlib.

Two questions are asked of a matrix, and each has exactly one answer here.

**1. Numerical rank (one cut-off policy).** Every pseudo-inverse, eigen floor and matrix power of a semi-definite
matrix keeps a singular value :math:`\sigma_i` (for a symmetric matrix: :math:`|\lambda_i|`) if and only if

.. math::
    \sigma_i > \max(m, n)\,\varepsilon\,\sigma_{\max},

with :math:`\varepsilon` the machine epsilon of the dtype (:func:`rank_rtol`). This is the convention of LAPACK-based
numerical rank (``numpy.linalg.matrix_rank``, MATLAB's ``rank``) and the default of ``torch.linalg.pinv`` and
``torch.linalg.matrix_rank``. Why: a backward-stable SVD or symmetric eigen-decomposition returns the exact
decomposition of :math:`A + E` with :math:`\|E\|_2 \lesssim \max(m, n)\,\varepsilon\,\|A\|_2`, and by Weyl's
inequality every computed singular value is then within :math:`\|E\|_2` of the true one; a singular value below
that level cannot be told apart from zero, one above it can. A larger cut-off would throw away directions the data
resolve; a smaller one inverts round-off and amplifies it by up to :math:`1/(\max(m,n)\varepsilon)`.

*Gram matrices.* Where a matrix is a Gram :math:`G = F F^\top` of a factor at hand (K-FAC's factors, the
pseudo-inverse :math:`F^+ = F^\top (F F^\top)^+`), the rank question is asked of the factor, not of the formed Gram
(:func:`gram_factor_eigh`, :func:`pinv_gram_factor`): forming :math:`F F^\top` with inner dimension k perturbs it by
up to about :math:`k\,\varepsilon\,\|F\|^2`, so a formed Gram's eigenvalues below that level are round-off,
while the SVD of F resolves :math:`\sigma_i(F)` down to :math:`\max(N, k)\,\varepsilon\,\sigma_{\max}`, i.e.
:math:`\lambda_i = \sigma_i^2` down to :math:`(\max(N, k)\,\varepsilon)^2\lambda_{\max}`. Where only the Gram
exists (a layer Gram that is a Hadamard product of two Grams, an infinite-width kernel computed entry by entry),
:func:`pinv_gram` applies the same policy to the Gram itself, after an optional *structural* rank cap (the rank
the Gram has in exact arithmetic, e.g. min(N, number of parameters)): the directions that are null in exact
arithmetic are dropped whatever round-off puts there, and the others are kept when they clear the cut-off.

**2. Trusted solves (one refusal threshold).** Where the paper's hypothesis makes the matrix nonsingular (Condition
1's Gram matrix, Theorem 4's :math:`X^\top X`, ...), a solve is refused with a ``ValueError`` naming that assumption
when the condition number reaches :func:`max_trusted_cond` :math:`= 10^{-2}/\varepsilon`: a backward-stable solve has
relative error about :math:`\kappa\varepsilon`, so this keeps the answer's error under 1 % (4.5e13 in float64, 8.4e4
in float32). A pseudo-inverse is never a silent substitute for a solve the theory needs.

Dense oracles (:mod:`ngdlib.reference`) and tests deliberately do not call this module: they use
``torch.linalg.pinv`` / numpy / scipy with an explicitly stated cut-off, so that they stay independent of it.
This module imports only :mod:`ngdlib._checks` (argument validation).
"""
from __future__ import annotations

import torch

from ._checks import COMPUTE_DTYPES, check_dtype, check_finite_result, check_number, check_symmetric, check_tensor

__all__ = [
    "rank_rtol",
    "max_trusted_cond",
    "psd_eigh_floor",
    "pinv",
    "pinv_psd",
    "pinv_gram",
    "gram_factor_eigh",
    "pinv_gram_factor",
    "numerical_rank",
    "psd_power",
    "psd_eigh",
    "solve_psd",
    "solve_psd_cholesky",
    "solve_psd_batched",
    "solve_shifted_psd_batched",
    "solve_checked",
    "check_full_column_rank",
]


def rank_rtol(A: torch.Tensor) -> float:
    r"""The relative cut-off of numerical rank for ``A``: :math:`\max(m, n)\,\varepsilon` (see the module docstring).

    Args:
        A: a matrix (its last two dimensions are the matrix shape) in float32 or float64.

    Returns:
        ``max(A.shape[-2:]) * torch.finfo(A.dtype).eps``; a singular value counts iff it exceeds this times the
        largest one.

    Raises:
        ValueError: if A is not a float32 / float64 tensor with at least two dimensions.
    """
    if not (isinstance(A, torch.Tensor) and A.ndim >= 2 and A.dtype in COMPUTE_DTYPES):
        raise ValueError(f"A must be a float32 or float64 matrix, got {type(A).__name__} "
                         f"{getattr(A, 'dtype', '')} {tuple(getattr(A, 'shape', ()))}")
    return max(A.shape[-2:]) * torch.finfo(A.dtype).eps


def max_trusted_cond(dtype: torch.dtype) -> float:
    """Largest condition number for which a solve in ``dtype`` is trusted: 1e-2 / eps.

    A backward-stable solve has relative error about cond * eps, so this bound keeps it under 1 %:
    4.5e13 in float64, 8.4e4 in float32.

    Args:
        dtype: torch.float32 or torch.float64.

    Raises:
        ValueError: for any other dtype (half precision cannot resolve the conditions the paper needs).
    """
    check_dtype(dtype)
    return 1e-2 / torch.finfo(dtype).eps


def psd_eigh_floor(A: torch.Tensor, what: str = "A"):
    """Eigen-decomposition of a symmetric matrix with the eigenvalues below the rank cut-off set to zero.

    The matrix is symmetrised (``(A + A^T) / 2``, round-off only for the Gram matrices this is used on) and
    eigenvalues with :math:`|\\lambda_i| \\le` :func:`rank_rtol` :math:`\\cdot \\max_j |\\lambda_j|` are dropped.

    Args:
        A: a symmetric (positive semi-definite up to round-off) n x n matrix.
        what: the name of A in error messages.

    Returns:
        ``(evals, evecs, keep)``: ascending eigenvalues, eigenvectors (columns) and the boolean mask of the kept ones.

    Raises:
        ValueError: if A is not a finite float square matrix.
    """
    check_tensor(what, A, ndim=2)
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"{what} must be square, got shape {tuple(A.shape)}")
    evals, evecs = torch.linalg.eigh((A + A.T) / 2)
    top = float(evals.abs().max())
    keep = evals.abs() > rank_rtol(A) * top
    return evals, evecs, keep


def pinv(A: torch.Tensor, *, hermitian: bool = False) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse with the library's rank cut-off (:func:`rank_rtol`), stated explicitly.

    Args:
        A: an m x n matrix with finite entries.
        hermitian: A is symmetric (uses an eigen-decomposition, reads one triangle).

    Returns:
        :math:`A^+` (n x m).

    Raises:
        ValueError: if A is not a finite float matrix.
    """
    check_tensor("A", A, ndim=2)
    return torch.linalg.pinv(A, rtol=rank_rtol(A), hermitian=hermitian)


def pinv_psd(A: torch.Tensor, what: str = "A") -> torch.Tensor:
    """Pseudo-inverse :math:`A^+` of a symmetric positive semi-definite matrix through :func:`psd_eigh_floor`.

    Args:
        A: a symmetric n x n matrix, PSD up to round-off.
        what: the name of A in error messages.

    Raises:
        ValueError: if A is not a finite float square matrix, or has a negative eigenvalue above the cut-off
            (it is not positive semi-definite).
    """
    evals, evecs, keep = psd_eigh_floor(A, what)
    if bool((keep & (evals < 0)).any()):
        raise ValueError(f"{what} must be positive semi-definite, but has eigenvalue {float(evals[0]):.3e} "
                         f"(largest {float(evals[-1]):.3e})")
    V = evecs[:, keep]
    return (V / evals[keep]) @ V.T


def pinv_gram(G: torch.Tensor, *, rank_cap: int | None = None, what: str = "G") -> torch.Tensor:
    r"""Pseudo-inverse of a Gram matrix (positive semi-definite by construction), batched over leading dimensions.

    Keeps, in each matrix of the batch, the eigenvalues :math:`\lambda_i >` :func:`rank_rtol` :math:`\cdot
    \lambda_{\max}`, and of those at most the ``rank_cap`` largest (the structural rank, when the caller knows it:
    see the module docstring). Negative eigenvalues are round-off of a matrix that is PSD by construction and are
    dropped; for a matrix that might not be PSD, :func:`pinv_psd` refuses instead. A zero matrix has the zero
    pseudo-inverse.

    Args:
        G: a symmetric (..., n, n) float32 / float64 tensor, a Gram matrix or a batch of them.
        rank_cap: at most this many eigenvalues are kept (None: no cap).
        what: the name of G in error messages.

    Returns:
        :math:`G^+`, shaped like G.

    Raises:
        ValueError: if G is not a finite float tensor of square matrices, or rank_cap is not a non-negative int.
    """
    check_tensor(what, G)
    if G.ndim < 2 or G.shape[-1] != G.shape[-2]:
        raise ValueError(f"{what} must be a square matrix (or a batch of them), got shape {tuple(G.shape)}")
    if rank_cap is not None and not (isinstance(rank_cap, int) and not isinstance(rank_cap, bool) and rank_cap >= 0):
        raise ValueError(f"rank_cap must be a non-negative int or None, got {rank_cap!r}")
    n = G.shape[-1]
    evals, evecs = torch.linalg.eigh((G + G.transpose(-1, -2)) / 2)
    lmax = evals[..., -1:].clamp_min(0)
    keep = evals > rank_rtol(G) * lmax
    if rank_cap is not None and rank_cap < n:
        keep[..., : n - rank_cap] = False
    inv = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
    return check_finite_result(f"the pseudo-inverse of {what}", (evecs * inv[..., None, :]) @ evecs.transpose(-1, -2))


def gram_factor_eigh(F: torch.Tensor, what: str = "F"):
    r"""Eigen-pairs of the Gram :math:`F F^\top` from the SVD of its factor F (N x k), batched over leading dimensions.

    Keeps the singular values :math:`\sigma_i(F) >` :func:`rank_rtol` :math:`(F) \cdot \sigma_{\max}` (the module's
    policy asked of the factor; why the factor and not the formed Gram: see the module docstring).

    Args:
        F: a (..., N, k) float32 / float64 tensor with finite entries.
        what: the name of F in error messages.

    Returns:
        ``(U, lam, keep)``: U (..., N, r) the left singular vectors, lam (..., r) the eigenvalues
        :math:`\sigma_i^2` of :math:`F F^\top` (descending, r = min(N, k)), and the boolean mask of the kept ones.

    Raises:
        ValueError: if F is not a finite float tensor with at least two dimensions.
    """
    check_tensor(what, F)
    if F.ndim < 2:
        raise ValueError(f"{what} must be a matrix (or a batch of them), got shape {tuple(F.shape)}")
    U, sig, _ = torch.linalg.svd(F, full_matrices=False)
    keep = sig > rank_rtol(F) * sig[..., :1]
    return U, sig ** 2, keep


def pinv_gram_factor(F: torch.Tensor, what: str = "F") -> torch.Tensor:
    r""":math:`(F F^\top)^+` for a factor F (..., N, k), through :func:`gram_factor_eigh` (the factor's SVD).

    Then :math:`F^+ = F^\top (F F^\top)^+` and :math:`F F^\top (F F^\top)^+` is the orthogonal projector onto
    the range of F.

    Args:
        F: a (..., N, k) float32 / float64 tensor with finite entries.
        what: the name of F in error messages.

    Raises:
        ValueError: as :func:`gram_factor_eigh`.
    """
    U, lam, keep = gram_factor_eigh(F, what)
    inv = torch.where(keep, 1.0 / torch.where(keep, lam, torch.ones_like(lam)), torch.zeros_like(lam))
    return (U * inv[..., None, :]) @ U.transpose(-1, -2)


def numerical_rank(A: torch.Tensor) -> int:
    """The number of singular values above the cut-off :func:`rank_rtol` times the largest.

    Args:
        A: an m x n matrix with finite entries.

    Raises:
        ValueError: if A is not a finite float matrix.
    """
    check_tensor("A", A, ndim=2)
    return int(torch.linalg.matrix_rank(A, rtol=rank_rtol(A)))


def psd_power(M: torch.Tensor, p: float) -> torch.Tensor:
    """:math:`M^p` for a symmetric positive semi-definite M by eigen-decomposition.

    Eigenvalues at or below the rank cut-off (:func:`rank_rtol` times the largest :math:`|\\lambda|`) are treated as
    0, and :math:`M^0 = I` (the convention of the end-to-end dynamics of deep linear networks).

    Args:
        M: a symmetric n x n matrix.
        p: the power; p < 0 needs M positive definite.

    Raises:
        ValueError: if M is not symmetric, has an eigenvalue below :math:`-10^3` times the cut-off (not positive
            semi-definite), or p < 0 and M is singular to working precision (condition number
            >= :func:`max_trusted_cond`).
    """
    check_symmetric("M", M)
    p = check_number("p (the power)", p)
    if p == 0:
        return torch.eye(M.shape[0], dtype=M.dtype, device=M.device)
    ev, Q = torch.linalg.eigh(M)
    cut = rank_rtol(M) * max(float(ev.abs().max()), 1e-300)
    if float(ev[0]) < -1e3 * cut:
        raise ValueError(f"psd_power needs a positive semi-definite matrix, got eigenvalue {float(ev[0]):.3e}")
    if p < 0:
        lmin, lmax = float(ev[0]), float(ev[-1])
        cond = lmax / lmin if lmin > 0 else float("inf")
        if not cond < max_trusted_cond(M.dtype):
            raise ValueError(f"psd_power with p = {p:g} < 0 needs a positive definite M, but M is singular to working "
                             f"precision (lambda_min = {lmin:.3e}, lambda_max = {lmax:.3e}, condition number "
                             f"{cond:.3e} >= {max_trusted_cond(M.dtype):.1e})")
    ev = torch.where(ev > cut, ev, torch.zeros_like(ev))
    return check_finite_result("M^p", (Q * ev ** p) @ Q.T)


def psd_eigh(A: torch.Tensor, what: str, remedy: str, max_cond: float | None = None):
    """Eigen-decomposition of a symmetric positive definite matrix, refusing numerically singular ones.

    Args:
        A: a symmetric n x n matrix that the theory needs positive definite.
        what: the name of A and the assumption that makes it definite (goes into the error message).
        remedy: what the caller can do when it is not (goes into the error message).
        max_cond: refusal threshold for the condition number (default :func:`max_trusted_cond`).

    Returns:
        ``(evals, evecs)`` in ascending order.

    Raises:
        ValueError: naming ``what`` and ``remedy`` when the smallest eigenvalue is not positive or the condition
            number reaches ``max_cond``, or when LAPACK fails.
    """
    check_tensor(what, A, ndim=2)
    limit = max_trusted_cond(A.dtype) if max_cond is None else max_cond
    try:
        evals, evecs = torch.linalg.eigh(A)
    except RuntimeError as err:  # LAPACK failure: report it as the condition it signals
        raise ValueError(f"{what}: eigen-decomposition failed ({err}); {remedy}") from None
    lmin, lmax = float(evals[0]), float(evals[-1])
    cond = lmax / lmin if lmin > 0 else float("inf")
    if not cond < limit:
        raise ValueError(
            f"{what} is singular or too ill-conditioned to solve with in {A.dtype}: lambda_min = {lmin:.3e}, "
            f"lambda_max = {lmax:.3e}, condition number {cond:.3e} >= {limit:.1e}; {remedy}"
        )
    return evals, evecs


def solve_psd(A: torch.Tensor, b: torch.Tensor, what: str, remedy: str, max_cond: float | None = None):
    """Solve A z = b for symmetric positive definite A through :func:`psd_eigh` (checked conditioning).

    Args:
        A: a symmetric n x n matrix that the theory needs positive definite.
        b: right-hand side, length n or n x k.
        what: the name of A and its assumption (for the error message).
        remedy: what the caller can do when A is singular (for the error message).
        max_cond: refusal threshold for the condition number (default :func:`max_trusted_cond`).

    Raises:
        ValueError: as :func:`psd_eigh`, when A is singular or too ill-conditioned.
    """
    evals, evecs = psd_eigh(A, what, remedy, max_cond)
    return evecs @ ((evecs.T @ b) / (evals if b.ndim == 1 else evals[:, None]))


def solve_psd_cholesky(A: torch.Tensor, b: torch.Tensor, what: str, remedy: str, max_cond: float | None = None,
                       iterations: int = 20):
    """Solve A z = b for symmetric positive definite A by Cholesky, with a cheap check of the conditioning.

    The fast sibling of :func:`solve_psd` (a Cholesky factorisation costs n^3/3 flops against about 9 n^3 for an
    eigen-decomposition). The condition number is *estimated* from ``iterations`` steps of power iteration for
    :math:`\\lambda_{\\max}` and of inverse iteration (through the factor) for :math:`\\lambda_{\\min}`, 4 n^2 flops
    each. Both estimates approach the true eigenvalues from inside, so the estimate can only be low, by at most the
    ratio of the smallest eigenvalues when they cluster; the trust threshold :func:`max_trusted_cond` leaves orders of
    magnitude of margin for that. When the factorisation fails or the estimate exceeds the threshold, the exact
    eigenvalues are computed (:func:`psd_eigh`) for an error message that names ``what``, the condition number and
    ``remedy``.

    Args:
        A: a symmetric n x n matrix that the theory needs positive definite.
        b: right-hand side, length n or n x k.
        what: the name of A and its assumption (for the error message).
        remedy: what the caller can do when A is singular (for the error message).
        max_cond: refusal threshold for the condition number (default :func:`max_trusted_cond`).
        iterations: power / inverse iteration steps of the condition estimate.

    Raises:
        ValueError: as :func:`psd_eigh`, when A is not positive definite or too ill-conditioned.
    """
    check_tensor(what, A, ndim=2)
    limit = max_trusted_cond(A.dtype) if max_cond is None else max_cond
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        psd_eigh(A, what, remedy, max_cond)       # raises with the exact spectrum
        raise ValueError(f"{what}: Cholesky factorisation failed although the spectrum looks positive; {remedy}")
    n = A.shape[0]
    g = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(n, 1, generator=g, dtype=A.dtype).to(A.device)
    w = v.clone()
    lmax = lmin_inv = 0.0
    for _ in range(iterations):
        v = A @ v
        lmax = float(torch.linalg.vector_norm(v))
        v = v / lmax
        w = torch.cholesky_solve(w, L)
        lmin_inv = float(torch.linalg.vector_norm(w))
        w = w / lmin_inv
    cond = lmax * lmin_inv
    if not cond < limit:
        psd_eigh(A, what, remedy, max_cond)       # raises with the exact spectrum
    return torch.cholesky_solve(b[:, None] if b.ndim == 1 else b, L).reshape(b.shape)


def _check_batched_system(A: torch.Tensor, B: torch.Tensor, what: str) -> None:
    """Check that A is a (b, n, n) batch of square matrices and B right-hand sides (b, n) or (b, n, k).

    Raises:
        ValueError: naming ``what`` when the shapes do not match.
    """
    if A.shape[-1] != A.shape[-2] or B.shape[0] != A.shape[0] or B.shape[1] != A.shape[1] or B.ndim not in (2, 3):
        raise ValueError(f"{what}: a batch of square matrices (b, n, n) and right-hand sides (b, n[, k]) are needed, "
                         f"got {tuple(A.shape)} and {tuple(B.shape)}")


def _eigen_apply_inverse(evecs: torch.Tensor, divisors: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    r""":math:`V \mathrm{diag}(1/d) V^\top B` per batch member, for right-hand sides (b, n) or (b, n, k)."""
    rhs = B if B.ndim == 3 else B[..., None]
    Z = evecs @ ((evecs.transpose(-1, -2) @ rhs) / divisors[..., None])
    return Z if B.ndim == 3 else Z[..., 0]


def solve_psd_batched(A: torch.Tensor, B: torch.Tensor, what: str, remedy: str, max_cond: float | None = None):
    r"""Solve :math:`A_b Z_b = B_b` for a batch of symmetric positive definite matrices (checked conditioning).

    One batched eigen-decomposition gives both the solution and every matrix's exact condition number, which is
    refused at :func:`max_trusted_cond` as in :func:`psd_eigh`.

    Args:
        A: a (b, n, n) batch of symmetric matrices that the theory needs positive definite.
        B: right-hand sides, (b, n) or (b, n, k).
        what: the name of A and its assumption (for the error message).
        remedy: what the caller can do when some A_b is singular (for the error message).
        max_cond: refusal threshold for the condition number (default :func:`max_trusted_cond`).

    Raises:
        ValueError: naming ``what``, the first offending batch index and ``remedy`` when some A_b is not positive
            definite or too ill-conditioned, or when A and B do not have matching batch shapes.
    """
    check_tensor(what, A, ndim=3)
    _check_batched_system(A, B, what)
    limit = max_trusted_cond(A.dtype) if max_cond is None else max_cond
    try:
        evals, evecs = torch.linalg.eigh(A)
    except RuntimeError as err:  # LAPACK failure: report it as the condition it signals
        raise ValueError(f"{what}: eigen-decomposition failed ({err}); {remedy}") from None
    lmin, lmax = evals[:, 0], evals[:, -1]
    bad = ~(lmin > 0) | ~(lmax < limit * lmin.clamp_min(torch.finfo(A.dtype).tiny))
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        lo, hi = float(lmin[i]), float(lmax[i])
        cond = hi / lo if lo > 0 else float("inf")
        raise ValueError(f"{what} (batch index {i}) is singular or too ill-conditioned to solve with in {A.dtype}: "
                         f"lambda_min = {lo:.3e}, lambda_max = {hi:.3e}, condition number {cond:.3e} >= "
                         f"{limit:.1e}; {remedy}")
    return _eigen_apply_inverse(evecs, evals, B)


def solve_shifted_psd_batched(A: torch.Tensor, shift: float, B: torch.Tensor, what: str = "A"):
    r"""Solve :math:`(A_b + s I) Z_b = B_b` for a batch of positive semi-definite :math:`A_b` and a shift
    :math:`s > 0` (the damping of a damped natural-gradient step), through one batched eigen-decomposition of A.

    Eigenvalues of :math:`A_b` below 0 are round-off of a PSD matrix and are set to 0, so every divisor is
    :math:`\lambda_i^+ + s \ge s > 0`. There is no refusal: :math:`A + sI` is positive definite by construction, and
    the accuracy (relative error about :math:`\varepsilon\,\lambda_{\max}/s` in the directions of the smallest
    eigenvalues) is set by the shift, which the caller chooses: a damping is not a hypothesis that can fail.

    Args:
        A: a (b, n, n) batch of symmetric positive semi-definite matrices.
        shift: the shift s > 0.
        B: right-hand sides, (b, n) or (b, n, k).
        what: the name of A in error messages.

    Raises:
        ValueError: if A is not a finite float (b, n, n) tensor, B does not match its batch shape, or the shift is
            not a positive finite number.
    """
    check_tensor(what, A, ndim=3)
    shift = check_number("the shift (damping)", shift, low=0.0, low_open=True)
    _check_batched_system(A, B, what)
    evals, evecs = torch.linalg.eigh((A + A.transpose(-1, -2)) / 2)
    return check_finite_result(f"the solution of ({what} + shift I) Z = B",
                               _eigen_apply_inverse(evecs, evals.clamp_min(0) + shift, B))


def solve_checked(A: torch.Tensor, b: torch.Tensor, what: str, remedy: str, max_cond: float | None = None):
    r"""Solve A z = b for a square, possibly indefinite, nonsingular A (checked conditioning through its SVD).

    For small matrices whose nonsingularity the theory guarantees (e.g. a tri-diagonal coefficient matrix); the
    condition number :math:`\sigma_{\max}/\sigma_{\min}` is refused at :func:`max_trusted_cond`.

    Args:
        A: a square n x n matrix.
        b: right-hand side, length n or n x k.
        what: the name of A and the assumption that makes it nonsingular (for the error message).
        remedy: what the caller can do when A is singular (for the error message).
        max_cond: refusal threshold for the condition number (default :func:`max_trusted_cond`).

    Raises:
        ValueError: naming ``what`` and ``remedy`` when A is not square or singular to working precision.
    """
    check_tensor(what, A, ndim=2)
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"{what} must be square, got shape {tuple(A.shape)}")
    limit = max_trusted_cond(A.dtype) if max_cond is None else max_cond
    sv = torch.linalg.svdvals(A)
    smax, smin = float(sv[0]), float(sv[-1])
    cond = smax / smin if smin > 0 else float("inf")
    if not cond < limit:
        raise ValueError(f"{what} is singular or too ill-conditioned to solve with in {A.dtype}: sigma_min = "
                         f"{smin:.3e}, sigma_max = {smax:.3e}, condition number {cond:.3e} >= {limit:.1e}; {remedy}")
    return torch.linalg.solve(A, b)


def check_full_column_rank(X: torch.Tensor, what: str) -> None:
    """rank(X) = d, measured by the condition number of X^T X against :func:`max_trusted_cond`.

    Args:
        X: an n x d matrix.
        what: the assumption that needs full column rank (for the error message).

    Raises:
        ValueError: naming ``what`` when n < d or :math:`X^\\top X` is singular to working precision.
    """
    n, d = X.shape
    if n < d:
        raise ValueError(f"{what}: rank(X) = d is required, but X has n = {n} < d = {d} rows, so rank(X) <= {n} < d")
    ev = torch.linalg.eigvalsh(X.T @ X)
    lmin, lmax = float(ev[0]), float(ev[-1])
    cond = lmax / lmin if lmin > 0 else float("inf")
    if not cond < max_trusted_cond(X.dtype):
        raise ValueError(
            f"{what}: rank(X) = d = {d} is required, but X^T X is singular to working precision "
            f"(lambda_min = {lmin:.3e}, lambda_max = {lmax:.3e}, condition number {cond:.3e} >= "
            f"{max_trusted_cond(X.dtype):.1e} for {X.dtype})"
        )
