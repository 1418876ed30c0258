"""Batched deep linear networks (ngdlib.deep_linear, chapters A-T2 and A-GAUSS) against their one-network references
and against Monte Carlo from the definition."""
import math

import numpy as np
import torch

import ngdlib.data
from ngdlib import deep_linear as dl

F64 = torch.float64


def test_batched_init_balancedness_and_gd_match_the_single_network_functions():
    g = torch.Generator().manual_seed(0)
    A = 0.3 * torch.randn(4, 2, 5, generator=g, dtype=F64)
    layers = dl.balanced_init_batched(A, [3, 3])
    data = ngdlib.data.whitened_data(40, 5, 2, seed=1)
    for b in range(4):
        single = dl.balanced_init(A[b], [3, 3])
        assert all(torch.allclose(W[b], S, atol=1e-13) for W, S in zip(layers, single))
    pert = [W + 0.05 * torch.randn(W.shape, generator=g, dtype=F64) for W in layers]
    bal = dl.balancedness_batched(pert)
    for b in range(4):
        assert math.isclose(float(bal[b]), dl.balancedness([W[b] for W in pert]), rel_tol=1e-12)
    final, run = dl.train_gd_batched(pert, data.Phi, 0.05, 40, tol=1e-3, track_balancedness=True)
    assert run.steps == 40 or bool((run.hit >= 0).all())
    for b in range(4):
        fin_b, h = dl.train_gd([W[b] for W in pert], data.Phi, 0.05, run.steps)
        assert all(torch.allclose(F[b], S, rtol=1e-11, atol=1e-13) for F, S in zip(final, fin_b))
        first = next((t for t, v in enumerate(h.loss) if v <= 1e-3), -1)
        assert int(run.hit[b]) == first
        assert math.isclose(float(run.max_balancedness[b]), max(h.balancedness), rel_tol=1e-12)


def test_batched_gd_freezes_diverging_networks():
    layers = [torch.stack([torch.eye(2, dtype=F64), 30 * torch.eye(2, dtype=F64)])] * 2
    _, run = dl.train_gd_batched(layers, torch.eye(2, dtype=F64), 0.1, 50, tol=1e-8)
    assert not bool(run.diverged[0]) and bool(run.diverged[1])
    assert bool(torch.isfinite(run.loss).all())


def test_margin_probability_against_monte_carlo():
    rng = np.random.default_rng(0)
    d0, s, n = 6, 0.3, 200_000
    phi = np.array([1.0, -0.5, 0.2, 0.0, 0.3, 0.1])
    a = s * rng.standard_normal((n, d0))
    for kappa in (0.0, 0.5):
        p_mc = float(np.mean(np.linalg.norm(phi) - np.linalg.norm(a - phi, axis=1) >= kappa * s))
        p = dl.margin_probability(s, float(np.linalg.norm(phi)), d0, kappa)
        assert abs(p_mc - p) <= 5 * math.sqrt(p * (1 - p) / n)          # five standard errors
    assert dl.margin_probability(1.0, 0.5, 3, kappa=1.0) == 0.0


def test_theorem1_iterations_is_the_least_count():
    for loss0, eps, eta, c, N in ((1.0, 1e-6, 0.01, 0.5, 3), (0.4, 4e-7, 4.5e-10, 0.025, 2)):
        T = dl.arora_theorem1_iterations(loss0, eps, eta, c, N)
        q = eta * c ** (2 * (N - 1) / N)
        need = math.log(loss0 / eps)
        assert T * -math.log1p(-q) >= need * (1 - 1e-12) and (T - 1) * -math.log1p(-q) < need * (1 + 1e-12)
    assert dl.arora_theorem1_iterations(1e-7, 1e-6, 0.01, 0.5, 3) == 0.0


def test_gaussian_gap_second_moment_against_monte_carlo():
    g = torch.Generator().manual_seed(3)
    n, (dp, dm, dn), std = 20_000, (3, 5, 7), 0.7
    W1 = std * torch.randn(n, dm, dp, generator=g, dtype=F64)
    W2 = std * torch.randn(n, dn, dm, generator=g, dtype=F64)
    sq = torch.linalg.matrix_norm(W2.transpose(1, 2) @ W2 - W1 @ W1.transpose(1, 2)) ** 2
    m = dl.gaussian_gap_second_moment(dp, dm, dn, std)
    assert abs(float(sq.mean()) - m) <= 5 * float(sq.std()) / math.sqrt(n)   # five standard errors
