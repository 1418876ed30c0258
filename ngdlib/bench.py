"""Side-by-side timings of the NGD step for the two-layer ReLU network: ``python -m ngdlib.bench``.

For each size (n, m, d) and dtype it times the direction :math:`J^\\top G^{-1} r` computed by

- ``ngdlib``: the structured hot path (:func:`ngdlib.curvature.ngd_direction` with ``counts="auto"``): exact integer
  activation counts (int8 matrix units on a CPU that has them, else float32; TF32 tensor cores on CUDA), blocked over
  the width (cache-sized blocks on a CPU, memory-sized on CUDA), never forming J;
- ``ngdlib-f32``, ``ngdlib-tf32``, ``ngdlib-int8``: the same with ``counts="float32"`` (IEEE float32, symmetric blocks
  on a CPU), ``"tf32"`` or ``"int8"`` named explicitly, to show what each exact count path achieves (the CUDA run
  times all three, so that the fastest exact one can be measured rather than guessed);
- ``dense``: the naive path, the n x (m d) Jacobian by ``torch.func.jacrev``, then G = J J^T, a Cholesky solve and
  J^T z;
- ``cg``: matrix-free output-space conjugate gradient on (J J^T) z = r with ``torch.func`` jvp/vjp, then J^T z;
- ``curvlinops``: curvlinops' ``GGNLinearOperator`` (``MSELoss(reduction='mean')``, so GGN = 2F) inverted by its
  ``CGInverseLinearOperator`` (GPyTorch's ``linear_cg``) in the md-dimensional parameter space, applied to the mean
  loss's gradient 2 J^T r / n: the minimum-norm solution is F^+ grad L = J^T G^{-1} r, ngdlib's direction. It runs
  where curvlinops imports: in the oracle environment (``make venv-oracles``; run ``.venv-oracles/bin/python -m
  ngdlib.bench``), not in the book's .venv, which does not carry it (see the chapter "The cost of natural gradient").

It reports the median time over repeats, the ratio of each peer's time to ngdlib's, the peak extra memory (CUDA:
the allocator's peak; CPU: resident memory sampled every 0.5 ms, with glibc's malloc told to return blocks of 32 MiB
and more to the system at once so that the sampling sees them), the relative difference of each peer's direction from ngdlib's,
and two throughput figures for ngdlib. *Effective*: the flops of the float algorithm (:math:`2n^2m` for the counts,
:math:`4nmd` for :math:`XW^\\top` and :math:`J^\\top z`, :math:`2n^2d` for :math:`XX^\\top`) per second, as a
fraction of this machine's measured float32 (or float64) matrix-multiply peak; it can exceed 1 when the counts run on
int8 units. *Utilisation*: the time the operations actually performed would take at the measured peak of the unit
each runs on (int8 or float), over the measured time. The :math:`O(n^3)` solve is counted as overhead in both.
Timings on a shared machine are noisy: the tests assert the correctness columns, never the speed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import threading
import time
import warnings

import torch

from .curvature import ngd_direction
from .data import sphere
from .models import TwoLayerReLU

__all__ = ["run", "matmul_peak", "ngd_flops", "curvlinops_direction", "METHODS", "QUICK_SIZES", "FULL_SIZES",
           "CUDA_SIZES"]

METHODS = ("ngdlib", "ngdlib-f32", "dense", "cg", "curvlinops")

#: The default methods on CUDA: every exact count path of ngdlib is timed there.
CUDA_METHODS = ("ngdlib", "ngdlib-f32", "ngdlib-int8", "dense", "cg", "curvlinops")

#: The ``counts`` argument behind each ngdlib row (:data:`ngdlib.models.COUNTS`).
NGDLIB_COUNTS = {"ngdlib": "auto", "ngdlib-f32": "float32", "ngdlib-tf32": "tf32", "ngdlib-int8": "int8"}

#: (n, m, d, dtype) of the --quick run (part of `make test`: well under a minute).
QUICK_SIZES = [(64, 1024, 16, "float64"), (128, 2048, 32, "float32"), (128, 2048, 32, "float64")]

#: The default grid: the issue's three goal sizes, then scans in n and in m for the chapter's log-log figures.
FULL_SIZES = (
    [(256, 4096, 64, "float64"), (512, 16384, 128, "float32"), (1024, 65536, 128, "float32")]
    + [(n, 8192, 64, "float32") for n in (64, 128, 256, 512, 1024)]
    + [(256, m, 64, "float32") for m in (1024, 2048, 4096, 8192, 16384, 32768, 65536)]
)

#: On CUDA: the CPU grid, then the sizes of issue 14's targets (the paper's width 2**20).
CUDA_SIZES = FULL_SIZES + [(2048, 65536, 128, "float32"), (1024, 2**20, 128, "float32"),
                           (4096, 2**20, 128, "float32")]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ---------------------------------------------------------------------------------------------------- measurement
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _PeakRSS:
    """Peak resident memory above the level at entry, sampled every 0.5 ms (CPU), or the CUDA allocator's peak."""

    def __init__(self, device):
        self.device, self.peak = device, 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        self.base = self._rss()
        self.high = self.base
        self.stop = False

        def sample():
            while not self.stop:
                self.high = max(self.high, self._rss())
                time.sleep(0.0005)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            self.stop = True
            self.thread.join()
            self.peak = max(self.high, self._rss()) - self.base
        return False


def matmul_peak(dtype: torch.dtype, device, size: int = 2048, repeats: int = 5, tf32: bool = False) -> float:
    """This machine's matrix-multiply throughput in flop/s: median of ``repeats`` square products of ``size``
    (float32 on CUDA: IEEE float32 unless ``tf32``, then TF32 tensor cores)."""
    device = torch.device(device)
    if device.type == "cuda" and dtype == torch.float32:
        from .models._two_layer_counts import _cuda_tf32

        with _cuda_tf32(tf32):
            return _matmul_peak(dtype, device, size, repeats)
    return _matmul_peak(dtype, device, size, repeats)


def _matmul_peak(dtype, device, size, repeats):
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t)
    return 2 * size**3 / statistics.median(times)


def int8_peak(device, size: int = 2048, repeats: int = 5) -> float | None:
    """Throughput of ``torch._int_mm`` (int8 x int8 -> int32) in ops/s, or None where it is not available."""
    from .models._two_layer_counts import _int8_counts

    device = torch.device(device)
    if not _int8_counts(device):
        return None
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 2, (size, size), generator=g, dtype=torch.int8).to(device)
    b = a.T.contiguous()
    torch._int_mm(a, b)
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        torch._int_mm(a, b)
        _sync(device)
        times.append(time.perf_counter() - t)
    return 2 * size**3 / statistics.median(times)


def ngd_flops(n: int, m: int, d: int) -> dict:
    """Analytic flops of the float NGD algorithm: the counts (2 n^2 m) and the products in the model's dtype."""
    return {"counts": 2 * n * n * m, "model_dtype": 4 * n * m * d + 2 * n * n * d}


def performed_counts_ops(n: int, m: int, int8: bool, device="cpu") -> float:
    """Operations the count product actually performs: full n x n with int8 and on CUDA, the 10 upper blocks of a
    4 x 4 grid with float counts on a CPU for n >= SYMMETRIC_MIN_N, the full product otherwise."""
    from .models import _two_layer_counts as kern

    if int8 or torch.device(device).type == "cuda" or n < kern.SYMMETRIC_MIN_N:
        return 2.0 * n * n * m
    blocks = kern._row_blocks(n)
    return 2.0 * m * sum((i1 - i0) * (j1 - j0) for k, (i0, i1) in enumerate(blocks) for j0, j1 in blocks[k:])


# ---------------------------------------------------------------------------------------------------- the methods
def _f(model, X):
    """The network as a plain function of W (eq. 8), as a user of autodiff would write it: no input checks, so that
    torch.func.linearize can trace it."""
    a, scale = model.a, 1 / math.sqrt(model.m)
    return lambda W: torch.relu(X @ W.T) @ a * scale


def dense_direction(model, X, r):
    """The naive path: materialise J (n x md) with torch.func.jacrev, solve with G = J J^T, multiply by J^T."""
    J = torch.func.jacrev(_f(model, X))(model.W.detach()).reshape(X.shape[0], -1)
    L = torch.linalg.cholesky(J @ J.T)
    z = torch.cholesky_solve(r[:, None], L)[:, 0]
    return (J.T @ z).reshape(model.W.shape)


def cg_direction(model, X, r, tol: float | None = None, max_iter: int = 5000):
    """Matrix-free output-space CG on (J J^T) z = r with torch.func jvp/vjp (never forming J); returns (J^T z, iters)."""
    tol = (1e-10 if X.dtype == torch.float64 else 1e-5) if tol is None else tol
    W = model.W.detach()
    f = _f(model, X)
    with warnings.catch_warnings():   # torch.fx's tracing warns (constant folding, torch.jit deprecation): harmless
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        _, jvp_fn = torch.func.linearize(f, W)
    _, vjp_fn = torch.func.vjp(f, W)

    def matvec(v):
        return jvp_fn(vjp_fn(v)[0])

    z = torch.zeros_like(r)
    res = r.clone()
    p = res.clone()
    rs = res @ res
    target = tol**2 * rs
    it = 0
    while it < max_iter and rs > target:
        Ap = matvec(p)
        alpha = rs / (p @ Ap)
        z = z + alpha * p
        res = res - alpha * Ap
        rs_new = res @ res
        p = res + (rs_new / rs) * p
        rs = rs_new
        it += 1
    return vjp_fn(z)[0], it


def _curvlinops_status() -> str | None:
    try:
        import curvlinops  # noqa: F401
    except Exception as err:  # ImportError, or a broken dependency
        return (f"not available in this environment ({type(err).__name__}: {err}); it is installed in the oracle "
                "environment: make venv-oracles, then .venv-oracles/bin/python -m ngdlib.bench")
    return None


def curvlinops_direction(model, X, r, tol: float | None = None, max_iter: int = 5000):
    """curvlinops' GGN + CG in parameter space: ``CGInverseLinearOperator(GGNLinearOperator) @ grad``.

    The network is mirrored as ``nn.Linear(d, m) -> relu -> nn.Linear(m, 1)`` holding the model's W and the fixed
    a / sqrt(m) (not a parameter), the loss is ``MSELoss(reduction='mean')`` against y = u - r, so the GGN is
    2 J^T J / n = 2F and the gradient (by autograd) is 2 J^T r / n; CG from zero on this consistent singular system
    stays in range(F) and returns F^+ grad L = J^T G^{-1} r, shaped m x d. Stopping: relative residual ``tol``
    (1e-10 in float64, 1e-5 in float32, as ``cg``).
    """
    from torch import nn
    from curvlinops import CGInverseLinearOperator, GGNLinearOperator

    tol = (1e-10 if X.dtype == torch.float64 else 1e-5) if tol is None else tol
    first = nn.Linear(model.d, model.m, bias=False, dtype=X.dtype, device=X.device)
    out = nn.Linear(model.m, 1, bias=False, dtype=X.dtype, device=X.device)
    with torch.no_grad():
        first.weight.copy_(model.W)
        out.weight.copy_(model.a[None, :] / math.sqrt(model.m))
    out.weight.requires_grad_(False)
    net = nn.Sequential(first, nn.ReLU(), out)
    y = (model(X) - r).detach()[:, None]
    loss_fn = nn.MSELoss(reduction="mean")
    (grad,) = torch.autograd.grad(loss_fn(net(X), y), [first.weight])
    ggn = GGNLinearOperator(net, loss_fn, [first.weight], [(X, y)], check_deterministic=False)
    inv = CGInverseLinearOperator(ggn, tolerance=tol, max_iter=max_iter, eps=1e-300 if X.dtype == torch.float64
                                  else 1e-30, stop_updating_after=0.0)
    return (inv @ grad.reshape(-1)).reshape(model.m, model.d)


# ---------------------------------------------------------------------------------------------------- the run
def _time(fn, device, repeats):
    fn()  # warm-up (allocator, kernels)
    times, out = [], None
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _dense_bytes(n, m, d, dtype) -> int:
    """Memory of the dense path: J (n x md) twice (jacrev's result and the reshaped copy), plus jacrev's vmapped
    cotangents of the pre-activations, n x (n x m) (measured: 32 GiB at n = 1024, m = 8192 in float32)."""
    return (2 * n * m * d + n * n * m) * (torch.finfo(dtype).bits // 8)


def _fits(n, m, d, dtype, device, methods_budget_bytes):
    return {"dense": _dense_bytes(n, m, d, dtype) <= methods_budget_bytes}


def _malloc_returns_large_blocks():
    """glibc raises its mmap threshold after large frees, after which freed memory stays resident and the RSS
    sampling misses later peaks. Fixing the threshold at 32 MiB (mallopt M_MMAP_THRESHOLD) keeps every block of
    32 MiB or more on mmap, returned at once when freed, so the sampling sees the large allocations that matter; the
    smaller ones are reused from the heap as usual (a lower threshold would make every chunk-sized temporary fault
    its pages in again, slowing the very code being timed)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 32 << 20)
    except (OSError, AttributeError):
        pass


def _memory_budget(device) -> int:
    if device.type == "cuda":
        return int(0.6 * torch.cuda.get_device_properties(device).total_memory)
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(0.5 * int(info["MemAvailable"].split()[0]) * 1024)


def run(sizes=None, quick: bool = False, device=None, repeats: int | None = None, methods=None, seed: int = 0,
        verbose: bool = True, cg_max_seconds: float = 120.0) -> dict:
    """Run the benchmark and return a JSON-serialisable dict (machine: device, versions, peaks, date and wall time of
    the run; one row per size and method). Default sizes: :data:`QUICK_SIZES` with ``quick``, else
    :data:`FULL_SIZES` on a CPU and :data:`CUDA_SIZES` on CUDA; default methods :data:`METHODS` on a CPU and
    :data:`CUDA_METHODS` on CUDA."""
    from .models import resolve_counts

    started = time.time()
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    sizes = (QUICK_SIZES if quick else (CUDA_SIZES if cuda else FULL_SIZES)) if sizes is None else sizes
    methods = (CUDA_METHODS if cuda else METHODS) if methods is None else tuple(methods)
    repeats = (2 if quick else 3) if repeats is None else repeats
    _malloc_returns_large_blocks()
    psize = 1024 if quick else (8192 if cuda else 2048)
    peaks = {name: matmul_peak(DTYPES[name], device, size=psize) for name in ("float32", "float64")}
    peaks["tf32"] = matmul_peak(torch.float32, device, size=psize, tf32=True) if cuda else None
    peaks["int8"] = int8_peak(device, size=psize)
    budget = _memory_budget(device)
    cl_status = _curvlinops_status()
    rows = []
    for n, m, d, dtname in sizes:
        dtype = DTYPES[dtname]
        X = sphere(n, d, seed=seed, dtype=dtype, device=device)
        model = TwoLayerReLU(d, m, seed=seed + 1, dtype=dtype, device=device)
        r = torch.randn(n, generator=torch.Generator().manual_seed(seed + 2), dtype=dtype).to(device)
        fits = _fits(n, m, d, dtype, device, budget)
        ref = None
        base = {"n": n, "m": m, "d": d, "dtype": dtname, "device": str(device)}
        for method in methods:
            row = dict(base, method=method)
            if method == "dense" and not fits["dense"]:
                need = _dense_bytes(n, m, d, dtype) / 2**30
                row.update(status=f"out of memory (needs about {need:.1f} GiB: J and jacrev's intermediates)")
                rows.append(row)
                continue
            if method == "curvlinops" and cl_status:
                row.update(status=cl_status)       # runs in the oracle environment only (see _curvlinops_status)
                rows.append(row)
                continue
            if method in ("cg", "curvlinops"):
                # CG needs ~sqrt(cond) iterations of ~8nmd flops: skip where one solve would exceed the time cap
                est = 8 * n * m * d * 60 / peaks[dtname] * 5
                if est > cg_max_seconds:
                    row.update(status=f"skipped (estimated {est:.0f} s > cap {cg_max_seconds:.0f} s)")
                    rows.append(row)
                    continue
            if method in NGDLIB_COUNTS:
                try:
                    mode = resolve_counts(NGDLIB_COUNTS[method], device, n)
                except ValueError as err:
                    row.update(status=f"not available on {device}: {err}")
                    rows.append(row)
                    continue
                def fn(c=NGDLIB_COUNTS[method]):
                    return ngd_direction(model, X, r, check_assumption1=False, counts=c)
            else:
                fn = {"dense": lambda: dense_direction(model, X, r), "cg": lambda: cg_direction(model, X, r),
                      "curvlinops": lambda: curvlinops_direction(model, X, r)}[method]
            try:
                with _PeakRSS(device) as mem:
                    fn()
                t, out = _time(fn, device, repeats)
            except (RuntimeError, MemoryError) as err:
                row.update(status=f"failed: {type(err).__name__}: {str(err)[:120]}")
                rows.append(row)
                continue
            iters = None
            if isinstance(out, tuple):
                out, iters = out
            if method in NGDLIB_COUNTS:
                int8 = mode == "int8"
                fl = ngd_flops(n, m, d)
                count_peak = peaks["int8"] if int8 else (peaks["tf32"] if mode == "tf32" and cuda else peaks["float32"])
                ideal = performed_counts_ops(n, m, int8, device) / count_peak + fl["model_dtype"] / peaks[dtname]
                effective = (fl["counts"] / peaks["float32"] + fl["model_dtype"] / peaks[dtname]) / t
                row.update(flops=fl["counts"] + fl["model_dtype"], throughput_fraction=effective,
                           utilisation=ideal / t, int8_counts=int8, counts=mode)
                if method == "ngdlib":
                    ref = out
            rel = None if ref is None else float(torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref))
            row.update(status="ok", seconds=t, peak_extra_bytes=int(mem.peak), rel_diff_to_ngdlib=rel,
                       cg_iterations=iters)
            rows.append(row)
        ng = next((x for x in rows if x["method"] == "ngdlib" and all(x[k] == base[k] for k in base)), None)
        for x in rows:
            if all(x[k] == base[k] for k in base) and x.get("status") == "ok" and ng and ng.get("status") == "ok":
                x["ratio_to_ngdlib"] = x["seconds"] / ng["seconds"]
        if verbose:
            print(_format([x for x in rows if all(x[k] == base[k] for k in base)]), flush=True)
    return {
        "machine": {
            "platform": platform.platform(), "processor": _cpu_name(), "threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": str(device), "gpu": torch.cuda.get_device_name(device) if cuda else None,
            "matmul_peak_flops": peaks,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
            "wall_seconds": round(time.time() - started, 1),
        },
        "rows": rows,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _format(rows) -> str:
    lines = []
    for x in rows:
        head = f"(n={x['n']}, m={x['m']}, d={x['d']}, {x['dtype']}) {x['method']:>10}: "
        if x.get("status") != "ok":
            lines.append(head + x.get("status", ""))
            continue
        extra = ""
        if x.get("throughput_fraction") is not None:
            extra += (f", effective {100 * x['throughput_fraction']:.0f}% of the float matmul peak, "
                      f"utilisation {100 * x['utilisation']:.0f}% ({x.get('counts') or ('int8' if x.get('int8_counts') else 'float')} counts)")
        if x.get("ratio_to_ngdlib") is not None and x["method"] != "ngdlib":
            extra += f", {x['ratio_to_ngdlib']:.1f}x ngdlib's time"
        if x.get("rel_diff_to_ngdlib") is not None and x["method"] != "ngdlib":
            extra += f", rel. diff {x['rel_diff_to_ngdlib']:.1e}"
        if x.get("cg_iterations"):
            extra += f", {x['cg_iterations']} CG iterations"
        lines.append(head + f"{1e3 * x['seconds']:9.2f} ms, peak extra {x['peak_extra_bytes'] / 2**20:8.1f} MiB" + extra)
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m ngdlib.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small grid that runs in well under a minute")
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--size", action="append", default=[], metavar="N,M,D,DTYPE",
                    help="a size to run instead of the default grid (repeatable), e.g. 1024,65536,128,float32")
    ap.add_argument("--methods", default=None, help=f"comma-separated, from {', '.join(METHODS + ('ngdlib-tf32', 'ngdlib-int8'))} "
                    "(default: the first five on a CPU; on CUDA also ngdlib-int8)")
    args = ap.parse_args(argv)
    sizes = None
    if args.size:
        sizes = []
        for s in args.size:
            n, m, d, dt = s.split(",")
            sizes.append((int(n), int(m), int(d), dt))
    res = run(sizes=sizes, quick=args.quick, device=args.device, repeats=args.repeats,
              methods=tuple(args.methods.split(",")) if args.methods else None)
    mc = res["machine"]
    print(f"machine: {mc['processor']}, {mc['threads']} threads, torch {mc['torch']}, device {mc['device']}; "
          f"matmul peak {mc['matmul_peak_flops']['float32'] / 1e9:.0f} GFLOP/s (float32), "
          f"{mc['matmul_peak_flops']['float64'] / 1e9:.0f} GFLOP/s (float64)"
          + (f", tf32 {mc['matmul_peak_flops']['tf32'] / 1e9:.0f} GFLOP/s" if mc["matmul_peak_flops"].get("tf32") else "")
          + (f", int8 {mc['matmul_peak_flops']['int8'] / 1e9:.0f} Gop/s" if mc["matmul_peak_flops"].get("int8") else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
