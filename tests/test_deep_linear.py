"""ngdlib.deep_linear: deep linear networks (Arora et al. 2019).

Every fast path against a dense float64 reference built on autograd / torch.func, and every bad input refused with a
ValueError that names the violated assumption.

(Split from tests/test_part2b.py: tests are named after the module they test.)
"""
import math

import pytest
import torch

from ngdlib import _linalg
from ngdlib import deep_linear as dl
from ngdlib.data import whitened_data
from ngdlib.testing import assert_close

F64 = torch.float64


SHAPES = [
    # (d_0, hidden widths, d_N)
    (4, [], 3),
    (5, [5], 3),
    (3, [4, 6], 5),
    (6, [2, 3, 2], 2),
    (4, [4, 4, 4, 4, 4, 4, 4], 1),
]


def _layers(d0, hidden, dN, seed=0, std=0.7):
    return dl.gaussian_init([d0] + hidden + [dN], std, seed=seed)


def _phi(d0, dN, seed=1):
    return torch.randn(dN, d0, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _autograd_grads(layers, Phi):
    def loss(*Ws):
        P = Ws[0]
        for W in Ws[1:]:
            P = W @ P
        return 0.5 * ((P - Phi) ** 2).sum()

    return torch.func.grad(loss, argnums=tuple(range(len(layers))))(*layers)


# ------------------------------------------------------------------------------------------ deep linear: bad input
BAD_DL = [
    ("empty layers", lambda: dl.end_to_end([]), "non-empty"),
    ("shapes do not chain", lambda: dl.end_to_end([torch.ones(3, 2, dtype=F64), torch.ones(2, 2, dtype=F64)]),
     "do not chain"),
    ("NaN layer", lambda: dl.balancedness([torch.full((2, 2), float("nan"), dtype=F64)]), "NaN"),
    ("dtype mismatch", lambda: dl.end_to_end([torch.ones(2, 2, dtype=F64), torch.ones(2, 2)]), "must match"),
    ("Phi wrong shape", lambda: dl.loss([torch.ones(2, 3, dtype=F64)], torch.ones(3, 2, dtype=F64)), "d_N x d_0"),
    ("hidden too narrow", lambda: dl.balanced_init(torch.ones(3, 4, dtype=F64), [2]), "condition (i)"),
    ("negative step", lambda: dl.gd_step([torch.ones(2, 2, dtype=F64)], torch.ones(2, 2, dtype=F64), -1.0),
     "eta"),
    ("zero margin", lambda: dl.arora_theorem1_eta_bound(0.0, 1.0, 3), "deficiency margin"),
    ("depth zero", lambda: dl.arora_theorem1_delta_bound(0.1, 1.0, 0), "depth N"),
    ("not whitenable", lambda: whitened_data(3, 5, 1), "n >= d_in"),
    ("bad times", lambda: dl.gradient_flow([torch.eye(2, dtype=F64)], torch.eye(2, dtype=F64), [1.0, 0.5]),
     "increasing"),
    ("not PSD", lambda: _linalg.psd_power(-torch.eye(2, dtype=F64), 0.5), "positive semi-definite"),
    ("bad std", lambda: dl.gaussian_init([2, 2], 0.0), "std"),
]


# ------------------------------------------------------------------------------------------ deep linear: references
@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_gradients_match_autograd(shape):
    d0, hidden, dN = shape
    layers, Phi = _layers(d0, hidden, dN), _phi(d0, dN)
    for g, ref in zip(dl.gradients(layers, Phi), _autograd_grads(layers, Phi)):
        assert_close(g, ref, what="deep linear gradient vs autograd")


@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_balanced_init_product_and_balance(shape):
    d0, hidden, dN = shape
    A = _phi(d0, dN, seed=7)
    layers = dl.balanced_init(A, hidden)
    assert dl.dims(layers) == tuple([d0] + hidden + [dN])
    assert_close(dl.end_to_end(layers), A, rtol=1e-12, atol=1e-13, what="Procedure 1 product")
    assert dl.balancedness(layers) < 1e-13 * max(1.0, float(torch.linalg.matrix_norm(A)) ** 2)


def test_balanced_init_rank_deficient_target():
    A = torch.outer(torch.arange(1.0, 4.0, dtype=F64), torch.arange(1.0, 5.0, dtype=F64))   # rank 1, 3 x 4
    layers = dl.balanced_init(A, [3, 3])
    assert_close(dl.end_to_end(layers), A, rtol=1e-12, atol=1e-13, what="rank-deficient product")
    assert dl.balancedness(layers) < 1e-12


@pytest.mark.parametrize("shape", SHAPES[1:], ids=[str(s) for s in SHAPES[1:]])
def test_one_step_balancedness_identity(shape):
    # D_j(t+1) - D_j(t) = eta^2 (G_{j+1}^T G_{j+1} - G_j G_j^T) exactly (A-BAL)
    d0, hidden, dN = shape
    layers, Phi = _layers(d0, hidden, dN, seed=3), _phi(d0, dN, seed=4)
    eta = 0.05
    G = dl.gradients(layers, Phi)
    new = dl.gd_step(layers, Phi, eta)
    for j, (D0, D1) in enumerate(zip(dl.balancedness_gaps(layers), dl.balancedness_gaps(new))):
        pred = eta ** 2 * (G[j + 1].T @ G[j + 1] - G[j] @ G[j].T)
        scale = max(float(W.abs().max()) for W in layers) ** 2
        assert_close(D1 - D0, pred, rtol=0, atol=1e-13 * max(1.0, scale), what=f"balancedness identity, pair {j + 1}")


def test_end_to_end_velocity_matches_jvp_and_balanced_formula():
    A = _phi(4, 3, seed=5)
    Phi = _phi(4, 3, seed=6)
    for hidden in ([4], [5, 3], [3, 3, 3]):
        layers = dl.balanced_init(A, hidden)
        G = dl.gradients(layers, Phi)
        _, tangent = torch.func.jvp(lambda *Ws: dl.end_to_end(list(Ws)), tuple(layers), tuple(-g for g in G))
        v = dl.end_to_end_velocity(layers, Phi)
        assert_close(v, tangent, rtol=1e-10, atol=1e-12, what="end-to-end velocity vs jvp")
        assert_close(dl.balanced_velocity(A, Phi, len(hidden) + 1), v, rtol=1e-9, atol=1e-11,
                     what="balanced end-to-end dynamics")


def test_balanced_velocity_fails_for_unbalanced_layers():
    # negative control: the closed form needs balancedness
    layers = _layers(4, [4], 3, seed=8)
    Phi = _phi(4, 3, seed=9)
    diff = dl.balanced_velocity(dl.end_to_end(layers), Phi, 2) - dl.end_to_end_velocity(layers, Phi)
    assert float(diff.abs().max()) > 1e-3


def test_gradient_flow_conserves_balancedness_and_decreases_loss():
    layers = _layers(3, [3], 2, seed=2, std=0.8)
    Phi = _phi(3, 2, seed=3)
    states = dl.gradient_flow(layers, Phi, [0.0, 0.5, 2.0])
    losses = [dl.loss(s, Phi) for s in states]
    assert losses[0] > losses[1] > losses[2]
    for s in states:
        for D0, D in zip(dl.balancedness_gaps(layers), dl.balancedness_gaps(s)):
            assert_close(D, D0, rtol=0, atol=1e-8, what="balancedness under gradient flow")


def test_train_gd_history_and_divergence():
    layers = _layers(3, [3], 2, seed=4, std=0.5)
    Phi = _phi(3, 2, seed=5)
    out, h = dl.train_gd(layers, Phi, 0.01, 20)
    assert h.steps == 20 and len(h.balancedness) == 21 and not h.diverged
    assert math.isclose(h.loss[-1], dl.loss(out, Phi), rel_tol=1e-12)
    assert layers[0].equal(_layers(3, [3], 2, seed=4, std=0.5)[0]), "inputs must not be modified"
    _, hd = dl.train_gd(layers, Phi, 50.0, 200)
    assert hd.diverged


def test_theorem1_bounds_formulas():
    Phi = torch.diag(torch.tensor([3.0, 4.0], dtype=F64))            # ||Phi||_F = 5
    assert math.isclose(dl.arora_theorem1_delta_bound(0.5, Phi, 2), 0.25 / (256 * 8 * 5.0), rel_tol=1e-14)
    assert math.isclose(dl.arora_theorem1_eta_bound(0.5, 5.0, 2), 0.5 ** 3 / (6144 * 8 * 5.0 ** 4), rel_tol=1e-14)
    assert math.isclose(dl.arora_theorem1_rate(0.1, 0.25, 3), 1 - 0.1 * 0.25 ** (4 / 3), rel_tol=1e-14)
    assert math.isclose(dl.flow_rate(0.25, 3), 2 * 0.25 ** (4 / 3), rel_tol=1e-14)
    assert dl.RECALLED_T1_CONSTANTS["status"].startswith("recalled")


def test_deficiency_margin_and_sigma_min():
    Phi = torch.diag(torch.tensor([2.0, 1.0], dtype=F64))
    W = Phi + torch.tensor([[0.3, 0.0], [0.0, -0.4]], dtype=F64)
    assert math.isclose(dl.deficiency_margin(W, Phi), 1.0 - 0.5, rel_tol=1e-14)
    assert dl.sigma_min(W) >= dl.deficiency_margin(W, Phi)


@pytest.mark.parametrize("bad", BAD_DL, ids=[c[0] for c in BAD_DL])
def test_deep_linear_bad_input(bad):
    _, fn, words = bad
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        fn()
