"""Part I-a (Conditions 1-2, Theorems 1-3): ngdlib.stability, ngdlib.bounds and ngdlib.losses.

Every fast path against a dense float64 reference built on torch.func (ngdlib.reference), every bound against its
formula and its limiting cases, and every bad input against the ValueError that names the violated assumption.
"""
import math

import pytest
import torch

import ngdlib
from ngdlib import bounds, losses, reference, stability
from ngdlib.testing import assert_close

F64 = torch.float64

# name, n, d, m, seed (tiny: the dense reference forms n x md Jacobians)
SMALL = [("tiny", 5, 3, 20, 0), ("square-ish", 8, 4, 30, 1), ("d>n", 3, 10, 7, 2), ("wider", 12, 6, 60, 4)]


def _setup(n, d, m, seed, radius=1.5):
    X = ngdlib.sphere(n, d, seed=seed)
    net = ngdlib.TwoLayerReLU(d, m, seed=seed + 100)
    W1 = net.W.detach() + stability.random_perturbation(net, radius, seed + 200)
    moved = ngdlib.TwoLayerReLU(d, m, seed=seed + 100)
    with torch.no_grad():
        moved.W.copy_(W1)
    return X, net, moved, W1


def _exact_segment_jacobian(net, X, W0, W1):
    """Jbar = int_0^1 J(W0 + s (W1 - W0)) ds by autodiff: J is constant between the kinks s*_ir = -z/dz, so the
    integral is a finite sum of dense Jacobians at interval midpoints weighted by the interval lengths."""
    Z, dZ = X @ W0.T, X @ (W1 - W0).T
    nz = dZ != 0
    s = (-Z[nz] / dZ[nz])
    s = s[(s > 0) & (s < 1)]
    knots = torch.cat([torch.zeros(1, dtype=F64), torch.sort(s).values, torch.ones(1, dtype=F64)])
    probe = ngdlib.TwoLayerReLU(net.d, net.m, seed=0)
    with torch.no_grad():
        probe.a.copy_(net.a)
    Jbar = 0
    for a, b in zip(knots[:-1], knots[1:]):
        if b <= a:
            continue
        with torch.no_grad():
            probe.W.copy_(W0 + 0.5 * (a + b) * (W1 - W0))
        Jbar = Jbar + (b - a) * reference.jacobian(probe, X)
    return Jbar


# ------------------------------------------------------------------------------------------------ stability
@pytest.mark.parametrize("small", SMALL, ids=[c[0] for c in SMALL])
def test_jacobian_distance_matches_autodiff(small):
    _, n, d, m, seed = small
    X, net, moved, W1 = _setup(n, d, m, seed)
    dense = torch.linalg.matrix_norm(reference.jacobian(moved, X) - reference.jacobian(net, X), ord=2)
    fast = stability.jacobian_distance(net, X, W1)
    assert_close(torch.tensor(fast, dtype=F64), dense, rtol=1e-10, atol=1e-12, what="||J(W1) - J(W0)||_2")
    assert stability.jacobian_distance(net, X, net.W.detach()) == 0.0


@pytest.mark.parametrize("small", SMALL, ids=[c[0] for c in SMALL])
def test_segment_jacobian_and_step_constant_match_autodiff(small):
    _, n, d, m, seed = small
    X, net, moved, W1 = _setup(n, d, m, seed)
    W0 = net.W.detach()
    Jbar = _exact_segment_jacobian(net, X, W0, W1)
    # Jbar vec(W1 - W0) = u(W1) - u(W0), exactly (piecewise-linear output)
    with torch.no_grad():
        du = moved(X) - net(X)
    assert_close(Jbar @ (W1 - W0).reshape(-1), du, rtol=1e-10, atol=1e-12, what="dense Jbar dw vs du")
    assert_close(stability.segment_jvp(net, X, W0, W1), du, rtol=1e-10, atol=1e-12, what="segment_jvp vs du")
    # the activation fractions reproduce the dense Jbar
    Phi = stability.segment_activation(X, W0, W1)
    Jbar_fast = ((Phi * net.a / math.sqrt(m))[:, :, None] * X[:, None, :]).reshape(n, m * d)
    assert_close(Jbar_fast, Jbar, rtol=1e-10, atol=1e-12, what="structured Jbar vs dense")
    if n <= m * d and float(torch.linalg.eigvalsh(net.gram(X))[0]) > 1e-8:
        J0 = reference.jacobian(net, X)
        E = (Jbar - J0) @ torch.linalg.pinv(J0)
        c_dense = torch.linalg.matrix_norm(E, ord=2)
        assert_close(torch.tensor(stability.step_constant(net, X, W0, W1), dtype=F64), c_dense, rtol=1e-8,
                     atol=1e-12, what="step constant vs dense ||(Jbar - J) J^+||")


def test_segment_activation_limits():
    X = ngdlib.sphere(4, 3, seed=0)
    W0 = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    Phi = stability.segment_activation(X, W0, W0.clone())          # no movement: the pattern itself
    assert torch.equal(Phi, (X @ W0.T > 0).to(F64))
    Phi = stability.segment_activation(X, W0, -W0)                  # through the origin: active half the way
    assert_close(Phi, torch.full_like(Phi, 0.5), rtol=0, atol=1e-15, what="W0 -> -W0")


def test_trace_ngd_follows_train_and_is_exact():
    X = ngdlib.sphere(10, 5, seed=3)
    y = torch.randn(10, dtype=F64, generator=torch.Generator().manual_seed(4))
    a = ngdlib.TwoLayerReLU(5, 300, seed=5)
    b = ngdlib.TwoLayerReLU(5, 300, seed=5)
    tr = stability.trace_ngd(a, X, y, 0.7, 5)
    h = ngdlib.train(b, X, y, "ngd", 0.7, 5, progress=False)
    assert_close(tr.tensor("residual_norm"), h.tensor("residual_norm"), rtol=1e-10, atol=1e-13, what="residuals")
    assert_close(a.W.detach(), b.W.detach(), rtol=1e-10, atol=1e-13, what="weights")
    assert max(tr.linearisation_error) < 1e-12
    assert tr.jacobian_change[0] == 0.0 and len(tr.step_constant) == tr.steps == 5
    # step constants reproduce the standalone function
    c = ngdlib.TwoLayerReLU(5, 300, seed=5)
    W0 = c.W.detach().clone()
    D = ngdlib.ngd_direction(c, X, c(X).detach() - y)
    assert_close(torch.tensor(stability.step_constant(c, X, W0, W0 - 0.7 * D), dtype=F64),
                 torch.tensor(tr.step_constant[0], dtype=F64), rtol=1e-10, atol=1e-14, what="c_0")
    # the path constant is 3 max ||J - J0|| / sqrt(lambda_min(G(0)))
    worst = max(tr.jacobian_change + tr.segment_change)
    assert stability.path_constant(tr) == pytest.approx(3 * worst / math.sqrt(tr.lambda_min_gram[0]))


def test_one_step_at_eta_one_is_bounded_by_c0():
    X = ngdlib.sphere(12, 6, seed=1)
    y = torch.randn(12, dtype=F64, generator=torch.Generator().manual_seed(2))
    tr = stability.trace_ngd(ngdlib.TwoLayerReLU(6, 500, seed=3), X, y, 1.0, 1)
    assert tr.residual_norm[1] <= tr.step_constant[0] * tr.residual_norm[0] + 1e-12


def test_perturbations_and_radius():
    X = ngdlib.sphere(10, 5, seed=0)
    y = torch.randn(10, dtype=F64, generator=torch.Generator().manual_seed(1))
    net = ngdlib.TwoLayerReLU(5, 2000, seed=2)
    R = stability.condition2_radius(net, X, y)
    lam = float(torch.linalg.eigvalsh(net.gram(X))[0])
    assert R == pytest.approx(3 * float((y - net(X).detach()).norm()) / math.sqrt(lam), rel=1e-12)
    D = stability.random_perturbation(net, R, 7)
    assert float(D.norm()) == pytest.approx(R, rel=1e-12) and D.dtype == net.W.dtype
    D, info = stability.adversarial_perturbation(net, X, R / 4, target=3)
    assert info["target"] == 3 and float(D.norm()) <= R / 4 * (1 + 1e-12)
    flipped = (X[3] @ (net.W.detach() + D).T > 0) != (X[3] @ net.W.detach().T > 0)
    assert int(flipped.sum()) == info["flipped"] > 0
    # the adversary's change is at least the norm of the flipped row, sqrt(K/m)
    assert stability.jacobian_distance(net, X, net.W.detach() + D) >= math.sqrt(info["flipped"] / net.m) - 1e-12


def test_predictions_limits():
    # exact prediction -> asymptotic (6 R^2 / (pi nu^2 m))^(1/6) for large m; saturates at 1 for tiny m
    for m in (2**30, 2**34):
        assert stability.adversarial_prediction(5.0, 1.0, m) == pytest.approx(
            stability.adversarial_prediction(5.0, 1.0, m, exact=False), rel=2e-3)
    assert stability.adversarial_prediction(100.0, 1.0, 10) == 1.0
    assert stability.random_prediction(10.0, 1.0, 10**8, 10) == pytest.approx(
        math.sqrt(10.0 / (1e4 * math.sqrt(10)) / math.pi), rel=1e-6)


# ------------------------------------------------------------------------------------------------ bounds
def test_bounds_formulas_and_consistency():
    assert bounds.theorem1_max_step(0.0) == 1.0
    assert bounds.theorem1_max_step(0.1) == pytest.approx(0.8 / 1.21)
    assert bounds.theorem1_rate(0.25) == 0.75
    # Theorem 2 with mu = L = 1 (kappa = 1) is Theorem 1
    for C in (0.0, 0.1, 0.3):
        assert bounds.theorem2_max_step(1.0, 1.0, C) == pytest.approx(bounds.theorem1_max_step(C))
    assert bounds.theorem2_rate(0.5, 1.0, 1.0) == pytest.approx(bounds.theorem1_rate(0.5))
    assert bounds.theorem2_rate(1 / 5, 1.0, 4.0) == pytest.approx(1 - 2 * 0.2 * 4 / 5)
    assert bounds.theorem3_width(20, 1.0, 0.1, 0.1) == pytest.approx(20**4 / (1e-4 * 1e-3))
    assert bounds.theorem3_width(20, 2.0, 0.1, 0.1, constant=3.0) == pytest.approx(3 * 20**4 / (4 * 1e-4 * 1e-3))
    assert bounds.condition2_constant(bounds.condition2_threshold(0.2, 0.4), 0.2) == pytest.approx(0.4)
    rate = 0.25 + 0.75 * math.log(0.75)
    assert bounds.condition1_width(0.1, 4.0, 20, 1e-6) == math.ceil(4.0 * math.log(20 / 1e-6) / (0.1 * rate))
    assert bounds.condition1_width(0.1, 4.0, 20, 1e-3) < bounds.condition1_width(0.1, 4.0, 20, 1e-6)
    assert bounds.condition1_width_hoeffding(0.1, 5.0, 20, 1e-6) > bounds.condition1_width(0.1, 4.0, 20, 1e-6)
    G = torch.diag(torch.tensor([0.5, 1.0, 2.0], dtype=F64))
    assert bounds.gd_max_stable_step(G) == pytest.approx(1.0)
    assert bounds.gd_optimal_step(G) == pytest.approx(2 / 2.5)


def test_condition1_width_holds_empirically():
    """At the Chernoff width, lambda_min(G(0)) >= 3 lambda_0 / 4 (the lemma fails with probability <= delta)."""
    X = ngdlib.sphere(10, 5, seed=0)
    lam0 = float(torch.linalg.eigvalsh(ngdlib.limiting_gram(X))[0])
    m = bounds.condition1_width(lam0, float(torch.linalg.eigvalsh(X @ X.T)[-1]), 10, 1e-6)
    for s in range(3):
        net = ngdlib.TwoLayerReLU(5, m, seed=s)
        assert float(torch.linalg.eigvalsh(net.gram(X))[0]) >= 0.75 * lam0


# ------------------------------------------------------------------------------------------------ losses
LOSSES = [losses.LogCoshLoss(1.0, 5.0, "steep"), losses.LogCoshLoss(0.5, 8.0, "flat"), losses.OutputRidgeLoss(0.3)]


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_loss_derivatives_by_autograd(loss):
    u = torch.linspace(-6, 6, 41, dtype=F64)
    y = torch.linspace(-1, 1, 41, dtype=F64)
    g = torch.func.vmap(torch.func.grad(lambda a, b: loss.value(a, b)))(u, y)
    h = torch.func.vmap(torch.func.grad(torch.func.grad(lambda a, b: loss.value(a, b))))(u, y)
    assert_close(loss.grad(u, y), g, rtol=1e-12, atol=1e-12, what="grad")
    assert_close(loss.curvature(u, y), h, rtol=1e-10, atol=1e-12, what="curvature")
    assert bool((loss.curvature(u, y) >= loss.mu - 1e-12).all() and (loss.curvature(u, y) <= loss.L + 1e-12).all())
    assert_close(loss.grad(loss.minimiser(y), y), torch.zeros_like(y), rtol=0, atol=1e-14, what="minimiser")
    assert bool(torch.isfinite(loss.value(torch.tensor([1e4], dtype=F64), torch.zeros(1, dtype=F64))).all())


def test_remark2_ratio_intervals():
    r = torch.linspace(-10, 10, 2001, dtype=F64)
    for kappa in (1.0, 10.0, 1e4):
        q = losses.LogCoshLoss(1.0, kappa, "flat").ratio(r, torch.zeros_like(r))
        assert float(q.min()) >= 1 / 3 - 1e-12 and float(q.max()) <= 1 + 1e-12
        steep = losses.LogCoshLoss(1.0, kappa, "steep")
        lo, hi = steep.ratio_interval(2.0)
        rr = torch.linspace(-2, 2, 401, dtype=F64)
        q = steep.ratio(rr, torch.zeros_like(rr))
        assert float(q.min()) >= lo - 1e-12 and float(q.max()) <= hi + 1e-12


@pytest.mark.parametrize("small", SMALL[:3], ids=[c[0] for c in SMALL[:3]])
def test_curvature_direction_matches_dense_pinv(small):
    _, n, d, m, seed = small
    X = ngdlib.sphere(n, d, seed=seed)
    net = ngdlib.TwoLayerReLU(d, m, seed=seed + 1)
    if float(torch.linalg.eigvalsh(net.gram(X))[0]) < 1e-6:
        pytest.skip("singular G for this tiny case")
    g = torch.randn(n, dtype=F64, generator=torch.Generator().manual_seed(seed + 2))
    h = 0.5 + torch.rand(n, dtype=F64, generator=torch.Generator().manual_seed(seed + 3)) * 4
    fast = losses.curvature_direction(net, X, g, h)
    dense = losses.reference_curvature_direction(net, X, g, h)
    cond = float(torch.linalg.cond(net.gram(X))) * float(h.max() / h.min())
    assert_close(fast, dense, rtol=1e-12 * cond, atol=1e-12 * cond * float(dense.abs().max()),
                 what="J^T G^-1 H^-1 g vs pinv(J^T H J) J^T g")
    # with H = I it is the NGD / Gauss-Newton direction
    assert_close(losses.curvature_direction(net, X, g, torch.ones_like(g)), losses.gauss_newton_direction(net, X, g),
                 rtol=1e-12, atol=1e-14, what="H = I")


@pytest.mark.parametrize("variant", ["gauss-newton", "remark2"])
def test_certified_one_step_factor_holds(variant):
    X = ngdlib.sphere(12, 6, seed=0)
    y = 0.5 * torch.randn(12, dtype=F64, generator=torch.Generator().manual_seed(1))
    loss = losses.LogCoshLoss(1.0, 8.0, "flat")
    lr = 1 / (loss.mu + loss.L) if variant == "gauss-newton" else 1.0
    tr = losses.train_loss(ngdlib.TwoLayerReLU(6, 400, seed=2), X, y, loss, lr, 30, variant=variant,
                           keep_outputs=True)
    assert len(tr.outputs) == tr.steps + 1
    e = tr.tensor("residual_norm")
    for k in range(tr.steps):
        f = losses.one_step_factor(loss, tr.outputs[k], y, lr, tr.step_constant[k], variant)
        assert e[k + 1] <= f * e[k] + 1e-12


def test_ridge_loss_converges_to_its_minimiser_not_y():
    X = ngdlib.sphere(8, 4, seed=0)
    y = torch.randn(8, dtype=F64, generator=torch.Generator().manual_seed(1))
    loss = losses.OutputRidgeLoss(1.0)
    tr = losses.train_loss(ngdlib.TwoLayerReLU(4, 500, seed=2), X, y, loss, 0.5, 60, target=loss.minimiser(y))
    assert tr.residual_norm[-1] < 1e-8
    tr_y = losses.train_loss(ngdlib.TwoLayerReLU(4, 500, seed=2), X, y, loss, 0.5, 60)
    assert tr_y.residual_norm[-1] == pytest.approx(0.5 * float(y.norm()), rel=1e-6)


# ------------------------------------------------------------------------------------------------ bad input
def _net():
    return ngdlib.TwoLayerReLU(3, 40, seed=1)


def _X():
    return ngdlib.sphere(6, 3, seed=0)


def _dup_X():
    X = _X()
    X[1] = X[0]
    return X


BAD = [
    ("theorem1 C too large", lambda: bounds.theorem1_max_step(0.6), "C <"),
    ("theorem1 rate eta > 1", lambda: bounds.theorem1_rate(1.5), "eta <= 1"),
    ("theorem2 L < mu", lambda: bounds.theorem2_max_step(2.0, 1.0, 0.0), "L must be"),
    ("theorem2 C vs kappa", lambda: bounds.theorem2_max_step(1.0, 9.0, 0.2), "Condition 3"),
    ("theorem3 delta", lambda: bounds.theorem3_width(10, 1.0, 0.1, 0.0), "delta"),
    ("theorem3 nu", lambda: bounds.theorem3_width(10, -1.0, 0.1, 0.1), "nu"),
    ("condition1 eps", lambda: bounds.condition1_width(0.1, 4.0, 10, 0.1, eps=1.5), "eps"),
    ("condition1 lambda0", lambda: bounds.condition1_width(0.0, 4.0, 10, 0.1), "lambda0"),
    ("gd step singular G", lambda: bounds.gd_optimal_step(torch.zeros(3, 3, dtype=F64)), "Condition 1"),
    ("radius singular G", lambda: stability.condition2_radius(_net(), _dup_X(), torch.ones(6, dtype=F64),
                                                               check_assumption1=False), "Condition 1"),
    ("radius parallel inputs", lambda: stability.condition2_radius(_net(), _dup_X(), torch.ones(6, dtype=F64)),
     "Assumption 1"),
    ("random radius", lambda: stability.random_perturbation(_net(), -1.0, 0), "radius"),
    ("adversarial target", lambda: stability.adversarial_perturbation(_net(), _X(), 1.0, target=9), "target"),
    ("adversarial overshoot", lambda: stability.adversarial_perturbation(_net(), _X(), 1.0, overshoot=0.0),
     "overshoot"),
    ("jacobian_distance shape", lambda: stability.jacobian_distance(_net(), _X(), torch.zeros(5, 3, dtype=F64)),
     "shape"),
    ("jacobian_distance dtype", lambda: stability.jacobian_distance(_net(), _X(), torch.zeros(40, 3)), "dtype"),
    ("step_constant singular", lambda: stability.step_constant(ngdlib.TwoLayerReLU(3, 1, seed=0), _X(),
                                                               torch.zeros(1, 3, dtype=F64),
                                                               torch.ones(1, 3, dtype=F64)), "Condition 1"),
    ("trace eta", lambda: stability.trace_ngd(_net(), _X(), torch.ones(6, dtype=F64), 0.0, 1), "eta"),
    ("trace md < n", lambda: stability.trace_ngd(ngdlib.TwoLayerReLU(3, 1, seed=0), _X(), torch.ones(6, dtype=F64),
                                                 1.0, 1), "Condition 1"),
    ("trace y length", lambda: stability.trace_ngd(_net(), _X(), torch.ones(5, dtype=F64), 1.0, 1), "length"),
    ("loss mu", lambda: losses.LogCoshLoss(0.0, 1.0), "mu"),
    ("loss centre", lambda: losses.LogCoshLoss(1.0, 2.0, "round"), "centre"),
    ("ridge lam", lambda: losses.OutputRidgeLoss(-1.0), "lam"),
    ("curvature not PD", lambda: losses.curvature_direction(_net(), _X(), torch.ones(6, dtype=F64),
                                                            torch.zeros(6, dtype=F64)), "positive definite"),
    ("train_loss variant", lambda: losses.train_loss(_net(), _X(), torch.ones(6, dtype=F64),
                                                     losses.LogCoshLoss(1.0, 2.0), 0.1, 1, variant="newton"),
     "variant"),
    ("one_step_factor variant", lambda: losses.one_step_factor(losses.LogCoshLoss(1.0, 2.0), torch.zeros(2, dtype=F64),
                                                               torch.zeros(2, dtype=F64), 0.1, 0.0, "x"), "variant"),
]


@pytest.mark.parametrize("fn,words", [(b[1], b[2]) for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_refused(fn, words):
    with pytest.raises(ValueError, match=words):
        fn()
