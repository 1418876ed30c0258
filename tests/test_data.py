"""ngdlib.data: the sphere-plus-teacher data set against an independent construction, and whitened data.

The reference below is the code the Part II-a notebooks carried before the library had ``sphere_teacher`` (seeded
``torch.Generator`` streams seed, seed + 1 and seed + 2, normalised Gaussians, ``sin(2 u^T x)``), written out again
from that definition with numpy for the normalisation and the sine: the library must reproduce it bit for bit in
float64 (same seed, same numbers), so swapping the notebooks' copies for the library call changed no number.
"""
import numpy as np
import pytest
import torch

from ngdlib import data

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
