"""ngdlib.bounds: the bounds of Zhang, Martens & Grosse (2019), one function each.

Every fast path against a dense float64 reference built on torch.func (ngdlib.reference), every bound against its
formula and its limiting cases, and every bad input against the ValueError that names the violated assumption.

(Split from tests/test_part1a.py: tests are named after the module they test.)
"""
import math

import pytest
import torch

import ngdlib
from ngdlib import bounds

F64 = torch.float64


BAD = [
    ("theorem1 C too large", lambda: bounds.zmg_theorem1_max_step(0.6), "C <"),
    ("theorem1 rate eta > 1", lambda: bounds.zmg_theorem1_rate(1.5), "eta <= 1"),
    ("theorem2 L < mu", lambda: bounds.zmg_theorem2_max_step(2.0, 1.0, 0.0), "L must be"),
    ("theorem2 C vs kappa", lambda: bounds.zmg_theorem2_max_step(1.0, 9.0, 0.2), "Condition 3"),
    ("theorem3 delta", lambda: bounds.zmg_theorem3_width(10, 1.0, 0.1, 0.0), "delta"),
    ("theorem3 nu", lambda: bounds.zmg_theorem3_width(10, -1.0, 0.1, 0.1), "nu"),
    ("condition1 eps", lambda: bounds.condition1_width(0.1, 4.0, 10, 0.1, eps=1.5), "eps"),
    ("condition1 lambda0", lambda: bounds.condition1_width(0.0, 4.0, 10, 0.1), "lambda0"),
    ("gd step singular G", lambda: bounds.gd_optimal_step(torch.zeros(3, 3, dtype=F64)), "Condition 1"),
]


# ------------------------------------------------------------------------------------------------ bounds
def test_bounds_formulas_and_consistency():
    assert bounds.zmg_theorem1_max_step(0.0) == 1.0
    assert bounds.zmg_theorem1_max_step(0.1) == pytest.approx(0.8 / 1.21)
    assert bounds.zmg_theorem1_rate(0.25) == 0.75
    # Theorem 2 with mu = L = 1 (kappa = 1) is Theorem 1
    for C in (0.0, 0.1, 0.3):
        assert bounds.zmg_theorem2_max_step(1.0, 1.0, C) == pytest.approx(bounds.zmg_theorem1_max_step(C))
    assert bounds.zmg_theorem2_rate(0.5, 1.0, 1.0) == pytest.approx(bounds.zmg_theorem1_rate(0.5))
    assert bounds.zmg_theorem2_rate(1 / 5, 1.0, 4.0) == pytest.approx(1 - 2 * 0.2 * 4 / 5)
    assert bounds.zmg_theorem3_width(20, 1.0, 0.1, 0.1) == pytest.approx(20**4 / (1e-4 * 1e-3))
    assert bounds.zmg_theorem3_width(20, 2.0, 0.1, 0.1, constant=3.0) == pytest.approx(3 * 20**4 / (4 * 1e-4 * 1e-3))
    assert bounds.condition2_constant(bounds.condition2_threshold(0.2, 0.4), 0.2) == pytest.approx(0.4)
    rate = 0.25 + 0.75 * math.log(0.75)
    assert bounds.condition1_width(0.1, 4.0, 20, 1e-6) == math.ceil(4.0 * math.log(20 / 1e-6) / (0.1 * rate))
    assert bounds.condition1_width(0.1, 4.0, 20, 1e-3) < bounds.condition1_width(0.1, 4.0, 20, 1e-6)
    assert bounds.condition1_width_hoeffding(0.1, 5.0, 20, 1e-6) > bounds.condition1_width(0.1, 4.0, 20, 1e-6)
    G = torch.diag(torch.tensor([0.5, 1.0, 2.0], dtype=F64))
    assert bounds.gd_max_stable_step(G) == pytest.approx(1.0)
    assert bounds.gd_optimal_step(G) == pytest.approx(2 / 2.5)


def test_condition1_width_holds_empirically():
    """At the Chernoff width, lambda_min(G(0)) >= 3 lambda_0 / 4 (the lemma fails with probability <= delta)."""
    X = ngdlib.sphere(10, 5, seed=0)
    lam0 = float(torch.linalg.eigvalsh(ngdlib.limiting_gram(X))[0])
    m = bounds.condition1_width(lam0, float(torch.linalg.eigvalsh(X @ X.T)[-1]), 10, 1e-6)
    for s in range(3):
        net = ngdlib.TwoLayerReLU(5, m, seed=s)
        assert float(torch.linalg.eigvalsh(net.gram(X))[0]) >= 0.75 * lam0


@pytest.mark.parametrize("fn,words", [(b[1], b[2]) for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_refused(fn, words):
    with pytest.raises(ValueError, match=words):
        fn()
