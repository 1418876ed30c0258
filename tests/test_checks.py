"""ngdlib._checks: the one positive-number validator and the one int validator, and their use across the library.

A bool is an int to Python, but ``steps=True`` or ``eta=True`` is a mistake, never a request: every public function
that takes a count or a positive number must refuse it with a ValueError naming the argument.
"""
import math

import numpy as np
import pytest
import torch

from ngdlib import bounds, chatterjee, data, deep_linear, generalization, stability
from ngdlib._checks import check_int, check_positive, check_probability

F64 = torch.float64


@pytest.mark.parametrize("v", [1, 2.5, 1e-300, torch.tensor(3.0, dtype=F64), np.float64(0.5)])
def test_check_positive_accepts_positive_reals(v):
    assert check_positive("x", v) == float(v)


@pytest.mark.parametrize("v", [0, 0.0, -1, math.nan, math.inf, -math.inf, True, False, "1", None, [1.0],
                               torch.ones(2)])
def test_check_positive_refuses(v):
    with pytest.raises(ValueError, match="x .*must be a positive finite number"):
        check_positive("x (the thing)", v)


def test_check_positive_allow_zero():
    assert check_positive("x", 0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        check_positive("x", -1e-300, allow_zero=True)
    with pytest.raises(ValueError, match="non-negative"):
        check_positive("x", False, allow_zero=True)


def test_check_int():
    assert check_int("n", 3, 1) == 3
    assert type(check_int("n", np.int64(4), 1)) is int
    for bad in (True, False, 1.0, "2", None):
        with pytest.raises(ValueError, match="n must be an int"):
            check_int("n", bad, 0)
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        check_int("n", 0, 1)


@pytest.mark.parametrize("v", [0, 1, 0.0, 1.0, True, math.nan, "0.5"])
def test_check_probability_is_the_open_unit_interval(v):
    with pytest.raises(ValueError, match=r"delta must lie in \(0, 1\)"):
        check_probability("delta", v)
    assert check_probability("delta", 0.25) == 0.25


def _X():
    return data.sphere(4, 3, seed=0)


BOOL_ROWS = [
    ("data.sphere n", lambda: data.sphere(True, 3), "n"),
    ("data.sphere d", lambda: data.sphere(3, True), "d"),
    ("bounds.condition1_width n", lambda: bounds.condition1_width(1.0, 1.0, True, 0.1), "n"),
    ("bounds.zmg_theorem3_width n", lambda: bounds.zmg_theorem3_width(True, 1.0, 1.0, 0.1), "n"),
    ("bounds.zmg_theorem3_width delta", lambda: bounds.zmg_theorem3_width(3, 1.0, 1.0, True), "delta"),
    ("bounds.zmg_theorem2_rate eta", lambda: bounds.zmg_theorem2_rate(True, 1.0, 2.0), "eta"),
    ("generalization.confidence_term n", lambda: generalization.confidence_term(True, 0.1), "n"),
    ("chatterjee.sample_ball k", lambda: chatterjee.sample_ball(torch.zeros(2, dtype=F64), 1.0, True), "k"),
    ("chatterjee.gradient_descent steps",
     lambda: chatterjee.gradient_descent(chatterjee.toy_loss, torch.ones(2, dtype=F64), 0.1, True), "steps"),
    ("deep_linear.train_gd steps",
     lambda: deep_linear.train_gd([torch.eye(2, dtype=F64)], torch.eye(2, dtype=F64), 0.1, True), "steps"),
    ("data.whitened_data n", lambda: data.whitened_data(True, 1, 1), "n"),
    ("deep_linear.flow_rate N", lambda: deep_linear.flow_rate(0.5, True), "depth N"),
    ("deep_linear.arora_theorem1_rate eta", lambda: deep_linear.arora_theorem1_rate(True, 0.5, 2), "eta"),
    ("stability.random_prediction m", lambda: stability.random_prediction(1.0, 1.0, True, 3), "m"),
]


@pytest.mark.parametrize("call,word", [r[1:] for r in BOOL_ROWS], ids=[r[0] for r in BOOL_ROWS])
def test_bools_are_refused_as_counts_and_step_sizes(call, word):
    with pytest.raises(ValueError, match=word):
        call()
