"""ngdlib.data: the sphere-plus-teacher data set against an independent construction, and whitened data.

The reference below is the code the Part II-a notebooks carried before the library had ``sphere_teacher`` (seeded
``torch.Generator`` streams seed, seed + 1 and seed + 2, normalised Gaussians, ``sin(2 u^T x)``), written out again
from that definition with numpy for the normalisation and the sine: the library must reproduce it bit for bit in
float64 (same seed, same numbers), so swapping the notebooks' copies for the library call changed no number.
"""
import math

import numpy as np
import pytest
import torch

import ngdlib
from ngdlib import data, kfac
from ngdlib import deep_linear as dl
from ngdlib.testing import assert_close

F64 = torch.float64


def _reference(seed, n, d, n_test):
    def sph(k, s):
        Z = torch.randn(k, d, generator=torch.Generator().manual_seed(s), dtype=F64).numpy()
        return Z / np.sqrt((Z ** 2).sum(axis=1, keepdims=True))

    u = torch.randn(d, generator=torch.Generator().manual_seed(seed + 2), dtype=F64).numpy()
    X, Xt = sph(n, seed), sph(n_test, seed + 1)
    return X, np.sin(2 * X @ u), Xt, np.sin(2 * Xt @ u)


@pytest.mark.parametrize("seed", [0, 1, 7, 49, 123457])
def test_sphere_teacher_matches_the_notebooks_construction(seed):
    X, y, Xt, yt = data.sphere_teacher(12, 5, seed, n_test=30)
    rX, ry, rXt, ryt = _reference(seed, 12, 5, 30)
    # the same draws; normalisation and matrix-vector product by torch vs numpy: a few eps
    for got, ref in ((X, rX), (y, ry), (Xt, rXt), (yt, ryt)):
        np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=8 * np.finfo(np.float64).eps)
    X2, y2 = data.sphere_teacher(12, 5, seed)
    assert torch.equal(X2, X) and torch.equal(y2, y)          # the test set does not disturb the training streams
    assert torch.equal(data.teacher(X, seed), y)
    assert X.dtype == F64 and y.shape == (12,) and Xt.shape == (30, 5)


def test_sphere_teacher_is_the_old_notebook_code_bit_for_bit():
    # verbatim the notebooks' make_data (k-exact-check), DTYPE = float64, DEVICE = cpu
    N, M0, N_TEST = 20, 8, 40
    for seed in range(50):
        X = data.sphere(N, M0, seed=seed)
        Xt = data.sphere(N_TEST, M0, seed=seed + 1)
        u = torch.randn(M0, generator=torch.Generator().manual_seed(seed + 2), dtype=F64)
        old = (X, torch.sin(2 * X @ u), Xt, torch.sin(2 * Xt @ u))
        new = data.sphere_teacher(N, M0, seed, n_test=N_TEST)
        assert all(torch.equal(a, b) for a, b in zip(old, new))


def test_sphere_teacher_float32_rounds_the_float64_draws():
    X64, y64 = data.sphere_teacher(6, 4, 3)
    X32, y32 = data.sphere_teacher(6, 4, 3, dtype=torch.float32)
    assert torch.equal(X32, X64.float())
    np.testing.assert_allclose(y32.numpy(), y64.numpy(), rtol=0, atol=1e-6)   # float32 round-off of |2 u^T x| <~ 10


def test_whitened_data_is_whitened_and_its_loss_identity_holds():
    w = data.whitened_data(40, 4, 2, seed=5, noise=0.2)
    n = w.X.shape[0]
    np.testing.assert_allclose((w.X.T @ w.X / n).numpy(), np.eye(4), atol=1e3 * np.finfo(np.float64).eps)
    W = torch.randn(2, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    lhs = float(((w.X @ W.T - w.Y) ** 2).sum() / (2 * n))
    rhs = 0.5 * float(((W - w.Phi) ** 2).sum()) + w.offset
    assert lhs == pytest.approx(rhs, rel=1e-12)


# ---------------------------------------------------------------- moved from tests/test_part1b.py and test_part2b.py
def _aniso(n, d, seed, spread=0.4):
    X = ngdlib.sphere(n, d, seed=seed) * torch.logspace(-spread, spread, d, dtype=F64)
    return X / torch.linalg.vector_norm(X, dim=1, keepdim=True)


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
]


def test_forster_then_uniform_leverages():
    X = _aniso(30, 5, 10, spread=0.8)
    U, A = ngdlib.forster(X)
    assert_close(kfac.leverages(U), torch.full((30,), 5 / 30, dtype=F64), atol=1e-10, what="h = d/n")
    seen = []
    ngdlib.forster(X, callback=lambda k, U_, A_, err: seen.append(err))
    assert seen[0] > 0.5 and seen[-1] <= 1e3 * torch.finfo(F64).eps and len(seen) > 2


@pytest.mark.parametrize("call,words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_refused_by_name(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value), f"message does not name the violation ({words!r}): {info.value}"


def _layers(d0, hidden, dN, seed=0, std=0.7):
    return dl.gaussian_init([d0] + hidden + [dN], std, seed=seed)


def test_whitened_data_loss_identity():
    w = data.whitened_data(50, 4, 2, seed=3, noise=0.3)
    assert_close(w.X.T @ w.X / 50, torch.eye(4, dtype=F64), rtol=0, atol=1e-13, what="whitening")
    layers = _layers(4, [3], 2, seed=1)
    assert math.isclose(dl.data_loss(layers, w.X, w.Y), dl.loss(layers, w.Phi) + w.offset,
                        rel_tol=1e-12, abs_tol=1e-13)
    assert data.whitened_data(50, 4, 2, seed=3).Phi.equal(data.whitened_data(50, 4, 2, seed=3).Phi)


def test_shared_direction_sphere_from_its_definition():
    # the definition written out independently: one float64 stream, z_i, u, v in that order
    import math
    g = torch.Generator().manual_seed(11)
    Z = torch.randn(6, 5, generator=g, dtype=torch.float64)
    u = torch.randn(5, generator=g, dtype=torch.float64)
    v = torch.randn(5, generator=g, dtype=torch.float64)
    for share in (0.0, 0.3, 0.9):
        X0 = math.sqrt(1 - share) * Z / Z.norm(dim=1, keepdim=True) + math.sqrt(share) * u / u.norm()
        X0 = X0 / X0.norm(dim=1, keepdim=True)
        X, y = ngdlib.data.shared_direction_sphere(6, 5, share, 11)
        assert torch.allclose(X, X0, rtol=0, atol=1e-15) and torch.allclose(y, torch.sin(2 * X0 @ v), rtol=0, atol=1e-15)
    # a larger share makes the inputs more nearly parallel: the smallest eigenvalue of X X^T falls
    ev = [float(torch.linalg.eigvalsh((lambda X: X @ X.T)(ngdlib.data.shared_direction_sphere(4, 8, s, 0)[0]))[0])
          for s in (0.0, 0.5, 0.9)]
    assert ev[0] > ev[1] > ev[2] > 0
