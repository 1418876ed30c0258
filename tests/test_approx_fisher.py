"""ngdlib.approx_fisher: approximate-Fisher function-space kernels (Karakida & Osawa 2020).

Every fast (dual, N x N) path of ngdlib.models.deep_mlp and ngdlib.approx_fisher is compared with a dense float64 reference that
shares none of its algebra: the Jacobian from torch.func.jacrev, the P x P approximate Fisher built by masking J^T J / N
(or from Kronecker factors whose error signals come from autodiff), inverted by torch.linalg.pinv.

Tolerance: a backward-stable (pseudo-)inverse has relative error of order kappa * eps, with kappa the condition number
of the matrix inverted on its range. Each comparison uses rtol = 100 * kappa * eps (at least 1e-10), where kappa is
measured on the dense approximate Fisher of that case; the factor 100 covers the O(P) accumulation in the dense
products.

(Split from tests/test_part2a.py: tests are named after the module they test.)
"""
import math

import pytest
import torch

import ngdlib
from ngdlib import approx_fisher as af
from ngdlib import reference
from ngdlib.models import DeepMLP
from ngdlib.testing import assert_close
from tests.deep_cases import MODELS, SEEDS, build


EPS64 = torch.finfo(torch.float64).eps


def dense_cond(model, X, variant):
    """Condition number of the dense approximate Fisher on its range (ratio of extreme non-zero |eigenvalues|)."""
    G = reference.deep_fisher_approx(model, X, variant)
    ev = torch.linalg.eigvalsh(G).abs()
    ev = ev[ev > G.shape[0] * EPS64 * ev.max()]
    return float(ev.max() / ev.min())


def rtol_for(kappa):
    return max(1e-10, 100 * kappa * EPS64)


def cmp(actual, expected, rtol, what):
    atol = rtol * float(expected.abs().max()) + 1e-14
    assert_close(actual.to("cpu", torch.float64), expected.to("cpu", torch.float64), rtol=rtol, atol=atol, what=what)


def flat(V):
    return torch.cat([v.reshape(-1) for v in V])


# ------------------------------------------------------------------------------------------------ dtype / device
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


# ------------------------------------------------------------------------------------------------ kernels vs dense
@pytest.mark.parametrize("spec", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("variant", af.VARIANTS)
@pytest.mark.parametrize("seed", SEEDS)
def test_kernel_and_direction_match_dense(spec, variant, seed):
    model, X, Xt, r = build(spec, seed)
    try:
        K = af.function_kernel(model, X, variant)
    except ValueError as err:      # a tiny ReLU net can lose rank (dead units): then it must say so
        assert "nonsingular" in str(err) or "singular" in str(err), err
        pytest.skip(f"singular Gram in this tiny case: {err}")
    rtol = rtol_for(dense_cond(model, X, variant))
    cmp(K, reference.dense_kernel(model, X, variant), rtol, f"{variant}: dual kernel vs dense J G^+ J^T / N")
    cmp(af.function_kernel(model, X, variant, X_test=Xt), reference.dense_kernel(model, X, variant, X_test=Xt), rtol,
        f"{variant}: dual cross kernel vs dense")
    V = af.ngd_direction(model, X, r, variant)
    Vd = reference.dense_direction(model, X, r, variant)
    cmp(flat(V), flat(Vd), rtol, f"{variant}: dual direction vs dense G^+ grad L")
    cmp(model.jvp(X, V), K @ r, rtol, f"{variant}: J (direction) = kernel r")


@pytest.mark.parametrize("seed", SEEDS)
def test_unit_wise_relu_damped_matches_dense(seed):
    model, X, Xt, r = build(MODELS[0], seed)
    rho = 1e-3
    cmp(af.function_kernel(model, X, "unit_wise", rho=rho), reference.dense_kernel(model, X, "unit_wise", rho=rho), 1e-9,
        "damped unit-wise kernel")
    cmp(af.function_kernel(model, X, "unit_wise", rho=rho, X_test=Xt),
        reference.dense_kernel(model, X, "unit_wise", rho=rho, X_test=Xt), 1e-9, "damped unit-wise cross kernel")
    cmp(flat(af.ngd_direction(model, X, r, "unit_wise", rho=rho)),
        flat(reference.dense_direction(model, X, r, "unit_wise", rho=rho)), 1e-9, "damped unit-wise direction")


@pytest.mark.parametrize("variant", ["exact", "block_diag"])
def test_damped_layer_variants_match_dense(variant):
    model, X, Xt, r = build(MODELS[1], 0)
    cmp(af.function_kernel(model, X, variant, rho=1e-2), reference.dense_kernel(model, X, variant, rho=1e-2), 1e-9,
        f"damped {variant} kernel")


def test_unit_wise_relu_kernel_is_active_count():
    """Pure pseudo-inverse, ReLU: each unit contributes the projection onto its active inputs, so the kernel is
    diag(1 + number of hidden units with a non-zero backward signal on x_n), exactly."""
    model, X, _, _ = build(MODELS[0], 1)
    K = af.function_kernel(model, X, "unit_wise")
    s = model.signals(X)
    counts = 1 + sum((D != 0).sum(dim=1) for D in s.D[:-1]).to(torch.float64)
    cmp(K, torch.diag(counts), 1e-10, "unit-wise ReLU kernel vs diag(1 + active counts)")


def test_singular_pinv_paths_match_dense():
    """Layer Grams that are singular by construction (last hidden width 3 (+1) < N = 5, so Theta_L = A A^T has rank 4):
    pseudo-inverse mode vs dense pinv."""
    model = DeepMLP((6, 8, 3), activation="tanh", seed=3)
    X = ngdlib.sphere(5, 6, seed=2)
    for variant in ("exact", "block_diag"):
        cmp(af.function_kernel(model, X, variant, singular="pinv"), reference.dense_kernel(model, X, variant), 1e-9,
            f"{variant} with a singular layer Gram")
    X8 = ngdlib.sphere(8, 3, seed=2)                      # unit-wise with M_0 + 1 = 4 < N = 8
    small = DeepMLP((3, 9), activation="tanh", seed=3)
    cmp(af.function_kernel(small, X8, "unit_wise", singular="pinv"), reference.dense_kernel(small, X8, "unit_wise"), 1e-8,
        "unit-wise with a singular first-layer input Gram")
    kf = DeepMLP((3, 9, 9), activation="relu", bias=False, seed=4)   # K-FAC with M_0 = 3 < N = 8
    cmp(af.function_kernel(kf, X8, "kfac"), reference.dense_kernel(kf, X8, "kfac"), 1e-9, "K-FAC with M_0 < N")


# ------------------------------------------------------------------------------------------------ the constants
def test_tri_coefficients():
    for L in range(1, 31):
        td = af.tri_coefficients(L)
        assert td.alpha == pytest.approx(math.ceil(L / 3), abs=1e-10), L
        assert td.singular == (L % 3 == 2)
        assert_close(td.T @ td.d, torch.ones(L, dtype=torch.float64), rtol=0, atol=1e-12, what=f"T d = 1 (L={L})")
        det = torch.linalg.det(td.T)
        assert (abs(float(det)) < 1e-9) == td.singular
        if td.singular:
            assert float((td.T @ td.null).abs().max()) < 1e-12 and abs(float(td.null.sum())) < 1e-12
    assert af.tri_coefficients(3).d.tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-14)


@pytest.mark.parametrize("variant", ["exact", "block_diag", "tri_diag", "kfac", "unit_wise"])
@pytest.mark.parametrize("L", [2, 3, 4, 5])
def test_predicted_alpha_is_exact(variant, L):
    """Where the library gives a closed form it holds at finite width (tanh, all widths >= N)."""
    n = 6
    model = DeepMLP((8,) + (9,) * (L - 1), activation="tanh", seed=L)
    X = ngdlib.sphere(n, 8, seed=L)
    K = af.function_kernel(model, X, variant)
    alpha = af.predicted_alpha(model, variant, n)
    iso = af.isotropy(K)
    assert iso.alpha == pytest.approx(alpha, rel=1e-9)
    assert iso.defect < 1e-8, (variant, L, iso)


def test_kfac_forster_alpha():
    n, d = 12, 4
    X, _ = ngdlib.forster(ngdlib.sphere(n, d, seed=3))
    model = DeepMLP((d, 40, 40), activation="relu", bias=False, seed=1)   # wide enough that rank D_l = N
    iso = af.isotropy(af.function_kernel(model, X, "kfac"))
    assert iso.alpha == pytest.approx(n * (3 - 2) + d + 1, rel=1e-9)
    assert iso.defect < 1e-8
    assert af.predicted_alpha(model, "kfac", n) == n + d + 1


def test_isotropy_of_known_matrices():
    iso = af.isotropy(3.0 * torch.eye(4, dtype=torch.float64))
    assert iso.alpha == 3.0 and iso.spread == 0 and iso.defect == 0 and iso.offdiag == 0
    iso = af.isotropy(torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)))
    assert iso.alpha == 2.0 and iso.spread == pytest.approx(1.0) and iso.defect == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------ predictions
def test_linearized_prediction_matches_iteration():
    g = torch.Generator().manual_seed(0)
    B = torch.randn(5, 5, generator=g, dtype=torch.float64)
    K = B @ B.T / 5 + 0.1 * torch.eye(5, dtype=torch.float64)
    Kt = torch.randn(3, 5, generator=g, dtype=torch.float64)
    f0, f0t, y = (torch.randn(k, generator=g, dtype=torch.float64) for k in (5, 3, 5))
    eta = 1.7 / float(torch.linalg.eigvalsh(K)[-1])     # some 1 - eta * lambda are negative
    Ftr, Fte = af.linearized_prediction(K, Kt, f0, f0t, y, eta, 6)
    f, ft = f0.clone(), f0t.clone()
    for t in range(7):
        assert_close(Ftr[t], f, rtol=1e-11, atol=1e-12, what=f"train t={t}")
        assert_close(Fte[t], ft, rtol=1e-11, atol=1e-12, what=f"test t={t}")
        ft = ft - eta * Kt @ (f - y)
        f = f - eta * K @ (f - y)


def test_ntk_test_prediction_equals_ngd_on_linearised_model():
    model, X, Xt, _ = build(MODELS[1], 0)
    y = torch.randn(X.shape[0], generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    eta = 0.6
    s, st = model.signals(X), model.signals(Xt)
    Th = model.ntk(X)
    f_lin, ft_lin = s.f.clone(), st.f.clone()
    dtheta = [torch.zeros_like(p) for p in model.blocks]
    for t in range(5):
        pred = af.ntk_test_prediction(model, X, y, Xt, eta, t)
        cmp(pred, ft_lin, 1e-10, f"K-EXACT closed form vs NGD on the linearised model, t = {t}")
        step = model.vjp(X, torch.linalg.solve(Th, f_lin - y), sig=s)
        dtheta = [a - eta * b for a, b in zip(dtheta, step)]
        f_lin = s.f + model.jvp(X, dtheta, sig=s)
        ft_lin = st.f + model.jvp(Xt, dtheta, sig=st)
    K = af.function_kernel(model, X, "exact")
    Kt = af.function_kernel(model, X, "exact", X_test=Xt)
    _, Fte = af.linearized_prediction(K, Kt, s.f, st.f, y, eta, 4)
    cmp(Fte[4], af.ntk_test_prediction(model, X, y, Xt, eta, 4), 1e-10, "general vs closed form")


def test_train_ngd_block_diag_overshoots_at_eta_one():
    """Block-diagonal NGD, L = 3: the linear theory gives the residual factor |1 - 3 eta|, i.e. 2 at eta = 1 and 0 at
    eta = 1/3. A wide tanh net follows it to within its O(M^{-1/2}) nonlinearity (measured: 1.9 and 0.03 here)."""
    X = ngdlib.sphere(8, 10, seed=0)
    y = torch.sin(3 * X[:, 0])
    ratios = {}
    for eta in (1.0, 1 / 3):
        model = DeepMLP((10, 1024, 1024), activation="tanh", seed=0)
        res = af.train_ngd(model, X, y, "block_diag", eta, 1).tensor("residual_norm")
        ratios[eta] = float(res[1] / res[0])
    assert ratios[1.0] > 1.5 and ratios[1 / 3] < 0.2, ratios


# ------------------------------------------------------------------------------------------------ infinite width
def test_limiting_factors_match_wide_networks():
    """Arc-cosine recursions vs finite ReLU networks: the layer Grams converge like M^{-1/2} (L = 2 reaches 2^16)."""
    X = ngdlib.sphere(8, 10, seed=0)
    Xt = ngdlib.sphere(3, 10, seed=1)
    lim = af.limiting_factors(DeepMLP((10, 4), seed=0), X, Xt)
    errs = {}
    for w in (2**10, 2**16):
        e = []
        for seed in range(3):
            m = DeepMLP((10, w), seed=seed)
            e.append(max(float((g - Ki * Si).abs().max() / (Ki * Si).abs().max())
                         for g, (Ki, Si) in zip(m.layer_grams(X, Xt), lim)))
        errs[w] = sorted(e)[1]
    # M^{-1/2} scaling: a factor 8 between the two widths; require at least 3 (three-seed medians)
    assert errs[2**16] < 0.03 and errs[2**16] < errs[2**10] / 3, errs
    lim3 = af.limiting_factors(DeepMLP((10, 4, 4), bias=False, seed=0), X)
    m3 = DeepMLP((10, 2048, 2048), bias=False, seed=5)
    e3 = max(float((g - Ki * Si).abs().max() / (Ki * Si).abs().max()) for g, (Ki, Si) in zip(m3.layer_grams(X), lim3))
    assert e3 < 0.2, e3


@pytest.mark.parametrize("variant", ["exact", "block_diag", "tri_diag", "kfac"])
def test_limiting_function_kernels_are_isotropic(variant):
    X = ngdlib.sphere(8, 10, seed=2)
    model = DeepMLP((10, 4, 4), seed=0)            # widths are irrelevant for the limit
    iso = af.isotropy(af.limiting_function_kernel(model, X, variant))
    assert iso.defect < 1e-9
    assert iso.alpha == pytest.approx({"exact": 1, "block_diag": 3, "tri_diag": 1, "kfac": 8 * 2 + 1}[variant],
                                      rel=1e-9)
    Xt = ngdlib.sphere(3, 10, seed=3)
    assert af.limiting_function_kernel(model, X, variant, X_test=Xt).shape == (3, 8)


def test_limiting_bad_inputs():
    X = ngdlib.sphere(8, 10, seed=2)
    with pytest.raises(ValueError, match="ReLU only"):
        af.limiting_factors(DeepMLP((10, 4), activation="tanh"), X)
    with pytest.raises(ValueError, match="unit_wise"):
        af.limiting_function_kernel(DeepMLP((10, 4)), X, "unit_wise")
    with pytest.raises(ValueError, match="3s"):
        af.limiting_function_kernel(DeepMLP((10, 4, 4, 4, 4)), X, "tri_diag")


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("variant", af.VARIANTS)
def test_float32_and_device_follow_inputs(dev, variant):
    model64, X64, _, r64 = build(MODELS[1], 0)
    model, X, _, r = build(MODELS[1], 0, dtype=torch.float32, device=dev)
    K = af.function_kernel(model, X, variant)
    assert K.dtype == torch.float32 and K.device.type == dev
    V = af.ngd_direction(model, X, r, variant)
    assert V[0].dtype == torch.float32 and V[0].device.type == dev
    # float32 tier: error about kappa * 2^-23; 1e-3 relative covers kappa up to ~1e4 (measured kappa here < 1e3)
    cmp(K, af.function_kernel(model64, X64, variant), 2e-3, f"{variant} float32 vs float64")


def test_bad_inputs():
    model, X, _, r = build(MODELS[0], 0)
    with pytest.raises(ValueError, match="columns"):
        af.function_kernel(model, X[:, :3], "exact")
    with pytest.raises(ValueError, match="dtype"):
        af.function_kernel(model, X.float(), "exact")
    Xn = X.clone()
    Xn[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        af.function_kernel(model, Xn, "exact")
    with pytest.raises(ValueError, match="variant"):
        af.function_kernel(model, X, "diagonal")
    with pytest.raises(ValueError, match="rho"):
        af.function_kernel(model, X, "unit_wise", rho=-1.0)
    with pytest.raises(ValueError, match="pure pseudo-inverse"):
        af.function_kernel(model, X, "kfac", rho=1e-3)
    with pytest.raises(ValueError, match="singular"):
        af.function_kernel(model, X, "exact", singular="ignore")
    with pytest.raises(ValueError, match="length"):
        af.ngd_direction(model, X, r[:-1], "exact")
    with pytest.raises(ValueError, match="DeepMLP"):
        af.function_kernel(ngdlib.TwoLayerReLU(6, 5), X, "exact")
    with pytest.raises(ValueError, match="list of L ="):
        model.apply_step([torch.zeros_like(model.blocks[0])], 0.1)
    with pytest.raises(ValueError, match="shape"):
        model.jvp(X, [torch.zeros(2, 2, dtype=torch.float64)] * model.L)
    with pytest.raises(ValueError, match="layer index"):
        model.unit_jacobian(X, 0, 0)
    with pytest.raises(ValueError, match="unit index"):
        model.unit_jacobian(X, 1, 99)


def test_singular_layer_gram_is_refused_with_the_condition():
    model = DeepMLP((6, 8, 3), activation="tanh", seed=3)         # last hidden width 3 (+1) < N = 5
    X = ngdlib.sphere(5, 6, seed=2)
    for variant in ("block_diag", "tri_diag"):
        with pytest.raises(ValueError, match="must be nonsingular"):
            af.function_kernel(model, X, variant)
    with pytest.raises(ValueError, match="hidden width"):
        af.predicted_alpha(model, "kfac", 5)
    small = DeepMLP((3, 9), activation="tanh", seed=3)
    with pytest.raises(ValueError, match="input Gram"):
        af.function_kernel(small, ngdlib.sphere(8, 3, seed=2), "unit_wise")
    with pytest.raises(ValueError, match="M_0"):
        af.predicted_alpha(small, "unit_wise", 8)
    dup = torch.cat([X, X[:1]])
    with pytest.raises(ValueError, match="full row rank"):
        af.function_kernel(DeepMLP((6, 20, 20), seed=0), dup, "exact")


def test_bad_prediction_and_training_arguments():
    K = torch.eye(3, dtype=torch.float64)
    v = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="eta"):
        af.linearized_prediction(K, None, v, None, v, 0.0, 3)
    with pytest.raises(ValueError, match="steps"):
        af.linearized_prediction(K, None, v, None, v, 0.5, -1)
    with pytest.raises(ValueError, match="square"):
        af.linearized_prediction(K[:2], None, v, None, v, 0.5, 1)
    with pytest.raises(ValueError, match="columns"):
        af.linearized_prediction(K, torch.ones(2, 4, dtype=torch.float64), v, torch.zeros(2, dtype=torch.float64),
                                 v, 0.5, 1)
    with pytest.raises(ValueError, match="square"):
        af.isotropy(torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="L"):
        af.tri_coefficients(0)
    model, X, _, r = build(MODELS[0], 0)
    with pytest.raises(ValueError, match="eta"):
        af.train_ngd(model, X, r, "exact", -1.0, 2)
    big = DeepMLP((50, 200), seed=0)
    with pytest.raises(ValueError, match="tiny sizes"):
        reference.dense_kernel(big, ngdlib.sphere(3, 50, seed=0), "exact")


def test_variant_objects_and_their_names_agree():
    """VARIANTS maps each name to its FisherVariant object; every public function accepts either, with one result."""
    assert list(af.VARIANTS) == ["exact", "block_diag", "tri_diag", "kfac", "unit_wise"]
    assert isinstance(af.VARIANTS["kfac"], af.KFAC) and isinstance(af.VARIANTS["tri_diag"], af.TriDiagonal)
    model = DeepMLP((10, 12, 12), activation="tanh", seed=1)
    X = ngdlib.sphere(6, 10, seed=0)
    r = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64)
    for name, fv in af.VARIANTS.items():
        assert fv.name == name
        torch.testing.assert_close(af.function_kernel(model, X, fv), af.function_kernel(model, X, name), rtol=0,
                                   atol=0)
        for a, b in zip(af.ngd_direction(model, X, r, fv), af.ngd_direction(model, X, r, name)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert af.predicted_alpha(model, fv, 6) == af.predicted_alpha(model, name, 6)
    with pytest.raises(ValueError, match="FisherVariant"):
        af.function_kernel(model, X, "diag")
