"""Part I-b (K-FAC, Lemma 1, Forster, generalization, Figure 1): every fast path against a dense float64 reference,
and every bad input refused by name.

References: ngdlib.reference (autodiff Jacobian, dense Kronecker preconditioner), torch.func.jacrev for the MLP,
dense pseudo-inverses and eigen-decompositions.
"""
import math

import pytest
import torch
from torch.func import jacrev

import ngdlib
from ngdlib import generalization as gen
from ngdlib import kfac
from ngdlib import matrix_free as mf
from ngdlib.models import MLP
from ngdlib import reference
from ngdlib.testing import assert_close

F64 = torch.float64


def _aniso(n, d, seed, spread=0.4):
    X = ngdlib.sphere(n, d, seed=seed) * torch.logspace(-spread, spread, d, dtype=F64)
    return X / torch.linalg.vector_norm(X, dim=1, keepdim=True)


# ------------------------------------------------------------------------------------------------------- K-FAC
@pytest.mark.parametrize("n,d,m,seed", [(8, 3, 40, 0), (10, 4, 6, 1), (6, 6, 30, 2), (12, 2, 200, 3)])
def test_kfac_output_kernel_matches_dense_reference(n, d, m, seed):
    """J F_KFAC^+ J^T from the dense Jacobian and the dense Kronecker preconditioner equals P_X * P_S, also when
    rank S < n (m = 6 < n = 10), where P_S is not the identity."""
    X = _aniso(n, d, seed)
    net = ngdlib.TwoLayerReLU(d, m, seed=seed + 10)
    J = reference.jacobian(net, X)
    dense = J @ reference.kfac_preconditioner(net, X) @ J.T
    fast = kfac.kfac_output_kernel(net, X)
    assert_close(fast, dense, rtol=1e-9, atol=1e-11, what="P_X * P_S vs J P_KFAC J^T")
    S = reference.features(net, X)
    PS = S @ torch.linalg.pinv(S.T @ S, hermitian=True) @ S.T
    assert_close(kfac.activation_projection(net, X), PS, rtol=1e-9, atol=1e-11, what="P_S dual vs primal")
    if int(torch.linalg.matrix_rank(S)) == n:
        assert_close(kfac.activation_projection(net, X), torch.eye(n, dtype=F64), atol=1e-11, what="P_S = I")


def test_kfac_kernel_is_what_the_step_does_to_first_order():
    """Columns of the kernel = J (K-FAC direction of e_i), computed with the structured jvp."""
    n, d, m = 15, 5, 300
    X = _aniso(n, d, 4)
    net = ngdlib.TwoLayerReLU(d, m, seed=5)
    K = torch.stack([net.jvp(X, ngdlib.kfac_direction(net, X, e)) for e in torch.eye(n, dtype=F64)], dim=1)
    assert_close(kfac.kfac_output_kernel(net, X), K, rtol=1e-9, atol=1e-11, what="dual form vs jvp columns")


def test_leverages_and_projection():
    X = _aniso(20, 5, 6)
    PX = X @ torch.linalg.inv(X.T @ X) @ X.T
    assert_close(kfac.input_projection(X), PX, atol=1e-12, what="P_X")
    h = kfac.leverages(X)
    assert_close(h, torch.diagonal(PX), atol=1e-12, what="h = diag P_X")
    assert abs(float(h.sum()) - 5) < 1e-12
    ev = torch.linalg.eigvalsh(X.T @ X)
    assert bool((h >= 1 / ev[-1] - 1e-12).all() and (h <= 1 / ev[0] + 1e-12).all() and (h <= 1 + 1e-12).all())
    # invariance of P_X to X -> X B^T, and its loss under row scaling
    B = torch.randn(5, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert_close(kfac.input_projection(X @ B.T), PX, atol=1e-10, what="P_X invariant to X B^T")
    c = torch.linspace(0.5, 2, 20, dtype=F64)
    assert (kfac.input_projection(c[:, None] * X) - PX).abs().max() > 1e-3


def test_eq14_prediction_and_output_change():
    n, d, m = 10, 4, 50
    X = _aniso(n, d, 7)
    net = ngdlib.TwoLayerReLU(d, m, seed=8)
    r = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert_close(kfac.eq14_prediction(X, r, 0.3), -0.3 * kfac.leverages(X) * r, what="-eta h r")
    D = ngdlib.kfac_direction(net, X, r)
    W0 = net.W.detach().clone()
    with torch.no_grad():
        u0 = net(X)
        net.W.sub_(0.7 * D)
        u1 = net(X)
        net.W.copy_(W0)
    assert_close(kfac.output_change(net, X, D, 0.7), u1 - u0, atol=1e-13, what="output_change vs forward")
    assert torch.equal(net.W.detach(), W0)
    # tiny step: the change is -eta (P_X * P_S) r to first order
    eta = 1e-7
    assert_close(kfac.output_change(net, X, D, eta) / eta, -kfac.kfac_output_kernel(net, X) @ r, rtol=1e-5,
                 atol=1e-8, what="first-order change")


def test_rate_bound_and_step_limit():
    X = _aniso(20, 5, 9)
    ev = torch.linalg.eigvalsh(X.T @ X)
    assert abs(kfac.kfac_rate_bound(X, 0.5) - (1 - 0.5 / float(ev[-1]))) < 1e-14
    h = kfac.leverages(X)
    eta = kfac.kfac_step_limit(X)
    assert abs(eta * float(h.max()) - 1) < 1e-12
    assert eta >= float(ev[0]) - 1e-12       # eta = lambda_min(X^T X) is below the limit
    # in the linear limit, every eta <= limit obeys eq. (13)
    for e in (0.1 * eta, 0.5 * eta, eta):
        assert float(((1 - e * h) ** 2).max()) <= kfac.kfac_rate_bound(X, e) + 1e-14


def test_forster_then_uniform_leverages():
    X = _aniso(30, 5, 10, spread=0.8)
    U, A = ngdlib.forster(X)
    assert_close(kfac.leverages(U), torch.full((30,), 5 / 30, dtype=F64), atol=1e-10, what="h = d/n")
    seen = []
    ngdlib.forster(X, callback=lambda k, U_, A_, err: seen.append(err))
    assert seen[0] > 0.5 and seen[-1] <= 1e3 * torch.finfo(F64).eps and len(seen) > 2


# --------------------------------------------------------------------------------------------- generalization
def test_cross_gram_matches_limiting_gram_and_closed_form():
    X = ngdlib.sphere(15, 4, seed=0)
    Z = ngdlib.sphere(7, 4, seed=1)
    assert_close(gen.limiting_cross_gram(X, X), ngdlib.limiting_gram(X), atol=1e-15, what="cross(X, X)")
    C = (Z @ X.T).clamp(-1, 1)
    assert_close(gen.limiting_cross_gram(Z, X), C * (math.pi - torch.arccos(C)) / (2 * math.pi), atol=1e-7,
                 what="atan2 vs arccos")


def test_theorem6_terms():
    X = ngdlib.sphere(30, 5, seed=2)
    y = torch.randn(30, generator=torch.Generator().manual_seed(3), dtype=F64)
    G = ngdlib.limiting_gram(X)
    quad = float(y @ torch.linalg.solve(G, y))
    b = gen.theorem6_bound(X, y, 0.1, eps=0.01)
    assert abs(b["rkhs_norm"] - quad ** 0.5) < 1e-10 * quad ** 0.5
    assert abs(b["complexity"] - math.sqrt(2 * quad / 30)) < 1e-10
    assert abs(b["confidence"] - 3 * math.sqrt(math.log(60) / 60)) < 1e-14
    assert abs(b["total"] - (b["complexity"] + b["confidence"] + 0.01)) < 1e-14


def test_kernel_predict_is_the_wide_network_limit_on_training_points():
    X = ngdlib.sphere(12, 4, seed=4)
    r = torch.randn(12, generator=torch.Generator().manual_seed(5), dtype=F64)
    assert_close(gen.kernel_predict(X, r, X), r, atol=1e-10, what="interpolates the training residual")


def test_ramp_loss():
    u = torch.tensor([0.0, 0.25, -2.0, 1.0], dtype=F64)
    assert_close(gen.ramp_loss(u, torch.zeros(4, dtype=F64)), torch.tensor([0, 0.25, 1, 1], dtype=F64),
                 what="min(1, |u - y|)")


# ----------------------------------------------------------------------------------------------- matrix-free
def _tiny_mlp(seed=0):
    torch.manual_seed(0)
    net = MLP(3, 4, 2, seed=seed)
    with torch.no_grad():       # non-zero biases so the test exercises them
        for b in (net.b1, net.b2, net.b3):
            b.copy_(0.1 * torch.randn(b.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=F64))
    X = torch.randn(3, 3, generator=torch.Generator().manual_seed(seed + 2), dtype=F64)
    return net, X


def _dense_J(net, X):
    theta = mf.flat_params(net)
    return jacrev(lambda t: mf.outputs_at(net, X, t))(theta).reshape(-1, theta.numel())


def test_mlp_forward_by_hand():
    net, X = _tiny_mlp()
    h = torch.relu(math.sqrt(2) * X @ net.W1.T / math.sqrt(3) + net.b1)
    h = torch.relu(math.sqrt(2) * h @ net.W2.T / 2 + net.b2)
    assert_close(net(X).detach(), (h @ net.W3.T / 2 + net.b3).detach(), what="MLP forward")
    assert net.num_params() == 3 * 4 + 4 + 16 + 4 + 8 + 2


def test_jvp_vjp_against_dense_jacobian():
    net, X = _tiny_mlp(1)
    J = _dense_J(net, X)
    v = torch.randn(J.shape[1], generator=torch.Generator().manual_seed(3), dtype=F64)
    w = torch.randn(3, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    assert_close(mf.jvp_flat(net, X, v).reshape(-1), J @ v, what="J v")
    assert_close(mf.vjp_flat(net, X, w), J.T @ w.reshape(-1), what="J^T w")
    theta = mf.flat_params(net)
    assert_close(mf.outputs_at(net, X, theta), net(X).detach(), what="functional call at theta")


def test_cg_gives_min_norm_ngd_direction():
    """CG from zero on J^T J converges to pinv(J) r (the NGD direction), which lies in range(J^T)."""
    net, X = _tiny_mlp(2)
    J = _dense_J(net, X)
    r = torch.randn(3, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    res = mf.cg_ngd_direction(net, X, r, iters=60, rtol=1e-13)
    ref = torch.linalg.pinv(J) @ r.reshape(-1)
    assert_close(res.direction, ref, rtol=1e-8, atol=1e-10, what="CG vs pinv(J) r")
    G = J @ J.T
    assert_close(res.direction, J.T @ torch.linalg.solve(G, r.reshape(-1)), rtol=1e-8, atol=1e-10,
                 what="CG vs J^T G^-1 r (eq. 3)")
    assert res.output_residual < 1e-8
    # any solution plus a null-space vector solves J delta = r but is not what CG returns
    null = torch.linalg.svd(J).Vh[-1]
    assert float((J @ null).norm()) < 1e-10 and abs(float(res.direction @ null)) < 1e-8


def test_cg_on_two_layer_relu_matches_ngd_direction():
    """The same CG on the paper's two-layer net (only W trained) reproduces ngdlib.ngd_direction."""
    X = ngdlib.sphere(8, 3, seed=6)
    net = ngdlib.TwoLayerReLU(3, 40, seed=7)
    r = torch.randn(8, generator=torch.Generator().manual_seed(8), dtype=F64)
    res = mf.cg_ngd_direction(net, X, r, iters=200, rtol=1e-14)
    assert_close(res.direction.reshape(net.W.shape), ngdlib.ngd_direction(net, X, r), rtol=1e-7, atol=1e-9,
                 what="CG vs J^T G^-1 r")


def test_digits_loader_and_targets():
    X, lab = mf.load_digits_4_9(10, seed=0)
    assert X.shape == (20, 64) and lab.tolist() == [0] * 10 + [1] * 10
    assert_close(torch.linalg.vector_norm(X, dim=1), torch.full((20,), 8.0, dtype=F64), what="row norms 8")
    Xa, laba = mf.load_digits_4_9()
    assert Xa.shape[0] == 361 and int(laba.sum()) == 180
    Y = mf.figure1_targets(lab, seed=1)
    assert Y.shape == (20, 2)
    assert float((Y - (torch.nn.functional.one_hot(lab, 2) - 0.5)).std()) < 0.5


# ------------------------------------------------------------------------------------------------- bad input
def _rank_deficient():
    t = torch.linspace(0.1, 3.0, 6, dtype=F64)
    return torch.stack([torch.cos(t), torch.sin(t), torch.zeros_like(t)], dim=1)


def _twenty_in_a_plane():
    # 20 of 40 inputs in a 2-d subspace of R^5 (>= n k / d = 16): no radial isotropic position; the iteration
    # collapses that plane and used to fail with a raw LinAlgError
    X = ngdlib.sphere(40, 5, seed=1).clone()
    P = torch.randn(20, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    X[:20] = 0
    X[:20, :2] = P / P.norm(dim=1, keepdim=True)
    return X


BAD = [
    ("Forster, 20 of 40 in a plane", lambda: ngdlib.forster(_twenty_in_a_plane(), max_iter=3000), "general position"),
    ("leverages rank-deficient", lambda: kfac.leverages(_rank_deficient()), "rank(X) = d"),
    ("leverages n < d", lambda: kfac.leverages(ngdlib.sphere(3, 5)), "rank(X) = d"),
    ("kernel rank-deficient", lambda: kfac.kfac_output_kernel(ngdlib.TwoLayerReLU(3, 20), _rank_deficient()),
     "rank(X) = d"),
    ("kernel parallel inputs", lambda: kfac.kfac_output_kernel(
        ngdlib.TwoLayerReLU(3, 20), torch.cat([ngdlib.sphere(5, 3)] * 2)), "Assumption 1"),
    ("eq14 lr <= 0", lambda: kfac.eq14_prediction(ngdlib.sphere(6, 3), torch.ones(6, dtype=F64), 0.0), "step size"),
    ("eq14 r length", lambda: kfac.eq14_prediction(ngdlib.sphere(6, 3), torch.ones(5, dtype=F64), 1.0), "length"),
    ("rate bound non-unit", lambda: kfac.kfac_rate_bound(2 * ngdlib.sphere(6, 3), 1.0), "Assumption 1"),
    ("output_change shape", lambda: kfac.output_change(ngdlib.TwoLayerReLU(3, 5), ngdlib.sphere(6, 3),
                                                       torch.ones(4, 3, dtype=F64), 1.0), "shape of W"),
    ("rkhs parallel", lambda: gen.rkhs_norm(torch.cat([ngdlib.sphere(4, 3)] * 2), torch.ones(8, dtype=F64)),
     "lambda_0 = 0"),
    ("cross gram non-unit", lambda: gen.limiting_cross_gram(2 * ngdlib.sphere(3, 3), ngdlib.sphere(3, 3)),
     "X1: Assumption 1"),
    ("cross gram d mismatch", lambda: gen.limiting_cross_gram(ngdlib.sphere(3, 3), ngdlib.sphere(3, 4)),
     "same input dimension"),
    ("confidence delta", lambda: gen.confidence_term(10, 1.5), "failure probability"),
    ("bound eps < 0", lambda: gen.theorem6_bound(ngdlib.sphere(4, 3), torch.ones(4, dtype=F64), 0.1, eps=-1.0),
     "target error"),
    ("ramp shapes", lambda: gen.ramp_loss(torch.ones(3), torch.ones(4)), "same shape"),
    ("MLP width 0", lambda: MLP(3, 0, 2), "width"),
    ("CG iters 0", lambda: mf.cg_ngd_direction(MLP(3, 4, 2), torch.ones(2, 3, dtype=F64),
                                               torch.ones(2, 2, dtype=F64), iters=0), "iters"),
    ("vjp wrong shape", lambda: mf.vjp_flat(MLP(3, 4, 2), torch.ones(2, 3, dtype=F64), torch.ones(2, dtype=F64)),
     "shape of the outputs"),
    ("digits too many", lambda: mf.load_digits_4_9(500), "n_per_class"),
]


@pytest.mark.parametrize("call,words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_refused_by_name(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value), f"message does not name the violation ({words!r}): {info.value}"
