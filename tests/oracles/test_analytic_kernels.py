"""Infinite-width kernels: ngdlib against neural-tangents' analytic kernels and against mpmath at 50 digits.

- ``ngdlib.limiting_gram`` (Definition 1) and ``ngdlib.limiting_activation_gram``;
- ``ngdlib.approx_fisher.limiting_factors`` (the per-layer NNGP kernels K_{l-1} and the products of derivative
  kernels of Part II) and, through them, the limiting NTK.

Inputs include pairs within 1e-9 (and 1e-12) of parallel and of antipodal, where arccos of a rounded cosine loses
half the digits: a round-off of eps in cos(theta) moves theta = arccos(cos(theta)) by about sqrt(2 eps) = 2.1e-8
near 0 and pi. mpmath, at 50 significant digits, computes the angle of the very float vectors that the libraries
see, so its values are exact to far below float64's resolution.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

import ngdlib
from ngdlib import approx_fisher

from .conftest import EPS, S, compare, max_rel, note

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
from neural_tangents import stax  # noqa: E402

mpmath.mp.dps = 50
SQRT_EPS_ANGLE = math.sqrt(2 * EPS)  # 2.1e-8: theta error of arccos(cos theta (1 +- eps)) at theta -> 0 or pi


# ------------------------------------------------------------------------------------------------------- inputs
def near_pairs(d: int, seed: int, ts=(1e-9, 3e-10, 1e-12)):
    """Unit rows: x0, then x0 rotated by each t (near-parallel) and by pi - t (near-antipodal), then 4 random."""
    g = np.random.default_rng(seed)
    x0 = g.standard_normal(d)
    x0 /= np.linalg.norm(x0)
    u = g.standard_normal(d)
    u -= (u @ x0) * x0
    u /= np.linalg.norm(u)
    rows = [x0]
    for t in ts:
        for ang in (t, math.pi - t):
            v = math.cos(ang) * x0 + math.sin(ang) * u
            rows.append(v / np.linalg.norm(v))
    R = g.standard_normal((4, d))
    rows += list(R / np.linalg.norm(R, axis=1, keepdims=True))
    return np.array(rows)


def random_sphere(n: int, d: int, seed: int):
    X = np.random.default_rng(seed).standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------------------- mpmath
def mp_angle(a, b):
    """Angle between two float vectors, exact to 50 digits (the floats converted exactly)."""
    a = [mpmath.mpf(float(v)) for v in a]
    b = [mpmath.mpf(float(v)) for v in b]
    dot = mpmath.fsum(x * y for x, y in zip(a, b))
    na = mpmath.sqrt(mpmath.fsum(x * x for x in a))
    nb = mpmath.sqrt(mpmath.fsum(y * y for y in b))
    c = dot / (na * nb)
    return mpmath.acos(max(min(c, mpmath.mpf(1)), mpmath.mpf(-1))), dot


def mp_activation_and_gram(X):
    n = X.shape[0]
    K = np.zeros((n, n))
    G = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            th, dot = mp_angle(X[i], X[j])
            k = (mpmath.pi - th) / (2 * mpmath.pi)
            K[i, j] = float(k)
            G[i, j] = float(dot * k)
    return K, G


def mp_limiting_factors(X, L, sw, sb):
    """Part II's recursion at 50 digits: K_0 = sw^2 x.x'/M0 + sb^2, K_l = sw^2 E[relu relu] + sb^2,
    Sdot_l = sw^2 E[relu' relu'] under N(0, K_{l-1}); returns [(K_{l-1}, prod_{k>=l} Sdot_k)] for l = 1..L."""
    n, d = X.shape
    sw2, sb2 = mpmath.mpf(sw) ** 2, mpmath.mpf(sb) ** 2
    Xm = [[mpmath.mpf(float(v)) for v in row] for row in X]
    K = [[sw2 * mpmath.fsum(a * b for a, b in zip(Xm[i], Xm[j])) / d + sb2 for j in range(n)] for i in range(n)]
    Ks, Sdots = [K], []
    for _ in range(1, L):
        K = Ks[-1]
        Kn = [[None] * n for _ in range(n)]
        Sd = [[None] * n for _ in range(n)]
        for i in range(n):
            for j in range(n):
                s = mpmath.sqrt(K[i][i] * K[j][j])
                c = max(min(K[i][j] / s, mpmath.mpf(1)), mpmath.mpf(-1))
                th = mpmath.acos(c)
                Kn[i][j] = sw2 * s / (2 * mpmath.pi) * (mpmath.sin(th) + (mpmath.pi - th) * mpmath.cos(th)) + sb2
                Sd[i][j] = sw2 * (mpmath.pi - th) / (2 * mpmath.pi)
        Ks.append(Kn)
        Sdots.append(Sd)
    out = []
    for l in range(1, L + 1):
        P = [[mpmath.mpf(1)] * n for _ in range(n)]
        for k in range(l, L):
            P = [[P[i][j] * Sdots[k - 1][i][j] for j in range(n)] for i in range(n)]
        out.append((np.array([[float(v) for v in r] for r in Ks[l - 1]]),
                    np.array([[float(v) for v in r] for r in P])))
    return out


# ------------------------------------------------------------------------------------------------ neural-tangents
def nt_first_layer(X, X2=None):
    """(G^inf, activation kernel) from neural-tangents: the NTK of Dense(W_std = sqrt(d), no bias) -> Relu is
    x.x' (pi - theta)/(2 pi); the activation kernel is Relu's derivative kernel, read off by feeding Relu a kernel
    whose NTK is all ones."""
    d = X.shape[1]
    _, _, k_dense = stax.Dense(1, W_std=math.sqrt(d), b_std=None)
    _, _, k_relu = stax.Relu()
    k = k_dense(X2 if X2 is not None else X, X, None)
    gram = np.asarray(k_relu(k).ntk)
    act = np.asarray(k_relu(k.replace(ntk=jnp.ones_like(k.ntk))).ntk)
    return gram, act


def nt_deep_factors(X, L, sw, sb, X2=None):
    """[(K_{l-1}, prod_{k>=l} Sdot_k)] from neural-tangents' stax: K_{l-1} is the NNGP of the net truncated after
    its l-th Dense layer; Sdot_k = sw^2 x (Relu's derivative kernel at the k-th layer's input kernel)."""
    x1 = X2 if X2 is not None else X
    layers, Ks, Tdots = [], [], []
    for l in range(1, L + 1):
        layers.append(stax.Dense(1, W_std=sw, b_std=sb))
        _, _, kfn = stax.serial(*layers)
        k = kfn(x1, X, None)
        Ks.append(np.asarray(k.nngp))
        if l < L:
            _, _, k_relu = stax.Relu()
            Tdots.append(sw**2 * np.asarray(k_relu(k.replace(ntk=jnp.ones_like(k.ntk))).ntk))
            layers.append(stax.Relu())
    out = []
    for l in range(1, L + 1):
        P = np.ones_like(Ks[0])
        for k in range(l, L):
            P = P * Tdots[k - 1]
        out.append((Ks[l - 1], P))
    return out, stax.serial(*layers)[2]


# ------------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("n,d,seed", [(40, 5, S(1001)), (25, 30, S(1002))])
def test_limiting_gram_vs_neural_tangents(n, d, seed):
    X = random_sphere(n, d, seed)
    X2 = random_sphere(7, d, seed + 50)
    gram, act = nt_first_layer(X)
    Xt = torch.from_numpy(X)
    ours_g, ours_a = ngdlib.limiting_gram(Xt).numpy(), ngdlib.limiting_activation_gram(Xt).numpy()
    off = ~np.eye(n, dtype=bool)
    # Off the diagonal, generic inputs: no pair within ~1e-3 rad of parallel, where arccos's conditioning
    # 1/sin(theta) stays below ~1e3; both sides are then accurate to about 1e3 eps = 2e-13, so 1e-12 allows a
    # factor 4 on top. (The diagonal is theta = 0 exactly, where neural-tangents is not: next block.)
    compare(f"G^inf off the diagonal, random sphere (n={n}, d={d})", "neural-tangents", "limiting_gram",
            ours_g[off], gram[off], 1e-12,
            "G^inf = NTK of stax Dense(W_std=sqrt(d), b_std=None) -> Relu (nt divides by fan-in d)")
    compare(f"activation kernel off the diagonal, random sphere (n={n}, d={d})", "neural-tangents",
            "limiting_activation_gram", ours_a[off], act[off], 1e-12,
            "(pi - theta)/(2 pi) = Relu's derivative kernel (nt: Relu applied to a kernel with NTK = ones)")
    # The diagonal: theta_ii = 0 exactly, so the activation kernel is exactly 1/2 and G^inf_ii = |x_i|^2 / 2.
    # ngdlib returns that to the rounding of |x_i|^2 (its angle 2 atan2(0, 2|x_i|) is exactly 0); neural-tangents
    # takes arccos(K_ii / sqrt(K_ii K_ii)), and a cosine rounded to 1 - eps gives theta = sqrt(2 eps) = 2.1e-8,
    # i.e. 3.4e-9 off 1/2 (relative 6.7e-9) for rows whose |x_i|^2 rounds away from 1.
    exact_diag = np.array([float(mp_angle(x, x)[1]) / 2 for x in X])
    compare(f"G^inf diagonal (theta = 0), n={n}", "mpmath (50 digits)", "limiting_gram", np.diag(ours_g),
            exact_diag, 4 * EPS, "|x_i|^2 / 2 of the float rows")
    nt_diag = max_rel(np.diag(gram), exact_diag)
    bound = 2 * math.sqrt(8 * EPS) / (2 * math.pi)
    note(f"G^inf diagonal (theta = 0), n={n}: neural-tangents' own error", "mpmath (50 digits)", "(oracle: nt NTK)",
         nt_diag, bound, "nt: arccos of the rounded cosine K_ii / sqrt(K_ii K_ii)")
    assert nt_diag <= bound, (nt_diag, bound)
    # cross kernel (test rows against training columns): nt's x1/x2 order is (rows, columns)
    _, act_cross = nt_first_layer(X, X2)
    ours = ngdlib.limiting_activation_gram(torch.from_numpy(np.vstack([X2, X])))[: len(X2), len(X2):]
    compare("activation kernel, cross (test x train)", "neural-tangents", "limiting_activation_gram", ours,
            act_cross, 1e-12, "nt kernel_fn(x1=test, x2=train) = rows test, columns train")


def test_first_layer_kernels_near_parallel_vs_mpmath():
    X = near_pairs(6, S(1003))
    K_mp, G_mp = mp_activation_and_gram(X)
    Xt = torch.from_numpy(X)
    # ngdlib's angle is 2 atan2(|x_i - x_j|, |x_i + x_j|): a few eps absolute everywhere, so entries (all <= 1/2)
    # are within 8 eps of the 50-digit values relative to the largest entry (measured: <= 2 eps).
    rel_act = compare("activation kernel, angles 1e-12..1e-9 from 0 and pi", "mpmath (50 digits)",
                      "limiting_activation_gram", ngdlib.limiting_activation_gram(Xt), K_mp, 8 * EPS,
                      "exact angle of the float rows; (pi - theta)/(2 pi)")
    rel_gram = compare("G^inf, angles 1e-12..1e-9 from 0 and pi", "mpmath (50 digits)", "limiting_gram",
                       ngdlib.limiting_gram(Xt), G_mp, 8 * EPS, "x_i.x_j (pi - theta)/(2 pi) of the float rows")
    # neural-tangents computes arccos of a rounded cosine: its own known error is |d theta| <= sqrt(2 k eps) with
    # k ~ 4 roundings of the cosine, i.e. <= 4.2e-8 rad, so <= 4.2e-8/(2 pi) = 6.7e-9 in the kernel, 1.4e-8
    # relative to the largest entry 1/2. Asserted as the oracle's documented error, not ngdlib's.
    gram, act = nt_first_layer(X)
    nt_act = max_rel(act, K_mp)
    nt_gram = max_rel(gram, G_mp)
    bound = 2 * math.sqrt(8 * EPS) / (2 * math.pi)
    note("activation kernel near 0 / pi: neural-tangents' own error", "mpmath (50 digits)",
         "(oracle: nt Relu derivative kernel)", nt_act, bound, "nt: arccos of the rounded cosine")
    note("G^inf near 0 / pi: neural-tangents' own error", "mpmath (50 digits)", "(oracle: nt NTK)", nt_gram, bound,
         "nt: arccos of the rounded cosine")
    assert nt_act <= bound and nt_gram <= bound, (nt_act, nt_gram, bound)
    # the finding, as a check that can fail: ngdlib is closer to the exact values than the oracle by >= 1e4 here
    assert nt_act > 1e4 * max(rel_act, EPS) and nt_gram > 1e4 * max(rel_gram, EPS), (nt_act, rel_act)


@pytest.mark.parametrize("bias", [True, False])
def test_deep_limiting_factors_vs_neural_tangents(bias):
    L, sw, sb, d = 4, math.sqrt(2.0), 0.3, 7
    X = random_sphere(12, d, S(1004)) * 1.7           # non-unit inputs: K_0 = sw^2 X X^T / M0 + sb^2 scales them
    X2 = random_sphere(5, d, S(1005))
    model = ngdlib.DeepMLP((d, 9, 9, 9), sigma_w=sw, sigma_b=sb, bias=bias, seed=S(1006))
    ours = approx_fisher.limiting_factors(model, torch.from_numpy(X))
    ours_x = approx_fisher.limiting_factors(model, torch.from_numpy(X), torch.from_numpy(X2))
    theirs, kfn = nt_deep_factors(X, L, sw, sb if bias else None)
    theirs_x, _ = nt_deep_factors(X, L, sw, sb if bias else None, X2=X2)
    # generic inputs (arccos well conditioned, see test_limiting_gram_vs_neural_tangents): 1e-12, and L = 4 layers
    # of recursion multiply the round-off by at most L. Off the diagonal only: on it theta = 0 exactly, where
    # neural-tangents' arccos of a rounded cosine is off by up to sqrt(8 eps) (see the near-parallel tests), while
    # ngdlib sets theta_ii = 0; the diagonal is checked against its exact value (sigma_w^2 / 2)^(L - l) instead.
    tol = 4e-12
    n = X.shape[0]
    off = ~np.eye(n, dtype=bool)
    for l in range(L):
        compare(f"deep prod Sdot diagonal (theta = 0), layer {l + 1}", "exact: (sigma_w^2 / 2)^(L - l)",
                "approx_fisher.limiting_factors", np.diag(ours[l][1].numpy()), np.full(n, (sw**2 / 2) ** (L - 1 - l)),
                4 * L * EPS, "E[relu'(u) relu'(u)] = 1/2 at theta = 0", record=l == 0)
    ours = [(K.numpy()[off], P.numpy()[off]) for K, P in ours]
    theirs = [(K[off], P[off]) for K, P in theirs]
    mapping = ("K_{l-1} = nt NNGP after the l-th stax.Dense(W_std=sigma_w, b_std=sigma_b) (NTK parameterisation, "
               "same as DeepMLP); Sdot_k = sigma_w^2 x Relu derivative kernel")
    for l in range(L):
        compare(f"deep K_{l} (NNGP) off the diagonal, bias={bias}", "neural-tangents", "approx_fisher.limiting_factors", ours[l][0],
                theirs[l][0], tol, mapping, record=l == L - 1)
        compare(f"deep prod Sdot off the diagonal, layer {l + 1}, bias={bias}", "neural-tangents", "approx_fisher.limiting_factors",
                ours[l][1], theirs[l][1], tol, mapping, record=l == 0)
        compare(f"deep factors, cross (test x train), layer {l + 1}", "neural-tangents",
                "approx_fisher.limiting_factors", ours_x[l][0] * ours_x[l][1], theirs_x[l][0] * theirs_x[l][1], tol,
                mapping, record=False)
    # the limiting NTK: sum over layers of K_{l-1} * prod Sdot (Jacot et al.) = nt's analytic NTK of the whole net
    ntk = sum(K * P for K, P in ours)
    compare(f"limiting NTK Theta^inf = sum_l Theta_l^inf, off the diagonal (L={L}, bias={bias})", "neural-tangents",
            "approx_fisher.limiting_factors", ntk, np.asarray(kfn(X, None, "ntk"))[off], tol,
            "nt ntk of [Dense, Relu] x (L-1) + Dense(1), NTK parameterisation")


def test_deep_limiting_factors_near_parallel_vs_mpmath():
    """approx_fisher's limiting factors carry 1 -+ rho through the layers (ngdlib.kernels.relu_layer) instead of taking
    arccos of a rounded cosine (which neural-tangents does, and ngdlib did until this check found it 4.7e-9 off)."""
    L, sw, sb, d = 3, math.sqrt(2.0), 0.1, 6
    X = near_pairs(d, S(1007))
    model = ngdlib.DeepMLP((d, 5, 5), sigma_w=sw, sigma_b=sb, bias=True, seed=S(1008))
    ours = approx_fisher.limiting_factors(model, torch.from_numpy(X))
    exact = mp_limiting_factors(X, L, sw, sb)
    theirs, _ = nt_deep_factors(X, L, sw, sb)
    # Known error of arccos of a rounded cosine: |d theta| <= sqrt(2 k eps) (k ~ 4 roundings in K_ij/sqrt(K_ii K_jj))
    # = 4.2e-8, so Sdot = sw^2 (pi - theta)/(2 pi) is off by <= sw^2 4.2e-8/(2 pi) = 1.3e-8, relative to its largest
    # entry sw^2/2 = 1 that is 1.3e-8, and a product of L - 1 = 2 such factors doubles it. K_l is flat in theta at 0
    # (d/dtheta [sin + (pi - theta) cos] = -(pi - theta) sin theta), so it stays near eps.
    bound = (L - 1) * sw**2 * math.sqrt(8 * EPS) / (2 * math.pi) / (sw**2 / 2)
    worst_S = max(max_rel(o[1], e[1]) for o, e in zip(ours, exact))
    nt_S = max(max_rel(t[1], e[1]) for t, e in zip(theirs, exact))
    compare("deep prod Sdot, angles 1e-12..1e-9 from 0 and pi", "mpmath (50 digits)",
            "approx_fisher.limiting_factors", np.stack([o[1] for o in ours]), np.stack([e[1] for e in exact]),
            1e3 * EPS, "stable recursion of ngdlib.kernels: a few roundings per layer, no sqrt(eps) loss")
    compare("deep K_l (NNGP), angles 1e-12..1e-9 from 0 and pi", "mpmath (50 digits)",
            "approx_fisher.limiting_factors", np.stack([o[0] for o in ours]), np.stack([e[0] for e in exact]), 1e3 * EPS,
            "K_l is flat in theta at 0 and pi: no sqrt(eps) loss (1e3 eps: a few roundings per layer)")
    note("deep prod Sdot near 0 / pi: neural-tangents' own error", "mpmath (50 digits)", "(oracle: nt)", nt_S, bound,
         "nt: arccos of the rounded cosine")
    assert worst_S <= 1e3 * EPS, (worst_S, bound)
    assert nt_S <= bound, (nt_S, bound)
    assert worst_S * 1e4 <= max(nt_S, 1e4 * EPS), ("ngdlib should be far closer to 50 digits than nt", worst_S, nt_S)
