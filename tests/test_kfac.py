"""ngdlib.kfac: K-FAC's output kernel, leverages, eq. (14) and Theorem 4's rate.

Every fast path against a dense float64 reference, and every bad input refused by name. References:
ngdlib.reference (autodiff Jacobian, dense Kronecker preconditioner), torch.func.jacrev for the MLP, dense
pseudo-inverses and eigen-decompositions.

(Split from tests/test_part1b.py: tests are named after the module they test.)
"""
import pytest
import torch

import ngdlib
from ngdlib import kfac
from ngdlib import reference
from ngdlib.testing import assert_close

F64 = torch.float64


def _aniso(n, d, seed, spread=0.4):
    X = ngdlib.sphere(n, d, seed=seed) * torch.logspace(-spread, spread, d, dtype=F64)
    return X / torch.linalg.vector_norm(X, dim=1, keepdim=True)


# ------------------------------------------------------------------------------------------------- bad input
def _rank_deficient():
    t = torch.linspace(0.1, 3.0, 6, dtype=F64)
    return torch.stack([torch.cos(t), torch.sin(t), torch.zeros_like(t)], dim=1)


BAD = [
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
]


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


@pytest.mark.parametrize("call,words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_refused_by_name(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value), f"message does not name the violation ({words!r}): {info.value}"
