r"""The two-layer ReLU network of Zhang, Martens & Grosse (2019), eq. (8): :class:`~ngdlib.models.TwoLayerReLU` (its
equation, vectorisation and kink convention are in the class docstring).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import _two_layer_counts as _k
from .._checks import (check_data, check_device, check_dtype, check_finite_result, check_same_dtype_device,
                      check_tensor, check_vector)
from ..device import generator

__all__ = ["TwoLayerReLU", "MAX_DENSE_ENTRIES"]

#: Largest number of Jacobian entries (n * m * d) that :meth:`TwoLayerReLU.jacobian` will materialise.
MAX_DENSE_ENTRIES = 50_000_000


class TwoLayerReLU(nn.Module):
    r"""Two-layer ReLU network with fixed output signs, eq. (8) of the paper.

    .. math::
        f(W, a, x) = \frac{1}{\sqrt m} \sum_{r=1}^m a_r\, \mathrm{relu}(w_r^\top x),
        \qquad w_r \sim N(0, \nu^2 I_d),\quad a_r \sim \mathrm{unif}\{-1, +1\}.

    Only ``W`` (m x d) is trained; ``a`` is a fixed buffer. Parameters are vectorised row by row,
    :math:`w = [w_1; \dots; w_m] = \mathrm{W.reshape(-1)}`, so the Jacobian row of input :math:`x_i` is

    .. math::
        J_i = m^{-1/2} (a \odot \mathrm{relu}'(W x_i)) \otimes x_i ,

    and the Gram matrix factorises as :math:`G = J J^\top = (X X^\top) \odot (S S^\top)` with
    :math:`S_{ir} = a_r \mathrm{relu}'(w_r^\top x_i) / \sqrt m`.

    Convention for the kink: :math:`\mathrm{relu}'(0) = 0`, as in PyTorch's autograd. Definition 1 of the paper writes the
    indicator with :math:`\ge`; the two agree except on the set :math:`\{w_r^\top x_i = 0\}`, which has probability zero
    under the Gaussian initialisation and along any trajectory that starts from it generically.

    Args:
        d: input dimension.
        m: width (number of hidden units).
        nu: standard deviation of the first-layer weights, :math:`w_r \sim N(0, \nu^2 I)`.
        seed: seed of the CPU generator that draws ``W`` (first, in float64) and then ``a``; the same seed gives the
            same network on every device and, up to rounding, in every dtype.
        dtype: floating dtype of ``W`` and ``a`` (float64 for verification).
        device: where the parameters live (``None``: CPU).

    Attributes:
        W: ``nn.Parameter`` of shape (m, d), the trained first layer.
        a: buffer of shape (m,), entries +-1, fixed.
    """

    def __init__(self, d: int, m: int, nu: float = 1.0, seed: int = 0, dtype: torch.dtype = torch.float64,
                 device=None):
        super().__init__()
        if not (isinstance(d, int) and not isinstance(d, bool) and d >= 1
                and isinstance(m, int) and not isinstance(m, bool) and m >= 1):
            raise ValueError(f"TwoLayerReLU needs integers d >= 1 and m >= 1, got d = {d!r}, m = {m!r}")
        if not (isinstance(nu, (int, float)) and not isinstance(nu, bool) and math.isfinite(nu) and nu > 0):
            raise ValueError(f"nu (the init scale) must be a positive finite number, got {nu!r}")
        check_dtype(dtype)
        check_device(device)
        g = generator(seed)
        # drawn in float64 and rounded, so one seed gives the same network (up to rounding) in every dtype
        W = (torch.randn(m, d, generator=g, dtype=torch.float64) * nu).to(dtype)
        a = (2 * torch.randint(0, 2, (m,), generator=g) - 1).to(dtype)
        self.d, self.m, self.nu = d, m, float(nu)
        self.W = nn.Parameter(W.to(device) if device is not None else W)
        self.register_buffer("a", a.to(self.W.device))

    def extra_repr(self) -> str:
        """Width, input dimension, nu and dtype, for ``repr``."""
        return f"d={self.d}, m={self.m}, nu={self.nu}, dtype={self.W.dtype}, device={self.W.device}"

    # ------------------------------------------------------------------ checks
    def check_inputs(self, X: torch.Tensor) -> torch.Tensor:
        """Shape, finiteness, dtype and device of X against the model (no Assumption 1 check).

        Raises:
            ValueError: if X is not a finite float matrix with d columns (the model's input dimension), or its dtype
                or device differs from the model's.
        """
        check_data(X, self.d)
        if X.dtype != self.W.dtype:
            raise ValueError(f"X has dtype {X.dtype} but the model is {self.W.dtype}; convert one of them")
        if X.device != self.W.device:
            raise ValueError(f"X is on {X.device} but the model is on {self.W.device}")
        return X

    # ------------------------------------------------------------------ forward
    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Outputs u (n,) for inputs X (n x d)."""
        self.check_inputs(X)
        return check_finite_result("the network output u", torch.relu(X @ self.W.T) @ self.a / math.sqrt(self.m))

    # ------------------------------------------------------------------ structured Jacobian pieces
    def activation_pattern(self, X: torch.Tensor) -> torch.Tensor:
        """The 0/1 matrix :math:`\\mathbb{1}\\{w_r^\\top x_i > 0\\}` (n x m), in the model's dtype."""
        self.check_inputs(X)
        return (X @ self.W.detach().T > 0).to(self.W.dtype)

    def features(self, X: torch.Tensor) -> torch.Tensor:
        """:math:`S_{ir} = a_r \\mathrm{relu}'(w_r^\\top x_i) / \\sqrt m` (n x m), the K-FAC factor of eq. (12)."""
        return self.activation_pattern(X) * (self.a / math.sqrt(self.m))

    def gram(self, X: torch.Tensor, *, chunk: int | None = None, counts: str = "auto") -> torch.Tensor:
        """:math:`G = J J^\\top = (X X^\\top) \\odot (S S^\\top)` (n x n), without forming J.

        Uses :math:`S S^\\top = S_{01} S_{01}^\\top / m` (since :math:`a_r^2 = 1`). The counts
        :math:`S_{01} S_{01}^\\top` are integers and are computed exactly by the path ``counts`` names (:data:`~ngdlib.models.COUNTS`:
        int8 matrix units, float32, TF32 tensor cores, float64; ``"auto"`` picks int8 on a CPU that has int8 units and
        n >= :data:`~ngdlib.models.INT8_MIN_N`, float32 on other CPUs, TF32 on CUDA), over blocks of ``chunk`` hidden units (default:
        :data:`~ngdlib.models.CHUNK_ENTRIES` / n on a CPU, as many as fit in the device's memory on CUDA). Cost
        :math:`2 n m d + 2 n^2 m`. The result depends neither on ``chunk`` nor on ``counts``, bit for bit.
        """
        return check_finite_result("the Gram matrix G",
                                   _k.pattern_and_gram(self, X, chunk, keep_pattern=False, counts=counts)[1])

    def jvp(self, X: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
        """:math:`J\\,\\mathrm{vec}(D)` (n,) for a direction D shaped like W (m x d), without forming J.

        Raises:
            ValueError: if D is not a finite m x d matrix (the shape of W) or X is not a finite n x d matrix, each of
                the model's dtype and device, or :math:`J\\,\\mathrm{vec}(D)` overflows.
        """
        check_tensor("D", D, ndim=2)
        if D.shape != self.W.shape:
            raise ValueError(f"D must have the shape of W, {tuple(self.W.shape)}, got {tuple(D.shape)}")
        check_same_dtype_device("D", D, "the model", self.W)
        S = self.features(X)
        return check_finite_result("J vec(D)", ((X @ D.T) * S).sum(dim=1))

    def vjp(self, X: torch.Tensor, v: torch.Tensor, *, chunk: int | None = None) -> torch.Tensor:
        """:math:`J^\\top v` reshaped to m x d: :math:`m^{-1/2} \\mathrm{diag}(a) S_{01}^\\top \\mathrm{diag}(v) X`,
        over blocks of ``chunk`` hidden units. Cost :math:`4 n m d` flops."""
        self.check_inputs(X)
        check_vector("v", v, X.shape[0], "one entry per input")
        check_same_dtype_device("v", v, "X", X)
        W, XT = self.W.detach(), X.T
        return check_finite_result("J^T v", _k.vjp_blocks(self, X, v[:, None] * X, chunk,
                                                             lambda s: (W[s] @ XT).gt_(0), X.element_size()))

    def jacobian(self, X: torch.Tensor) -> torch.Tensor:
        """The dense n x (m d) Jacobian with row-stacked w (a reference for small sizes only).

        Raises:
            ValueError: if the Jacobian would have more than :data:`MAX_DENSE_ENTRIES` entries n m d (it is a
                reference: the fast paths never need it), or X is not a finite n x d matrix of the model's dtype and
                device.
        """
        n = X.shape[0] if isinstance(X, torch.Tensor) and X.ndim == 2 else 0
        if n * self.m * self.d > MAX_DENSE_ENTRIES:
            raise ValueError(
                f"the dense Jacobian would have n*m*d = {n * self.m * self.d:,} entries (> {MAX_DENSE_ENTRIES:,}); "
                "it is a reference for small sizes: use gram/jvp/vjp or the direction functions instead"
            )
        S = self.features(X)
        return (S[:, :, None] * X[:, None, :]).reshape(n, self.m * self.d)
