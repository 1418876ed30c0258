r"""A multi-layer perceptron with two hidden ReLU layers in the NTK parameterisation and several outputs: the
network of Figure 1 of Zhang, Martens & Grosse (2019), trained by the matrix-free NGD of :mod:`ngdlib.matrix_free`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_data, check_same_dtype_device, is_transformed
from ..device import generator

__all__ = ["MLP"]


class MLP(nn.Module):
    r"""Multi-layer perceptron with two hidden ReLU layers of width ``width``, NTK parameterisation:

    .. math::
        h_1 = \mathrm{relu}\big(\sigma_w W_1 x / \sqrt{d_{in}} + b_1\big),\quad
        h_2 = \mathrm{relu}\big(\sigma_w W_2 h_1 / \sqrt{\mathrm{width}} + b_2\big),\quad
        u = W_3 h_2 / \sqrt{\mathrm{width}} + b_3,

    with all weight entries drawn i.i.d. N(0, 1) (in float64 on the CPU from ``seed``, then cast and moved) and
    biases initialised to 0. :math:`\sigma_w = \sqrt 2` keeps the activations O(1) at every width, so a narrow and a
    wide network start with outputs of the same size.

    Args:
        d_in, width, d_out: layer sizes.
        seed: seed of the CPU generator.
        sigma_w: weight multiplier of the hidden layers.
        dtype, device: of the parameters.
    """

    def __init__(self, d_in: int, width: int, d_out: int, seed: int = 0, sigma_w: float = math.sqrt(2.0),
                 dtype: torch.dtype = torch.float64, device=None):
        super().__init__()
        for name, v in (("d_in", d_in), ("width", width), ("d_out", d_out)):
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"MLP needs a positive integer {name}, got {v!r}")
        if not (isinstance(sigma_w, (int, float)) and math.isfinite(sigma_w) and sigma_w > 0):
            raise ValueError(f"sigma_w must be a positive finite number, got {sigma_w!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        g = generator(seed)

        def draw(*shape):
            t = torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)
            return nn.Parameter(t.to(device) if device is not None else t)

        def zeros(k):
            return nn.Parameter(torch.zeros(k, dtype=dtype, device=device))

        self.d_in, self.width, self.d_out, self.sigma_w = d_in, width, d_out, float(sigma_w)
        self.W1, self.b1 = draw(width, d_in), zeros(width)
        self.W2, self.b2 = draw(width, width), zeros(width)
        self.W3, self.b3 = draw(d_out, width), zeros(d_out)

    def extra_repr(self) -> str:
        """Sizes and parameter count, for ``repr``."""
        return f"d_in={self.d_in}, width={self.width}, d_out={self.d_out}, params={self.num_params()}"

    def num_params(self) -> int:
        """Number of trained parameters, :math:`w d_{in} + w^2 + w d_{out} + 2w + d_{out}`."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Outputs (n x d_out) for inputs X (n x d_in).

        Raises:
            ValueError: if X is not a finite n x d_in float tensor of the parameters' dtype and device.
        """
        if not is_transformed(X):
            check_data(X, self.d_in)
            check_same_dtype_device("X", X, "the parameters", self.W1)
        h = torch.relu(self.sigma_w * X @ self.W1.T / math.sqrt(self.d_in) + self.b1)
        h = torch.relu(self.sigma_w * h @ self.W2.T / math.sqrt(self.width) + self.b2)
        return h @ self.W3.T / math.sqrt(self.width) + self.b3
