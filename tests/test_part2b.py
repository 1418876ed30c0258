"""Part II-b: deep linear networks (ngdlib.deep_linear) and Chatterjee's criterion (ngdlib.chatterjee).

Every fast path against a dense float64 reference built on autograd / torch.func, and every bad input refused with a
ValueError that names the violated assumption.
"""
import math

import pytest
import torch

from ngdlib import chatterjee as ch
from ngdlib import deep_linear as dl
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


def test_whitened_data_loss_identity():
    data = dl.whitened_data(50, 4, 2, seed=3, noise=0.3)
    assert_close(data.X.T @ data.X / 50, torch.eye(4, dtype=F64), rtol=0, atol=1e-13, what="whitening")
    layers = _layers(4, [3], 2, seed=1)
    assert math.isclose(dl.data_loss(layers, data.X, data.Y), dl.loss(layers, data.Phi) + data.offset,
                        rel_tol=1e-12, abs_tol=1e-13)
    assert dl.whitened_data(50, 4, 2, seed=3).Phi.equal(dl.whitened_data(50, 4, 2, seed=3).Phi)


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
    assert math.isclose(dl.theorem1_delta_bound(0.5, Phi, 2), 0.25 / (256 * 8 * 5.0), rel_tol=1e-14)
    assert math.isclose(dl.theorem1_eta_bound(0.5, 5.0, 2), 0.5 ** 3 / (6144 * 8 * 5.0 ** 4), rel_tol=1e-14)
    assert math.isclose(dl.theorem1_rate(0.1, 0.25, 3), 1 - 0.1 * 0.25 ** (4 / 3), rel_tol=1e-14)
    assert math.isclose(dl.flow_rate(0.25, 3), 2 * 0.25 ** (4 / 3), rel_tol=1e-14)
    assert dl.RECALLED_T1_CONSTANTS["status"].startswith("recalled")


def test_deficiency_margin_and_sigma_min():
    Phi = torch.diag(torch.tensor([2.0, 1.0], dtype=F64))
    W = Phi + torch.tensor([[0.3, 0.0], [0.0, -0.4]], dtype=F64)
    assert math.isclose(dl.deficiency_margin(W, Phi), 1.0 - 0.5, rel_tol=1e-14)
    assert dl.sigma_min(W) >= dl.deficiency_margin(W, Phi)


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
    ("zero margin", lambda: dl.theorem1_eta_bound(0.0, 1.0, 3), "deficiency margin"),
    ("depth zero", lambda: dl.theorem1_delta_bound(0.1, 1.0, 0), "depth N"),
    ("not whitenable", lambda: dl.whitened_data(3, 5, 1), "n >= d_in"),
    ("bad times", lambda: dl.gradient_flow([torch.eye(2, dtype=F64)], torch.eye(2, dtype=F64), [1.0, 0.5]),
     "increasing"),
    ("not PSD", lambda: dl.psd_power(-torch.eye(2, dtype=F64), 0.5), "positive semi-definite"),
    ("bad std", lambda: dl.gaussian_init([2, 2], 0.0), "std"),
]


@pytest.mark.parametrize("bad", BAD_DL, ids=[c[0] for c in BAD_DL])
def test_deep_linear_bad_input(bad):
    _, fn, words = bad
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        fn()


# ------------------------------------------------------------------------------------------ Chatterjee: references
def test_toy_ratio_and_alpha():
    x0 = torch.tensor([1.5, -0.3], dtype=F64)
    pts = ch.sample_ball(x0, 1.0, 300, seed=2)
    assert bool((torch.linalg.vector_norm(pts - x0, dim=1) <= 1.0 + 1e-15).all())
    assert_close(ch.grad_ratio(ch.toy_loss, pts), 4 * (pts ** 2).sum(dim=1), rtol=1e-12, atol=1e-13,
                 what="|grad f|^2 / f = 4 |x|^2")
    alpha = ch.toy_alpha(x0, 1.0)
    assert math.isclose(alpha, 4 * (math.hypot(1.5, 0.3) - 1.0) ** 2, rel_tol=1e-14)
    assert ch.sampled_ratio_min(ch.toy_loss, x0, 1.0, 500) >= alpha          # samples only bound the inf from above
    assert ch.toy_alpha(x0, 2.0) == 0.0
    assert math.isnan(float(ch.grad_ratio(ch.toy_loss, torch.tensor([2.0, 0.5], dtype=F64))))   # f = 0


def test_toy_hessian_bound_dominates_autograd_hessian():
    x0 = torch.tensor([2.0, 0.4], dtype=F64)
    beta = ch.toy_hessian_bound(x0, 1.0)
    for p in ch.sample_ball(x0, 1.0, 200, seed=3):
        H = torch.func.hessian(ch.toy_loss)(p)
        assert float(torch.linalg.matrix_norm(H, ord=2)) <= beta


def test_gd_certificate_on_toy():
    x0 = torch.tensor([2.0, 0.4], dtype=F64)
    r = 1.0
    f0, alpha, beta = float(ch.toy_loss(x0)), ch.toy_alpha(x0, r), ch.toy_hessian_bound(x0, r)
    cert = ch.gd_certificate(f0, r, alpha, beta, 0.5 / beta)
    assert cert["holds"] and math.isclose(cert["theta"], 0.75)
    _, h = ch.gradient_descent(ch.toy_loss, x0, 0.5 / beta, 200)
    f = h.tensor("f")
    assert bool((f <= cert["rate"] ** torch.arange(len(f), dtype=F64) * f0 * (1 + 1e-12)).all())
    assert max(h.path) <= cert["path_bound"] < r
    assert not ch.gd_certificate(f0, r, alpha, beta, 2.0 / beta)["holds"]      # eta * beta > 1


ARCHS = [([6], "tanh"), ([6, 4], "tanh"), ([5, 5, 3], "softplus"), ([4, 7], "sigmoid")]


@pytest.mark.parametrize("arch", ARCHS, ids=[f"{a[1]}-{a[0]}" for a in ARCHS])
def test_kernel_at_zero_matches_dense_jacobian(arch):
    widths, act = arch
    d, n = 7, 5
    net = ch.FeedForward(d, widths, act, scale=2.5)
    theta = net.positive_init(seed=1)
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(2), dtype=F64)
    J1 = net.first_layer_jacobian(theta, X)
    assert J1.shape == (n, widths[0] * d)
    assert_close(net.kernel_at_zero(theta, X), J1 @ J1.T, what="J_1 J_1^T = |v|^2 X X^T")
    v = net.first_layer_backprop(theta)
    assert_close(J1.reshape(n, widths[0], d), v[None, :, None] * X[:, None, :], what="J_1 rows = v x_i^T")
    assert bool((v > 0).all()), "positive weights and increasing activation give a positive backprop vector"


def test_scale_enters_quadratically_at_zero():
    net1 = ch.FeedForward(6, [5, 4], "tanh", scale=1.0)
    net3 = ch.FeedForward(6, [5, 4], "tanh", scale=3.0)
    theta = net1.positive_init(seed=0)
    X = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    y = torch.randn(4, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert float(net1.loss(theta, X, y)) == float(net3.loss(theta, X, y)) == float((y ** 2).mean())
    r1 = float(ch.grad_ratio(net1.loss_fn(X, y), theta))
    r3 = float(ch.grad_ratio(net3.loss_fn(X, y), theta))
    assert math.isclose(r3, 9 * r1, rel_tol=1e-12)


def _unit_rows(n, d, seed):
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return X / torch.linalg.vector_norm(X, dim=1, keepdim=True)


def test_alpha_lower_bound_below_sampled_ratios_one_hidden():
    X = _unit_rows(4, 6, 0)
    y = torch.randn(4, generator=torch.Generator().manual_seed(1), dtype=F64)
    net = ch.FeedForward(6, [5], "tanh", scale=4.0)
    theta0 = net.positive_init(seed=0)
    r = 0.4
    lb = ch.alpha_lower_bound(net, theta0, X, r)
    assert lb > 0
    assert ch.sampled_ratio_min(net.loss_fn(X, y), theta0, r, k=300, seed=5) >= lb


def test_alpha_lower_bound_below_sampled_ratios_two_hidden():
    X = _unit_rows(3, 5, 3)
    y = torch.randn(3, generator=torch.Generator().manual_seed(4), dtype=F64)
    net = ch.FeedForward(5, [4, 4], "tanh", scale=4.0)
    W1 = torch.zeros(4, 5, dtype=F64)
    W2 = torch.eye(4, dtype=F64) + 0.05                     # positive entries, singular values >= 1
    a = torch.full((4,), 0.5, dtype=F64)
    theta0 = net.flatten([W1, W2, a])
    r = 0.3
    lb = ch.alpha_lower_bound(net, theta0, X, r)
    assert lb > 0
    assert ch.sampled_ratio_min(net.loss_fn(X, y), theta0, r, k=300, seed=6) >= lb


def test_alpha_lower_bound_vanishes_when_d_below_n():
    X = _unit_rows(6, 4, 1)
    net = ch.FeedForward(4, [5], "tanh", scale=10.0)
    assert ch.alpha_lower_bound(net, net.positive_init(0), X, 0.2) == 0.0


def test_hessian_bound_dominates_autograd_hessian():
    X = _unit_rows(4, 6, 2)
    y = torch.randn(4, generator=torch.Generator().manual_seed(3), dtype=F64)
    net = ch.FeedForward(6, [5], "tanh", scale=3.0)
    theta0 = net.positive_init(seed=1)
    r = 0.5
    beta = ch.hessian_bound(net, theta0, X, y, r)
    f = net.loss_fn(X, y)
    for p in ch.sample_ball(theta0, r, 40, seed=4):
        H = torch.func.hessian(f)(p)
        assert float(torch.linalg.matrix_norm(H, ord=2)) <= beta


def test_gradient_descent_divergence_stops_and_flags():
    """The one divergence rule (ngdlib.train): a diverging step size stops the run with diverged = True and records
    only finite iterates; it does not raise."""
    x, h = ch.gradient_descent(ch.toy_loss, torch.tensor([1.5, 0.5], dtype=F64), 10.0, 50)
    assert h.diverged and "blew up" in h.stop_reason
    assert all(math.isfinite(v) for v in h.f) and h.steps < 50


def test_gradient_descent_history():
    x0 = torch.tensor([2.0, 0.4], dtype=F64)
    x, h = ch.gradient_descent(ch.toy_loss, x0, 0.01, 5, keep_path=True)
    assert h.xs.shape == (6, 2) and len(h.f) == 6
    assert math.isclose(h.dist[-1], float(torch.linalg.vector_norm(x - x0)), rel_tol=1e-12)
    assert h.path[-1] >= h.dist[-1]


# ------------------------------------------------------------------------------------------ Chatterjee: bad input
def _net():
    return ch.FeedForward(4, [3], "tanh")


BAD_CH = [
    ("relu refused", lambda: ch.FeedForward(4, [3], "relu"), "smooth and strictly increasing"),
    ("bad widths", lambda: ch.FeedForward(4, [], "tanh"), "hidden widths"),
    ("zero scale", lambda: ch.FeedForward(4, [3], "tanh", scale=0.0), "scale"),
    ("W1 not zero", lambda: _net().kernel_at_zero(torch.ones(_net().num_params, dtype=F64),
                                                   torch.ones(2, 4, dtype=F64)), "W_1 = 0"),
    ("X wrong width", lambda: _net().forward(_net().positive_init(0), torch.ones(2, 5, dtype=F64)), "n x d"),
    ("theta wrong length", lambda: _net().unflatten(torch.ones(3, dtype=F64)), "length"),
    ("hessian bound needs L=1", lambda: ch.hessian_bound(ch.FeedForward(4, [3, 3]),
        ch.FeedForward(4, [3, 3]).positive_init(0), torch.ones(2, 4, dtype=F64), torch.ones(2, dtype=F64), 0.1),
     "one hidden layer"),
    ("alpha bound needs tanh", lambda: ch.alpha_lower_bound(ch.FeedForward(4, [3], "softplus"),
        ch.FeedForward(4, [3], "softplus").positive_init(0), torch.ones(2, 4, dtype=F64), 0.1), "tanh"),
    ("negative f", lambda: ch.grad_ratio(lambda x: -(x ** 2).sum(), torch.ones(2, dtype=F64)), "non-negative"),
    ("zero radius", lambda: ch.toy_alpha(torch.ones(2, dtype=F64), 0.0), "radius"),
    ("toy in R^3", lambda: ch.toy_alpha(torch.ones(3, dtype=F64), 1.0), "R^2"),
    ("bad eta", lambda: ch.gd_certificate(1.0, 1.0, 1.0, 1.0, -0.1), "eta"),
]


@pytest.mark.parametrize("bad", BAD_CH, ids=[c[0] for c in BAD_CH])
def test_chatterjee_bad_input(bad):
    _, fn, words = bad
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)").replace("^", r"\^")):
        fn()
