"""C-output networks (chapter K-MULTI) and damped K-FAC (chapter K-DAMP): the dual kernels of ngdlib.approx_fisher
(multi_output_kernel, damped_kfac_kernel) against the dense construction from the definition (torch.func Jacobian,
masked / Kronecker-factored Fisher, pinv)."""
import math

import pytest
import torch

import ngdlib
from ngdlib import approx_fisher as af
from ngdlib import reference

F64 = torch.float64


def _setup(act, C, seed=0, widths=(6, 13, 13), n=4):
    net = ngdlib.DeepMLP(widths, activation=act, seed=seed + 1)
    head = torch.randn(C, widths[-1] + 1, generator=torch.Generator().manual_seed(seed + 2), dtype=F64)
    return net, head, ngdlib.sphere(n, widths[0], seed=seed)


@pytest.mark.parametrize("variant", af.VARIANTS)
@pytest.mark.parametrize("C", [1, 2, 3])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_multi_output_kernel_matches_dense(act, C, variant):
    net, head, X = _setup(act, C)
    K = af.multi_output_kernel(net, head, X, variant)
    Kd = reference.dense_multi_output_kernel(net, head, X, variant)
    assert K.shape == (X.shape[0] * C,) * 2
    torch.testing.assert_close(K, Kd, rtol=1e-9, atol=1e-9 * float(Kd.abs().max()))


def test_signals_give_the_autodiff_jacobian():
    net, head, X = _setup("tanh", 3)
    ms = af.multi_output_signals(net, head, X)
    s = ms.stacked()
    J = torch.cat([(D[:, :, None] * A[:, None, :]).reshape(D.shape[0], -1) for A, D in zip(s.A, s.D)], dim=1)
    params = [p.detach() for p in net.blocks[:-1]] + [head]

    def g(*ps):
        h = X
        for l, P in enumerate(ps):
            u = net._scaled_input(h) @ P.T
            h = torch.tanh(u) if l < len(ps) - 1 else u
        return h

    jac = torch.func.jacrev(g, argnums=tuple(range(len(params))))(*params)
    Jd = torch.cat([j.reshape(X.shape[0] * 3, -1) for j in jac], dim=1)
    torch.testing.assert_close(J, Jd, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ms.f, g(*params), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", af.VARIANTS)
def test_one_output_equals_function_kernel(variant):
    net, _, X = _setup("tanh", 1, widths=(6, 9, 9))
    K1 = af.multi_output_kernel(net, net.blocks[-1].detach(), X, variant)
    torch.testing.assert_close(K1, af.function_kernel(net, X, variant), rtol=1e-10, atol=1e-10)


def test_constants_with_several_outputs():
    """exact 1, block_diag L, tri_diag ceil(L/3), kfac N(L-1)+1 (hidden >= N C); unit-wise mean sum(M)/C + 1."""
    n, C = 4, 3
    net, head, X = _setup("tanh", C, widths=(6, 13, 13), n=n)
    for variant, a in (("exact", 1.0), ("block_diag", 3.0), ("tri_diag", 1.0), ("kfac", n * 2 + 1.0)):
        iso = af.isotropy(af.multi_output_kernel(net, head, X, variant))
        assert abs(iso.alpha - a) < 1e-9 * a and iso.defect < 1e-9
    Ku = af.multi_output_kernel(net, head, X, "unit_wise")
    assert math.isclose(float(Ku.diagonal().mean()), 26 / C + 1, rel_tol=1e-10)
    assert af.isotropy(Ku).defect > 0.05


def test_bad_head():
    net, head, X = _setup("tanh", 2)
    with pytest.raises(ValueError, match="C x"):
        af.multi_output_kernel(net, head[:, :-1], X, "exact")
    with pytest.raises(ValueError, match="dtype"):
        af.multi_output_kernel(net, head.float(), X, "exact")


# ------------------------------------------------------------------------------------------ damped K-FAC (K-DAMP)
@pytest.mark.parametrize("rho", [0.0, 1e-6, 1e-2, 10.0])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_damped_kfac_kernel_matches_dense(act, rho):
    net = ngdlib.DeepMLP((7, 11, 11), activation=act, seed=3)
    X, Xt = ngdlib.sphere(5, 7, seed=0), ngdlib.sphere(3, 7, seed=9)
    K = af.damped_kfac_kernel(net, X, rho, X_test=Xt)
    Kd = reference.dense_kernel(net, X, "kfac", X_test=Xt, rho=rho)
    torch.testing.assert_close(K, Kd, rtol=1e-8, atol=1e-8 * float(Kd.abs().max()))


def test_damped_kfac_limits():
    net = ngdlib.DeepMLP((7, 11, 11), activation="tanh", seed=3)
    X = ngdlib.sphere(5, 7, seed=0)
    torch.testing.assert_close(af.damped_kfac_kernel(net, X, 0.0), af.function_kernel(net, X, "kfac"),
                               rtol=1e-10, atol=1e-10)
    rho = 1e8
    torch.testing.assert_close(5 * rho * af.damped_kfac_kernel(net, X, rho), net.ntk(X), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="rho"):
        af.damped_kfac_kernel(net, X, -1.0)
