"""Condition 3 (Theorem 2's stable Jacobian): ngdlib.stability.condition3_radius and ngdlib.bounds.condition3_width.

The radius against the printed formula with a dense autodiff Gram matrix; the width law against its closed form and
its kappa = 1 case (Condition 2's threshold); bad input against the ValueError that names the violated assumption.
"""
import math

import pytest
import torch

import ngdlib
from ngdlib import bounds, reference, stability

F64 = torch.float64


@pytest.mark.parametrize("kappa", [1, 2.5, 16])
def test_condition3_radius_matches_the_printed_formula(kappa):
    X = ngdlib.sphere(6, 3, seed=1)
    y = torch.linspace(-1, 1, 6, dtype=F64)
    net = ngdlib.TwoLayerReLU(3, 40, seed=2)
    J = reference.jacobian(net, X)
    lmin = float(torch.linalg.eigvalsh(J @ J.T)[0])
    with torch.no_grad():
        res = float((y - net(X)).norm())
    expected = 3 * (1 + kappa) * res / (2 * math.sqrt(lmin))
    assert stability.condition3_radius(net, X, y, kappa) == pytest.approx(expected, rel=1e-10)


def test_condition3_width_law():
    R, nu, lam0 = 7.0, 0.5, 0.2
    assert bounds.condition3_width(R, nu, lam0, 1) == pytest.approx(6**7 * R**2 / (math.pi * nu**2 * lam0**3),
                                                                     rel=1e-12)
    # with the radius of Condition 3 the width grows like (1 + kappa)^8
    w = [bounds.condition3_width(3 * (1 + k) / 2, nu, lam0, k) for k in (1, 3)]
    assert w[1] / w[0] == pytest.approx(2.0**8, rel=1e-12)


@pytest.mark.parametrize("call, words", [
    (lambda: stability.condition3_radius(ngdlib.TwoLayerReLU(3, 40), ngdlib.sphere(6, 3), torch.zeros(6, dtype=F64),
                                         0.5), "kappa"),
    (lambda: stability.condition3_radius(ngdlib.TwoLayerReLU(3, 40), ngdlib.sphere(6, 3), torch.zeros(6, dtype=F64),
                                         float("nan")), "kappa"),
    (lambda: stability.condition3_radius(ngdlib.TwoLayerReLU(3, 40), ngdlib.sphere(6, 3), torch.zeros(5, dtype=F64),
                                         2.0), "y"),
    (lambda: bounds.condition3_width(1.0, 1.0, 0.1, 0.5), "kappa"),
    (lambda: bounds.condition3_width(-1.0, 1.0, 0.1, 2.0), "radius"),
    (lambda: bounds.condition3_width(1.0, 0.0, 0.1, 2.0), "nu"),
])
def test_condition3_bad_input(call, words):
    with pytest.raises(ValueError, match=words):
        call()
