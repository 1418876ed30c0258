r"""Update directions for the two-layer ReLU network, all shaped like ``W`` (m x d), none forming J, F or a Kronecker
product.

With squared loss :math:`\mathcal L = \frac{1}{2n}\|u - y\|^2` the Fisher is the Gauss-Newton matrix
:math:`F = J^\top J / n` and its pseudo-inverse gives (eq. 3)

.. math::
    F^+ \nabla \mathcal L = J^\top (J J^\top)^{-1} (u - y) = J^\top G^{-1} r .

K-FAC (eq. 12), with the conventions of the book (page "Notation and conventions"): :math:`S` carries :math:`a_r/\sqrt m`,
:math:`(S^\top S)^{-1}` is a pseudo-inverse, the factors are not divided by n, and for row-stacked w the
preconditioner is :math:`(S^\top S)^+ \otimes (X^\top X)^{-1}`. Acting on :math:`J^\top r = S^\top \mathrm{diag}(r) X`
it gives

.. math::
    (S^\top S)^+ S^\top \mathrm{diag}(r) X (X^\top X)^{-1} = S^\top (S S^\top)^+ \mathrm{diag}(r) X (X^\top X)^{-1},

which only needs the n x n matrix :math:`S S^\top` and the d x d matrix :math:`X^\top X`.

Every function takes ``(model, X, r)``; device and dtype follow the inputs. By default the inputs are checked
against Assumption 1 (unit norm, no two parallel); pass ``check_assumption1=False`` to study data that violates it
on purpose (e.g. un-normalised inputs in the K-FAC invariance chapter).
"""
from __future__ import annotations

import torch

from ._checks import check_assumption1 as _check_assumption1
from ._checks import check_finite_result, check_same_dtype_device, check_vector
from ._linalg import check_full_column_rank, pinv, psd_eigh, solve_psd, solve_psd_cholesky
from .models import TwoLayerReLU
from .models import _two_layer_counts as _k

__all__ = ["ngd_direction", "ngd_step", "kfac_direction", "gd_direction", "validate", "gram_eigh"]


def _check_model(model) -> None:
    if not isinstance(model, TwoLayerReLU):
        raise ValueError(f"model must be an ngdlib.TwoLayerReLU (the two-layer network of eq. (8)), "
                         f"got {type(model).__name__}")


def _check_residual(r, X: torch.Tensor) -> None:
    check_vector("r", r, X.shape[0], "the residual u - y has one entry per input")
    check_same_dtype_device("r", r, "X", X)


def validate(model, X: torch.Tensor, r: torch.Tensor | None = None, check_assumption1: bool = True) -> None:
    """Check X against the model (and Assumption 1 unless told not to) and r against X.

    Raises:
        ValueError: naming Assumption 1 (unless ``check_assumption1`` is False) or the mismatch when X does not fit
            the model or r is not a length-n vector of X's dtype and device.
    """
    _check_model(model)
    model.check_inputs(X)
    if check_assumption1:
        _check_assumption1(X, model.d)
    if r is not None:
        check_vector("r", r, X.shape[0], "the residual u - y has one entry per input")
        if r.dtype != X.dtype or r.device != X.device:
            raise ValueError(f"r has dtype {r.dtype} on {r.device}, X has {X.dtype} on {X.device}; they must match")


def _width_remedy(model, n: int) -> str:
    return (f"Condition 1 fails: the width m = {model.m} is too small for n = {n} inputs "
            "(or two inputs are nearly parallel); increase m")


def _check_width(model, n: int) -> None:
    if model.m * model.d < n:
        raise ValueError(f"Condition 1 cannot hold: J is n x md = {n} x {model.m * model.d} with md < n, "
                         f"so G = J J^T is singular; the width m = {model.m} is too small")


def gram_eigh(model, X: torch.Tensor, *, chunk: int | None = None, counts: str = "auto"):
    """Eigen-decomposition of :math:`G = J J^\\top`, refusing a singular one (Condition 1). ``chunk`` and ``counts``
    as in :meth:`ngdlib.models.TwoLayerReLU.gram` (the exact activation counts: :data:`ngdlib.models.COUNTS`).

    Raises ``ValueError`` when ``m d < n`` (J cannot have full row rank) or when G is numerically singular.
    """
    _check_model(model)
    model.check_inputs(X)
    _check_width(model, X.shape[0])
    return psd_eigh(model.gram(X, chunk=chunk, counts=counts), "Condition 1: the Gram matrix G = J J^T",
                    _width_remedy(model, X.shape[0]))


def ngd_step(model, X: torch.Tensor, r: torch.Tensor, *, chunk: int | None = None, spectrum: bool = True,
             counts: str = "auto"):
    """The fused NGD hot path: ``(J^T G^{-1} r, eigenvalues of G or None)``.

    One pass over the width builds G and keeps the activation pattern; a second pass multiplies by :math:`J^\\top`
    from that pattern, so :math:`X W^\\top` is computed once. With ``spectrum=True`` (what :func:`ngdlib.train`
    records) G is solved through its eigen-decomposition and the eigenvalues are returned; with ``spectrum=False``
    through a Cholesky factorisation with an estimated condition number (:func:`ngdlib._linalg.solve_psd_cholesky`,
    about 25 times cheaper at n = 1024). X is not validated against Assumption 1 here (callers do it once); G's
    conditioning is checked either way (Condition 1).

    ``counts`` selects how the exact integer counts :math:`S_{01} S_{01}^\\top` are computed
    (:data:`ngdlib.models.COUNTS`: ``"auto"``, ``"int8"``, ``"float32"``, ``"tf32"``, ``"float64"``); G is the same
    bit for bit whichever is chosen. On CUDA (``"auto"`` = TF32 counts) the blocks are sized from the device's free
    memory, so at the sizes the book uses the step is three large products (:math:`W X^\\top`, the counts,
    :math:`J^\\top z`) and a solve. Bit-identity of the direction across ``chunk`` holds on a CPU; on CUDA cuBLAS may
    round :math:`J^\\top z` differently for different block shapes (the counts and G stay identical).
    """
    _check_model(model)
    model.check_inputs(X)
    _check_residual(r, X)
    n = X.shape[0]
    _check_width(model, n)
    pattern, G = _k.pattern_and_gram(model, X, chunk, keep_pattern=True, counts=counts)
    what, remedy = "Condition 1: the Gram matrix G = J J^T", _width_remedy(model, n)
    if spectrum:
        evals, evecs = psd_eigh(G, what, remedy)
        z = evecs @ ((evecs.T @ r) / evals)
    else:
        evals, z = None, solve_psd_cholesky(G, r, what, remedy)
    return check_finite_result("the NGD direction J^T G^{-1} r", _k.vjp_from_pattern(model, pattern, X, z, chunk)), evals


def ngd_direction(model, X: torch.Tensor, r: torch.Tensor, *, check_assumption1: bool = True,
                  chunk: int | None = None, counts: str = "auto") -> torch.Tensor:
    """Exact NGD direction :math:`J^\\top G^{-1} r` (m x d), eq. (3)/(9); equals :math:`F^+ \\nabla\\mathcal L` for
    :math:`r = u - y`.

    Cost about :math:`1.25 n^2 m` (exact float32 counts, symmetric blocks on a CPU) :math:`+ 4 n m d + n^3/3` flops;
    memory: the n x m activation pattern (CPU: in the model's dtype up to 1 GiB, else bytes; CUDA: in the count
    dtype while it fits in half the memory budget) plus O(n * chunk) temporaries (``chunk`` hidden units per block,
    default 2**21 / n on a CPU, sized from free memory on CUDA). ``counts`` as in :func:`ngd_step`. G is solved by
    Cholesky with an estimated condition number.
    """
    validate(model, X, r, check_assumption1)
    return ngd_step(model, X, r, chunk=chunk, spectrum=False, counts=counts)[0]


def kfac_direction(model, X: torch.Tensor, r: torch.Tensor, *, check_assumption1: bool = True,
                   counts: str = "auto") -> torch.Tensor:
    """K-FAC direction :math:`[(S^\\top S)^+ \\otimes (X^\\top X)^{-1}] J^\\top r` (m x d), eq. (12).

    Requires rank(X) = d (Theorem 4); a ``ValueError`` otherwise. The pseudo-inverse of the rank-(<= n) factor
    :math:`S^\\top S` is taken through :math:`(S S^\\top)^+` with the rank cut-off of :mod:`ngdlib._linalg`
    (n * eps relative), where
    :math:`S S^\\top = S_{01} S_{01}^\\top / m` (since :math:`a_r^2 = 1`) comes from the exact activation counts of
    the NGD hot path (``counts`` as in :func:`ngd_step`), and :math:`S^\\top(\\cdot)` from the activation pattern
    kept by the same pass: the n x m matrix S is never formed in the model's dtype.
    """
    validate(model, X, r, check_assumption1)
    n, d = X.shape
    check_full_column_rank(X, "Theorem 4 (K-FAC) assumption violated")
    pattern, C = _k.pattern_and_counts(model, X, None, keep_pattern=True, counts=counts)
    SSt = C.to(X.dtype) / model.m                          # S S^T, each entry a count / m
    SSt_pinv = pinv(SSt, hermitian=True)
    rX = r[:, None] * X                                    # diag(r) X          (n x d)
    right = solve_psd(X.T @ X, rX.T, "K-FAC input factor X^T X", "rank(X) = d is required (Theorem 4)").T
    D = _k.features_T_times(model, pattern, X, SSt_pinv @ right, None)   # S^T (S S^T)^+ diag(r) X (X^T X)^{-1}
    return check_finite_result("the K-FAC direction", D)


def gd_direction(model, X: torch.Tensor, r: torch.Tensor, *, check_assumption1: bool = True) -> torch.Tensor:
    """Gradient direction :math:`J^\\top r` (m x d), i.e. the gradient of :math:`\\frac12\\|u - y\\|^2` for
    :math:`r = u - y` (n times the gradient of :math:`\\mathcal L`)."""
    validate(model, X, r, check_assumption1)
    return model.vjp(X, r)
