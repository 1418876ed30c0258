r"""Deep MLPs in NTK parameterisation (Karakida & Osawa 2020): the network :class:`~ngdlib.models.DeepMLP` (its
equations, parameter layout and Jacobian blocks are in the class docstring) and its :class:`Signals`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import (check_data, check_device, check_dtype, check_finite_result, check_number,
                      check_same_dtype_device, check_tensor, check_vector, is_transformed)
from ..device import generator

__all__ = ["DeepMLP", "Signals", "ACTIVATIONS", "MAX_DENSE_PARAMS"]

ACTIVATIONS = ("relu", "tanh")

#: Largest parameter count for which the dense Jacobian / dense Fisher references may be formed.
MAX_DENSE_PARAMS = 6000


@dataclass
class Signals:
    """Forward activations and backward signals of a :class:`DeepMLP` on N inputs.

    Attributes:
        A: list of L tensors; ``A[l]`` is the scaled input of layer l+1, :math:`a_l = [\\sigma_w h_l/\\sqrt{M_l},
            \\sigma_b]` stacked over inputs (N x (M_l + 1), or N x M_l without bias).
        D: list of L tensors; ``D[l]`` is :math:`\\delta_{l+1} = \\partial f / \\partial u_{l+1}` (N x M_{l+1});
            ``D[-1]`` is a column of ones.
        f: outputs (N,).
    """

    A: list
    D: list
    f: torch.Tensor

    @property
    def n(self) -> int:
        """The number of inputs N."""
        return self.f.shape[0]


def _act(name: str, u: torch.Tensor):
    if name == "relu":
        return torch.relu(u), (u > 0).to(u.dtype)
    t = torch.tanh(u)
    return t, 1 - t * t


class DeepMLP(nn.Module):
    r"""L-layer MLP in NTK parameterisation with scalar output (Karakida & Osawa 2020, Sec. 2).

    The network has :math:`L` layers, input dimension :math:`M_0`, hidden widths :math:`M_1, \dots, M_{L-1}` and one
    output (:math:`M_L = 1`):

    .. math::
        u_l = \frac{\sigma_w}{\sqrt{M_{l-1}}} W_l h_{l-1} + \sigma_b b_l, \qquad h_l = \phi(u_l), \qquad h_0 = x,
        \qquad f(x) = u_L ,

    with :math:`W_l \in \mathbb R^{M_l \times M_{l-1}}` and :math:`b_l \in \mathbb R^{M_l}` drawn i.i.d.
    :math:`\mathcal N(0, 1)` (NTK parameterisation: the scale lives in the forward pass, so the trained parameters stay
    O(1)), :math:`\phi` = ReLU or tanh. Biases are optional.

    **Parameter layout.** Layer :math:`l` stores one block :math:`P_l = [W_l \mid b_l]` of shape
    :math:`M_l \times (M_{l-1} + 1)` (:math:`M_l \times M_{l-1}` without bias). With the *scaled layer input*
    :math:`a_{l-1} = [\sigma_w h_{l-1} / \sqrt{M_{l-1}},\ \sigma_b]` the layer is :math:`u_l = P_l a_{l-1}`. Parameters
    are vectorised block by block, each block row by row, so the rows of :math:`P_l` (one unit's incoming weights and
    bias) are contiguous: this is the grouping of the unit-wise Fisher.

    **Jacobian blocks.** With the backward signal :math:`\delta_l(x) = \partial f(x) / \partial u_l \in \mathbb R^{M_l}`
    (:math:`\delta_L = 1`, :math:`\delta_l = \phi'(u_l) \odot \frac{\sigma_w}{\sqrt{M_l}} W_{l+1}^\top \delta_{l+1}`),
    the Jacobian row of input :math:`x_n` for layer :math:`l` is :math:`J_{l,n} = \delta_l(x_n) \otimes a_{l-1}(x_n)`. With
    :math:`A_{l-1}` (N x (M_{l-1}+1)) and :math:`D_l` (N x M_l) the stacked signals, the layer Gram matrix is

    .. math::
        \Theta_l = J_l J_l^\top = (D_l D_l^\top) \odot (A_{l-1} A_{l-1}^\top), \qquad \Theta = \sum_l \Theta_l ,

    and unit :math:`i` of layer :math:`l` has :math:`J_{l,i} = \mathrm{diag}(D_{l,:i}) A_{l-1}`,
    :math:`\Theta_{l,i} = (D_{l,:i} D_{l,:i}^\top) \odot (A_{l-1} A_{l-1}^\top)`. All of these are N x N and computed
    from the forward activations and backward signals; the dense Jacobian is only built on request, for small sizes.

    Reference: R. Karakida and K. Osawa, *Understanding Approximate Fisher Information for Fast Convergence of Natural
    Gradient Descent in Wide Neural Networks*, NeurIPS 2020 (Sec. 2 and their public code, which uses this
    parameterisation with :math:`\sigma_w^2 = 2`).

    Args:
        widths: ``(M_0, M_1, ..., M_{L-1})``: input dimension and hidden widths; the output layer (width 1) is
            appended, so ``L = len(widths)``.
        activation: ``"relu"`` or ``"tanh"``. The derivative of ReLU at 0 is taken as 0.
        sigma_w: weight scale :math:`\sigma_w` (default :math:`\sqrt 2`, the authors' :math:`\sigma_w^2 = 2`).
        sigma_b: bias scale :math:`\sigma_b` (ignored without bias).
        bias: whether every layer has a bias.
        seed: seed of the CPU generator; all entries are drawn in float64 from :math:`\mathcal N(0, 1)`, layer by
            layer (W_l then b_l), so one seed gives the same network on every device and, up to rounding, dtype.
        dtype, device: of the parameters.

    Attributes:
        blocks: ``nn.ParameterList`` of L blocks :math:`P_l = [W_l \mid b_l]`.
    """

    def __init__(self, widths, activation: str = "relu", sigma_w: float = math.sqrt(2.0), sigma_b: float = 0.1,
                 bias: bool = True, seed: int = 0, dtype: torch.dtype = torch.float64, device=None):
        super().__init__()
        try:
            widths = tuple(widths) if not isinstance(widths, int) else (widths,)
        except TypeError:
            raise ValueError("widths must be a non-empty sequence of positive ints (M_0, ..., M_(L-1)), "
                             f"got {widths!r}") from None
        if len(widths) < 1 or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
            raise ValueError("widths must be a non-empty sequence of positive ints (M_0, ..., M_(L-1)), "
                             f"got {widths!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        for name, v in (("sigma_w", sigma_w), ("sigma_b", sigma_b)):
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        check_dtype(dtype)
        check_device(device)
        self.widths = widths + (1,)
        self.L = len(widths)
        self.activation = activation
        self.sigma_w, self.sigma_b, self.bias = float(sigma_w), float(sigma_b), bool(bias)
        g = generator(seed)
        blocks = []
        for l in range(1, self.L + 1):
            m_in, m_out = self.widths[l - 1], self.widths[l]
            W = torch.randn(m_out, m_in, generator=g, dtype=torch.float64)
            if self.bias:
                b = torch.randn(m_out, 1, generator=g, dtype=torch.float64)
                W = torch.cat([W, b], dim=1)
            W = W.to(dtype)
            blocks.append(nn.Parameter(W.to(device) if device is not None else W))
        self.blocks = nn.ParameterList(blocks)

    def extra_repr(self) -> str:
        """Widths, activation, scales and dtype, for ``repr``."""
        return (f"widths={self.widths}, activation={self.activation}, sigma_w={self.sigma_w:g}, "
                f"sigma_b={self.sigma_b:g}, bias={self.bias}, dtype={self.dtype}, device={self.device}")

    # ------------------------------------------------------------------ basic properties
    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the parameters."""
        return self.blocks[0].dtype

    @property
    def device(self) -> torch.device:
        """The device of the parameters."""
        return self.blocks[0].device

    @property
    def d(self) -> int:
        """Input dimension :math:`M_0`."""
        return self.widths[0]

    @property
    def hidden(self) -> tuple:
        """Hidden widths :math:`(M_1, \\dots, M_{L-1})`."""
        return self.widths[1:-1]

    def layer_sizes(self) -> list:
        """Number of parameters of each layer block."""
        return [p.numel() for p in self.blocks]

    def n_params(self) -> int:
        """The number of parameters P (weights and biases of all layers)."""
        return sum(self.layer_sizes())

    def check_inputs(self, X: torch.Tensor) -> torch.Tensor:
        """Shape, finiteness, dtype and device of X against the model.

        Raises:
            ValueError: if X is not a finite float matrix with d columns, or its dtype or device differs from the
                model's.
        """
        check_data(X, self.d)
        if X.dtype != self.dtype:
            raise ValueError(f"X has dtype {X.dtype} but the model is {self.dtype}; convert one of them")
        if X.device != self.device:
            raise ValueError(f"X is on {X.device} but the model is on {self.device}")
        return X

    # ------------------------------------------------------------------ forward
    def _scaled_input(self, h: torch.Tensor) -> torch.Tensor:
        a = h * (self.sigma_w / math.sqrt(h.shape[1]))
        if self.bias:
            a = torch.cat([a, torch.full((h.shape[0], 1), self.sigma_b, dtype=h.dtype, device=h.device)], dim=1)
        return a

    def forward_with(self, blocks, X: torch.Tensor) -> torch.Tensor:
        """Outputs (N,) with the given parameter blocks (a pure function of ``blocks``: usable with torch.func).

        The blocks are checked by shape only (they may be torch.func-wrapped); X fully unless it is wrapped too.

        Raises:
            ValueError: if ``blocks`` is not a list of L tensors shaped like the layer blocks, or X is not a finite
                float matrix with d columns on the blocks' dtype and device.
        """
        blocks = list(blocks) if isinstance(blocks, (list, tuple, nn.ParameterList)) else blocks
        if not isinstance(blocks, list) or len(blocks) != self.L:
            got = len(blocks) if isinstance(blocks, list) else type(blocks).__name__
            raise ValueError(f"blocks must be a list of L = {self.L} parameter blocks, got {got}")
        for l, (b, p) in enumerate(zip(blocks, self.blocks)):
            if not isinstance(b, torch.Tensor) or b.shape != p.shape:
                shape = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
                raise ValueError(f"blocks[{l}] must have the shape of layer block {l + 1}, {tuple(p.shape)}, "
                                 f"got {shape}")
        if not is_transformed(X):
            check_data(X, self.d)
            check_same_dtype_device("X", X, "the blocks", blocks[0])
        h = X
        for l, P in enumerate(blocks):
            u = self._scaled_input(h) @ P.T
            h = _act(self.activation, u)[0] if l < self.L - 1 else u
        return h[:, 0]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Outputs f (N,) for inputs X (N x M_0)."""
        self.check_inputs(X)
        return check_finite_result("the network output f", self.forward_with(list(self.blocks), X))

    def signals(self, X: torch.Tensor) -> Signals:
        """Forward activations and backward signals (no autograd): see :class:`Signals`."""
        self.check_inputs(X)
        with torch.no_grad():
            A, dphi = [], []
            h = X
            for l, P in enumerate(self.blocks):
                a = self._scaled_input(h)
                A.append(a)
                u = a @ P.T
                if l < self.L - 1:
                    h, dp = _act(self.activation, u)
                    dphi.append(dp)
            f = u[:, 0]
            D = [None] * self.L
            delta = torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)
            D[-1] = delta
            for l in range(self.L - 2, -1, -1):        # layer index l+1 in the maths
                P_next = self.blocks[l + 1]
                m_l = self.widths[l + 1]
                Wn = P_next[:, :m_l]
                delta = dphi[l] * (delta @ Wn) * (self.sigma_w / math.sqrt(m_l))
                D[l] = delta
            check_finite_result("the forward activations / backward signals", A + D + [f])
        return Signals(A=A, D=D, f=f.detach())

    # ------------------------------------------------------------------ kernels (dual, N x N)
    def layer_grams(self, X: torch.Tensor, X2: torch.Tensor | None = None, sig=None, sig2=None) -> list:
        """Per-layer Gram matrices :math:`\\Theta_l(X_2, X) = J_l(X_2) J_l(X)^\\top` (N2 x N), l = 1..L.

        :math:`\\Theta_l = (D_l^{(2)} D_l^\\top) \\odot (A_{l-1}^{(2)} A_{l-1}^\\top)`; ``X2 = None`` means X.
        Precomputed :class:`Signals` can be passed as ``sig`` / ``sig2``.
        """
        s = self.signals(X) if sig is None else sig
        s2 = s if X2 is None and sig2 is None else (self.signals(X2) if sig2 is None else sig2)
        return check_finite_result("the layer Gram matrices Theta_l",
                                   [(D2 @ D.T) * (A2 @ A.T) for A, D, A2, D2 in zip(s.A, s.D, s2.A, s2.D)])

    def ntk(self, X: torch.Tensor, X2: torch.Tensor | None = None) -> torch.Tensor:
        """Empirical NTK :math:`\\Theta(X_2, X) = J(X_2) J(X)^\\top = \\sum_l \\Theta_l` (unnormalised)."""
        return sum(self.layer_grams(X, X2))

    # ------------------------------------------------------------------ products with J, J^T
    def _check_direction(self, V) -> list:
        V = list(V)
        if len(V) != self.L:
            raise ValueError(f"a direction must be a list of L = {self.L} blocks, got {len(V)}")
        for l, (v, p) in enumerate(zip(V, self.blocks)):
            check_tensor(f"V[{l}]", v, ndim=2)
            if v.shape != p.shape:
                raise ValueError(f"V[{l}] must have the shape of layer block {l + 1}, {tuple(p.shape)}, "
                                 f"got {tuple(v.shape)}")
            check_same_dtype_device(f"V[{l}]", v, "the model", p)
        return V

    def jvp(self, X: torch.Tensor, V, sig=None) -> torch.Tensor:
        """:math:`J V` (N,) for a direction V given as L blocks shaped like the layer blocks."""
        V = self._check_direction(V)
        s = self.signals(X) if sig is None else sig
        return check_finite_result("J V", sum(((A @ v.T) * D).sum(dim=1) for A, D, v in zip(s.A, s.D, V)))

    def vjp(self, X: torch.Tensor, c, sig=None) -> list:
        """:math:`J^\\top c` as L blocks: :math:`D_l^\\top \\mathrm{diag}(c_l) A_{l-1}`.

        ``c`` is one vector (N,) used for every layer, or a list of L vectors (one per layer block).

        Raises:
            ValueError: if ``c`` is neither one vector nor a list of L vectors of length N (on the model's dtype and
                device), or J^T c is not finite.
        """
        s = self.signals(X) if sig is None else sig
        cs = c if isinstance(c, (list, tuple)) else [c] * self.L
        if len(cs) != self.L:
            raise ValueError(f"c must be one vector or a list of L = {self.L} vectors, got {len(cs)}")
        out = []
        for l, (A, D, cl) in enumerate(zip(s.A, s.D, cs)):
            check_vector(f"c[{l}]", cl, s.n, "one entry per input")
            check_same_dtype_device(f"c[{l}]", cl, "the model", self)
            out.append(D.T @ (cl[:, None] * A))
        return check_finite_result("J^T c", out)

    # ------------------------------------------------------------------ dense references (small sizes only)
    def _guard_dense(self, n: int) -> None:
        if self.n_params() > MAX_DENSE_PARAMS:
            raise ValueError(f"dense Jacobians are a reference for tiny sizes: {self.n_params()} parameters > "
                             f"{MAX_DENSE_PARAMS}; use the N x N (dual) kernels instead")

    def layer_jacobian(self, X: torch.Tensor, l: int, sig=None) -> torch.Tensor:
        """Dense Jacobian block :math:`J_l` (N x ``|P_l|``), layer ``l`` in 1..L, from the signals (small sizes).

        Raises:
            ValueError: for bad inputs, a layer index l outside 1..L, or more parameters than the dense references
                allow.
        """
        if sig is None:
            self.check_inputs(X)
        self._guard_dense(X.shape[0])
        if not (isinstance(l, int) and not isinstance(l, bool) and 1 <= l <= self.L):
            raise ValueError(f"layer index l must be an int in 1..L = {self.L}, got {l!r}")
        s = self.signals(X) if sig is None else sig
        A, D = s.A[l - 1], s.D[l - 1]
        return (D[:, :, None] * A[:, None, :]).reshape(X.shape[0], -1)

    def jacobian(self, X: torch.Tensor) -> torch.Tensor:
        """Dense Jacobian :math:`J = [J_1, \\dots, J_L]` (N x P) from the signals (small sizes)."""
        s = self.signals(X)
        return torch.cat([self.layer_jacobian(X, l, s) for l in range(1, self.L + 1)], dim=1)

    def unit_jacobian(self, X: torch.Tensor, l: int, i: int, sig=None) -> torch.Tensor:
        """Jacobian of unit ``i`` of layer ``l`` (its row of :math:`P_l`):
        :math:`\\mathrm{diag}(\\delta_{l,i}) A_{l-1}`.

        Raises:
            ValueError: for a layer index l outside 1..L or a unit index i outside the layer's width.
        """
        if not (isinstance(l, int) and not isinstance(l, bool) and 1 <= l <= self.L):
            raise ValueError(f"layer index l must be an int in 1..L = {self.L}, got {l!r}")
        if not (isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.widths[l]):
            raise ValueError(f"unit index i must be an int in 0..{self.widths[l] - 1} for layer {l}, got {i!r}")
        s = self.signals(X) if sig is None else sig
        return s.D[l - 1][:, i:i + 1] * s.A[l - 1]

    def autodiff_jacobian(self, X: torch.Tensor) -> torch.Tensor:
        """Dense Jacobian by ``torch.func.jacrev`` of :meth:`forward_with` (N x P): an oracle that shares no algebra
        with :meth:`signals`."""
        self.check_inputs(X)
        self._guard_dense(X.shape[0])
        params = tuple(p.detach() for p in self.blocks)
        jac = torch.func.jacrev(lambda *ps: self.forward_with(ps, X), argnums=tuple(range(self.L)))(*params)
        return torch.cat([j.reshape(X.shape[0], -1) for j in jac], dim=1)

    # ------------------------------------------------------------------ updates
    def apply_step(self, V, eta: float) -> None:
        """In place: :math:`P_l \\leftarrow P_l - \\eta\\, V_l` for every layer (``eta`` any finite real: a
        negative one steps back).

        Raises:
            ValueError: if V is not L blocks shaped like the layer blocks (finite, on the model's dtype and device),
                or eta is not a finite real.
        """
        V = self._check_direction(V)
        eta = check_number("eta (the step size)", eta)
        with torch.no_grad():
            for p, v in zip(self.blocks, V):
                p.sub_(eta * v)

    def get_blocks(self) -> list:
        """Detached copies of the parameter blocks."""
        return [p.detach().clone() for p in self.blocks]

    def set_blocks(self, blocks) -> None:
        """Copy ``blocks`` into the parameters (shapes must match)."""
        blocks = self._check_direction(blocks)
        with torch.no_grad():
            for p, b in zip(self.blocks, blocks):
                p.copy_(b)
