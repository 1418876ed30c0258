"""Dense float64 oracles built on ``torch.func`` for tiny sizes.

Everything here materialises the n x (m d) Jacobian and, where asked, the (m d) x (m d) Fisher. It exists to test the
structured fast paths (``ngdlib.curvature``, ``TwoLayerReLU.gram/jvp/vjp``) against an implementation that shares
none of their algebra: derivatives come from autograd, inverses from ``torch.linalg.pinv`` of the dense matrices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.func import functional_call, jacrev

from ._checks import check_int, check_positive, check_same_dtype_device, check_vector
from ._linalg import check_full_column_rank
from .models import TwoLayerReLU

__all__ = [
    "MAX_PARAMS",
    "jacobian",
    "gram",
    "fisher",
    "fisher_pinv",
    "loss_grad",
    "features",
    "kfac_preconditioner",
    "ngd_direction",
    "kfac_direction",
    "gd_direction",
    "DEEP_VARIANTS",
    "deep_forward",
    "deep_jacobian",
    "deep_factors",
    "deep_fisher_approx",
    "DenseKernel",
    "deep_kernel",
    "deep_grid",
    "GridCase",
    "GridRow",
    "grid_rows",
    "layer_ranks",
    "factor_ranks",
    "grid_table",
    "dense_kernel",
    "dense_direction",
    "dense_multi_output_kernel",
]

#: Largest number of trained parameters m*d for which the dense reference is allowed to run.
MAX_PARAMS = 6000


def _guard(model) -> None:
    if not isinstance(model, TwoLayerReLU):
        raise ValueError(f"ngdlib.reference is the dense oracle of the two-layer net: model must be an "
                         f"ngdlib.TwoLayerReLU, got {type(model).__name__}")
    p = model.W.numel()
    if p > MAX_PARAMS:
        raise ValueError(f"ngdlib.reference is for tiny sizes: m*d = {p} > {MAX_PARAMS} parameters "
                         "(the dense Fisher would be (md)^2); use the structured functions instead")


def _outputs(model, X):
    return lambda W: functional_call(model, {"W": W}, (X,))


def _vector(name: str, v, X: torch.Tensor, what: str) -> torch.Tensor:
    check_vector(name, v, X.shape[0], what)
    check_same_dtype_device(name, v, "X", X)
    return v


def jacobian(model, X: torch.Tensor) -> torch.Tensor:
    """Dense Jacobian du/dw (n x m d) by reverse-mode autodiff, w row-stacked (``W.reshape(-1)``)."""
    _guard(model)
    J = jacrev(_outputs(model, X))(model.W.detach())
    return J.reshape(X.shape[0], -1)


def gram(model, X: torch.Tensor) -> torch.Tensor:
    """G = J J^T from the dense Jacobian."""
    J = jacobian(model, X)
    return J @ J.T


def fisher(model, X: torch.Tensor) -> torch.Tensor:
    """Fisher = Gauss-Newton matrix for squared loss, F = J^T J / n, (m d) x (m d)."""
    J = jacobian(model, X)
    return J.T @ J / X.shape[0]


def fisher_pinv(model, X: torch.Tensor) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse of the dense Fisher (``torch.linalg.pinv``, default cut-off)."""
    return torch.linalg.pinv(fisher(model, X), hermitian=True)


def loss_grad(model, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of L = (1/2n) ||u - y||^2 with respect to w (length m d), by autograd."""
    _guard(model)
    model.check_inputs(X)
    _vector("y", y, X, "one target per input")
    f = _outputs(model, X)
    g = torch.func.grad(lambda W: 0.5 * ((f(W) - y) ** 2).mean())(model.W.detach())
    return g.reshape(-1)


def features(model, X: torch.Tensor) -> torch.Tensor:
    """S_ir = du_i / dz_ir at the pre-activations z = X W^T, by autodiff (n x m)."""
    _guard(model)
    model.check_inputs(X)
    a, m = model.a, model.m

    def u_of_z(z):  # z: (m,) pre-activations of one input
        return torch.relu(z) @ a / math.sqrt(m)

    Z = X @ model.W.detach().T
    return torch.func.vmap(torch.func.grad(u_of_z))(Z).contiguous()


def kfac_preconditioner(model, X: torch.Tensor) -> torch.Tensor:
    """Dense (m d) x (m d) matrix (S^T S)^+ kron (X^T X)^{-1} (row-stacked w)."""
    S = features(model, X)
    check_full_column_rank(X, "Theorem 4 (K-FAC) assumption violated")
    A = torch.linalg.pinv(S.T @ S, hermitian=True)
    B = torch.linalg.inv(X.T @ X)
    # torch.kron (2.13) raises on the column-major result of linalg.inv: make both operands contiguous.
    return torch.kron(A.contiguous(), B.contiguous())


def ngd_direction(model, X: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """F^+ (J^T r / n) (m x d): equals F^+ grad L when r = u - y."""
    J = jacobian(model, X)
    _vector("r", r, X, "the residual has one entry per input")
    F = J.T @ J / X.shape[0]
    return (torch.linalg.pinv(F, hermitian=True) @ (J.T @ r / X.shape[0])).reshape(model.W.shape)


def kfac_direction(model, X: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """[(S^T S)^+ kron (X^T X)^{-1}] J^T r (m x d), all dense."""
    J = jacobian(model, X)
    _vector("r", r, X, "the residual has one entry per input")
    return (kfac_preconditioner(model, X) @ (J.T @ r)).reshape(model.W.shape)


def gd_direction(model, X: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """J^T r (m x d) from the dense Jacobian."""
    J = jacobian(model, X)
    _vector("r", r, X, "the residual has one entry per input")
    return (J.T @ r).reshape(model.W.shape)



# ==================================================================================================================
# Deep MLPs (Karakida & Osawa, Part II): dense approximate Fishers from the definition
# ==================================================================================================================
#
# Nothing below calls DeepMLP's forward pass, signals, layer Grams or ngdlib.approx_fisher: the network is re-written
# from its definition, u_l = sigma_w / sqrt(M_{l-1}) W_l h_{l-1} + sigma_b b_l, h_l = phi(u_l), f = u_L, reading only
# the parameter blocks and hyper-parameters of the model. Jacobians and error signals come from autograd of that
# function; every approximate Fisher is a mask of (or, for K-FAC, a Kronecker product of factors of) the dense
# F = J^T J / N; every inverse is an eigen-decomposition pseudo-inverse with a stated cut-off whose spectral gap is
# reported, so a notebook can assert that the rank decision was unambiguous.

DEEP_VARIANTS = ("exact", "block_diag", "tri_diag", "kfac", "unit_wise")

#: Relative eigenvalue cut-off of the dense pseudo-inverses (per inverted block, relative to its largest |eigenvalue|).
PINV_RTOL = 1e-10


def _deep_guard(model, dense: bool = True) -> None:
    from .models import DeepMLP

    if not isinstance(model, DeepMLP):
        raise ValueError(f"the deep dense oracle needs an ngdlib.DeepMLP, got {type(model).__name__}")
    if dense and model.n_params() > MAX_PARAMS:
        raise ValueError(f"ngdlib.reference is for tiny sizes: {model.n_params()} parameters > {MAX_PARAMS} "
                         "(the dense Fisher would be P x P); use ngdlib.approx_fisher instead")


def _deep_inputs(model, X, name="X") -> torch.Tensor:
    from ._checks import check_data

    check_data(X, model.d)
    check_same_dtype_device(name, X, "the model", model.blocks[0])
    return X


def _deep_variant(variant) -> str:
    if variant not in DEEP_VARIANTS:
        raise ValueError(f"variant must be one of {DEEP_VARIANTS}, got {variant!r}")
    return variant


def _phi(model, u):
    return torch.relu(u) if model.activation == "relu" else torch.tanh(u)


def _layer(model, P, h, l):
    """Pre-activation of layer l (0-based) from the definition; returns (u, layer input a) with u = a @ P^T."""
    scale = model.sigma_w / math.sqrt(model.widths[l])
    if model.bias:
        W, b = P[:, :-1], P[:, -1]
        a = torch.cat([scale * h, torch.full_like(h[:, :1], model.sigma_b)], dim=1)
        return scale * (h @ W.T) + model.sigma_b * b, a
    return scale * (h @ P.T), scale * h


def deep_forward(model, X: torch.Tensor, blocks=None, eps=None):
    """Outputs f (N,), pre-activations u_l and layer inputs a_{l-1} of a DeepMLP, written from the definition.

    ``blocks`` (default: the model's, detached) replaces the parameters; ``eps`` (list of L tensors N x M_l) is added to
    the pre-activations (to differentiate with respect to them). Returns ``(f, us, inputs)``. Any size (nothing
    P x P is formed).

    Raises:
        ValueError: if blocks is not a list of the model's L parameter blocks.
    """
    _deep_guard(model, dense=False)
    _deep_inputs(model, X)
    blocks = [p.detach() for p in model.blocks] if blocks is None else list(blocks)
    if len(blocks) != model.L:
        raise ValueError(f"blocks must be a list of L = {model.L} parameter blocks, got {len(blocks)}")
    h, us, inputs = X, [], []
    for l, P in enumerate(blocks):
        u, a = _layer(model, P, h, l)
        if eps is not None:
            u = u + eps[l]
        us.append(u)
        inputs.append(a)
        h = _phi(model, u) if l < model.L - 1 else u
    return h[:, 0], us, inputs


def deep_jacobian(model, X: torch.Tensor) -> torch.Tensor:
    """Dense N x P Jacobian of :func:`deep_forward` by ``torch.func.jacrev`` (blocks in order, each row-major)."""
    _deep_guard(model)
    _deep_inputs(model, X)
    params = tuple(p.detach() for p in model.blocks)
    jac = jacrev(lambda *ps: deep_forward(model, X, blocks=ps)[0], argnums=tuple(range(model.L)))(*params)
    return torch.cat([j.reshape(X.shape[0], -1) for j in jac], dim=1)


def deep_factors(model, X: torch.Tensor):
    """K-FAC factors from the definition: per layer the inputs a_{l-1} (N x ``|row of P_l|``), with u_l = P_l a_{l-1},
    and the error signals D_l = df/du_l (N x M_l) by autograd of :func:`deep_forward` at perturbed pre-activations.
    Any size (nothing P x P is formed)."""
    _deep_guard(model, dense=False)
    _deep_inputs(model, X)
    _, _, inputs = deep_forward(model, X)
    zeros = [torch.zeros(X.shape[0], m, dtype=X.dtype, device=X.device) for m in model.widths[1:]]
    D = torch.func.grad(lambda e: deep_forward(model, X, eps=e)[0].sum())(zeros)
    return inputs, list(D)


def _groups(model, variant):
    """Index groups of the P parameters: layer of each parameter, unit (row of its block) of each parameter."""
    layer_of, unit_of = [], []
    for l, p in enumerate(model.blocks):
        rows, cols = p.shape
        layer_of.append(torch.full((rows * cols,), l))
        unit_of.append(l * 10 ** 6 + torch.arange(rows).repeat_interleave(cols))
    return torch.cat(layer_of), torch.cat(unit_of)


def deep_fisher_approx(model, X: torch.Tensor, variant: str) -> torch.Tensor:
    """Dense P x P approximate Fisher from the definition: F = J^T J / N (``exact``) from :func:`deep_jacobian`,
    restricted to the layer blocks (``block_diag``), the layer pairs ``|l - l'| <= 1`` (``tri_diag``), the unit blocks
    (``unit_wise``), or per layer (D_l^T D_l / N) kron (A_{l-1}^T A_{l-1} / N) (``kfac``, :func:`deep_factors`)."""
    _deep_variant(variant)
    _deep_guard(model)
    _deep_inputs(model, X)
    n = X.shape[0]
    if variant == "kfac":
        inputs, D = deep_factors(model, X)
        return torch.block_diag(*[torch.kron((Dl.T @ Dl / n).contiguous(), (Al.T @ Al / n).contiguous())
                                  for Al, Dl in zip(inputs, D)])
    J = deep_jacobian(model, X)
    F = J.T @ J / n
    layer_of, unit_of = _groups(model, variant)
    layer_of, unit_of = layer_of.to(F.device), unit_of.to(F.device)
    if variant == "block_diag":
        return F * (layer_of[:, None] == layer_of[None, :])
    if variant == "tri_diag":
        return F * ((layer_of[:, None] - layer_of[None, :]).abs() <= 1)
    if variant == "unit_wise":
        return F * (unit_of[:, None] == unit_of[None, :])
    return F


@dataclass
class DenseKernel:
    r"""Result of :func:`deep_kernel`.

    Attributes:
        K: :math:`\bar\Theta(X', X) = J(X') G^+ J(X)^\top / N` (N' x N).
        rank: total rank kept by the pseudo-inverse.
        kept_min: smallest kept absolute eigenvalue relative to the largest of its block (over all inverted blocks).
        dropped_max: largest dropped absolute eigenvalue relative to the largest of its block (0 if none dropped).
        cond: largest absolute eigenvalue over smallest kept one, over blocks (the condition number of the inversion).
    """

    K: torch.Tensor
    rank: int
    kept_min: float
    dropped_max: float
    cond: float

    def tolerance(self) -> float:
        r"""Round-off tolerance for comparing another computation of K with this one, relative in the Frobenius norm:
        :math:`10^3\,\varepsilon\,\kappa` with :math:`\kappa` = ``cond`` (both sides solve systems of that
        condition; the factor :math:`10^3` covers the length of the sums, P <= a few hundred; over the grid of
        :func:`deep_grid` at seeds 0-49 the largest error / tolerance measured was 0.035, K-FAC and tri-diagonal,
        and below 0.002 for exact and block-diagonal NGD)."""
        return 1e3 * torch.finfo(self.K.dtype).eps * self.cond

    def rel_error(self, K: torch.Tensor, target: torch.Tensor | None = None) -> float:
        r""":math:`\|K - T\|_F / \|T\|_F` with T = ``target`` (default: this dense kernel).

        Raises:
            ValueError: if K or the target is not a finite matrix of the dense kernel's shape, dtype and device.
        """
        from ._checks import check_tensor

        T = self.K if target is None else check_tensor("target", target, ndim=2)
        check_tensor("K", K, ndim=2)
        check_same_dtype_device("K", K, "the dense kernel", T)
        if K.shape != T.shape:
            raise ValueError(f"K must have the shape of the dense kernel {tuple(T.shape)}, got {tuple(K.shape)}")
        return float(torch.linalg.matrix_norm(K - T) / torch.linalg.matrix_norm(T))

    @property
    def gap(self) -> float:
        """kept_min / dropped_max (infinite when nothing was dropped): how clean the rank decision was."""
        return self.kept_min / self.dropped_max if self.dropped_max > 0 else math.inf


def _block_pinv(G: torch.Tensor, rtol: float):
    G = (G + G.T) / 2
    ev, V = torch.linalg.eigh(G)
    top = float(ev.abs().max())
    if top == 0:
        return torch.zeros_like(G), 0, math.inf, 0.0
    keep = ev.abs() > rtol * top
    rel = ev.abs() / top
    kept_min = float(rel[keep].min())
    dropped = float(rel[~keep].max()) if bool((~keep).any()) else 0.0
    Vk = V[:, keep]
    return (Vk / ev[keep]) @ Vk.T, int(keep.sum()), kept_min, dropped


def deep_kernel(model, X: torch.Tensor, variant: str, *, X_test: torch.Tensor | None = None,
                rho: float = 0.0, rtol: float = PINV_RTOL) -> DenseKernel:
    r"""Function-space kernel of an approximate NGD from the definition (tiny sizes):
    :math:`\bar\Theta(X', X) = \frac1N J(X')\,(G + \rho I)^+ J(X)^\top` with G from :func:`deep_fisher_approx`.

    The pseudo-inverse is taken block by block where G is block diagonal (layer blocks; unit blocks; the K-FAC
    Kronecker blocks through their factors, :math:`(B \otimes A)^+ = B^+ \otimes A^+`, each factor densely), on the
    whole matrix otherwise (exact, tri-diagonal); eigenvalues below ``rtol`` times the block's largest absolute eigenvalue are dropped (see
    :class:`DenseKernel` for the reported gap). ``rho > 0`` adds :math:`\rho I` before inverting.

    Raises:
        ValueError: if the variant is unknown, rho is negative, rtol is not a float in (0, 1), or the model is too
            large for a dense reference.
    """
    _deep_variant(variant)
    rho = check_positive("rho (the damping)", rho, allow_zero=True)
    if not (isinstance(rtol, float) and 0 < rtol < 1):
        raise ValueError(f"rtol (the relative eigenvalue cut-off) must be a float in (0, 1), got {rtol!r}")
    G = deep_fisher_approx(model, X, variant)
    if X_test is not None:
        _deep_inputs(model, X_test, "X_test")
    J = deep_jacobian(model, X)
    J2 = J if X_test is None else deep_jacobian(model, X_test)
    G = G + rho * torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    if variant == "kfac" and rho == 0:
        return _kfac_kernel(model, X, J, J2, rtol)
    if variant in ("exact", "tri_diag"):
        groups = [torch.arange(G.shape[0])]
    else:
        layer_of, unit_of = _groups(model, variant)
        key = unit_of if variant == "unit_wise" else layer_of
        groups = [torch.nonzero(key == k).flatten() for k in torch.unique(key)]
    Gp = torch.zeros_like(G)
    rank, kept_min, dropped, cond = 0, math.inf, 0.0, 1.0
    for idx in groups:
        idx = idx.to(G.device)
        Bp, r, km, dm = _block_pinv(G[idx][:, idx], rtol)
        Gp[idx[:, None], idx[None, :]] = Bp
        rank += r
        kept_min, dropped, cond = min(kept_min, km), max(dropped, dm), max(cond, 1 / km if km > 0 else math.inf)
    K = J2 @ Gp @ J.T / X.shape[0]
    return DenseKernel(K=K, rank=rank, kept_min=kept_min, dropped_max=dropped, cond=cond)


def _kfac_kernel(model, X, J, J2, rtol) -> DenseKernel:
    """K-FAC without damping: (B kron A)^+ = B^+ kron A^+ (a property of the pseudo-inverse), each factor
    pseudo-inverted densely, the P x P preconditioner assembled and applied to the autograd Jacobians."""
    n = X.shape[0]
    inputs, D = deep_factors(model, X)
    blocks, rank, kept_min, dropped, cond = [], 0, math.inf, 0.0, 1.0
    for Al, Dl in zip(inputs, D):
        Bp, rb, kb, db = _block_pinv(Dl.T @ Dl / n, rtol)
        Ap, ra, ka, da = _block_pinv(Al.T @ Al / n, rtol)
        blocks.append(torch.kron(Bp.contiguous(), Ap.contiguous()))
        rank += ra * rb
        kept_min, dropped = min(kept_min, ka, kb), max(dropped, da, db)
        cond = max(cond, 1 / ka if ka > 0 else math.inf, 1 / kb if kb > 0 else math.inf)
    K = J2 @ torch.block_diag(*blocks) @ J.T / n
    return DenseKernel(K=K, rank=rank, kept_min=kept_min, dropped_max=dropped, cond=cond)


@dataclass
class GridCase:
    """One configuration of :func:`deep_grid`: a network and its training inputs, with the grid coordinates."""

    activation: str
    L: int
    bias: bool
    inputs: str          # "N<M0", "N>M0 raw" or "N>M0 Forster"
    model: object
    X: torch.Tensor

    @property
    def label(self) -> str:
        """One line naming the grid point (activation, depth, bias, inputs)."""
        return f"{self.activation:4s} L={self.L} bias={int(self.bias)} {self.inputs}"


def deep_grid(seed: int, *, n: int = 6, d_big: int = 9, d_small: int = 3, width: int = 12, depths=(2, 3, 4, 5),
              activations=("relu", "tanh"), dtype=torch.float64, device=None):
    """The grid of tiny configurations on which Part II checks its finite-width identities densely: activations x
    depths x bias on/off x inputs (``n`` unit inputs in ``d_big > n`` dimensions; in ``d_small < n`` dimensions raw, and
    in radial isotropic position by :func:`ngdlib.data.forster`). Hidden widths ``width``; one network per configuration,
    seeded from ``seed``. Returns a list of :class:`GridCase`.

    Raises:
        ValueError: if seed is not an int, n, d_big, d_small, width are not positive ints, or d_small < n < d_big
            fails.
    """
    from .data import forster, sphere
    from .models import DeepMLP

    check_int("seed", seed)
    for name, v in (("n", n), ("d_big", d_big), ("d_small", d_small), ("width", width)):
        check_int(name, v, 1)
    if not d_small < n < d_big:
        raise ValueError(f"the grid needs d_small < n < d_big (N below and above M_0), got {d_small}, {n}, {d_big}")
    X_big = sphere(n, d_big, seed=seed, dtype=dtype, device=device)
    X_small = sphere(n, d_small, seed=seed + 1, dtype=dtype, device=device)
    X_for, _ = forster(X_small)
    inputs = (("N<M0", X_big), ("N>M0 raw", X_small), ("N>M0 Forster", X_for))
    cases = []
    k = 0
    for act in activations:
        for L in depths:
            for bias in (False, True):
                for name, X in inputs:
                    k += 1
                    model = DeepMLP((X.shape[1],) + (width,) * (L - 1), activation=act, bias=bias,
                                    seed=1000 * seed + k, dtype=dtype, device=device)
                    cases.append(GridCase(act, L, bias, name, model, X))
    return cases



def layer_ranks(model, X: torch.Tensor) -> list:
    """Ranks of the dense layer Jacobian blocks J_l (autograd; ``torch.linalg.matrix_rank``, default cut-off):
    the layer Gram Theta_l = J_l J_l^T is nonsingular iff the rank is N."""
    J = deep_jacobian(model, X)
    return [int(torch.linalg.matrix_rank(Jl)) for Jl in torch.split(J, model.layer_sizes(), dim=1)]


def factor_ranks(model, X: torch.Tensor) -> list:
    """Ranks of the K-FAC factors per layer, ``[(rank A_{l-1}, rank D_l), ...]`` (from :func:`deep_factors`)."""
    inputs, D = deep_factors(model, X)
    return [(int(torch.linalg.matrix_rank(A)), int(torch.linalg.matrix_rank(Dl))) for A, Dl in zip(inputs, D)]


@dataclass
class GridRow:
    r"""One configuration of :func:`grid_rows`.

    Attributes:
        case: the :class:`GridCase`.
        dense: the :class:`DenseKernel` from the definition.
        err: relative Frobenius distance of the library's kernel from the dense one (NaN if not compared).
        expected: the matrix the claim predicts for the dense kernel (None: the claim's hypothesis does not hold).
        dev: relative Frobenius distance of the dense kernel from ``expected`` (NaN if none).
    """

    case: GridCase
    dense: DenseKernel
    err: float
    expected: torch.Tensor | None
    dev: float

    @property
    def tol(self) -> float:
        """The comparison tolerance of the dense kernel (its round-off bound)."""
        return self.dense.tolerance()

    @property
    def compared(self) -> bool:
        """Whether the library's kernel was compared at this grid point (False if skipped)."""
        return not math.isnan(self.err)


def grid_rows(seed: int, variant: str, kernel, expected, *, rtol: float = PINV_RTOL, **grid_kwargs) -> list:
    """Run one variant over :func:`deep_grid`: for each case the dense kernel from the definition, the library's
    kernel ``kernel(case)`` (or None where the library refuses by design) and the claim's prediction
    ``expected(case)`` (an N x N matrix, or None where its hypothesis fails); ``rtol`` is the pseudo-inverse cut-off
    of :func:`deep_kernel`. Returns a list of :class:`GridRow`; the caller asserts.

    Raises:
        ValueError: if kernel or expected is not callable (or the grid arguments are malformed, see
            :func:`deep_grid`).
    """
    _deep_variant(variant)
    if not (callable(kernel) and callable(expected)):
        raise ValueError("kernel and expected must be callables taking a GridCase")
    rows = []
    for case in deep_grid(seed, **grid_kwargs):
        dense = deep_kernel(case.model, case.X, variant, rtol=rtol)
        K = kernel(case)
        err = math.nan if K is None else dense.rel_error(K)
        E = expected(case)
        dev = math.nan if E is None else dense.rel_error(dense.K, E)
        rows.append(GridRow(case=case, dense=dense, err=err, expected=E, dev=dev))
    return rows



def grid_table(rows) -> str:
    """A markdown table of :func:`grid_rows` per (activation, L): cases, cases compared with the library, cases where
    the claim's hypothesis holds, and the largest err / tolerance and dev / tolerance (<= 1 passes).

    Raises:
        ValueError: if rows is not a non-empty list of :class:`GridRow`.
    """
    if not rows or not all(isinstance(r, GridRow) for r in rows):
        raise ValueError("rows must be a non-empty list of GridRow (from grid_rows)")
    out = ["| activation | L | cases | compared | hypothesis holds | max err / tol | max dev / tol |",
           "|---|---|---|---|---|---|---|"]
    keys = sorted({(r.case.activation, r.case.L) for r in rows})
    for act, L in keys:
        sel = [r for r in rows if (r.case.activation, r.case.L) == (act, L)]
        cmp_ = [r.err / r.tol for r in sel if r.compared]
        hyp = [r.dev / r.tol for r in sel if r.expected is not None]
        out.append(f"| {act} | {L} | {len(sel)} | {len(cmp_)} | {len(hyp)} | "
                   f"{max(cmp_):.2g} | " if cmp_ else f"| {act} | {L} | {len(sel)} | 0 | {len(hyp)} | - | ")
        out[-1] += f"{max(hyp):.2g} |" if hyp else "- |"
    return "\n".join(out)

# ==================================================================================================================
# Deep MLPs: dense function-space kernels and steps of the approximate Fishers (torch's pseudo-inverse)
# ==================================================================================================================
def _check_rho(rho) -> float:
    from ._checks import check_number

    return check_number("rho (the damping)", rho, low=0.0)


def _dense_inverse(model, X, G, variant, rho):
    """(G + rho I)^{-1} for rho > 0; else torch's pseudo-inverse of G, for K-FAC block by block as
    (B kron A)^+ = B^+ kron A^+ with the factors of :func:`deep_factors`."""
    if rho > 0:
        return torch.linalg.inv(G + rho * torch.eye(G.shape[0], dtype=G.dtype, device=G.device))
    if variant == "kfac":
        n = X.shape[0]
        A, D = deep_factors(model, X)
        return torch.block_diag(*[torch.kron(torch.linalg.pinv(Dl.T @ Dl / n, hermitian=True).contiguous(),
                                             torch.linalg.pinv(Al.T @ Al / n, hermitian=True).contiguous())
                                  for Al, Dl in zip(A, D)])
    return torch.linalg.pinv(G, hermitian=True)


def dense_kernel(model, X: torch.Tensor, variant: str, *, X_test: torch.Tensor | None = None,
                 rho: float = 0.0) -> torch.Tensor:
    """Dense :math:`\\frac1N J(X') (G + \\rho I)^+ J(X)^\\top` (tiny sizes): G from :func:`deep_fisher_approx`, J
    from :func:`deep_jacobian`, the inverse by ``torch.linalg.pinv`` with its default cut-off (:func:`deep_kernel`
    is the same kernel with a stated cut-off and its spectral gap reported); K-FAC inverts each Kronecker block with
    the pseudo-inverses of its two factors, (B kron A)^+ = B^+ kron A^+. The oracle of
    :func:`ngdlib.approx_fisher.function_kernel`.

    Raises:
        ValueError: for a model that is not a DeepMLP or has more than :data:`MAX_PARAMS` parameters, inputs that do
            not fit it, an unknown variant, or a negative or non-finite rho.
    """
    rho = _check_rho(rho)
    G = deep_fisher_approx(model, X, variant)
    J = deep_jacobian(model, X)
    J2 = J if X_test is None else deep_jacobian(model, X_test)
    return J2 @ _dense_inverse(model, X, G, variant, rho) @ J.T / X.shape[0]


def dense_direction(model, X: torch.Tensor, r: torch.Tensor, variant: str, *, rho: float = 0.0) -> list:
    """Dense :math:`(G + \\rho I)^+ J^\\top r / N` split into layer blocks (tiny sizes; as :func:`dense_kernel`). The
    oracle of :func:`ngdlib.approx_fisher.ngd_direction`.

    Raises:
        ValueError: as :func:`dense_kernel`, or for a residual r that does not have one entry per input of X's dtype
            and device.
    """
    rho = _check_rho(rho)
    G = deep_fisher_approx(model, X, variant)
    check_vector("r", r, X.shape[0], "the residual has one entry per training input")
    check_same_dtype_device("r", r, "X", X)
    J = deep_jacobian(model, X)
    v = _dense_inverse(model, X, G, variant, rho) @ (J.T @ r) / X.shape[0]
    return [c.reshape(p.shape) for c, p in zip(torch.split(v, model.layer_sizes()), model.blocks)]


def dense_multi_output_kernel(model, head: torch.Tensor, X: torch.Tensor, variant: str) -> torch.Tensor:
    r"""Dense reference for :func:`ngdlib.approx_fisher.multi_output_kernel` (tiny sizes): the Jacobian (N C x P) of the C-output network
    by ``torch.func.jacrev``, :math:`F = J^\top J / N` masked to the variant's blocks (layers; ``|l - l'| <= 1``; units,
    the head's rows being the output units) or, for kfac, :math:`\bigoplus_l B_l \otimes A_l` with :math:`D_l` by
    autodiff of the outputs with respect to perturbations of the pre-activations; then
    :math:`\frac1N J G^+ J^\top` with ``torch.linalg.pinv`` ((B kron A)^+ = B^+ kron A^+ for kfac).

    Raises:
        ValueError: for a bad model, inputs, head or variant, or more than :data:`MAX_PARAMS` parameters.
    """
    from .approx_fisher import _check_head

    _deep_guard(model, dense=False)
    _deep_inputs(model, X)
    _deep_variant(variant)
    _check_head(model, head)
    trunk = [p.detach() for p in model.blocks[:-1]]
    params = trunk + [head.detach()]
    n_par = sum(p.numel() for p in params)
    if n_par > MAX_PARAMS:
        raise ValueError(f"the dense C-output reference is for tiny sizes: {n_par} parameters > {MAX_PARAMS}")
    act = torch.relu if model.activation == "relu" else torch.tanh
    n, C = X.shape[0], head.shape[0]

    def g(*ps, eps=None):
        h = X
        for l, P in enumerate(ps):
            u = model._scaled_input(h) @ P.T + (0 if eps is None else eps[l])
            h = act(u) if l < len(ps) - 1 else u
        return h                                                  # (N, C)

    jac = torch.func.jacrev(g, argnums=tuple(range(len(params))))(*params)
    J = torch.cat([j.reshape(n * C, -1) for j in jac], dim=1)
    F = J.T @ J / n
    sizes = [p.numel() for p in params]
    layer_of = torch.cat([torch.full((s,), l) for l, s in enumerate(sizes)]).to(F.device)
    if variant == "exact":
        Ginv = torch.linalg.pinv(F, hermitian=True)
    elif variant in ("block_diag", "tri_diag"):
        width = 0 if variant == "block_diag" else 1
        G = F * ((layer_of[:, None] - layer_of[None, :]).abs() <= width).to(F.dtype)
        Ginv = torch.linalg.pinv(G, hermitian=True)
    elif variant == "unit_wise":
        unit_of = torch.cat([l * 10**6 + torch.arange(p.shape[0]).repeat_interleave(p.shape[1])
                             for l, p in enumerate(params)]).to(F.device)
        G = F * (unit_of[:, None] == unit_of[None, :]).to(F.dtype)
        Ginv = torch.linalg.pinv(G, hermitian=True)
    else:
        zeros = [torch.zeros(n, p.shape[0], dtype=X.dtype, device=X.device) for p in params]
        Ds = torch.func.jacrev(lambda e: g(*params, eps=e).sum(0))(zeros)      # each (C, N, M_l)
        h, As = X, []
        for l, P in enumerate(params):
            a = model._scaled_input(h)
            As.append(a)
            h = act(a @ P.T)
        Ginv = torch.block_diag(*[torch.kron(
            torch.linalg.pinv(Dl.permute(1, 0, 2).reshape(n * C, -1).T @ Dl.permute(1, 0, 2).reshape(n * C, -1) / n,
                              hermitian=True).contiguous(),
            torch.linalg.pinv(Al.T @ Al / n, hermitian=True).contiguous()) for Al, Dl in zip(As, Ds)])
    return J @ Ginv @ J.T / n
