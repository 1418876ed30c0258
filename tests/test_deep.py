"""ngdlib.models.DeepMLP: the deep NTK-parameterised MLP of Karakida & Osawa (2020).

Error signals, forward pass and initialisation against autodiff and a forward pass written out by hand (float64), and
bad model arguments refused by name. The tiny models are shared with tests/test_approx_fisher.py (tests/deep_cases.py).
(Split from tests/test_part2a.py: tests are named after the module they test.)
"""
import math

import pytest
import torch

import ngdlib
from ngdlib.models import DeepMLP
from ngdlib.testing import assert_close
from tests.deep_cases import MODELS, SEEDS, build


def cmp(actual, expected, rtol, what):
    atol = rtol * float(expected.abs().max()) + 1e-14
    assert_close(actual.to("cpu", torch.float64), expected.to("cpu", torch.float64), rtol=rtol, atol=atol, what=what)


def flat(V):
    return torch.cat([v.reshape(-1) for v in V])


# ------------------------------------------------------------------------------------------------ the model
@pytest.mark.parametrize("spec", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("seed", SEEDS)
def test_signals_match_autodiff(spec, seed):
    model, X, Xt, r = build(spec, seed)
    J = model.autodiff_jacobian(X)
    cmp(model.jacobian(X), J, 1e-12, "Jacobian from signals vs torch.func.jacrev")
    sizes = model.layer_sizes()
    blocks = torch.split(J, sizes, dim=1)
    for l, (G, Jl) in enumerate(zip(model.layer_grams(X), blocks)):
        cmp(G, Jl @ Jl.T, 1e-12, f"Theta_{l + 1} = (D D^T) * (A A^T) vs J_l J_l^T")
    J2 = model.autodiff_jacobian(Xt)
    cmp(model.ntk(X, Xt), J2 @ J.T, 1e-12, "cross NTK Theta(X', X)")
    V = [torch.randn(p.shape, generator=torch.Generator().manual_seed(5 + l), dtype=torch.float64)
         for l, p in enumerate(model.blocks)]
    cmp(model.jvp(X, V), J @ flat(V), 1e-12, "J V")
    cmp(flat(model.vjp(X, r)), J.T @ r, 1e-12, "J^T r")
    with torch.no_grad():
        cmp(model.signals(X).f, model(X), 1e-14, "signals.f vs forward")
    l = model.L
    i = model.widths[l] - 1
    lo = sum(sizes[: l - 1]) + i * model.blocks[l - 1].shape[1]
    cmp(model.unit_jacobian(X, l, i), J[:, lo: lo + model.blocks[l - 1].shape[1]], 1e-12, "unit Jacobian")


def test_forward_written_out():
    """u_l = sigma_w / sqrt(M_{l-1}) W_l h_{l-1} + sigma_b b_l, written with explicit loops over units."""
    model = DeepMLP((3, 4, 2), activation="tanh", sigma_w=1.3, sigma_b=0.7, seed=4)
    X = ngdlib.sphere(2, 3, seed=1)
    out = []
    for x in X:
        h = x
        for l, P in enumerate(model.blocks):
            M = h.shape[0]
            u = torch.stack([1.3 / math.sqrt(M) * sum(P[i, j] * h[j] for j in range(M)) + 0.7 * P[i, M]
                             for i in range(P.shape[0])])
            h = torch.tanh(u) if l < model.L - 1 else u
        out.append(h[0])
    with torch.no_grad():
        cmp(model(X), torch.stack(out).detach(), 1e-14, "forward vs definition")


def test_init_is_seeded_and_device_independent_in_values():
    a = DeepMLP((3, 5), seed=7)
    b = DeepMLP((3, 5), seed=7)
    c = DeepMLP((3, 5), seed=8)
    assert all(torch.equal(p, q) for p, q in zip(a.blocks, b.blocks))
    assert not torch.equal(a.blocks[0], c.blocks[0])
    f32 = DeepMLP((3, 5), seed=7, dtype=torch.float32)
    assert torch.allclose(f32.blocks[0].double(), a.blocks[0], atol=1e-6)


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_model_arguments():
    with pytest.raises(ValueError, match="widths"):
        DeepMLP((3, 0))
    with pytest.raises(ValueError, match="widths"):
        DeepMLP(())
    with pytest.raises(ValueError, match="activation"):
        DeepMLP((3, 4), activation="gelu")
    with pytest.raises(ValueError, match="sigma_w"):
        DeepMLP((3, 4), sigma_w=-1.0)
    with pytest.raises(ValueError, match="sigma_b"):
        DeepMLP((3, 4), sigma_b=float("nan"))
    with pytest.raises(ValueError, match="dtype"):
        DeepMLP((3, 4), dtype=torch.int64)
