"""ngdlib.losses: strongly convex losses (Theorem 2, Remark 2).

Every fast path against a dense float64 reference built on torch.func (ngdlib.reference), every bound against its
formula and its limiting cases, and every bad input against the ValueError that names the violated assumption.

(Split from tests/test_part1a.py: tests are named after the module they test.)
"""
import pytest
import torch

import ngdlib
from ngdlib import losses
from ngdlib.testing import assert_close

F64 = torch.float64


# name, n, d, m, seed (tiny: the dense reference forms n x md Jacobians)
SMALL = [("tiny", 5, 3, 20, 0), ("square-ish", 8, 4, 30, 1), ("d>n", 3, 10, 7, 2), ("wider", 12, 6, 60, 4)]


# ------------------------------------------------------------------------------------------------ losses
LOSSES = [losses.LogCoshLoss(1.0, 5.0, "steep"), losses.LogCoshLoss(0.5, 8.0, "flat"), losses.OutputRidgeLoss(0.3)]


# ------------------------------------------------------------------------------------------------ bad input
def _net():
    return ngdlib.TwoLayerReLU(3, 40, seed=1)


def _X():
    return ngdlib.sphere(6, 3, seed=0)


BAD = [
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


def test_certified_one_step_factor_attained_with_one_input():
    """Tightness: with n = 1 a Gauss-Newton step of the ReLU network can only switch neurons off, so the output moves
    by -eta (1 - c_k) g and ||e(k+1)|| = (|1 - eta phi| + eta c_k phi) ||e(k)|| exactly when eta phi <= 1."""
    X = ngdlib.sphere(1, 6, seed=0)
    net = ngdlib.TwoLayerReLU(6, 300, seed=2)
    with torch.no_grad():
        y = net(X) + 3.0
    loss = losses.LogCoshLoss(1.0, 4.0, "flat")
    lr = 1 / (loss.mu + loss.L)
    tr = losses.train_loss(net, X, y, loss, lr, 40, keep_outputs=True)
    e = tr.tensor("residual_norm")
    assert max(tr.step_constant[:tr.steps]) > 1e-3          # some steps are nonlinear
    for k in range(tr.steps):
        f = losses.one_step_factor(loss, tr.outputs[k], y, lr, tr.step_constant[k])
        assert abs(float(e[k + 1]) - f * float(e[k])) <= 1e-12


def test_ridge_loss_converges_to_its_minimiser_not_y():
    X = ngdlib.sphere(8, 4, seed=0)
    y = torch.randn(8, dtype=F64, generator=torch.Generator().manual_seed(1))
    loss = losses.OutputRidgeLoss(1.0)
    tr = losses.train_loss(ngdlib.TwoLayerReLU(4, 500, seed=2), X, y, loss, 0.5, 60, target=loss.minimiser(y))
    assert tr.residual_norm[-1] < 1e-8
    tr_y = losses.train_loss(ngdlib.TwoLayerReLU(4, 500, seed=2), X, y, loss, 0.5, 60)
    assert tr_y.residual_norm[-1] == pytest.approx(0.5 * float(y.norm()), rel=1e-6)


@pytest.mark.parametrize("fn,words", [(b[1], b[2]) for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_refused(fn, words):
    with pytest.raises(ValueError, match=words):
        fn()
