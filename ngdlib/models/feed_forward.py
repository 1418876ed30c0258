r"""Chatterjee's (2022) feedforward network :class:`~ngdlib.models.FeedForward` (equation in the class docstring)."""
from __future__ import annotations

import math

import torch

from .._checks import (check_device, check_dtype, check_finite_result, check_positive, check_same_dtype_device,
                       check_tensor, check_vector)
from ..device import generator

__all__ = ["FeedForward", "FEEDFORWARD_ACTIVATIONS"]

#: Smooth, strictly increasing activations accepted by :class:`FeedForward`.
FEEDFORWARD_ACTIVATIONS = {
    "tanh": torch.tanh,
    "softplus": torch.nn.functional.softplus,
    "sigmoid": torch.sigmoid,
}


class FeedForward:
    r"""Bias-free feedforward network of Chatterjee (2022), as a function of a flat parameter vector
    :math:`\theta = (W_1, \dots, W_L, a)`:

    .. math::
        h_0 = x,\quad z_l = W_l h_{l-1},\quad h_l = \sigma(z_l)\ (l = 1..L),\quad u(x) = \lambda\, a^\top h_L,

    with :math:`W_1 \in \mathbb R^{m_1 \times d}`, :math:`W_l \in \mathbb R^{m_l \times m_{l-1}}`, :math:`a \in \mathbb
    R^{m_L}`, a smooth strictly increasing activation :math:`\sigma` (tanh, softplus or sigmoid) and a fixed (untrained)
    output scale :math:`\lambda > 0`. The trained parameters :math:`\theta = (W_1, \dots, W_L, a)` are flattened in that
    order, each matrix row-major. The loss is the mean squared error :math:`f(\theta) = \frac1n \sum_i (u(x_i) - y_i)^2`
    (no factor 1/2; normalised by n). The network is a function of the flat vector theta (not an ``nn.Module``), so that
    gradient descent and the criterion of :mod:`ngdlib.chatterjee` act on one vector.

    Reference: S. Chatterjee, *Convergence of gradient descent for deep neural networks*, 2022.

    Args:
        d: input dimension.
        widths: hidden widths (m_1, ..., m_L), L >= 1.
        activation: ``"tanh"``, ``"softplus"`` or ``"sigmoid"`` (smooth and strictly increasing; ReLU is refused).
        scale: the fixed output scale :math:`\lambda > 0`.
    """

    def __init__(self, d: int, widths, activation: str = "tanh", scale: float = 1.0):
        try:
            widths = list(widths)
        except TypeError:
            pass   # refused just below
        if (not (isinstance(d, int) and not isinstance(d, bool) and d >= 1) or not isinstance(widths, list)
                or not widths or not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in widths)):
            raise ValueError(f"FeedForward needs an int d >= 1 and hidden widths (m_1, ..., m_L) of positive ints, "
                             f"got d = {d!r}, widths = {widths!r}")
        if activation not in FEEDFORWARD_ACTIVATIONS:
            raise ValueError("activation must be smooth and strictly increasing, one of "
                             f"{sorted(FEEDFORWARD_ACTIVATIONS)}; got {activation!r}")
        self.d, self.widths, self.activation = d, widths, activation
        self.sigma = FEEDFORWARD_ACTIVATIONS[activation]
        self.scale = check_positive("scale (the output scale lambda)", scale)
        dims = [d] + widths
        self.shapes = [(dims[l + 1], dims[l]) for l in range(len(widths))] + [(widths[-1],)]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.num_params = sum(self.sizes)

    @property
    def depth(self) -> int:
        """L, the number of hidden layers."""
        return len(self.widths)

    # ---- parameters ----
    def unflatten(self, theta: torch.Tensor) -> list:
        """The list ``[W_1, ..., W_L, a]`` (views of ``theta``)."""
        check_vector("theta", theta, self.num_params, "the flat parameters (W_1, ..., W_L, a)")
        out, k = [], 0
        for shp, sz in zip(self.shapes, self.sizes):
            out.append(theta[k:k + sz].reshape(shp))
            k += sz
        return out

    def flatten(self, params) -> torch.Tensor:
        """Inverse of :meth:`unflatten`.

        Raises:
            ValueError: if params are not finite float tensors of the shapes ``self.shapes`` ([W_1, ..., W_L, a])
                with one dtype and device.
        """
        params = list(params)
        for i, p in enumerate(params):
            check_tensor(f"params[{i}]", p)
        if len(params) != len(self.shapes) or any(tuple(p.shape) != s for p, s in zip(params, self.shapes)):
            raise ValueError(f"params must have shapes {self.shapes}, got {[tuple(p.shape) for p in params]}")
        for i, p in enumerate(params[1:], start=1):
            check_same_dtype_device(f"params[{i}]", p, "params[0]", params[0])
        return torch.cat([p.reshape(-1) for p in params])

    def positive_init(self, seed: int = 0, a_norm: float = 1.0, hidden_low: float = 0.5, hidden_high: float = 1.5,
                      dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
        """Chatterjee's kind of start: :math:`W_1 = 0`; hidden weights :math:`W_l` (l >= 2) with i.i.d. entries
        uniform on [hidden_low, hidden_high] divided by :math:`\\sqrt{m_{l-1}}` (positive); output weights
        :math:`a = a_{norm} \\mathbf 1 / \\sqrt{m_L}` (positive, norm ``a_norm``). Large outputs come from ``scale``.

        Raises:
            ValueError: if a_norm is not a positive finite number, hidden_low or hidden_high is negative or not
                finite, hidden_low > hidden_high, dtype is not float32 / float64, or device is not available here.
        """
        a_norm = check_positive("a_norm (the norm of the output weights)", a_norm)
        hidden_low = check_positive("hidden_low (the smallest hidden weight, times sqrt(m))", hidden_low, allow_zero=True)
        hidden_high = check_positive("hidden_high (the largest hidden weight, times sqrt(m))", hidden_high, allow_zero=True)
        if hidden_low > hidden_high:
            raise ValueError(f"hidden_low = {hidden_low} must be <= hidden_high = {hidden_high}")
        check_dtype(dtype)
        check_device(device)
        g = generator(seed)
        params = [torch.zeros(self.shapes[0], dtype=torch.float64)]
        for shp in self.shapes[1:-1]:
            U = hidden_low + (hidden_high - hidden_low) * torch.rand(shp, generator=g, dtype=torch.float64)
            params.append(U / math.sqrt(shp[1]))
        m = self.widths[-1]
        params.append(torch.full((m,), a_norm / math.sqrt(m), dtype=torch.float64))
        return self.flatten(params).to(dtype=dtype, device=device)

    # ---- the function ----
    def _check_X(self, X, theta=None):
        check_tensor("X", X, ndim=2)
        if X.shape[1] != self.d:
            raise ValueError(f"X must be n x d with d = {self.d}, got {tuple(X.shape)}")
        if theta is not None:
            check_same_dtype_device("X", X, "theta", theta)

    def _check_y(self, y, X):
        check_vector("y", y, X.shape[0], "one target per input")
        check_same_dtype_device("y", y, "X", X)

    def forward(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Outputs :math:`u(x_i)` for the rows of X (length n)."""
        p = self.unflatten(theta)
        self._check_X(X, theta)
        h = X
        for W in p[:-1]:
            h = self.sigma(h @ W.T)
        return check_finite_result("the network output u", self.scale * (h @ p[-1]))

    def loss(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """:math:`f(\\theta) = \\frac1n \\sum_i (u(x_i) - y_i)^2` (a scalar tensor)."""
        self._check_X(X)
        self._check_y(y, X)
        return ((self.forward(theta, X) - y) ** 2).mean()

    def loss_fn(self, X: torch.Tensor, y: torch.Tensor):
        """The loss as a callable of theta alone (for :func:`grad_ratio` and :func:`gradient_descent`)."""
        self._check_X(X)
        self._check_y(y, X)
        return lambda theta: self.loss(theta, X, y)

    # ---- the first layer at zero ----
    def _require_w1_zero(self, theta):
        W1 = self.unflatten(theta)[0]
        if bool((W1 != 0).any()):
            raise ValueError("the identity J_1 J_1^T = |v|^2 X X^T needs the first-layer weights W_1 = 0 "
                             f"(max |W_1| = {float(W1.abs().max()):.3e})")

    def first_layer_backprop(self, theta: torch.Tensor) -> torch.Tensor:
        """The vector :math:`v = \\partial u / \\partial z_1` at :math:`W_1 = 0`, the same for every input.

        With :math:`W_1 = 0` every input has :math:`z_1 = 0`, hence the same hidden representations
        :math:`h_l`; backpropagation gives :math:`e_L = \\lambda\\, a \\odot \\sigma'(z_L)`,
        :math:`e_l = \\sigma'(z_l) \\odot W_{l+1}^\\top e_{l+1}` and :math:`v = e_1` (length m_1).
        """
        self._require_w1_zero(theta)
        p = self.unflatten(theta)
        z = torch.zeros(self.widths[0], dtype=theta.dtype, device=theta.device)
        zs = [z]
        for W in p[1:-1]:
            z = W @ self.sigma(z)
            zs.append(z)
        dsig = [self._dsigma(z) for z in zs]
        e = self.scale * p[-1] * dsig[-1]
        for l in range(self.depth - 1, 0, -1):
            e = dsig[l - 1] * (p[l].T @ e)
        return check_finite_result("the backpropagated vector v", e)

    def _dsigma(self, z):
        if self.activation == "tanh":
            return 1 - torch.tanh(z) ** 2
        if self.activation == "sigmoid":
            s = torch.sigmoid(z)
            return s * (1 - s)
        return torch.sigmoid(z)  # softplus' = sigmoid

    def kernel_at_zero(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """:math:`J_1 J_1^\\top = |v|^2 X X^\\top` (n x n) at :math:`W_1 = 0`, without forming :math:`J_1`.

        :math:`J_1` (n x m_1 d) is the Jacobian of the outputs with respect to :math:`W_1`; its row i is
        :math:`\\mathrm{vec}(v x_i^\\top)`, so :math:`(J_1 J_1^\\top)_{ij} = |v|^2 x_i^\\top x_j`.
        """
        v = self.first_layer_backprop(theta)
        self._check_X(X, theta)
        return check_finite_result("J_1 J_1^T", (v @ v) * (X @ X.T))

    def first_layer_jacobian(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Dense reference: :math:`J_1 = \\partial u / \\partial W_1` (n x m_1 d, W_1 row-major) by autograd, at any
        theta. For tiny sizes (tests and notebooks)."""
        self.unflatten(theta)
        self._check_X(X, theta)
        k = self.sizes[0]

        def u_of_w1(w1):
            return self.forward(torch.cat([w1, theta[k:]]), X)

        return torch.func.jacrev(u_of_w1)(theta[:k].detach())
