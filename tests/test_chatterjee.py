"""ngdlib.chatterjee: Chatterjee's convergence criterion.

Every fast path against a dense float64 reference built on autograd / torch.func, and every bad input refused with a
ValueError that names the violated assumption.

(Split from tests/test_part2b.py: tests are named after the module they test.)
"""
import math

import pytest
import torch

from ngdlib import chatterjee as ch
from ngdlib.testing import assert_close

F64 = torch.float64


ARCHS = [([6], "tanh"), ([6, 4], "tanh"), ([5, 5, 3], "softplus"), ([4, 7], "sigmoid")]


def _unit_rows(n, d, seed):
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return X / torch.linalg.vector_norm(X, dim=1, keepdim=True)


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


def test_hessian_bound_within_its_derived_factor_of_the_hessian_one_input():
    """Tightness: with one input, at theta* (W_1 = 0, |a| = |a_0| + r = A) the autograd Hessian norm is at least
    2 lambda^2 A^2 |x|^2 (Rayleigh quotient along grad u; tanh''(0) = 0 kills the W_1-W_1 block), and beta exceeds that
    by 1 + (lambda A |x| r + |y|)((|a_0|_inf + r) c_2 |x| + 1)/(lambda |x| A^2) < 2 here: a beta too small by 2 fails."""
    X = _unit_rows(1, 6, 7)
    y = torch.tensor([0.5], dtype=F64)
    net = ch.FeedForward(6, [5], "tanh", scale=20.0)
    theta0 = net.positive_init(seed=1)
    r = 0.3
    beta = ch.hessian_bound(net, theta0, X, y, r)
    a0 = net.unflatten(theta0)[-1]
    A = float(a0.norm()) + r
    theta_star = net.flatten([torch.zeros(5, 6, dtype=F64), a0 * A / float(a0.norm())])
    H = float(torch.linalg.matrix_norm(torch.func.hessian(net.loss_fn(X, y))(theta_star), ord=2))
    lower = 2 * 20.0 ** 2 * A ** 2
    assert H >= lower * (1 - 1e-10)
    assert beta >= H and beta / lower < 2


def test_alpha_lower_bound_nearly_attained_one_neuron_one_input():
    """Tightness: m = n = 1, a_0 = 20, r = 1 (zeta = 1): at w = r x/|x|, a = a_0 the autograd ratio is exactly
    S = (a_0/(a_0 - r))^2 + tanh^2(1) cosh^4(1)/(a_0 - r)^2 = 1.117 times the bound, so a bound with sech^2 (2.38 times
    larger) exceeds a ratio taken in the ball."""
    x = _unit_rows(1, 5, 8)
    net = ch.FeedForward(5, [1], "tanh", scale=1.0)
    theta0 = net.flatten([torch.zeros(1, 5, dtype=F64), torch.tensor([20.0], dtype=F64)])
    lb = ch.alpha_lower_bound(net, theta0, x, 1.0)
    point = net.flatten([x, torch.tensor([20.0], dtype=F64)])
    ratio = float(ch.grad_ratio(net.loss_fn(x, torch.tensor([-1.0], dtype=F64)), point))
    S = (20 / 19) ** 2 + math.tanh(1.0) ** 2 * math.cosh(1.0) ** 4 / 19 ** 2
    assert lb <= ratio <= S * lb * (1 + 1e-12)


def test_gd_path_bound_attained_up_to_theta_least_squares():
    """Tightness: for f(x) = (a.x - b)^2, alpha = 4|a|^2 and beta = 2|a|^2 exactly, GD moves on a line and its path
    after K steps is |b|/|a| (1 - (1 - eta beta)^K) = 2 sqrt(f0/alpha)(1 - ...): path / bound = theta (1 - ...)."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(7, generator=g, dtype=F64)
    b = 1.3
    f = lambda x: (a @ x - b) ** 2  # noqa: E731
    x0 = torch.zeros(7, dtype=F64)
    alpha, beta = 4 * float(a @ a), 2 * float(a @ a)
    for eta in (0.5 / beta, 0.1 / beta):
        theta = 1 - eta * beta / 2
        cert = ch.gd_certificate(b * b, 10.0, alpha, beta, eta)
        _, h = ch.gradient_descent(f, x0, eta, 400, keep_path=True)
        path = float(torch.linalg.vector_norm(h.xs[1:] - h.xs[:-1], dim=1).sum())
        done = 1 - (1 - eta * beta) ** h.steps
        assert cert["holds"]
        assert math.isclose(path, b / float(a.norm()) * done, rel_tol=1e-12)
        assert math.isclose(cert["path_bound"], path / (theta * done), rel_tol=1e-12)


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


@pytest.mark.parametrize("bad", BAD_CH, ids=[c[0] for c in BAD_CH])
def test_chatterjee_bad_input(bad):
    _, fn, words = bad
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)").replace("^", r"\^")):
        fn()
