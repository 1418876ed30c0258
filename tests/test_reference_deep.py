"""The deep dense oracle of ngdlib.reference against DeepMLP and approx_fisher (and the other way round).

The oracle re-writes the network from its definition; these tests pin that it is the same network (forward pass,
Jacobian, K-FAC factors), that its Fisher masks are what their names say, and that the grid it defines is the one the
Part II notebooks rely on. The notebooks then compare the library's dual kernels with it.
"""
from __future__ import annotations

import math

import pytest
import torch

import ngdlib
from ngdlib import approx_fisher as af
from ngdlib import reference as ref
from ngdlib.models import DeepMLP

F64 = torch.float64


@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("bias", [False, True])
def test_same_network_same_jacobian(act, bias):
    model = DeepMLP((5, 7, 6), activation=act, bias=bias, seed=3)
    X = ngdlib.sphere(4, 5, seed=1)
    f, us, inputs = ref.deep_forward(model, X)
    torch.testing.assert_close(f, model(X).detach(), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(ref.deep_jacobian(model, X), model.jacobian(X), rtol=1e-12, atol=1e-12)
    # K-FAC factors: the Jacobian row of layer l is D_l(x) kron a_{l-1}(x)
    A, D = ref.deep_factors(model, X)
    J = ref.deep_jacobian(model, X)
    rows = torch.cat([(Dl[:, :, None] * Al[:, None, :]).reshape(4, -1) for Al, Dl in zip(A, D)], dim=1)
    torch.testing.assert_close(rows, J, rtol=1e-12, atol=1e-12)


def _fisher_from_the_model(model, X, v):
    """The approximate Fisher built from the model's own Jacobian (autodiff of DeepMLP.forward_with) and signals, the
    masks written out here: a second construction for the oracle's deep_fisher_approx."""
    n = X.shape[0]
    J = model.autodiff_jacobian(X)
    F = J.T @ J / n
    if v == "kfac":
        s = model.signals(X)
        return torch.block_diag(*[torch.kron(D.T @ D / n, A.T @ A / n) for A, D in zip(s.A, s.D)])
    layer_of = torch.cat([torch.full((p.numel(),), l) for l, p in enumerate(model.blocks)])
    unit_of = torch.cat([l * 10**6 + torch.arange(p.shape[0]).repeat_interleave(p.shape[1])
                         for l, p in enumerate(model.blocks)])
    keep = {"exact": torch.ones_like(F, dtype=torch.bool), "block_diag": layer_of[:, None] == layer_of[None, :],
            "tri_diag": (layer_of[:, None] - layer_of[None, :]).abs() <= 1,
            "unit_wise": unit_of[:, None] == unit_of[None, :]}[v]
    return F * keep


def test_masks_and_kernels():
    model = DeepMLP((7, 8, 8), activation="tanh", seed=2)
    X = ngdlib.sphere(5, 7, seed=0)
    P = model.n_params()
    for v in ("exact", "block_diag", "tri_diag", "unit_wise", "kfac"):
        G = ref.deep_fisher_approx(model, X, v)
        assert G.shape == (P, P)
        torch.testing.assert_close(G, _fisher_from_the_model(model, X, v), rtol=1e-12, atol=1e-13)
    # exact NGD on a full-row-rank J: the kernel is the identity
    dk = ref.deep_kernel(model, X, "exact")
    assert dk.rank == 5 and dk.gap > 1e6
    assert dk.rel_error(dk.K, torch.eye(5, dtype=F64)) <= dk.tolerance()
    assert dk.rel_error(af.function_kernel(model, X, "exact")) <= dk.tolerance()


def test_grid_shape():
    cases = ref.deep_grid(0)
    assert len(cases) == 48
    assert {c.L for c in cases} == {2, 3, 4, 5} and {c.activation for c in cases} == {"relu", "tanh"}
    forster = [c for c in cases if c.inputs == "N>M0 Forster"]
    X = forster[0].X
    torch.testing.assert_close(X.shape[1] / X.shape[0] * X.T @ X, torch.eye(X.shape[1], dtype=F64), rtol=0,
                               atol=1e-10)


def test_grid_rows_catches_a_wrong_kernel():
    rows = ref.grid_rows(0, "block_diag", lambda c: 2 * af.function_kernel(c.model, c.X, "block_diag"),
                         lambda c: None, depths=(2,), activations=("tanh",))
    assert all(r.err > 0.4 for r in rows)
    assert "| tanh | 2 |" in ref.grid_table(rows)
    assert all(math.isnan(r.dev) for r in rows)
