"""Every structured fast path against the dense torch.func reference (ngdlib.reference).

The reference always runs in float64 on the CPU; the fast path runs in the case's dtype and device and is compared
with the tolerance of ngdlib.testing.TOLERANCES for its dtype.
"""
import math

import pytest
import torch

import ngdlib
from ngdlib import reference
from ngdlib.testing import assert_close, tolerance


def setup(case, dtype, device):
    _, n, d, m, seed = case
    X = ngdlib.sphere(n, d, seed=seed, dtype=dtype, device=device)
    model = ngdlib.TwoLayerReLU(d, m, nu=1.0, seed=seed + 100, dtype=dtype, device=device)
    r = torch.randn(n, generator=torch.Generator().manual_seed(seed + 200), dtype=dtype).to(device)
    ref_model = ngdlib.TwoLayerReLU(d, m, nu=1.0, seed=seed + 100, dtype=torch.float64)
    X64, r64 = X.to("cpu", torch.float64), r.to("cpu", torch.float64)
    return X, model, r, X64, ref_model, r64


def cmp(actual, expected, dtype, what, scale=1.0):
    tol = tolerance(dtype)
    # absolute tolerance relative to the size of the object: directions are compared as a whole
    atol = tol["atol"] + tol["rtol"] * scale * float(expected.abs().max())
    assert_close(actual.to("cpu", torch.float64), expected, rtol=tol["rtol"] * scale, atol=atol, what=what)


def test_forward_matches_definition(case, dtype, device):
    X, model, _, X64, ref, _ = setup(case, dtype, device)
    u = model(X)
    by_hand = torch.stack([sum(ref.a[r] * torch.relu(ref.W[r] @ x) for r in range(ref.m)) / math.sqrt(ref.m)
                           for x in X64]).detach()
    cmp(u.detach(), by_hand, dtype, "forward vs eq. (8) written out")


def test_jacobian_and_gram(case, dtype, device):
    X, model, _, X64, ref, _ = setup(case, dtype, device)
    J_ref = reference.jacobian(ref, X64)
    cmp(model.jacobian(X), J_ref, dtype, "structured Jacobian vs autodiff")
    cmp(model.gram(X), J_ref @ J_ref.T, dtype, "Hadamard Gram vs J J^T")
    cmp(model.features(X), reference.features(ref, X64), dtype, "S vs du/dz by autodiff")


def test_jvp_vjp(case, dtype, device):
    X, model, r, X64, ref, r64 = setup(case, dtype, device)
    J_ref = reference.jacobian(ref, X64)
    D = torch.randn(model.m, model.d, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    cmp(model.jvp(X, D.to(device, dtype)), J_ref @ D.reshape(-1), dtype, "J vec(D)")
    cmp(model.vjp(X, r), (J_ref.T @ r64).reshape(model.W.shape), dtype, "J^T r")


def test_ngd_direction(case, dtype, device):
    X, model, r, X64, ref, r64 = setup(case, dtype, device)
    kappa = float(torch.linalg.cond(ref.gram(X64)))
    cmp(ngdlib.ngd_direction(model, X, r), reference.ngd_direction(ref, X64, r64), dtype,
        "J^T G^-1 r vs pinv(F) J^T r / n", scale=max(1.0, kappa / 10))


def test_kfac_direction(case, dtype, device):
    X, model, r, X64, ref, r64 = setup(case, dtype, device)
    if X.shape[0] < X.shape[1]:  # rank(X) < d: K-FAC refuses (tested in test_bad_input)
        return
    kappa = float(torch.linalg.cond(X64.T @ X64))
    cmp(ngdlib.kfac_direction(model, X, r), reference.kfac_direction(ref, X64, r64), dtype,
        "K-FAC structured vs dense Kronecker", scale=max(1.0, kappa / 10))


def test_gd_direction(case, dtype, device):
    X, model, r, X64, ref, r64 = setup(case, dtype, device)
    cmp(ngdlib.gd_direction(model, X, r), reference.gd_direction(ref, X64, r64), dtype, "J^T r")


def test_gd_direction_is_gradient_of_half_squared_error():
    X = ngdlib.sphere(6, 3, seed=0)
    model = ngdlib.TwoLayerReLU(3, 30, seed=1)
    y = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    loss = 0.5 * ((model(X) - y) ** 2).sum()
    (g,) = torch.autograd.grad(loss, model.W)
    assert_close(ngdlib.gd_direction(model, X, (model(X) - y).detach()), g, what="J^T (u - y) vs autograd")
    assert_close(reference.loss_grad(model, X, y), g.reshape(-1) / 6, what="grad L = J^T (u - y) / n")


def test_kfac_output_kernel_identity():
    """J F_KFAC^+ J^T = P_X (Hadamard) P_S, and P_S = I when rank S = n (the conventions of the notation page)."""
    n, d, m = 10, 4, 60
    X = ngdlib.sphere(n, d, seed=3)
    model = ngdlib.TwoLayerReLU(d, m, seed=4)
    cols = [model.jvp(X, ngdlib.kfac_direction(model, X, e)) for e in torch.eye(n, dtype=torch.float64)]
    K = torch.stack(cols, dim=1)
    PX = X @ torch.linalg.solve(X.T @ X, X.T)
    S = model.features(X)
    PS = S @ torch.linalg.pinv(S.T @ S) @ S.T
    assert_close(K, PX * PS, atol=1e-12, what="J F_KFAC^+ J^T vs P_X * P_S")
    assert torch.linalg.matrix_rank(S) == n
    assert_close(PS, torch.eye(n, dtype=torch.float64), atol=1e-10, what="P_S = I for rank S = n")


def test_ngd_output_step_is_residual():
    X = ngdlib.sphere(7, 5, seed=5)
    model = ngdlib.TwoLayerReLU(5, 40, seed=6)
    r = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert_close(model.jvp(X, ngdlib.ngd_direction(model, X, r)), r, atol=1e-12, what="J J^T G^-1 r = r")


def test_limiting_gram_closed_form():
    X = ngdlib.sphere(40, 5, seed=0)
    C = (X @ X.T).clamp(-1, 1)
    naive = C * (math.pi - torch.arccos(C)) / (2 * math.pi)
    G = ngdlib.limiting_gram(X)
    # arccos loses half the digits near +-1: the naive formula is only good to ~sqrt(eps)
    assert_close(G, naive, rtol=0, atol=1e-7, what="atan2 vs arccos closed form")
    assert bool((torch.diagonal(G) == 0.5).all())
    assert_close(G, G.T, rtol=0, atol=0, what="symmetry")
    E = torch.eye(3, dtype=torch.float64)
    pair = torch.stack([E[0], -E[0], E[1]])
    assert_close(ngdlib.limiting_gram(pair), torch.diag(torch.full((3,), 0.5, dtype=torch.float64)), atol=1e-16,
                 what="orthogonal and antiparallel entries are exactly 0")


def test_limiting_gram_monte_carlo():
    """G(0) at width 2^15 within 6 standard errors of G^inf, entry-wise (family-wise false alarm < 1e-5)."""
    X = ngdlib.sphere(10, 4, seed=1)
    m = 2**15
    G0 = ngdlib.TwoLayerReLU(4, m, nu=0.3, seed=2).gram(X)
    Gi = ngdlib.limiting_gram(X)
    p = ngdlib.limiting_activation_gram(X)
    se = (X @ X.T).abs() * torch.sqrt(p * (1 - p) / m)
    ngdlib.testing.assert_within_se(G0[se > 0], Gi[se > 0], se[se > 0], k=6.0)


def test_train_records_and_converges():
    X = ngdlib.sphere(8, 4, seed=0)
    y = 0.5 * torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    model = ngdlib.TwoLayerReLU(4, 400, seed=2)
    W0 = model.W.detach().clone()
    D0 = ngdlib.ngd_direction(model, X, (model(X) - y).detach())
    hist = ngdlib.train(model, X, y, method="ngd", lr=1.0, steps=6, progress=False)
    assert hist.steps == 6 and not hist.diverged
    assert hist.residual_norm[-1] < 1e-8 * hist.residual_norm[0]
    # first step is exactly W0 - lr * direction
    m2 = ngdlib.TwoLayerReLU(4, 400, seed=2)
    ngdlib.train(m2, X, y, method="ngd", lr=0.5, steps=1, progress=False)
    assert_close(m2.W.detach(), W0 - 0.5 * D0, what="one NGD step")
    # recorded quantities
    m3 = ngdlib.TwoLayerReLU(4, 400, seed=2)
    h3 = ngdlib.train(m3, X, y, method="gd", lr=0.5, steps=3, progress=False)
    assert_close(torch.tensor(h3.dist_from_init[-1], dtype=torch.float64), torch.linalg.vector_norm(m3.W.detach() - W0), what="dist")
    assert_close(torch.tensor(h3.lambda_min_gram[-1], dtype=torch.float64), torch.linalg.eigvalsh(m3.gram(X))[0], what="lambda_min")
    assert_close(h3.tensor("loss"), h3.tensor("residual_norm") ** 2 / 16, what="loss = ||r||^2 / 2n")


def test_train_divergence_is_recorded_not_raised():
    X = ngdlib.sphere(8, 4, seed=0)
    y = torch.ones(8, dtype=torch.float64)
    model = ngdlib.TwoLayerReLU(4, 100, seed=2)
    hist = ngdlib.train(model, X, y, method="gd", lr=500.0, steps=50, progress=False, diverge_factor=1e3)
    assert hist.diverged and hist.steps < 50


def test_same_seed_same_network():
    """Reproducibility: the same seed gives a bit-identical network and data set."""
    a = ngdlib.TwoLayerReLU(3, 10, seed=5, dtype=torch.float32)
    b = ngdlib.TwoLayerReLU(3, 10, seed=5, dtype=torch.float32)
    assert torch.equal(a.W, b.W) and torch.equal(a.a, b.a)
    assert torch.equal(ngdlib.sphere(4, 3, seed=1), ngdlib.sphere(4, 3, seed=1))


def test_forster_radial_isotropic_position():
    X = ngdlib.sphere(30, 5, seed=0) @ torch.diag(torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64))
    U, A = ngdlib.forster(X)
    assert_close(U.T @ U, torch.eye(5, dtype=torch.float64) * 30 / 5, atol=1e-10, what="X'^T X' = (n/d) I")
    assert_close(torch.linalg.vector_norm(U, dim=1), torch.ones(30, dtype=torch.float64), what="unit rows")
    Y = X @ A.T
    assert_close(U, Y / torch.linalg.vector_norm(Y, dim=1, keepdim=True), what="U = A x / ||A x||")


def test_chunking_is_bit_identical_and_counts_are_exact(monkeypatch):
    """Chunking over the width changes no bit; float32 counts equal float64 counts exactly (integers < 2^24)."""
    import ngdlib.models as models

    X = ngdlib.sphere(40, 6, seed=0)
    model = ngdlib.TwoLayerReLU(6, 777, seed=1)
    r = torch.randn(40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    D = ngdlib.ngd_direction(model, X, r)
    G = model.gram(X)
    for chunk in (1, 13, 776, 777, 10_000):
        assert torch.equal(ngdlib.ngd_direction(model, X, r, chunk=chunk), D)
        assert torch.equal(model.gram(X, chunk=chunk), G)
        assert torch.equal(model.vjp(X, r, chunk=chunk), model.vjp(X, r))
    S01 = model.activation_pattern(X)
    assert torch.equal(G, (X @ X.T) * (S01 @ S01.T) / 777)          # float64 counts, no chunking
    monkeypatch.setattr(models, "EXACT_FLOAT32_COUNTS", 100)           # force the float64-count branch
    assert model._count_dtype() == torch.float64 and torch.equal(model.gram(X), G)


def test_chunk_must_be_positive_int():
    X = ngdlib.sphere(4, 3, seed=0)
    model = ngdlib.TwoLayerReLU(3, 10, seed=1)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="chunk"):
            model.gram(X, chunk=bad)


@pytest.mark.parametrize("n,m", [(16, 5), (17, 300), (31, 2049), (64, 1000), (257, 700), (300, 4100)])
def test_int8_and_blocked_counts_are_exact(n, m, monkeypatch):
    """The Gram matrix from int8 counts (CPU), from blocked float32 counts and from plain float64 agree bit for bit."""
    import ngdlib.models as models

    X = ngdlib.sphere(n, 5, seed=n)
    model = ngdlib.TwoLayerReLU(5, m, seed=m)
    S01 = model.activation_pattern(X)
    exact = (X @ X.T) * (S01 @ S01.T) / m
    assert torch.equal(model.gram(X), exact)                               # default: int8 from n >= 256 on a CPU
    monkeypatch.setattr(models, "INT8_MIN_N", 2)                           # int8 for every n here (if available)
    assert torch.equal(model.gram(X), exact)
    monkeypatch.setattr(models, "_int8_counts", lambda device: False)      # the float32 path (blocked for n >= 256)
    assert torch.equal(model.gram(X), exact)
    monkeypatch.setattr(models, "SYMMETRIC_MIN_N", 10**9)                  # unblocked float32
    assert torch.equal(model.gram(X), exact)
