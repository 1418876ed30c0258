"""ngdlib.kernels: the arc-cosine recursion of deep ReLU networks against a 50-digit mpmath evaluation of the textbook
formulas (arccos of the exact cosine, harmless at 50 digits), for generic inputs and for pairs within 1e-12..1e-6
radians of parallel and antiparallel, where arccos of a rounded cosine loses half the digits."""
import math

import mpmath
import pytest
import torch

from ngdlib import approx_fisher
from ngdlib.models import DeepMLP
from ngdlib.kernels import angles, relu_input_layer, relu_layer

EPS = torch.finfo(torch.float64).eps


def _mp_recursion(X, L, sw2, sb2):
    mpmath.mp.dps = 50
    n, d = X.shape
    Xm = [[mpmath.mpf(float(v)) for v in row] for row in X]
    K = [[sw2 * mpmath.fsum(a * b for a, b in zip(Xm[i], Xm[j])) / d + sb2 for j in range(n)] for i in range(n)]
    Ks, Sd = [K], []
    for _ in range(1, L):
        K, Kn, S = Ks[-1], [[0] * n for _ in range(n)], [[0] * n for _ in range(n)]
        for i in range(n):
            for j in range(n):
                s = mpmath.sqrt(K[i][i] * K[j][j])
                th = mpmath.acos(max(min(K[i][j] / s, 1), -1))
                Kn[i][j] = sw2 * s / (2 * mpmath.pi) * (mpmath.sin(th) + (mpmath.pi - th) * mpmath.cos(th)) + sb2
                S[i][j] = (mpmath.pi - th) / (2 * mpmath.pi)
        Ks.append(Kn)
        Sd.append(S)
    as_t = lambda M: torch.tensor([[float(v) for v in r] for r in M], dtype=torch.float64)  # noqa: E731
    return [as_t(K) for K in Ks], [as_t(S) for S in Sd]


def _near_pairs(d, seed):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for delta in (1e-12, 1e-9, 1e-6):
        x = torch.randn(d, generator=g, dtype=torch.float64)
        x = x / x.norm()
        v = torch.randn(d, generator=g, dtype=torch.float64)
        v = v - (v @ x) * x
        v = v / v.norm()
        rows += [x, math.cos(delta) * x + math.sin(delta) * v, -(math.cos(delta) * x - math.sin(delta) * v)]
    return torch.stack(rows)


@pytest.mark.parametrize("bias", [0.0, 0.3])
@pytest.mark.parametrize("inputs", ["generic", "near"])
def test_relu_recursion_matches_50_digits(bias, inputs):
    d, L, sw2 = 5, 4, 2.0
    X = _near_pairs(d, 3) if inputs == "near" else torch.nn.functional.normalize(
        torch.randn(7, d, generator=torch.Generator().manual_seed(4), dtype=torch.float64), dim=1)
    Ks, Sd = _mp_recursion(X, L, sw2, bias**2)
    K, c, q, w = relu_input_layer(X, sw2, bias**2)
    torch.testing.assert_close(K, Ks[0], rtol=0, atol=8 * EPS)
    for layer in range(1, L):
        K, c, q, w, e_dphi = relu_layer(c, q, w, sw2, bias**2)
        # A few roundings per layer, each relative to the largest entry (<= 1 here): 100 eps after 3 layers.
        torch.testing.assert_close(K, Ks[layer], rtol=0, atol=100 * EPS)
        torch.testing.assert_close(e_dphi, Sd[layer - 1], rtol=0, atol=100 * EPS)


def test_arccos_of_a_rounded_cosine_would_fail_this_test():
    """Negative control: the old formula (arccos of K_ij / sqrt(K_ii K_jj)) misses the 50-digit derivative kernel by
    ~1e-9 on the near-parallel pairs, far outside the 100 eps the recursion above is held to."""
    X = _near_pairs(5, 3)
    Ks, Sd = _mp_recursion(X, 2, 2.0, 0.0)
    K0 = 2.0 * X @ X.T / 5
    rho = (K0 / torch.sqrt(torch.diagonal(K0)[:, None] * torch.diagonal(K0)[None, :])).clamp(-1, 1)
    old = (math.pi - torch.arccos(rho)) / (2 * math.pi)
    old.fill_diagonal_(0.5)
    assert (old - Sd[0]).abs().max() > 1e3 * EPS


def test_limiting_factors_use_the_stable_recursion():
    X = _near_pairs(5, 7)
    model = DeepMLP((5, 4, 4), sigma_w=math.sqrt(2.0), sigma_b=0.1, bias=True, seed=0)
    out = approx_fisher.limiting_factors(model, X)
    Ks, Sd = _mp_recursion(X, 3, 2.0, 0.01)
    torch.testing.assert_close(out[0][1], 2.0 * Sd[0] * 2.0 * Sd[1], rtol=0, atol=400 * EPS)
    torch.testing.assert_close(out[2][0], Ks[2], rtol=0, atol=100 * EPS)


def test_angles_exact_at_parallel_and_antiparallel():
    X = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1)
    A = angles(X, torch.cat([X, -X]))
    assert bool((torch.diagonal(A[:, :4]) == 0).all()) and bool((torch.diagonal(A[:, 4:]) == math.pi).all())
