"""GGN, its matvecs, NGD and K-FAC directions, and every Part II function-space kernel and alpha: ngdlib against
curvlinops (f-dangel/curvlinops, ``curvlinops-for-pytorch`` 3.0.1).

Normalisation (the one mapping every comparison below uses): curvlinops' GGN of ``MSELoss(reduction='mean')`` is
:math:`c \\sum_n J_n^\\top \\nabla^2_f \\ell\\, J_n` with :math:`\\ell = (f - y)^2` (no 1/2, so
:math:`\\nabla^2_f \\ell = 2`) and :math:`c = 1/N`: it is :math:`2 J^\\top J / N = 2F` for the book's
:math:`F = J^\\top J / N` (``reduction='sum'``: :math:`2 J^\\top J = 2NF`). The mean loss's gradient is
:math:`2 J^\\top r / N = 2 \\nabla\\mathcal L`, so ``GGN^+ grad`` is the book's :math:`F^+ \\nabla\\mathcal L` with no
factor left. curvlinops' K-FAC (type-2, mean) is :math:`2 (D^\\top D/N) \\otimes (A^\\top A/N)` per layer (input
covariance divided by N, gradient covariance of the mean loss rescaled by N), i.e. twice the K-FAC of F.

The networks are mirrored as ``nn.Linear`` modules holding the very same tensors (copied), so that curvlinops'
K-FAC hooks see each layer's input: for ``DeepMLP`` the layer input is the scaled :math:`a_{l-1} = [\\sigma_w h /
\\sqrt{M}, \\sigma_b]` and the weight is the block :math:`P_l = [W_l | b_l]` itself (no separate bias parameter), so
curvlinops' parameter vector is DeepMLP's, block by block, each row-major.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import ngdlib
from ngdlib import approx_fisher

from .conftest import EPS, S, compare, note, pinv_known_rank, pinv_numerical_rank

curvlinops = pytest.importorskip("curvlinops")
from curvlinops import (CGInverseLinearOperator, FisherType, GGNLinearOperator,  # noqa: E402
                        JacobianLinearOperator, KFACLinearOperator)


def dense(op) -> torch.Tensor:
    """The operator as a dense matrix (op @ I), in curvlinops' parameter order."""
    return op @ torch.eye(op.shape[1], dtype=torch.float64)


# ----------------------------------------------------------------------------------------------- two-layer network
class TwoLayerMirror(nn.Module):
    """eq. (8) as nn.Linear layers on the model's own W and a: f = Linear(a / sqrt m)(relu(Linear(W) x))."""

    def __init__(self, model):
        super().__init__()
        self.first = nn.Linear(model.d, model.m, bias=False)
        self.out = nn.Linear(model.m, 1, bias=False)
        with torch.no_grad():
            self.first.weight.copy_(model.W)
            self.out.weight.copy_(model.a[None, :] / math.sqrt(model.m))
        self.out.weight.requires_grad_(False)

    def forward(self, X):
        return self.out(torch.relu(self.first(X)))


def two_layer_case(n, m, d, seed):
    X = ngdlib.sphere(n, d, seed=seed)
    model = ngdlib.TwoLayerReLU(d, m, seed=seed + 1)
    y = torch.randn(n, generator=torch.Generator().manual_seed(seed + 2), dtype=torch.float64)
    net = TwoLayerMirror(model)
    data = [(X, y[:, None])]
    return X, y, model, net, data


@pytest.mark.parametrize("n,m,d,seed", [(12, 40, 5, S(1301))])
def test_two_layer_ggn_ngd_kfac_vs_curvlinops(n, m, d, seed):
    X, y, model, net, data = two_layer_case(n, m, d, seed)
    params = [net.first.weight]
    r = (model(X) - y).detach()
    J = model.jacobian(X)                      # ngdlib's structured Jacobian (checked against jax elsewhere)
    F = J.T @ J / n
    mean = GGNLinearOperator(net, nn.MSELoss(reduction="mean"), params, data)
    summ = GGNLinearOperator(net, nn.MSELoss(reduction="sum"), params, data)
    # entries are sums of n products: round-off ~ n eps relative to the largest entry; 10 n eps.
    tol = 10 * n * EPS
    compare("two-layer GGN, MSELoss mean", "curvlinops GGNLinearOperator", "TwoLayerReLU.jacobian: J^T J / n",
            dense(mean) / 2, F, tol, "GGN(mean) = 2 J^T J / n = 2 F")
    compare("two-layer GGN, MSELoss sum", "curvlinops GGNLinearOperator", "TwoLayerReLU.jacobian: J^T J / n",
            dense(summ) / (2 * n), F, tol, "GGN(sum) = 2 J^T J = 2 n F")
    V = torch.randn(m, d, generator=torch.Generator().manual_seed(seed + 3), dtype=torch.float64)
    Fv = model.vjp(X, model.jvp(X, V)) / n     # matrix-free J^T (J v) / n
    compare("two-layer GGN matvec", "curvlinops GGNLinearOperator @ v", "TwoLayerReLU.jvp / vjp",
            (mean @ V.reshape(-1)).reshape(m, d) / 2, Fv, tol, "GGN(mean) v = 2 F v")
    # NGD: GGN(mean)^+ grad(mean loss) = (2F)^+ (2 J^T r / n) = F^+ grad L = J^T G^-1 r
    g = 2 * (J.T @ r) / n
    ngd = ngdlib.ngd_direction(model, X, r)
    cond = float(torch.linalg.cond(J @ J.T))
    Fp = pinv_known_rank(dense(mean), n, "GGN (rank n = number of inputs)")
    # dense pseudo-inverse: round-off ~ cond(G) eps; 1e2 x
    compare("two-layer NGD direction, dense GGN pseudo-inverse", "curvlinops GGN + pinv", "ngd_direction",
            (Fp @ g).reshape(m, d), ngd, 1e2 * cond * EPS, "GGN(mean)^+ grad(mean loss) = F^+ grad L")
    # CG in parameter space (GPyTorch's linear_cg, as curvlinops wraps it): from x0 = 0 on a consistent singular
    # system it stays in range(F) and converges to the minimum-norm solution, the NGD direction; stopped at relative
    # residual 1e-10, so the error is <= 1e-10 cond(F restricted to its range) = 1e-10 cond(G).
    cg = CGInverseLinearOperator(mean, tolerance=1e-10, max_iter=10 * n, eps=1e-300, stop_updating_after=1e-300)
    compare("two-layer NGD direction, CG on the GGN", "curvlinops CGInverseLinearOperator", "ngd_direction",
            (cg @ g).reshape(m, d), ngd, 1e-10 * cond * 10, "GGN(mean)^-1 (CG) grad(mean loss) = F^+ grad L")
    # K-FAC, type-2 (exact loss Hessian): 2 (S^T S / n) kron (X^T X / n) on the row-major W, S = model.features
    kfac = KFACLinearOperator(net, nn.MSELoss(reduction="mean"), params, data, fisher_type=FisherType.TYPE2)
    S = model.features(X)
    K_book = torch.kron(S.T @ S / n, X.T @ X / n)
    K = dense(kfac)
    compare("two-layer K-FAC matrix (type-2, mean)", "curvlinops KFACLinearOperator", "TwoLayerReLU.features",
            K / 2, K_book, tol, "KFAC(mean) = 2 (S^T S / n) kron (X^T X / n), S carries a_r / sqrt(m)")
    # direction: the book's eq. 12 has factors NOT divided by n and acts on J^T r:
    # [(S^T S)^+ kron (X^T X)^-1] J^T r = (1/n) KFAC(mean)^+ grad(mean loss)
    Kp = pinv_known_rank(K, n * d, "K-FAC (rank rank(S^T S) rank(X^T X) = n d)")
    kd = ngdlib.kfac_direction(model, X, r)
    condK = float(torch.linalg.cond(X.T @ X)) * float(torch.linalg.cond(S @ S.T))
    compare("two-layer K-FAC direction (eq. 12)", "curvlinops KFAC + pinv", "kfac_direction",
            (Kp @ g).reshape(m, d) / n, kd, 1e2 * condK * EPS,
            "book (factors not divided by n) = KFAC(mean)^+ grad(mean loss) / n")


# ----------------------------------------------------------------------------------------------------- deep network
class DeepMirror(nn.Module):
    """DeepMLP as nn.Linear layers whose weights are the blocks P_l and whose inputs are a_{l-1}."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.layers = nn.ModuleList()
        for P in model.blocks:
            lin = nn.Linear(P.shape[1], P.shape[0], bias=False)
            with torch.no_grad():
                lin.weight.copy_(P)
            self.layers.append(lin)

    def forward(self, X):
        h = X
        for l, lin in enumerate(self.layers):
            a = h * (self.model.sigma_w / math.sqrt(h.shape[1]))
            if self.model.bias:
                a = torch.cat([a, torch.full((h.shape[0], 1), self.model.sigma_b, dtype=h.dtype)], dim=1)
            u = lin(a)
            h = (torch.relu(u) if self.model.activation == "relu" else torch.tanh(u)) if l < len(self.layers) - 1 \
                else u
        return u


def _blocks(model):
    sizes = model.layer_sizes()
    return np.cumsum([0] + sizes)


def oracle_kernels(model, X, X_test, variants):
    """bar-Theta(X', X) = (1/N) J(X') G^+ J(X)^T for each variant, built only from curvlinops operators (dense) and
    dense pseudo-inverses at the structural rank. Returns {variant: (train kernel, test kernel)}."""
    N = X.shape[0]
    net = DeepMirror(model)
    params = [lin.weight for lin in net.layers]
    y = torch.zeros(N, 1, dtype=torch.float64)
    data = [(X, y)]
    J = dense(JacobianLinearOperator(net, params, data))
    J2 = dense(JacobianLinearOperator(net, params, [(X_test, torch.zeros(X_test.shape[0], 1))]))
    F = dense(GGNLinearOperator(net, nn.MSELoss(reduction="mean"), params, data)) / 2      # GGN(mean) = 2F
    cuts = _blocks(model)
    L = model.L
    sig = model.signals(X)  # only for the structural ranks (counts of non-zero backward signals), not the values
    out = {}
    for variant in variants:
        Gp = torch.zeros_like(F)
        if variant == "exact":
            Gp = pinv_known_rank(F, N, "F (rank N)")
        elif variant == "block_diag":
            for l in range(L):
                s = slice(cuts[l], cuts[l + 1])
                Gp[s, s] = pinv_known_rank(F[s, s], N, f"layer block {l + 1} (rank N)")
        elif variant == "tri_diag":
            layer = torch.cat([torch.full((cuts[l + 1] - cuts[l],), l) for l in range(L)])
            mask = ((layer[:, None] - layer[None, :]).abs() <= 1).to(F.dtype)
            rank_T = L - 1 if L % 3 == 2 else L
            Gp = pinv_known_rank(F * mask, rank_T * N, f"tri-diagonal F (rank rank(T) N = {rank_T * N})")
        elif variant == "unit_wise":
            for l in range(L):
                rows, cols = model.blocks[l].shape
                support = (sig.D[l] != 0).sum(0)         # inputs on which unit i's backward signal is non-zero
                for i in range(rows):
                    s = slice(cuts[l] + i * cols, cuts[l] + (i + 1) * cols)
                    k = int(min(support[i], cols))
                    if k > 0:
                        Gp[s, s] = pinv_known_rank(F[s, s], k, f"unit block ({l + 1}, {i}) (rank |support|)")
        elif variant == "kfac":
            net_k = DeepMirror(model)
            pk = [lin.weight for lin in net_k.layers]
            kfac = KFACLinearOperator(net_k, nn.MSELoss(reduction="mean"), pk, data, fisher_type=FisherType.TYPE2)
            K = dense(kfac)                                             # KFAC(mean) = 2 G_kfac
            state = kfac.state_dict()
            for l in range(L):
                s = slice(cuts[l], cuts[l + 1])
                aaT = state["input_covariances"][f"layers.{l}"]          # A^T A / N
                ggT = state["gradient_covariances"][f"layers.{l}"]       # 2 D^T D / N
                # the dense operator is the Kronecker product of these factors in the row-major order of P_l
                assert torch.allclose(K[s, s], torch.kron(ggT, aaT), rtol=1e-12, atol=1e-14 * float(K.abs().max()))
                # (B kron A)^+ = B^+ kron A^+; G = KFAC / 2, so G^+ = 2 KFAC^+
                Gp[s, s] = 2 * torch.kron(pinv_numerical_rank(ggT, f"K-FAC gradient factor {l + 1}"),
                                          pinv_numerical_rank(aaT, f"K-FAC input factor {l + 1}"))
        out[variant] = (J @ Gp @ J.T / N, J2 @ Gp @ J.T / N)
    return out


CASES = [
    # (name, widths, activation, bias, N, seed, variants)
    ("relu L=3", (10, 12, 12), "relu", True, 8, S(1401), ("exact", "block_diag", "tri_diag", "kfac", "unit_wise")),
    ("tanh L=3", (10, 12, 12), "tanh", True, 8, S(1402), ("unit_wise", "kfac")),
    ("relu L=5 (T singular)", (10, 16, 16, 16, 16), "relu", True, 8, S(1403), ("tri_diag", "block_diag")),
]


@pytest.mark.parametrize("name,widths,activation,bias,N,seed,variants", CASES, ids=[c[0] for c in CASES])
def test_part2_function_kernels_vs_curvlinops(name, widths, activation, bias, N, seed, variants):
    model = ngdlib.DeepMLP(widths, activation=activation, sigma_b=0.2, bias=bias, seed=seed)
    X = ngdlib.sphere(N, widths[0], seed=seed + 1)
    X_test = ngdlib.sphere(5, widths[0], seed=seed + 2)
    oracle = oracle_kernels(model, X, X_test, variants)
    for variant in variants:
        K_or, K2_or = oracle[variant]
        ours = approx_fisher.function_kernel(model, X, variant)
        ours2 = approx_fisher.function_kernel(model, X, variant, X_test=X_test)
        # A product with a pseudo-inverse at the structural rank: round-off ~ (cond of the kept spectrum) eps on
        # both sides; the kept spectra here have cond <= 1e6 (pinv_known_rank asserts a gap of 1e6 above noise),
        # so 1e-7 relative to the largest entry allows a factor 100 on top of 1e6 eps = 2.2e-10 -- and is still
        # 1e6 times smaller than any convention error (a factor 2, N or a dropped block is O(1)).
        tol = 1e-7
        mapping = ("(1/N) J G^+ J^T with J = curvlinops Jacobian, G = GGN(mean)/2 masked to the variant's blocks "
                   "(K-FAC: KFAC(mean)/2), dense pinv per block at the structural rank")
        compare(f"{variant} kernel, train ({name})", "curvlinops GGN/KFAC blocks + pinv",
                f"approx_fisher.function_kernel('{variant}')", ours, K_or, tol, mapping)
        compare(f"{variant} kernel, test x train ({name})", "curvlinops GGN/KFAC blocks + pinv",
                f"approx_fisher.function_kernel('{variant}')", ours2, K2_or, tol, mapping, record=False)
        alpha_or = float(torch.diagonal(K_or).mean())
        if variant == "unit_wise" and activation == "relu":
            # ReLU unit-wise: no exact isotropy; the oracle's per-sample coefficients are counts of active units
            # + 1 (every unit with non-zero signal contributes exactly 1), so alpha is a sum of integers / N.
            counts = torch.diagonal(K_or)
            compare(f"unit-wise ReLU coefficients are integers ({name})", "curvlinops GGN unit blocks + pinv",
                    "approx_fisher.function_kernel('unit_wise')", counts, torch.round(counts), tol,
                    "each unit block contributes the projection onto its support", record=False)
            continue
        pred = approx_fisher.predicted_alpha(model, variant, N)
        if variant == "kfac":
            # predicted_alpha's N (L - 1) + 1 assumes every hidden backward-signal matrix D_l (N x M_l) has rank N,
            # which "hidden widths >= N" does not ensure for ReLU (0/1 patterns: rank 6 of 8 here). With input
            # factors of full rank N every hidden layer contributes tr P_{D_l} = rank D_l, the output layer 1.
            sig = model.signals(X)
            ranks = [int(torch.linalg.matrix_rank(D)) for D in sig.D[:-1]]
            if not all(int(torch.linalg.matrix_rank(A)) == N for A in sig.A):
                pytest.fail("case chosen badly: an input factor A_l has rank < N")
            compare(f"alpha, kfac, sum_l rank(D_l) + 1 ({name})", "curvlinops kernel: tr / N",
                    "(rank-aware closed form)", alpha_or, sum(ranks) + 1, tol,
                    f"alpha = sum_(l<L) rank D_l + 1, ranks {ranks}")
            if ranks != [N] * len(ranks):
                note(f"alpha, kfac: predicted_alpha's N(L-1)+1 with rank D_l < N ({name}, ranks {ranks})",
                     "curvlinops kernel: tr / N", "approx_fisher.predicted_alpha",
                     abs(pred - alpha_or) / alpha_or, 0.0, "precondition 'hidden widths >= N' is not sufficient")
                continue
        compare(f"alpha, {variant} ({name})", "curvlinops kernel: tr / N", "approx_fisher.predicted_alpha",
                alpha_or, pred, tol, "alpha = mean diagonal of the oracle's bar-Theta")


def test_kfac_raw_vs_forster_vs_curvlinops():
    """K-FAC with M_0 < N: raw inputs are far from isotropic; inputs in radial isotropic position (Forster) give
    alpha = N (L - 2) + M_0 + 1 (no bias). Both kernels from curvlinops' K-FAC factors."""
    N, widths = 10, (4, 14, 14)
    model = ngdlib.DeepMLP(widths, bias=False, seed=S(1501))
    X_raw = ngdlib.sphere(N, widths[0], seed=S(1502))
    X_f, _ = ngdlib.forster(X_raw)
    X_test = ngdlib.sphere(4, widths[0], seed=S(1503))
    tol = 1e-7  # as in test_part2_function_kernels_vs_curvlinops
    mapping = "(2/N) J KFAC(mean)^+ J^T, K-FAC blocks from curvlinops (type-2), dense pinv per block"
    spreads = {}
    for name, X in (("raw", X_raw), ("Forster", X_f)):
        K_or, K2_or = oracle_kernels(model, X, X_test, ("kfac",))["kfac"]
        compare(f"kfac kernel, M_0 < N, {name} inputs", "curvlinops KFAC blocks + pinv",
                "approx_fisher.function_kernel('kfac')", approx_fisher.function_kernel(model, X, "kfac"), K_or, tol,
                mapping)
        compare(f"kfac kernel, M_0 < N, {name} inputs, test x train", "curvlinops KFAC blocks + pinv",
                "approx_fisher.function_kernel('kfac')",
                approx_fisher.function_kernel(model, X, "kfac", X_test=X_test), K2_or, tol, mapping, record=False)
        iso = approx_fisher.isotropy(K_or)
        spreads[name] = iso.spread
        if name == "Forster":
            pred = approx_fisher.predicted_alpha(model, "kfac", N)
            compare("alpha, kfac, Forster inputs (M_0 < N)", "curvlinops kernel: tr / N",
                    "approx_fisher.predicted_alpha", iso.alpha, pred, tol, "alpha = N (L - 2) + M_0 + 1")
            assert iso.spread < 1e-7, iso.spread
    # raw inputs: per-sample coefficients differ by a visible amount (leverages of X X^T are not all M_0 / N)
    note("kfac coefficient spread, raw inputs (M_0 < N)", "curvlinops KFAC blocks + pinv", "(spread, not a diff)",
         spreads["raw"], 0.0, "(max - min) / alpha of the diagonal; Forster: < 1e-7")
    assert spreads["raw"] > 1e-2, spreads
