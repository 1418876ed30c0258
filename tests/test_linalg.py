"""ngdlib._linalg against numpy / scipy with an explicitly stated cut-off (float64).

The library's rank policy is sigma_i > max(m, n) * eps * sigma_max; numpy's ``pinv`` takes ``rcond`` relative to
sigma_max, so the references below pass ``rcond = max(m, n) * eps`` explicitly (numpy's own default is 1e-15, a
different number: it must not be relied on). Matrices are built with a known spectrum, so the expected rank is
known exactly, and with a clear gap around the cut-off, so that both sides make the same rank decision.
"""
import numpy as np
import pytest
import scipy.linalg
import torch

from ngdlib import _linalg

F64 = torch.float64
EPS = float(np.finfo(np.float64).eps)


def _with_spectrum(sv, m, n, seed):
    """An m x n matrix with singular values ``sv`` (padded with exact zeros) and random orthogonal factors."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, m)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    S = np.zeros((m, n))
    k = len(sv)
    S[:k, :k] = np.diag(sv)
    return U @ S @ V.T


def _psd_with_spectrum(ev, seed):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((len(ev), len(ev))))
    A = (Q * np.asarray(ev)) @ Q.T
    return (A + A.T) / 2


def test_rank_rtol_is_the_lapack_convention():
    A = torch.zeros(7, 3, dtype=F64)
    assert _linalg.rank_rtol(A) == 7 * EPS
    assert _linalg.rank_rtol(A.float()) == 7 * float(np.finfo(np.float32).eps)
    # torch's own default for pinv / matrix_rank is the same number: the policy is the field's convention
    B = torch.from_numpy(_with_spectrum([1.0, 1e-3, 3 * EPS], 6, 4, 0))
    assert int(torch.linalg.matrix_rank(B)) == _linalg.numerical_rank(B) == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5)])
def test_pinv_matches_numpy_with_explicit_rcond(seed, shape):
    m, n = shape
    # rank 3: singular values 1, 0.1, 1e-3 kept, 1e-17 (far below 6 eps ~ 1.3e-15) dropped
    A = _with_spectrum([1.0, 0.1, 1e-3, 1e-17], m, n, seed)
    ref = np.linalg.pinv(A, rcond=max(m, n) * EPS)
    got = _linalg.pinv(torch.from_numpy(A)).numpy()
    # both sides invert singular values >= 1e-3: round-off ~ eps * cond = eps * 1e3, times a modest factor 1e2
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e2 * EPS * 1e3 * np.abs(ref).max())
    assert _linalg.numerical_rank(torch.from_numpy(A)) == 3 == np.linalg.matrix_rank(A, tol=max(m, n) * EPS)


@pytest.mark.parametrize("seed", [0, 1])
def test_pinv_psd_and_floor_match_scipy(seed):
    ev = [2.0, 1.0, 0.5, 1e-4, 0.0, 0.0]          # rank 4; the zeros come out as O(eps) round-off
    A = _psd_with_spectrum(ev, seed)
    ref = scipy.linalg.pinvh(A, atol=0.0, rtol=len(ev) * EPS)
    got = _linalg.pinv_psd(torch.from_numpy(A)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e2 * EPS * 1e4 * np.abs(ref).max())
    evals, evecs, keep = _linalg.psd_eigh_floor(torch.from_numpy(A))
    assert int(keep.sum()) == 4
    # the kept eigenpairs reproduce A (the dropped ones are round-off)
    V = evecs[:, keep]
    np.testing.assert_allclose(((V * evals[keep]) @ V.T).numpy(), A, rtol=0, atol=1e2 * EPS * 2.0)


def test_pinv_psd_refuses_an_indefinite_matrix():
    A = torch.from_numpy(_psd_with_spectrum([1.0, -0.5, 0.2], 0))
    with pytest.raises(ValueError, match="positive semi-definite"):
        _linalg.pinv_psd(A, "the test matrix")


@pytest.mark.parametrize("p", [0.5, 1.0, 1.5, 1 / 3, -0.5])
def test_psd_power_matches_scipy(p):
    ev = [3.0, 1.0, 0.25] + ([] if p < 0 else [0.0])
    A = _psd_with_spectrum(ev, 3)
    ref = scipy.linalg.fractional_matrix_power(A, p).real if p < 0 else None
    if ref is None:                               # scipy's fractional power is unreliable on singular matrices
        w, Q = np.linalg.eigh(A)
        w = np.where(w > len(ev) * EPS * w.max(), w, 0.0)
        ref = (Q * w ** p) @ Q.T
    got = _linalg.psd_power(torch.from_numpy(A), p).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e3 * EPS * np.abs(ref).max() * 16)
    assert np.array_equal(_linalg.psd_power(torch.from_numpy(A), 0).numpy(), np.eye(len(ev)))


def test_solvers_match_scipy_and_refuse_singular_input():
    A = _psd_with_spectrum([4.0, 2.0, 1.0, 0.1], 5)
    b = np.arange(1.0, 5.0)
    ref = scipy.linalg.solve(A, b, assume_a="pos")
    for solve in (_linalg.solve_psd, _linalg.solve_psd_cholesky):
        got = solve(torch.from_numpy(A), torch.from_numpy(b), "A", "no remedy").numpy()
        # cond = 40: error ~ 40 eps, bounded by 1e3 eps
        np.testing.assert_allclose(got, ref, rtol=1e3 * EPS)
    S = _psd_with_spectrum([1.0, 1.0, 0.0], 6)
    for solve in (_linalg.solve_psd, _linalg.solve_psd_cholesky):
        with pytest.raises(ValueError, match="Condition 1 for the test.*singular.*remedy here"):
            solve(torch.from_numpy(S), torch.ones(3, dtype=F64), "Condition 1 for the test", "remedy here")
    with pytest.raises(ValueError, match="Theorem 4.*rank"):
        _linalg.check_full_column_rank(torch.ones(4, 2, dtype=F64), "Theorem 4")


def test_checks_still_exports_the_moved_names():
    from ngdlib import _checks

    for name in ("psd_eigh", "solve_psd", "solve_psd_cholesky", "max_trusted_cond", "check_full_column_rank"):
        assert getattr(_checks, name) is getattr(_linalg, name)


@pytest.mark.parametrize("seed", [0, 1])
def test_pinv_gram_matches_numpy_and_caps_the_structural_rank(seed):
    # a batch of two PSD Grams with known spectra: rank 3 (with an eigenvalue far below 6 eps dropped) and rank 4
    G = np.stack([_psd_with_spectrum([2.0, 0.5, 1e-4, 1e-18, 0.0, 0.0], seed),
                  _psd_with_spectrum([1.0, 1.0, 0.3, 1e-2, 0.0, 0.0], seed + 10)])
    got = _linalg.pinv_gram(torch.from_numpy(G)).numpy()
    for b in range(2):
        ref = np.linalg.pinv(G[b], rcond=6 * EPS, hermitian=True)
        # largest kept condition 2e4 (first) / 1e2: round-off ~ eps * cond, times a modest factor 1e2
        np.testing.assert_allclose(got[b], ref, rtol=0, atol=1e2 * EPS * 2e4 * np.abs(ref).max())
    # the structural cap keeps the 2 largest eigenvalues only: scipy's pinvh of the rank-2 truncation
    w, V = np.linalg.eigh(G[1])
    trunc = (V[:, -2:] * w[-2:]) @ V[:, -2:].T
    capped = _linalg.pinv_gram(torch.from_numpy(G[1]), rank_cap=2).numpy()
    np.testing.assert_allclose(capped, scipy.linalg.pinvh(trunc, atol=1e-12), rtol=0, atol=1e-12)
    assert np.abs(_linalg.pinv_gram(torch.zeros(3, 3, dtype=F64)).numpy()).max() == 0.0


@pytest.mark.parametrize("shape", [(5, 3), (4, 9), (2, 6, 4)])
def test_pinv_gram_factor_matches_numpy_pinv_of_the_formed_gram(shape):
    rng = np.random.default_rng(sum(shape))
    F = rng.standard_normal(shape)
    got = _linalg.pinv_gram_factor(torch.from_numpy(F)).numpy()
    Fs = F.reshape((-1,) + shape[-2:])
    for b in range(Fs.shape[0]):
        N, k = Fs[b].shape
        G = Fs[b] @ Fs[b].T
        # the formed Gram of a random Gaussian factor is well conditioned (cond < 1e4 here): numpy's pinv with the
        # Gram's own cut-off agrees to round-off times that condition number
        cond = np.linalg.cond(G) if k >= N else np.inf
        ref = np.linalg.pinv(G, rcond=1e-10, hermitian=True)
        scale = np.abs(ref).max()
        np.testing.assert_allclose(got.reshape(Fs.shape[0], N, N)[b], ref, rtol=0,
                                   atol=1e2 * EPS * min(cond, 1e4) * max(N, k) * scale)
    # F^T (F F^T)^+ is numpy's pinv(F)
    F2 = rng.standard_normal((4, 7))
    np.testing.assert_allclose(F2.T @ _linalg.pinv_gram_factor(torch.from_numpy(F2)).numpy(), np.linalg.pinv(F2),
                               rtol=0, atol=1e-12)


def test_batched_and_checked_solves_match_scipy():
    rng = np.random.default_rng(3)
    A = np.stack([_psd_with_spectrum([3.0, 1.0, 0.2], s) for s in range(4)])
    B = rng.standard_normal((4, 3, 2))
    got = _linalg.solve_psd_batched(torch.from_numpy(A), torch.from_numpy(B), "A", "fix").numpy()
    for b in range(4):
        np.testing.assert_allclose(got[b], scipy.linalg.solve(A[b], B[b], assume_a="pos"), rtol=0, atol=1e-13)
    T = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])      # indefinite, nonsingular
    x = _linalg.solve_checked(torch.from_numpy(T), torch.ones(3, dtype=F64), "T", "fix").numpy()
    np.testing.assert_allclose(x, scipy.linalg.solve(T, np.ones(3)), rtol=0, atol=1e-14)


def test_shifted_solve_matches_scipy_and_never_refuses_a_small_shift():
    rng = np.random.default_rng(4)
    # PSD matrices of rank 2 (a null space: the damping alone makes A + sI definite) and one full-rank
    A = np.stack([_psd_with_spectrum([2.0, 0.5, 0.0, 0.0], 7), _psd_with_spectrum([1.0, 0.3, 0.1, 0.05], 8)])
    B = rng.standard_normal((2, 4, 3))
    for shift in (1e-1, 1e-6):
        got = _linalg.solve_shifted_psd_batched(torch.from_numpy(A), shift, torch.from_numpy(B)).numpy()
        for b in range(2):
            ref = scipy.linalg.solve(A[b] + shift * np.eye(4), B[b], assume_a="pos")
            # both are backward stable: relative error up to about eps * kappa, kappa = (2 + shift) / shift
            # (2e1 and 2e6 here), times a modest factor 1e2
            kappa = (2.0 + shift) / shift
            np.testing.assert_allclose(got[b], ref, rtol=0, atol=1e2 * EPS * kappa * np.abs(ref).max())
    # a shift far below eps * ||A|| (kappa = 2e15): no refusal and a finite answer. Not an accuracy check: at this
    # condition number neither the forward nor the normwise backward error can tell a wrong shift apart.
    Z = _linalg.solve_shifted_psd_batched(torch.from_numpy(A), 1e-15, torch.from_numpy(B))
    assert bool(torch.isfinite(Z).all())
