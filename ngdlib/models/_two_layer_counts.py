r"""The speed kernels of the two-layer network (private): the exact activation counts :math:`S_{01} S_{01}^\top`
and the products with :math:`J^\top`, blocked over the width, for :class:`ngdlib.models.TwoLayerReLU` and the NGD hot
path of :mod:`ngdlib.curvature`.

Every function takes the model as its first argument; the path (int8, float32, TF32, float64 counts) is chosen by the
``counts`` argument (:data:`COUNTS`), never by a global. Only :meth:`ngdlib.models.TwoLayerReLU.gram`,
:meth:`~ngdlib.models.TwoLayerReLU.vjp` and :mod:`ngdlib.curvature` call these; users call those.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import torch

__all__ = ["COUNTS", "resolve_counts"]

# (documented in ngdlib.models)
CHUNK_ENTRIES = 2**21

# (documented in ngdlib.models)
EXACT_FLOAT32_COUNTS = 2**24

# (documented in ngdlib.models)
PATTERN_BYTES = 2**30

# (documented in ngdlib.models)
SYMMETRIC_MIN_N = 256


# (documented in ngdlib.models)
INT8_MIN_N = 256

# (documented in ngdlib.models)
INT8_PAD_BELOW_N = 24

# (documented in ngdlib.models)
COUNTS = ("auto", "int8", "float32", "tf32", "float64")

_COUNT_INPUT = {"int8": torch.int8, "float32": torch.float32, "tf32": torch.float32, "float64": torch.float64}

# (documented in ngdlib.models)
CUDA_MEMORY_FRACTION = 0.5

_INT8_PROBE: dict = {}


def _int8_counts(device) -> bool:
    """Whether ``torch._int_mm`` (int8 x int8 -> int32, exact) works on this device: a one-time probe on 0/1
    matrices (with counts above 2**8 and 2**16, and shapes that meet cuBLAS's rules: more than 16 rows, sizes
    multiples of 8) must agree exactly with float64. int8 products run on the CPU's matrix units (AMX, VNNI:
    measured 2.6 T int-ops/s against 0.31 TFLOP/s in float32 on the 2-core Xeon of the book's benchmark) and on
    CUDA's IMMA tensor cores. Anything else (an older torch, a kernel that fails the probe) answers False."""
    device = torch.device(device)
    key = (device.type, device.index)
    if key not in _INT8_PROBE:
        ok = False
        if hasattr(torch, "_int_mm") and device.type in ("cpu", "cuda"):
            try:
                g = torch.Generator().manual_seed(0)
                B = torch.randint(0, 2, (304, 40), generator=g, dtype=torch.int8)
                B[:, :8] = 1                                          # counts of 304 (> 2**8) in the first block
                ones = torch.ones(70_000, 32, dtype=torch.int8)       # counts of 70000 (> 2**16)
                ok = all(torch.equal(torch._int_mm(A.T.contiguous().to(device), A.to(device)).cpu().double(),
                                     A.double().T @ A.double()) for A in (B, ones))
            except (RuntimeError, TypeError, NotImplementedError):
                ok = False
        _INT8_PROBE[key] = ok
    return _INT8_PROBE[key]


def _check_counts(counts) -> str:
    """Check the ``counts`` argument against :data:`COUNTS`.

    Raises:
        ValueError: if counts is not one of the names in :data:`COUNTS`.
    """
    if not isinstance(counts, str) or counts not in COUNTS:
        raise ValueError(f"counts must be one of {', '.join(map(repr, COUNTS))} (how the exact activation counts "
                         f"S01 S01^T are computed), got {counts!r}")
    return counts


def resolve_counts(counts, device, n: int) -> str:
    """The count path that ``counts`` selects for n inputs on ``device`` (``"auto"`` resolved; see :data:`COUNTS`).

    Raises:
        ValueError: if counts is not one of the names in :data:`COUNTS`, or is ``"int8"`` where ``torch._int_mm``
            (int8 x int8 -> int32) fails its exactness probe on ``device``.
    """
    _check_counts(counts)
    device = torch.device(device)
    if counts == "auto":
        if device.type == "cuda":
            return "tf32"
        return "int8" if n >= INT8_MIN_N and _int8_counts(device) else "float32"
    if counts == "int8" and not _int8_counts(device):
        raise ValueError(f"counts='int8' needs torch._int_mm (int8 x int8 -> int32) to pass an exactness probe on "
                         f"{device}, and it does not here (torch {torch.__version__}); use 'auto', 'float32' or "
                         "'float64'")
    return counts


@contextlib.contextmanager
def _cuda_tf32(enabled: bool):
    """Allow (or forbid) TF32 for CUDA float32 matrix products inside the block, restoring the caller's setting after.

    The legacy switch ``torch.backends.cuda.matmul.allow_tf32`` is set, because it keeps the legacy and the new
    (torch >= 2.9: ``fp32_precision``) flags consistent, which cuBLAS calls check; the caller's new-API value is then
    put back as it was. Used only around the count product, never around :math:`W X^\\top` or :math:`J^\\top z`, whose
    inputs are not exact in TF32 (those follow the caller's global setting, as :meth:`ngdlib.models.TwoLayerReLU.activation_pattern` does)."""
    mm = torch.backends.cuda.matmul
    new = getattr(mm, "fp32_precision", None)                 # torch >= 2.9; reading it never warns
    if new is not None:
        parent = getattr(torch.backends, "fp32_precision", "none")
        prev = new == "tf32" or (new == "none" and parent == "tf32")
    else:
        prev = bool(mm.allow_tf32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                       # newer torch calls the legacy switch deprecated
        mm.allow_tf32 = enabled
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mm.allow_tf32 = prev
        if new is not None and mm.fp32_precision != new:
            mm.fp32_precision = new


def _count_precision(mode: str, device):
    """The matmul setting for the count product: TF32 on for ``"tf32"``, off for ``"float32"`` (CUDA only)."""
    if device.type == "cuda" and mode in ("tf32", "float32"):
        return _cuda_tf32(mode == "tf32")
    return contextlib.nullcontext()


def _device_budget(device, held: int = 0) -> int | None:
    """Bytes the hot path may use on a CUDA device (:data:`CUDA_MEMORY_FRACTION` of what is free to the driver and
    in torch's cache, plus ``held`` bytes of scratch it already holds), or None on a CPU (sized by cache instead)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(CUDA_MEMORY_FRACTION * (free + cached + held))


def _plan_storage(n: int, m: int, want: torch.dtype, budget: int | None) -> torch.dtype | None:
    """Where the pattern kept between the two passes lives: in ``want`` if it fits (CPU: :data:`PATTERN_BYTES`; CUDA:
    half the budget), else as bools (one byte an entry), else not at all (None: the second pass recomputes it)."""
    limit = PATTERN_BYTES if budget is None else budget // 2
    if n * m * _itemsize(want) <= limit:
        return want
    if budget is None or n * m <= limit:                      # the CPU path always keeps it (as now)
        return torch.bool
    return None


def _block_units(n: int, m: int, temp_bytes: int, budget: int | None) -> int:
    """Hidden units per block when the caller gives no ``chunk``: :data:`CHUNK_ENTRIES` / n on a CPU (cache-sized);
    on CUDA as many as the budget allows for ``temp_bytes`` of temporaries per pattern entry (the whole width when
    the block needs none)."""
    if budget is None:
        return max(1, CHUNK_ENTRIES // max(n, 1))
    if temp_bytes <= 0:
        return m
    return max(8, min(m, budget // (max(n, 1) * temp_bytes)))


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _row_blocks(n: int):
    if n < SYMMETRIC_MIN_N:
        return None
    b = -(-n // 4)
    return [(i, min(i + b, n)) for i in range(0, n, b)]


def _accumulate(acc: torch.Tensor, Z: torch.Tensor, blocks) -> None:
    """acc += Z^T Z for a 0/1 block Z (c x n) in a float dtype: the full product, or the upper blocks of ``blocks``.
    Where acc is wider than Z (float64 over float32 blocks of at most 2**24 units), each block product is exact in
    Z's dtype and its integers are added exactly in acc's."""
    if acc.dtype == Z.dtype:
        if blocks is None:
            acc.addmm_(Z.T, Z)
        else:
            for bi, (i0, i1) in enumerate(blocks):
                for j0, j1 in blocks[bi:]:
                    acc[i0:i1, j0:j1].addmm_(Z[:, i0:i1].T, Z[:, j0:j1])
        return
    if blocks is None:
        acc += (Z.T @ Z).to(acc.dtype)
    else:
        for bi, (i0, i1) in enumerate(blocks):
            for j0, j1 in blocks[bi:]:
                acc[i0:i1, j0:j1] += (Z[:, i0:i1].T @ Z[:, j0:j1]).to(acc.dtype)


# ------------------------------------------------------------------ hot-path helpers (blocked over the width)
def unit_slices(model, n: int, chunk: int | None, device=None, temp_bytes: int = 0, cap: int | None = None):
    """Blocks of hidden units: ``chunk`` units each if given, else :func:`_block_units` for this device.

    Raises:
        ValueError: if chunk is neither ``None`` nor a positive int (hidden units per block).
    """
    if chunk is None:
        dev = torch.device(device) if device is not None else model.W.device
        chunk = _block_units(n, model.m, temp_bytes, _device_budget(dev, scratch_bytes(model, dev)))
    elif not (isinstance(chunk, int) and not isinstance(chunk, bool) and chunk >= 1):
        raise ValueError(f"chunk must be a positive int (hidden units per block), got {chunk!r}")
    if cap is not None:
        chunk = min(chunk, cap)
    return [slice(s, min(s + chunk, model.m)) for s in range(0, model.m, chunk)]

def pattern_and_gram(model, X: torch.Tensor, chunk: int | None, keep_pattern: bool, counts: str = "auto"):
    """One pass over the width: the pattern (see :func:`pattern_and_counts`) and
    :math:`G = (X X^\\top) \\odot S_{01} S_{01}^\\top / m`."""
    pattern, C = pattern_and_counts(model, X, chunk, keep_pattern, counts)
    return pattern, (X @ X.T) * C.to(X.dtype) / model.m

def pattern_and_counts(model, X: torch.Tensor, chunk: int | None, keep_pattern: bool, counts: str = "auto"):
    """One pass over the width: the exact counts :math:`S_{01} S_{01}^\\top` (n x n, integers in an int32 or
    float tensor) and, if asked, the transposed activation pattern :math:`S_{01}^\\top` (m x n)
    for :func:`vjp_from_pattern`, so that the second pass need not recompute :math:`X W^\\top`.

    The pattern is kept in the model's dtype (CPU) or in the count product's dtype (CUDA) when it fits
    (:func:`_plan_storage`), else as bools, else (CUDA, beyond the memory budget) not at all (returned as None).
    Per block of c hidden units: :math:`Z = W_c X^\\top` (c x n) is written straight into its rows of the stored
    pattern when the dtypes agree, turned into 0/1 in place (``gt_``), and its counts :math:`Z^\\top Z` are
    accumulated by the path ``counts`` selects (:func:`resolve_counts`). On a CPU the float counts are formed over
    the upper triangle of a 4 x 4 grid of column blocks when n >= :data:`SYMMETRIC_MIN_N` (10 of 16 block products:
    the count matrix is symmetric); on CUDA as one product per block. Every count is an integer held exactly, so
    neither the blocking nor the path changes a bit.
    """
    model.check_inputs(X)
    n, m = X.shape[0], model.m
    dev = X.device
    mode = resolve_counts(counts, dev, n)
    cuda = dev.type == "cuda"
    cin = _COUNT_INPUT[mode]
    W = model.W.detach()
    pattern = None
    if keep_pattern:
        want = cin if cuda and cin.is_floating_point else X.dtype
        store = _plan_storage(n, m, want, _device_budget(dev, scratch_bytes(model, dev)))
        if store is not None:
            pattern = scratch(model, (m, n), store, dev)
    # bytes per pattern entry of each block's temporaries: Z unless it is written into the stored pattern, the
    # count input unless it is Z or the stored pattern, and the int8 transpose
    direct = pattern is not None and pattern.dtype == X.dtype
    temp = (0 if direct else X.element_size())
    if cin != X.dtype and not (pattern is not None and pattern.dtype == cin):
        temp += _itemsize(cin)
    if mode == "int8":
        temp += 1
    wide = cin == torch.float32 and m > EXACT_FLOAT32_COUNTS
    slices = unit_slices(model, n, chunk, dev, temp, cap=EXACT_FLOAT32_COUNTS if wide else None)
    pad = mode == "int8" and (n < INT8_PAD_BELOW_N or (cuda and (n % 8 or slices[0].stop % 8 or m % 8)))
    n_acc = max(INT8_PAD_BELOW_N, -(-n // 8) * 8) if pad else n
    acc_dtype = torch.int32 if mode == "int8" else (torch.float64 if wide else cin)
    acc = torch.zeros(n_acc, n_acc, dtype=acc_dtype, device=dev)
    blocks = _row_blocks(n) if mode != "int8" and not cuda else None
    XT = X.T
    for s in slices:
        if direct:
            Z = torch.matmul(W[s], XT, out=pattern[s]).gt_(0)       # 0/1, in place, in the stored pattern
        else:
            Z = (W[s] @ XT).gt_(0)
            if pattern is not None:
                pattern[s] = Z
                if pattern.dtype == cin:
                    Z = pattern[s]
        if mode == "int8":                       # exact int32 counts from int8 0/1 (AMX / VNNI, IMMA)
            if pad:
                c = s.stop - s.start
                B = torch.zeros(-(-c // 8) * 8, n_acc, dtype=torch.int8, device=dev)
                B[:c, :n] = Z
            else:
                B = Z.to(torch.int8)
            acc += torch._int_mm(B.T.contiguous(), B)
            continue
        Zc = Z if Z.dtype == cin else Z.to(cin)
        with _count_precision(mode, dev):
            _accumulate(acc, Zc, blocks)
    if blocks is not None:                       # mirror the strictly upper blocks
        for bi, (i0, i1) in enumerate(blocks):
            for j0, j1 in blocks[bi + 1:]:
                acc[j0:j1, i0:i1] = acc[i0:i1, j0:j1].T
    return pattern, (acc[:n, :n] if n_acc != n else acc)

def scratch_bytes(model, device) -> int:
    buf = model.__dict__.get("_pattern_scratch")
    return buf.numel() * buf.element_size() if buf is not None and buf.device == torch.device(device) else 0

def scratch(model, shape, dtype, device) -> torch.Tensor:
    """A buffer for the activation pattern, reused from call to call (a fresh m x n allocation costs a page
    fault per 4 KiB on first touch: 10 ms of a 50 ms step at n = 512, m = 16384). Not part of the state dict;
    every call overwrites it completely before reading it."""
    buf = model.__dict__.get("_pattern_scratch")
    if buf is None or buf.shape != shape or buf.dtype != dtype or buf.device != torch.device(device):
        model.__dict__["_pattern_scratch"] = None          # free the old one before allocating (CUDA memory)
        buf = torch.empty(shape, dtype=dtype, device=device)
        model.__dict__["_pattern_scratch"] = buf
    return buf

def vjp_from_pattern(model, pattern: torch.Tensor | None, X: torch.Tensor, v: torch.Tensor,
                      chunk: int | None) -> torch.Tensor:
    """:math:`J^\\top v` from the transposed pattern kept by :func:`pattern_and_gram` (recomputed block by block
    where it was not kept)."""
    return features_T_times(model, pattern, X, v[:, None] * X, chunk)

def features_T_times(model, pattern: torch.Tensor | None, X: torch.Tensor, M: torch.Tensor,
                      chunk: int | None) -> torch.Tensor:
    """:math:`S^\\top M = m^{-1/2} \\mathrm{diag}(a) S_{01}^\\top M` (m x d) for an n x d matrix M, from the
    pattern kept by :func:`pattern_and_counts` (recomputed block by block where it was not kept)."""
    if pattern is None:
        W, XT = model.W.detach(), X.T
        return vjp_blocks(model, X, M, chunk, lambda s: (W[s] @ XT).gt_(0), X.element_size())
    if pattern.dtype == X.dtype:
        return vjp_blocks(model, X, M, chunk, lambda s: pattern[s], 0)
    return vjp_blocks(model, X, M, chunk, lambda s: pattern[s].to(X.dtype), X.element_size())

def vjp_blocks(model, X: torch.Tensor, vX: torch.Tensor, chunk: int | None, rows, temp_bytes: int) -> torch.Tensor:
    """:math:`m^{-1/2} \\mathrm{diag}(a) S_{01}^\\top M` (m x d) for :math:`M` = ``vX`` (n x d; for
    :math:`J^\\top v`, :math:`M = \\mathrm{diag}(v) X`), block by block: ``rows(s)`` gives the 0/1 rows
    :math:`S_{01}^\\top[s]` (c x n, in X's dtype) of the hidden units in slice s, using ``temp_bytes`` per entry
    of temporaries. The product runs in the model's dtype under the caller's matmul settings (never TF32 by this
    library: z and X are not exact in TF32)."""
    D = torch.empty(model.m, model.d, dtype=X.dtype, device=X.device)
    scale = model.a / math.sqrt(model.m)
    for s in unit_slices(model, X.shape[0], chunk, X.device, temp_bytes):
        torch.matmul(rows(s), vX, out=D[s])
        D[s] *= scale[s, None]
    return D
