"""ngdlib.matrix_free: Figure 1 (the MLP, matrix-free JVP / VJP, CG NGD directions, the digits).

Every fast path against a dense float64 reference, and every bad input refused by name. References:
ngdlib.reference (autodiff Jacobian, dense Kronecker preconditioner), torch.func.jacrev for the MLP, dense
pseudo-inverses and eigen-decompositions.

(Split from tests/test_part1b.py: tests are named after the module they test.)
"""
import math

import pytest
import torch
from torch.func import jacrev

import ngdlib
from ngdlib import matrix_free as mf
from ngdlib.models import MLP
from ngdlib.testing import assert_close

F64 = torch.float64


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


BAD = [
    ("MLP width 0", lambda: MLP(3, 0, 2), "width"),
    ("CG iters 0", lambda: mf.cg_ngd_direction(MLP(3, 4, 2), torch.ones(2, 3, dtype=F64),
                                               torch.ones(2, 2, dtype=F64), iters=0), "iters"),
    ("vjp wrong shape", lambda: mf.vjp_flat(MLP(3, 4, 2), torch.ones(2, 3, dtype=F64), torch.ones(2, dtype=F64)),
     "shape of the outputs"),
    ("digits too many", lambda: mf.load_digits_4_9(500), "n_per_class"),
]


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


@pytest.mark.parametrize("call,words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_refused_by_name(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value), f"message does not name the violation ({words!r}): {info.value}"
