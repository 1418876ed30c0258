"""ngdlib.generalization: Theorem 6 (limiting kernel, RKHS norm, the bound's terms).

Every fast path against a dense float64 reference, and every bad input refused by name. References:
ngdlib.reference (autodiff Jacobian, dense Kronecker preconditioner), torch.func.jacrev for the MLP, dense
pseudo-inverses and eigen-decompositions.

(Split from tests/test_part1b.py: tests are named after the module they test.)
"""
import math

import pytest
import torch

import ngdlib
from ngdlib import generalization as gen
from ngdlib.testing import assert_close

F64 = torch.float64


BAD = [
    ("rkhs parallel", lambda: gen.rkhs_norm(torch.cat([ngdlib.sphere(4, 3)] * 2), torch.ones(8, dtype=F64)),
     "lambda_0 = 0"),
    ("cross gram non-unit", lambda: gen.limiting_cross_gram(2 * ngdlib.sphere(3, 3), ngdlib.sphere(3, 3)),
     "X1: Assumption 1"),
    ("cross gram d mismatch", lambda: gen.limiting_cross_gram(ngdlib.sphere(3, 3), ngdlib.sphere(3, 4)),
     "same input dimension"),
    ("confidence delta", lambda: gen.confidence_term(10, 1.5), "failure probability"),
    ("bound eps < 0", lambda: gen.zmg_theorem6_bound(ngdlib.sphere(4, 3), torch.ones(4, dtype=F64), 0.1, eps=-1.0),
     "target error"),
    ("ramp shapes", lambda: gen.ramp_loss(torch.ones(3), torch.ones(4)), "same shape"),
]


# --------------------------------------------------------------------------------------------- generalization
def test_cross_gram_matches_limiting_gram_and_closed_form():
    X = ngdlib.sphere(15, 4, seed=0)
    Z = ngdlib.sphere(7, 4, seed=1)
    assert_close(gen.limiting_cross_gram(X, X), ngdlib.limiting_gram(X), atol=1e-15, what="cross(X, X)")
    C = (Z @ X.T).clamp(-1, 1)
    assert_close(gen.limiting_cross_gram(Z, X), C * (math.pi - torch.arccos(C)) / (2 * math.pi), atol=1e-7,
                 what="atan2 vs arccos")


def test_theorem6_terms():
    X = ngdlib.sphere(30, 5, seed=2)
    y = torch.randn(30, generator=torch.Generator().manual_seed(3), dtype=F64)
    G = ngdlib.limiting_gram(X)
    quad = float(y @ torch.linalg.solve(G, y))
    b = gen.zmg_theorem6_bound(X, y, 0.1, eps=0.01)
    assert abs(b["rkhs_norm"] - quad ** 0.5) < 1e-10 * quad ** 0.5
    assert abs(b["complexity"] - math.sqrt(2 * quad / 30)) < 1e-10
    assert abs(b["confidence"] - 3 * math.sqrt(math.log(60) / 60)) < 1e-14
    assert abs(b["total"] - (b["complexity"] + b["confidence"] + 0.01)) < 1e-14


def test_kernel_predict_is_the_wide_network_limit_on_training_points():
    X = ngdlib.sphere(12, 4, seed=4)
    r = torch.randn(12, generator=torch.Generator().manual_seed(5), dtype=F64)
    assert_close(gen.kernel_predict(X, r, X), r, atol=1e-10, what="interpolates the training residual")


def test_ramp_loss():
    u = torch.tensor([0.0, 0.25, -2.0, 1.0], dtype=F64)
    assert_close(gen.ramp_loss(u, torch.zeros(4, dtype=F64)), torch.tensor([0, 0.25, 1, 1], dtype=F64),
                 what="min(1, |u - y|)")


@pytest.mark.parametrize("call,words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_refused_by_name(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value), f"message does not name the violation ({words!r}): {info.value}"
