"""Finite-width Grams, Jacobians and NGD directions: ngdlib against neural-tangents' ``empirical_ntk_fn`` and jax
autodiff through ``stax``.

Weights move from torch to jax as float64 numpy arrays (``tensor.numpy()`` -> ``jnp.asarray``), so both sides
evaluate the very same network; jax runs with ``jax_enable_x64``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ngdlib
from ngdlib import approx_fisher

from .conftest import EPS, S, compare

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import neural_tangents as nt  # noqa: E402
from neural_tangents import stax  # noqa: E402


def sphere_np(n, d, seed):
    X = np.random.default_rng(seed).standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------- two-layer network
def two_layer_jax(model):
    """eq. (8) written in jax on the model's own numbers: f(W, X) = relu(X W^T) a / sqrt(m), output (n, 1)."""
    a = jnp.asarray(model.a.numpy())
    m = model.m

    def apply_fn(W, X):
        return (jax.nn.relu(X @ W.T) @ a / math.sqrt(m))[:, None]

    return apply_fn, jnp.asarray(model.W.detach().numpy())


@pytest.mark.parametrize("n,m,d,seed", [(30, 200, 6, S(1101)), (300, 64, 10, S(1102))])
def test_two_layer_gram_jacobian_ngd_vs_neural_tangents(n, m, d, seed):
    # n = 300 >= INT8_MIN_N exercises the int8 count path of model.gram on CPUs that have it
    X = sphere_np(n, d, seed)
    model = ngdlib.TwoLayerReLU(d, m, seed=seed + 1)
    apply_fn, W = two_layer_jax(model)
    Xt = torch.from_numpy(X)
    ntk_fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0)
    G_nt = np.asarray(ntk_fn(X, None, W))
    # G entries are sums of m products of O(1) numbers: round-off <= m eps relative to the largest entry on both
    # sides; 10 m eps keeps a factor 10 (m = 200: 4.4e-13).
    compare(f"two-layer Gram G = J J^T (n={n}, m={m}, d={d})", "neural-tangents empirical_ntk_fn",
            "TwoLayerReLU.gram", model.gram(Xt), G_nt, 10 * m * EPS,
            "nt NTK of f(W) = relu(X W^T) a / sqrt(m), trace over the single output; only W is a parameter")
    J_jax = np.asarray(jax.jacrev(apply_fn)(W, X)).reshape(n, m * d)
    compare(f"two-layer Jacobian (n={n}, m={m}, d={d})", "jax.jacrev", "TwoLayerReLU.jacobian",
            model.jacobian(Xt), J_jax, 4 * EPS,
            "jax Jacobian (n, 1, m, d) reshaped row-major = row-stacked w = W.reshape(-1) (one rounding each)")
    r = np.random.default_rng(seed + 2).standard_normal(n)
    if m * d >= n:
        z = np.linalg.solve(J_jax @ J_jax.T, r)
        D_jax = (J_jax.T @ z).reshape(m, d)
        # a solve with G: round-off ~ cond(G) eps on both sides (measured cond(G) < 1e3 here), so 1e3 x that
        cond = np.linalg.cond(J_jax @ J_jax.T)
        compare(f"NGD direction J^T G^-1 r (n={n}, m={m}, d={d})", "jax (dense J, numpy solve)",
                "ngd_direction", ngdlib.ngd_direction(model, Xt, torch.from_numpy(r)), D_jax, 1e3 * cond * EPS,
                "F = J^T J / n, F^+ grad L = J^T G^-1 r with r = u - y (eq. 3), both m x d")


# ----------------------------------------------------------------------------------------------------- deep network
def stax_net(model):
    """DeepMLP as stax: Dense(out, W_std = sigma_w, b_std = sigma_b, NTK parameterisation) -> act, ..., Dense(1),
    and its parameters from the model's blocks P_l = [W_l | b_l]: stax W = W_l^T (in x out), b = b_l."""
    layers, params = [], []
    act = stax.Relu() if model.activation == "relu" else stax.Elementwise(fn=jnp.tanh)
    for l, P in enumerate(model.blocks):
        P = P.detach().numpy()
        m_in = model.widths[l]
        layers.append(stax.Dense(model.widths[l + 1], W_std=model.sigma_w,
                                 b_std=model.sigma_b if model.bias else None, parameterization="ntk"))
        W = jnp.asarray(P[:, :m_in].T)
        b = jnp.asarray(P[:, m_in]) if model.bias else None
        params.append((W, b))
        if l < model.L - 1:
            layers.append(act)
            params.append(())
    _, apply_fn, _ = stax.serial(*layers)
    return apply_fn, params


def layer_jacobians_jax(apply_fn, params, X, model):
    """J_l (N x |P_l|) by jax.jacrev, in DeepMLP's layout: P_l row-major, row i = [W_l[i, :], b_l[i]]."""
    jac = jax.jacrev(apply_fn)(params, X)
    out = []
    for l in range(model.L):
        jW, jb = jac[2 * l]
        jW = np.asarray(jW)[:, 0]                         # (N, in, out)
        blocks = [np.transpose(jW, (0, 2, 1))]            # (N, out, in)
        if model.bias:
            blocks.append(np.asarray(jb)[:, 0][:, :, None])
        out.append(np.concatenate(blocks, axis=2).reshape(X.shape[0], -1))
    return out


@pytest.mark.parametrize("activation,bias,widths,seed", [("relu", True, (5, 24, 16), S(1201)),
                                                         ("tanh", False, (7, 12, 12, 10), S(1202))])
def test_deep_ntk_jacobians_directions_vs_neural_tangents(activation, bias, widths, seed):
    N = 9
    X = sphere_np(N, widths[0], seed) * 1.3
    model = ngdlib.DeepMLP(widths, activation=activation, sigma_b=0.2, bias=bias, seed=seed + 1)
    apply_fn, params = stax_net(model)
    Xt = torch.from_numpy(X)
    mapping = ("stax.Dense(W_std=sigma_w, b_std=sigma_b, parameterization='ntk') = DeepMLP's u_l; stax W = "
               "W_l^T, b = b_l, from P_l = [W_l | b_l] as float64 numpy")
    f_jax = np.asarray(apply_fn(params, X))[:, 0]
    compare(f"deep outputs ({activation}, L={model.L})", "neural-tangents stax apply_fn", "DeepMLP.forward",
            model(Xt), f_jax, 1e2 * EPS, mapping, record=False)
    width = max(widths)
    Th_nt = np.asarray(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0)(X, None, params))
    # sums over <= (max width)^2 products per layer, L layers: round-off <= L width eps relative to the largest entry
    tol = 10 * model.L * width * EPS
    compare(f"deep empirical NTK ({activation}, L={model.L}, bias={bias})", "neural-tangents empirical_ntk_fn",
            "DeepMLP.ntk", model.ntk(Xt), Th_nt, tol, mapping)
    impl = nt.NtkImplementation.STRUCTURED_DERIVATIVES
    Th_sd = np.asarray(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0, implementation=impl)(
        X, None, params))
    compare(f"deep empirical NTK, structured derivatives ({activation})", "neural-tangents empirical_ntk_fn",
            "DeepMLP.ntk", model.ntk(Xt), Th_sd, tol, mapping, record=False)
    Js = layer_jacobians_jax(apply_fn, params, X, model)
    J_ours = [model.layer_jacobian(Xt, l + 1) for l in range(model.L)]
    compare(f"deep layer Jacobians J_l ({activation}, L={model.L})", "jax.jacrev through stax",
            "DeepMLP.layer_jacobian", torch.cat(J_ours, 1), np.concatenate(Js, 1), tol, mapping)
    grams = model.layer_grams(Xt)
    compare(f"deep layer Grams Theta_l ({activation}, L={model.L})", "jax.jacrev through stax",
            "DeepMLP.layer_grams", torch.stack(grams), np.stack([J @ J.T for J in Js]), tol, mapping)
    # NGD directions: exact (J^T Theta^-1 r) and block-diagonal (J_l^T Theta_l^-1 r), from the jax Jacobians;
    # Fisher F = J^T J / N and grad L = J^T r / N, so F^+ grad L = J^T Theta^-1 r (no N left).
    r = np.random.default_rng(seed + 2).standard_normal(N)
    J = np.concatenate(Js, 1)
    Th = J @ J.T
    exact = J.T @ np.linalg.solve(Th, r)
    ours = torch.cat([v.reshape(-1) for v in approx_fisher.ngd_direction(model, Xt, torch.from_numpy(r), "exact")])
    cond = np.linalg.cond(Th)
    compare(f"deep exact NGD direction ({activation}, L={model.L})", "jax Jacobian + numpy solve",
            "approx_fisher.ngd_direction('exact')", ours, exact, 1e2 * cond * EPS,
            "F = J^T J / N, grad L = J^T r / N: F^+ grad L = J^T Theta^-1 r")
    bd = np.concatenate([Jl.T @ np.linalg.solve(Jl @ Jl.T, r) for Jl in Js])
    ours_bd = torch.cat([v.reshape(-1) for v in approx_fisher.ngd_direction(model, Xt, torch.from_numpy(r),
                                                                           "block_diag")])
    cond_bd = max(np.linalg.cond(Jl @ Jl.T) for Jl in Js)
    compare(f"deep block-diagonal NGD direction ({activation}, L={model.L})", "jax Jacobian + numpy solve",
            "approx_fisher.ngd_direction('block_diag')", ours_bd, bd, 1e2 * cond_bd * EPS,
            "blockdiag_l(J_l^T J_l / N)^+ J^T r / N = [J_l^T Theta_l^-1 r]_l")
