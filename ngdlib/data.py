r"""Every data set of the book: inputs that satisfy (or deliberately violate) Assumption 1, targets, and whitened
regression data.

- :func:`sphere`: points uniform on the unit sphere (Assumption 1 with probability one).
- :func:`sphere_teacher`: the sphere plus the smooth teacher :math:`y = \sin(2 u^\top x)` (Part II-a's chapters);
  :func:`teacher` gives the same targets for any inputs.
- :func:`forster`: Forster's transform to radial isotropic position (Remark 4).
- :func:`whitened_data`: whitened synthetic regression data for deep linear networks (Arora et al.).

Every draw is made in float64 on the CPU from an explicit seed (:func:`ngdlib.device.generator`), then rounded to
the requested dtype and moved, so a seed gives the same numbers on every device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._checks import check_data, check_device, check_dtype, check_int, check_number, check_positive, check_tensor
from ._linalg import check_full_column_rank
from .device import generator

__all__ = ["sphere", "sphere_teacher", "teacher", "shared_direction_sphere", "forster", "whitened_data",
           "WhitenedData"]


def sphere(n: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """``n`` points drawn i.i.d. uniformly from the unit sphere in R^d (rows of an n x d matrix).

    Normalised Gaussians, drawn in float64 on the CPU from ``seed``, then rounded to ``dtype`` and moved to ``device``. With probability one no two rows
    are parallel, so the result satisfies Assumption 1 (Zhang et al. 2019, Sec. 4.2).

    >>> X = sphere(5, 3, seed=0)
    >>> X.shape, bool(torch.allclose(X.norm(dim=1), torch.ones(5, dtype=torch.float64)))
    (torch.Size([5, 3]), True)

    Raises:
        ValueError: if n or d is not a positive int, dtype is not float32 / float64, the device is not available, or
            d = 1 with n > 1 (the only points are +-1: Assumption 1 fails).
    """
    check_int("n", n, 1)
    check_int("d", d, 1)
    check_dtype(dtype)
    check_device(device)
    if d == 1 and n > 1:
        raise ValueError("sphere with d = 1 has only the two points +-1, which are parallel (Assumption 1)")
    Z = torch.randn(n, d, generator=generator(seed), dtype=torch.float64)   # float64 draw: same points in any dtype
    Z = (Z / torch.linalg.vector_norm(Z, dim=1, keepdim=True)).to(dtype)
    return Z.to(device) if device is not None else Z


def sphere_teacher(n: int, d: int, seed: int = 0, *, n_test: int | None = None, frequency: float = 2.0,
                   dtype: torch.dtype = torch.float64, device=None):
    r"""Inputs on the unit sphere and the smooth teacher :math:`y = \sin(\omega\, u^\top x)`, :math:`u \sim N(0, I_d)`.

    The data set of the Karakida & Osawa chapters (Part II-a): training inputs ``sphere(n, d, seed)``, test inputs
    ``sphere(n_test, d, seed + 1)``, the teacher direction u drawn from ``seed + 2`` (three independent streams),
    :math:`\omega` = ``frequency`` (default 2). The teacher is a fixed smooth function of the input, so training and
    test targets come from the same distribution and the targets are O(1) for any d.

    Args:
        n: number of training inputs.
        d: input dimension (>= 2 for n >= 2: Assumption 1).
        seed: seed of the three streams (``seed``, ``seed + 1``, ``seed + 2``).
        n_test: number of test inputs (None: no test set).
        frequency: :math:`\omega > 0`.
        dtype: float32 or float64 (draws are made in float64 and rounded).
        device: device of the returned tensors (default CPU).

    Returns:
        ``(X, y)`` (n x d, length n), or ``(X, y, X_test, y_test)`` when ``n_test`` is given.

    Raises:
        ValueError: if n, d or n_test is not a positive int, ``frequency`` is not a positive finite number, or the
            dtype or device is not one ngdlib computes on (see :func:`sphere`).

    >>> X, y = sphere_teacher(4, 3, seed=0)
    >>> X.shape, y.shape, bool((y.abs() <= 1).all())
    (torch.Size([4, 3]), torch.Size([4]), True)
    """
    check_positive("frequency (of the teacher sin(frequency u^T x))", frequency)
    if n_test is not None:
        check_int("n_test", n_test, 1)
    X = sphere(n, d, seed=seed, dtype=dtype, device=device)
    if n_test is None:
        return X, teacher(X, seed, frequency)
    Xt = sphere(n_test, d, seed=seed + 1, dtype=dtype, device=device)
    return X, teacher(X, seed, frequency), Xt, teacher(Xt, seed, frequency)


def teacher(X: torch.Tensor, seed: int = 0, frequency: float = 2.0) -> torch.Tensor:
    r"""The smooth teacher of :func:`sphere_teacher` on any inputs: :math:`y_i = \sin(\omega\, u^\top x_i)`.

    The direction :math:`u \sim N(0, I_d)` is drawn in float64 on the CPU from ``seed + 2`` (so that the inputs'
    seed can be passed unchanged and the streams stay independent), then rounded to X's dtype and moved to its device.

    Args:
        X: n x d inputs (any norms; the sphere is not required).
        seed: the data set's seed; u comes from ``seed + 2``.
        frequency: :math:`\omega > 0`.

    Returns:
        The targets, length n, in X's dtype and on its device.

    Raises:
        ValueError: if X is not a finite float32/float64 matrix or ``frequency`` is not a positive finite number.
    """
    check_data(X)
    frequency = check_positive("frequency (of the teacher sin(frequency u^T x))", frequency)
    u = torch.randn(X.shape[1], generator=generator(seed + 2), dtype=torch.float64).to(dtype=X.dtype, device=X.device)
    return torch.sin(frequency * X @ u)


def shared_direction_sphere(n: int, d: int, share: float, seed: int = 0, *, frequency: float = 2.0,
                            dtype: torch.dtype = torch.float64, device=None):
    r"""Unit inputs that share one direction with weight ``share``, and the teacher :math:`y = \sin(\omega\, v^\top x)`.

    :math:`x_i \propto \sqrt{1 - s}\, z_i / \|z_i\| + \sqrt{s}\, u / \|u\|` (then normalised), with
    :math:`z_i, u, v \sim N(0, I_d)` drawn in that order, in float64 on the CPU, from one stream seeded ``seed``.
    The share s in [0, 1) tunes the conditioning of every Gram and kernel of the inputs: s = 0 gives ``sphere``-like
    independent inputs, s -> 1 makes them nearly parallel (the condition number of the NTK grows without bound).
    The data set of the K-GD chapter (gradient descent against kappa).

    Args:
        n: number of inputs.
        d: input dimension.
        share: the weight s of the shared direction, in [0, 1).
        seed: the seed of the one stream.
        frequency: :math:`\omega > 0`.
        dtype: float32 or float64 (draws are made in float64 and rounded).
        device: device of the returned tensors (default CPU).

    Returns:
        ``(X, y)``: n x d unit inputs and n targets.

    Raises:
        ValueError: if n or d is not a positive int, share is not in [0, 1), ``frequency`` is not a positive finite
            number, or the dtype or device is not one ngdlib computes on.

    >>> X, y = shared_direction_sphere(4, 3, 0.5, seed=0)
    >>> X.shape, bool(torch.allclose(X.norm(dim=1), torch.ones(4, dtype=torch.float64)))
    (torch.Size([4, 3]), True)
    """
    check_int("n", n, 1)
    check_int("d", d, 1)
    share = check_number("share (the weight of the shared direction)", share, low=0.0, high=1.0)
    if share == 1.0:
        raise ValueError("share must be < 1: with share = 1 every input is the shared direction (all parallel)")
    frequency = check_positive("frequency (of the teacher sin(frequency v^T x))", frequency)
    check_dtype(dtype)
    check_device(device)
    g = generator(seed)
    Z = torch.randn(n, d, generator=g, dtype=torch.float64)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    X = math.sqrt(1 - share) * Z / Z.norm(dim=1, keepdim=True) + math.sqrt(share) * u / u.norm()
    X = X / X.norm(dim=1, keepdim=True)
    y = torch.sin(frequency * X @ v)
    return X.to(dtype=dtype, device=device), y.to(dtype=dtype, device=device)


@dataclass
class WhitenedData:
    """Synthetic whitened regression data: X (n x d_in) with X^T X / n = I, Y (n x d_out), Phi = Y^T X / n, and the
    constant ``offset`` with data loss = 1/2 ||W - Phi||_F^2 + offset."""

    X: torch.Tensor
    Y: torch.Tensor
    Phi: torch.Tensor
    offset: float


def whitened_data(n: int, d_in: int, d_out: int, seed: int = 0, noise: float = 0.1, Phi_true=None,
                  dtype: torch.dtype = torch.float64, device=None) -> WhitenedData:
    """Whitened synthetic data generated from a seed (the paper's UCI data cannot be downloaded here).

    :math:`X = \\sqrt n\\, Q` with Q (n x d_in) the orthonormal factor of a Gaussian matrix, so :math:`X^\\top X / n
    = I` exactly (to round-off); :math:`Y = X \\Phi_{true}^\\top + \\text{noise} \\cdot N(0, I)` with
    :math:`\\Phi_{true}` Gaussian (entries N(0, 1/d_in)) unless given. The loss of the data is then
    :math:`\\tfrac12\\|W - \\Phi\\|_F^2` + offset with :math:`\\Phi = Y^\\top X / n` (module docstring).

    Raises:
        ValueError: if n, d_in, d_out are not positive ints, n < d_in (X^T X / n = I needs rank d_in), noise is
            negative, Phi_true is not d_out x d_in, or the dtype / device is not usable.
    """
    for name, v in (("n", n), ("d_in", d_in), ("d_out", d_out)):
        check_int(name, v, 1)
    if n < d_in:
        raise ValueError(f"whitening needs n >= d_in (X^T X / n = I has rank d_in), got n = {n} < d_in = {d_in}")
    noise = check_positive("noise", noise, allow_zero=True)
    check_dtype(dtype)
    check_device(device)
    g = generator(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, d_in, generator=g, dtype=torch.float64))
    X = math.sqrt(n) * Q
    if Phi_true is None:
        Phi_true = torch.randn(d_out, d_in, generator=g, dtype=torch.float64) / math.sqrt(d_in)
    else:
        check_tensor("Phi_true", Phi_true, ndim=2)
        if tuple(Phi_true.shape) != (d_out, d_in):
            raise ValueError(f"Phi_true must be d_out x d_in = {(d_out, d_in)}, got {tuple(Phi_true.shape)}")
        Phi_true = Phi_true.detach().to("cpu", torch.float64)
    Y = X @ Phi_true.T + noise * torch.randn(n, d_out, generator=g, dtype=torch.float64)
    Phi = Y.T @ X / n
    offset = float((Y ** 2).sum() / (2 * n) - (Phi ** 2).sum() / 2)
    mv = {"dtype": dtype, "device": device}
    return WhitenedData(X.to(**mv), Y.to(**mv), Phi.to(**mv), offset)


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

    Raises:
        ValueError: naming rank(X) = d or general position when X has rank < d or the iteration does not reach
            radial isotropic position within ``max_iter`` steps (some subspace holds too many inputs), or when tol,
            max_iter or callback is malformed.
    """
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
