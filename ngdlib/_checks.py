"""Argument and assumption checks shared by the whole library (the ground floor: imports nothing from ngdlib).

Every public function validates its arguments here and raises :class:`ValueError` with a message that names the
violated assumption of the paper (Assumption 1, a positive step size, an int count, ...), never a raw
``TypeError`` and never a silently wrong number. Checked solves, pseudo-inverses and the rank cut-off live one floor
up, in :mod:`ngdlib._linalg`.
"""
from __future__ import annotations

import numbers

import torch

__all__ = [
    "check_tensor",
    "check_data",
    "check_unit_rows",
    "check_not_parallel",
    "check_assumption1",
    "check_vector",
    "COMPUTE_DTYPES",
    "check_dtype",
    "check_device",
    "check_same_dtype_device",
    "check_number",
    "check_positive",
    "check_probability",
    "check_int",
    "check_square",
    "check_symmetric",
    "is_transformed",
    "check_finite_result",
    "finite_float",
]

#: The dtypes ngdlib computes in: float64 for verification, float32 for speed. Half precision (float16, bfloat16)
#: has eps ~ 1e-3, so :func:`ngdlib._linalg.max_trusted_cond` would trust no solve with condition number above ~10: refused.
COMPUTE_DTYPES = (torch.float32, torch.float64)


def check_tensor(name: str, t, ndim: int | None = None) -> torch.Tensor:
    """Check that ``t`` is a floating tensor with ``ndim`` dimensions and only finite entries.

    Raises:
        ValueError: naming ``name`` when t is not a tensor, has the wrong number of dimensions, is not float32 /
            float64, is empty, or has a NaN or Inf entry.
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.dtype not in COMPUTE_DTYPES:
        raise ValueError(f"{name} has dtype {t.dtype}: ngdlib computes in float32 or float64 (float64 for "
                         "verification); half precision cannot resolve the conditions the paper needs")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}): at least one entry is needed")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN or Inf entr{'y' if bad == 1 else 'ies'}")
    return t


def check_data(X, d: int | None = None) -> torch.Tensor:
    """Check an input matrix X (n x d): 2-D, finite, and with ``d`` columns when ``d`` is given.

    Raises:
        ValueError: when X is not a finite float32 / float64 matrix (as :func:`check_tensor`) or does not have ``d``
            columns (the model's input dimension).
    """
    check_tensor("X", X, ndim=2)
    if d is not None and X.shape[1] != d:
        raise ValueError(f"X must have d = {d} columns (the model's input dimension), got shape {tuple(X.shape)}")
    return X


def _unit_tol(dtype: torch.dtype) -> float:
    # A row normalised in this dtype has | ||x|| - 1 | of a few eps; 1e3 eps leaves room for d up to ~1e3.
    return 1e3 * torch.finfo(dtype).eps


def check_unit_rows(X: torch.Tensor) -> torch.Tensor:
    """Assumption 1, first half: every input has unit Euclidean norm (to 1e3 machine epsilons).

    Raises:
        ValueError: naming Assumption 1 and the offending row when some ``| ||x_i|| - 1 |`` exceeds 1e3 machine
            epsilons.
    """
    norms = torch.linalg.vector_norm(X, dim=1)
    dev = (norms - 1).abs()
    tol = _unit_tol(X.dtype)
    if bool((dev > tol).any()):
        i = int(dev.argmax())
        raise ValueError(
            f"Assumption 1 violated: inputs must have unit norm, but ||x_{i}|| = {float(norms[i]):.6g} "
            f"(|1 - ||x||| = {float(dev[i]):.2e} > {tol:.1e}); normalise the rows of X first"
        )
    return X


def check_not_parallel(X: torch.Tensor) -> torch.Tensor:
    """Assumption 1, second half: no two inputs are parallel, x_i != +-c x_j for i != j.

    Antiparallel pairs are refused too: d + 1 antiparallel pairs in R^d make G^inf singular (chapter Z-Ginf).

    Raises:
        ValueError: naming Assumption 1 and the pair (i, j) when two rows are parallel or antiparallel to within 1e2
            machine epsilons.
    """
    n = X.shape[0]
    if n < 2:
        return X
    Xn = X / torch.linalg.vector_norm(X, dim=1, keepdim=True).clamp_min(torch.finfo(X.dtype).tiny)
    C = (Xn @ Xn.T).abs()
    C.fill_diagonal_(0.0)
    tol = 1e2 * torch.finfo(X.dtype).eps
    worst = float(C.max())
    if worst >= 1 - tol:
        idx = int(C.argmax())
        i, j = divmod(idx, n)
        raise ValueError(
            f"Assumption 1 violated: inputs x_{i} and x_{j} are parallel or antiparallel (x_i = +-x_j, "
            f"|cos angle| = {worst:.17g}); the Gram matrices G(0) and G^inf can then be singular"
        )
    return X


def check_assumption1(X, d: int | None = None) -> torch.Tensor:
    """Assumption 1 of the paper for the inputs: finite, unit-norm rows, no two parallel.

    Raises:
        ValueError: naming Assumption 1 when a row is not unit-norm or two rows are (anti)parallel, or when X is not
            a finite float matrix with ``d`` columns.
    """
    check_data(X, d)
    check_unit_rows(X)
    check_not_parallel(X)
    return X


def check_vector(name: str, v, n: int, what: str = "") -> torch.Tensor:
    """Check a length-``n`` finite vector (a residual, targets, ...).

    Raises:
        ValueError: naming ``name`` when v is not a finite float 1-D tensor of length ``n``.
    """
    check_tensor(name, v, ndim=1)
    if v.shape[0] != n:
        extra = f" ({what})" if what else ""
        raise ValueError(f"{name} must have length n = {n}{extra}, got shape {tuple(v.shape)}")
    return v


# ---------------------------------------------------------------------------------------------------------------------
# Scalars, dtypes, devices and matrix shapes (added for the bad-input audit; every helper raises ValueError).
# ---------------------------------------------------------------------------------------------------------------------
def check_dtype(dtype, what: str = "dtype") -> torch.dtype:
    """A dtype argument (of a constructor or generator) must be float32 or float64.

    Raises:
        ValueError: for anything but torch.float32 / torch.float64 (half precision cannot resolve the paper's
            conditions).
    """
    if not isinstance(dtype, torch.dtype) or dtype not in COMPUTE_DTYPES:
        raise ValueError(f"{what} must be a floating dtype in float32 or float64 (torch.float32 / torch.float64; "
                         f"float64 for verification), got {dtype!r}")
    return dtype


def check_device(device, what: str = "device"):
    """A device argument: None, or a device that exists here (never a raw RuntimeError or a CUDA assert later).

    Raises:
        ValueError: when the device is malformed or not present here (CUDA or MPS asked for without one, a CUDA
            index that does not exist).
    """
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"{what} must be a torch device such as 'cpu' or 'cuda', got {device!r} ({err})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what} {device!r} asked for CUDA, but no CUDA GPU is available here; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{what} {device!r} does not exist: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{what} {device!r} asked for MPS, which is not available here; use 'cpu'")
    elif dev.type != "cpu":
        raise ValueError(f"{what} must be 'cpu' or 'cuda', got {device!r}")
    return dev


def check_same_dtype_device(name: str, t: torch.Tensor, ref_name: str, ref) -> torch.Tensor:
    """``t`` must have the dtype and device of ``ref`` (a tensor or a model with ``dtype``/``device``).

    Raises:
        ValueError: naming both arguments when their dtypes or devices differ.
    """
    dt = ref.dtype
    dev = ref.device
    if t.dtype != dt or t.device != dev:
        raise ValueError(f"{name} has dtype {t.dtype} on {t.device}, {ref_name} has dtype {dt} on {dev}; "
                         "they must match (convert one of them)")
    return t


def check_number(name: str, v, *, low: float | None = None, low_open: bool = False, high: float | None = None,
                 allow_inf: bool = False) -> float:
    """A real scalar (int, float or 0-d tensor; not a bool), not NaN, finite unless ``allow_inf``, and
    ``v > low`` (``low_open``) or ``v >= low``, and ``v <= high``. Returns it as a float.

    Raises:
        ValueError: naming ``name`` when v is not a real number (bools are refused), is NaN, is infinite without
            ``allow_inf``, or lies outside the bounds.
    """
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_complex():
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {v!r}")
    v = float(v)
    if v != v or (not allow_inf and v in (float("inf"), float("-inf"))):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {v!r}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high:g}, got {v!r}")
    return v


def check_positive(name: str, v, *, allow_zero: bool = False) -> float:
    """The one validator for a positive (or, with ``allow_zero``, non-negative) finite real number.

    Accepts an int, a float or a one-element tensor; refuses a bool (``True`` is not a step size), NaN and Inf.

    Args:
        name: the argument's name and meaning, for the message (e.g. ``"eta (the step size)"``).
        v: the value.
        allow_zero: accept 0.

    Returns:
        ``v`` as a float.

    Raises:
        ValueError: naming ``name`` when v is not a real number, not finite, or not > 0 (>= 0 with ``allow_zero``).
    """
    what = "non-negative" if allow_zero else "positive"
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_complex():
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or v != v or v in (float("inf"), float("-inf")) \
            or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {what} finite number, got {v!r}")
    return float(v)


def check_probability(name: str, v) -> float:
    """A real number in the open interval (0, 1) (a failure probability, a relative deficit, ...); not a bool.

    Args:
        name: the argument's name and meaning, for the message.
        v: the value.

    Raises:
        ValueError: naming ``name`` when v is not a real number in (0, 1).
    """
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_complex():
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (0 < v < 1):
        raise ValueError(f"{name} must lie in (0, 1), got {v!r}")
    return float(v)


def check_int(name: str, v, minimum: int | None = None) -> int:
    """The one validator for counts, sizes, steps and seeds: an int (not a bool) that is at least ``minimum``.

    Args:
        name: the argument's name and meaning, for the message.
        v: the value (a Python int or numpy integer; ``True`` is refused).
        minimum: the smallest value allowed (None: any int).

    Raises:
        ValueError: naming ``name`` when v is not an int or is below ``minimum``.
    """
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ValueError(f"{name} must be an int{'' if minimum is None else f' >= {minimum}'}, got {v!r}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")
    return int(v)


def check_square(name: str, M) -> torch.Tensor:
    """A finite float square matrix.

    Raises:
        ValueError: naming ``name`` when M is not a finite float square matrix.
    """
    check_tensor(name, M, ndim=2)
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be square, got shape {tuple(M.shape)}")
    return M


def check_symmetric(name: str, M) -> torch.Tensor:
    """A finite float square matrix that is symmetric to round-off: ||M - M^T||_max <= 1e3 eps ||M||_max.

    ``torch.linalg.eigh`` reads one triangle only, so a non-symmetric matrix would silently give a wrong answer.

    Raises:
        ValueError: naming ``name`` when M is not square or ``max |M - M^T| > 1e3 eps max |M|`` (eigh would read one triangle and
            silently answer for another matrix).
    """
    check_square(name, M)
    asym = float((M - M.T).abs().max())
    scale = float(M.abs().max())
    if asym > 1e3 * torch.finfo(M.dtype).eps * scale:
        raise ValueError(f"{name} must be symmetric, but max |M - M^T| = {asym:.3e} (max |M| = {scale:.3e})")
    return M


def is_transformed(t) -> bool:
    """True when ``t`` is wrapped by a torch.func transform (vmap, grad, jacrev, hessian, ...).

    Value checks (``bool(torch.isfinite(t).all())``) are data-dependent control flow, which vmap refuses; functions
    that are meant to be differentiated with torch.func skip them on wrapped tensors and keep the static checks.
    """
    try:
        return bool(torch._C._functorch.is_functorch_wrapped_tensor(t))
    except Exception:  # pragma: no cover - private API moved: assume not transformed
        return False


def check_finite_result(what: str, value):
    """Refuse a NaN or Inf *result* computed from finite inputs (an overflow), so none is returned silently.

    ``value``: a tensor (skipped when torch.func-wrapped: value checks cannot run under vmap), a float, or a list /
    tuple of them. Returns ``value`` unchanged.

    Raises:
        ValueError: when the result contains NaN or Inf although the inputs were finite (an overflow: rescale the
            inputs).
    """
    if isinstance(value, (list, tuple)):
        for v in value:
            check_finite_result(what, v)
        return value
    if isinstance(value, torch.Tensor):
        if is_transformed(value) or not value.is_floating_point():
            return value
        ok = bool(torch.isfinite(value).all())
    else:
        ok = value == value and value not in (float("inf"), float("-inf"))
    if not ok:
        raise ValueError(f"{what} overflowed to NaN or Inf although the inputs are finite: the inputs or parameters "
                         "are too large for the floating-point range (rescale them)")
    return value


def finite_float(what: str, compute) -> float:
    """Evaluate a scalar formula ``compute()``; Python's OverflowError / ZeroDivisionError and an infinite or NaN
    result are reported as a ValueError (never returned).

    Raises:
        ValueError: when the formula overflows (OverflowError, ZeroDivisionError, or a NaN / Inf result).
    """
    try:
        value = compute()
    except (OverflowError, ZeroDivisionError):
        value = float("inf")
    return check_finite_result(what, value)


#: Names that moved to :mod:`ngdlib._linalg` (the checked solvers); still importable from here for old callers.
_MOVED_TO_LINALG = ("check_full_column_rank", "max_trusted_cond", "psd_eigh", "solve_psd", "solve_psd_cholesky")


def __getattr__(name):
    if name in _MOVED_TO_LINALG:
        from . import _linalg

        return getattr(_linalg, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
