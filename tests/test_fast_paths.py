"""Every structured fast path against the dense torch.func reference (ngdlib.reference).

The reference always runs in float64 on the CPU; the fast path runs in the case's dtype and device and is compared
with the tolerance of ngdlib.testing.TOLERANCES for its dtype.
"""
import math

import pytest
import torch

import ngdlib
from ngdlib import reference
from ngdlib.models import _two_layer_counts as kern
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
    hist = ngdlib.train(model, X, y, method="ngd", eta=1.0, steps=6, progress=False)
    assert hist.steps == 6 and not hist.diverged
    assert hist.residual_norm[-1] < 1e-8 * hist.residual_norm[0]
    # first step is exactly W0 - lr * direction
    m2 = ngdlib.TwoLayerReLU(4, 400, seed=2)
    ngdlib.train(m2, X, y, method="ngd", eta=0.5, steps=1, progress=False)
    assert_close(m2.W.detach(), W0 - 0.5 * D0, what="one NGD step")
    # recorded quantities
    m3 = ngdlib.TwoLayerReLU(4, 400, seed=2)
    h3 = ngdlib.train(m3, X, y, method="gd", eta=0.5, steps=3, progress=False)
    assert_close(torch.tensor(h3.dist_from_init[-1], dtype=torch.float64), torch.linalg.vector_norm(m3.W.detach() - W0), what="dist")
    assert_close(torch.tensor(h3.lambda_min_gram[-1], dtype=torch.float64), torch.linalg.eigvalsh(m3.gram(X))[0], what="lambda_min")
    assert_close(h3.tensor("loss"), h3.tensor("residual_norm") ** 2 / 16, what="loss = ||r||^2 / 2n")


def test_train_divergence_is_recorded_not_raised():
    X = ngdlib.sphere(8, 4, seed=0)
    y = torch.ones(8, dtype=torch.float64)
    model = ngdlib.TwoLayerReLU(4, 100, seed=2)
    hist = ngdlib.train(model, X, y, method="gd", eta=500.0, steps=50, progress=False, diverge_factor=1e3)
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
    # a layer wider than float32's exact range: blocks of at most EXACT_FLOAT32_COUNTS units, summed in float64
    monkeypatch.setattr(models, "EXACT_FLOAT32_COUNTS", 100)
    for counts in ("float32", "tf32"):
        assert torch.equal(model.gram(X, counts=counts), G)
        assert torch.equal(ngdlib.ngd_direction(model, X, r, counts=counts), D)


def test_chunk_must_be_positive_int():
    X = ngdlib.sphere(4, 3, seed=0)
    model = ngdlib.TwoLayerReLU(3, 10, seed=1)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="chunk"):
            model.gram(X, chunk=bad)


@pytest.mark.parametrize("n,m", [(1, 40), (16, 5), (17, 300), (31, 2049), (64, 1000), (257, 700), (300, 4100)])
def test_every_count_path_is_exact(n, m, monkeypatch):
    """The Gram matrix from every count path (int8 where this CPU has it, float32, tf32, float64, auto), unblocked
    and blocked, padded and not, agrees bit for bit with plain float64 counts of the activation pattern."""
    import ngdlib.models as models

    X = ngdlib.sphere(n, 5, seed=n)
    model = ngdlib.TwoLayerReLU(5, m, seed=m)
    S01 = model.activation_pattern(X)
    exact = (X @ X.T) * (S01 @ S01.T) / m
    paths = [c for c in models.COUNTS if c != "int8" or kern._int8_counts(X.device)]
    for counts in paths:
        for chunk in (None, 7, m):                                       # cache-sized, odd, one block (as on CUDA)
            assert torch.equal(model.gram(X, counts=counts, chunk=chunk), exact), (counts, chunk)
    monkeypatch.setattr(models, "SYMMETRIC_MIN_N", 10**9)                  # unblocked float counts
    for counts in paths:
        assert torch.equal(model.gram(X, counts=counts), exact), counts
    if "int8" in paths:                                                    # the zero-padded int8 layout (CUDA's)
        monkeypatch.setattr(models, "INT8_PAD_BELOW_N", n + 3)
        assert torch.equal(model.gram(X, counts="int8", chunk=5), exact)


def test_ngd_direction_every_count_path_matches_dense_reference(dtype):
    """Each count path gives the same direction bit for bit on a CPU, and it matches the dense torch.func reference
    (float64: two exact formulas, round-off scaled by cond(G); float32: against the float64 reference)."""
    import ngdlib.models as models
    from ngdlib import reference

    n, d, m = 24, 5, 300
    X64 = ngdlib.sphere(n, d, seed=3)
    r64 = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    model64 = ngdlib.TwoLayerReLU(d, m, seed=5)
    ref = reference.ngd_direction(model64, X64, r64).reshape(m, d)
    X, r = X64.to(dtype), r64.to(dtype)
    model = ngdlib.TwoLayerReLU(d, m, seed=5, dtype=dtype)
    paths = [c for c in models.COUNTS if c != "int8" or kern._int8_counts(X.device)]
    D = {c: ngdlib.ngd_direction(model, X, r, counts=c) for c in paths}
    for c in paths:
        assert torch.equal(D[c], D["float64"]), c
    cond = float(torch.linalg.cond(model64.gram(X64)))
    # float64: both exact formulas, so round-off eps * cond(G) (x 100 for the solves' constants); float32: the
    # float32 inputs and solve, eps32 * cond(G) x 100 (the activation pattern is the same at this size: checked)
    assert torch.equal(model.activation_pattern(X), model64.activation_pattern(X64).to(dtype))
    eps = torch.finfo(dtype).eps
    rel = float((D["auto"].double() - ref).norm() / ref.norm())
    assert rel <= 100 * eps * cond, (rel, cond)


def test_kfac_direction_every_count_path():
    """K-FAC's S S^T = S01 S01^T / m comes from the exact counts: every count path gives the same direction bit for
    bit, and it matches the dense reference (m > n and m < n, where S S^T is singular and pinv's cut-off matters)."""
    import ngdlib.models as models
    from ngdlib import reference

    X = ngdlib.sphere(30, 5, seed=0)
    r = torch.randn(30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    paths = [c for c in models.COUNTS if c != "int8" or kern._int8_counts(X.device)]
    for m in (200, 4):
        model = ngdlib.TwoLayerReLU(5, m, seed=2)
        D = ngdlib.kfac_direction(model, X, r)
        for c in paths:
            assert torch.equal(ngdlib.kfac_direction(model, X, r, counts=c), D), (m, c)
        # two formulas for the same (pseudo-)inverses in float64: round-off eps amplified by the condition numbers of
        # the two factors (X^T X, and S S^T on its nonzero spectrum), x 100 for the constants of the solves
        ev = torch.linalg.eigvalsh(model.gram(X) / (X @ X.T))            # S S^T = S01 S01^T / m
        ev = ev[ev > 30 * torch.finfo(X.dtype).eps * ev.max()]
        bound = 100 * torch.finfo(X.dtype).eps * float(torch.linalg.cond(X.T @ X)) * float(ev.max() / ev.min())
        ref = reference.kfac_direction(model, X, r).reshape(D.shape)
        assert float((D - ref).norm() / ref.norm()) <= bound, (m, bound)


def test_count_paths_bad_names_and_resolution():
    import ngdlib.models as models

    X = ngdlib.sphere(6, 3, seed=0)
    model = ngdlib.TwoLayerReLU(3, 40, seed=1)
    for bad in ("fp8", "", None, 32, "TF32"):
        with pytest.raises(ValueError, match="counts must be one of"):
            model.gram(X, counts=bad)
    assert models.resolve_counts("auto", "cuda", 10) == "tf32"             # CUDA's default (resolution only)
    assert models.resolve_counts("auto", "cpu", 10) == "float32"          # small n on a CPU
    int8 = kern._int8_counts(torch.device("cpu"))
    assert models.resolve_counts("auto", "cpu", models.INT8_MIN_N) == ("int8" if int8 else "float32")
    assert models.resolve_counts("tf32", "cpu", 10) == "tf32"


def test_int8_unavailable_is_a_clear_error(monkeypatch):

    monkeypatch.setitem(kern._INT8_PROBE, ("cpu", None), False)
    X = ngdlib.sphere(300, 3, seed=0)
    model = ngdlib.TwoLayerReLU(3, 50, seed=1)
    with pytest.raises(ValueError, match="counts='int8' needs torch._int_mm"):
        model.gram(X, counts="int8")
    S01 = model.activation_pattern(X)                                     # auto falls back to exact float32
    assert torch.equal(model.gram(X), (X @ X.T) * (S01 @ S01.T) / 50)


def test_memory_plan_and_the_recomputed_pattern(monkeypatch):
    """CUDA's block plan, exercised on the CPU with a pretend memory budget: a pattern that does not fit is kept as
    bools or recomputed in the second pass, blocks shrink to the budget, and nothing changes a bit."""
    import ngdlib.models as models

    assert kern._plan_storage(1024, 2**20, torch.float32, 16 * 2**30) == torch.float32    # 4 GiB <= 8 GiB
    assert kern._plan_storage(1024, 2**20, torch.float32, 4 * 2**30) == torch.bool        # 4 GiB > 2 GiB >= 1 GiB
    assert kern._plan_storage(1024, 2**20, torch.float32, 2**30) is None                 # recomputed
    assert kern._plan_storage(10, 10, torch.float64, None) == torch.float64              # CPU: as before
    assert kern._block_units(1024, 2**20, 0, 2**30) == 2**20                             # no temporaries: one block
    assert kern._block_units(1024, 2**20, 4, 2**30) == 2**18                             # 1 GiB / (1024 * 4 B)
    assert kern._block_units(1024, 2**20, 4, None) == models.CHUNK_ENTRIES // 1024       # CPU: cache-sized

    X = ngdlib.sphere(40, 6, seed=0)
    model = ngdlib.TwoLayerReLU(6, 301, seed=1)
    r = torch.randn(40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    D, G = ngdlib.ngd_direction(model, X, r), model.gram(X)
    for budget in (4 * 40 * 301 * 8, 4 * 40 * 301, 4000):     # keeps float64; keeps bools; recomputes (8-unit blocks)
        monkeypatch.setattr(kern, "_device_budget", lambda device, held=0, b=budget: b)
        for counts in ("auto", "float32", "float64"):
            assert torch.equal(ngdlib.ngd_direction(model, X, r, counts=counts), D), (budget, counts)
            assert torch.equal(model.gram(X, counts=counts), G)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
@pytest.mark.parametrize("n,m", [(17, 300), (300, 4100), (1024, 65536)])
def test_cuda_count_paths_are_exact(n, m, dtype):
    """On CUDA every count path (TF32 by default, IEEE float32, int8 where cuBLAS's IMMA passes the probe, float64)
    gives counts bit-identical to float64 counts of the same pattern; G is then the same on the CPU bit for bit
    up to XX^T's rounding, and the NGD direction agrees with the CPU's to float round-off."""
    import ngdlib.models as models

    X = ngdlib.sphere(n, 16, seed=n, dtype=dtype, device="cuda")
    model = ngdlib.TwoLayerReLU(16, m, seed=m, dtype=dtype, device="cuda")
    S01 = model.activation_pattern(X).double()
    exact = ((X @ X.T) * (S01 @ S01.T).to(dtype) / m)
    paths = [c for c in models.COUNTS if c != "int8" or kern._int8_counts(X.device)]
    for counts in paths:
        for chunk in (None, 1000):
            assert torch.equal(model.gram(X, counts=counts, chunk=chunk), exact), (counts, chunk)
    r = torch.randn(n, dtype=dtype, generator=torch.Generator().manual_seed(1)).to("cuda")
    D = ngdlib.ngd_direction(model, X, r, check_assumption1=False)
    for counts in paths:     # same pattern and G; J^T z by the same block shapes unless the plan differs
        Dc = ngdlib.ngd_direction(model, X, r, check_assumption1=False, counts=counts)
        assert float((Dc - D).norm() / D.norm()) <= 1e3 * torch.finfo(dtype).eps, counts
    # the CPU direction from the same network and data, in float64 only (in float32 the two devices may round W X^T
    # differently and flip an activation whose pre-activation is within round-off of 0)
    if n * m <= 2**22 and dtype == torch.float64:
        Xc, mc, rc = X.cpu(), ngdlib.TwoLayerReLU(16, m, seed=m, dtype=dtype), r.cpu()
        Dcpu = ngdlib.ngd_direction(mc, Xc, rc, check_assumption1=False)
        cond = float(torch.linalg.cond(mc.gram(Xc).double()))
        assert float((D.cpu() - Dcpu).norm() / Dcpu.norm()) <= 100 * torch.finfo(dtype).eps * cond


def test_tf32_switch_restores_the_callers_setting():
    """The TF32 switch around the CUDA count product (exercised on the flags, which exist without a GPU) leaves the
    caller's matmul setting as it found it, whichever API (legacy or torch >= 2.9's fp32_precision) set it."""
    import warnings


    mm = torch.backends.cuda.matmul
    if not hasattr(mm, "fp32_precision"):
        pytest.skip("torch < 2.9: only the legacy flag exists (saved and restored as a bool)")
    start = mm.fp32_precision
    try:
        for setup in ("none", "ieee", "tf32"):
            mm.fp32_precision = setup
            for enabled in (True, False):
                with kern._cuda_tf32(enabled):
                    assert mm.fp32_precision == ("tf32" if enabled else "ieee")
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        assert mm.allow_tf32 == enabled            # legacy and new flags agree (cuBLAS checks it)
                assert mm.fp32_precision == setup
    finally:
        mm.fp32_precision = start
