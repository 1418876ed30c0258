"""ngdlib.stability: Conditions 1-2 (Jacobian stability, perturbations, the NGD trace).

Every fast path against a dense float64 reference built on torch.func (ngdlib.reference), every bound against its
formula and its limiting cases, and every bad input against the ValueError that names the violated assumption.

(Split from tests/test_part1a.py: tests are named after the module they test.)
"""
import math

import pytest
import torch

import ngdlib
from ngdlib import reference, stability
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
]


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


@pytest.mark.parametrize("fn,words", [(b[1], b[2]) for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_refused(fn, words):
    with pytest.raises(ValueError, match=words):
        fn()
