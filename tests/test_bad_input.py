"""Bad input is refused with a ValueError that names the violated assumption, never a raw LinAlgError or a silent
wrong number. Table-driven: (id, callable, words the message must contain)."""
import pytest
import torch

import ngdlib
from ngdlib import reference

F64 = torch.float64


def _X(n=6, d=3, seed=0):
    return ngdlib.sphere(n, d, seed=seed)


def _net(d=3, m=40, seed=1):
    return ngdlib.TwoLayerReLU(d, m, seed=seed)


def _r(n=6):
    return torch.ones(n, dtype=F64)


def _nan_X():
    X = _X()
    X[2, 1] = float("nan")
    return X


def _inf_r():
    r = _r()
    r[0] = float("inf")
    return r


def _parallel_X():
    X = _X()
    X[3] = X[1]
    return X


def _antiparallel_X():
    X = _X()
    X[3] = -X[1]
    return X


def _rank_deficient_X():
    # 6 unit vectors in R^3 that all lie in the plane x_3 = 0: rank(X) = 2 < d = 3
    t = torch.linspace(0.1, 3.0, 6, dtype=F64)
    return torch.stack([torch.cos(t), torch.sin(t), torch.zeros_like(t)], dim=1)


def _singular_gram_case():
    # width 2 with d = n = 6: some input activates no neuron, so its row of J is zero and G is singular
    X = _X(6, 6, seed=3)
    net = ngdlib.TwoLayerReLU(6, 2, seed=5)
    assert bool((net.activation_pattern(X).sum(dim=1) == 0).any()), "test precondition: an inactive input"
    return net, X


CASES = [
    ("X NaN", lambda: ngdlib.ngd_direction(_net(), _nan_X(), _r()), "NaN or Inf"),
    ("r Inf", lambda: ngdlib.ngd_direction(_net(), _X(), _inf_r()), "NaN or Inf"),
    ("X 1-D", lambda: ngdlib.ngd_direction(_net(), _X()[0], _r()), "2 dimension"),
    ("X wrong d", lambda: ngdlib.ngd_direction(_net(d=4), _X(), _r()), "d = 4 columns"),
    ("X empty", lambda: ngdlib.gd_direction(_net(), torch.empty(0, 3, dtype=F64), torch.empty(0, dtype=F64)), "empty"),
    ("X int", lambda: ngdlib.gd_direction(_net(), torch.ones(6, 3, dtype=torch.long), _r()), "floating"),
    ("X float32 vs model float64", lambda: ngdlib.gd_direction(_net(), _X().float(), _r()), "dtype"),
    ("r wrong length", lambda: ngdlib.ngd_direction(_net(), _X(), _r(5)), "length n = 6"),
    ("r 2-D", lambda: ngdlib.ngd_direction(_net(), _X(), _r().reshape(6, 1)), "1 dimension"),
    ("non-unit inputs", lambda: ngdlib.ngd_direction(_net(), 2 * _X(), _r()), "Assumption 1"),
    ("parallel inputs", lambda: ngdlib.ngd_direction(_net(), _parallel_X(), _r()), "Assumption 1"),
    ("antiparallel inputs", lambda: ngdlib.kfac_direction(_net(), _antiparallel_X(), _r()), "antiparallel"),
    ("limiting_gram non-unit", lambda: ngdlib.limiting_gram(3 * _X()), "unit norm"),
    ("limiting_gram NaN", lambda: ngdlib.limiting_gram(_nan_X()), "NaN"),
    ("width md < n", lambda: ngdlib.ngd_direction(ngdlib.TwoLayerReLU(3, 1, seed=0), _X(), _r()), "Condition 1"),
    ("singular Gram", lambda: ngdlib.ngd_direction(*_singular_gram_case(), _r()), "width m = 2 is too small"),
    ("K-FAC n < d", lambda: ngdlib.kfac_direction(_net(d=8), _X(4, 8), _r(4)), "rank(X) = d"),
    ("K-FAC rank-deficient X", lambda: ngdlib.kfac_direction(_net(), _rank_deficient_X(), _r()), "rank(X) = d"),
    ("train bad method", lambda: ngdlib.train(_net(), _X(), _r(), method="adam", progress=False), "method"),
    ("train lr <= 0", lambda: ngdlib.train(_net(), _X(), _r(), eta=0.0, progress=False), "step size"),
    ("train lr NaN", lambda: ngdlib.train(_net(), _X(), _r(), eta=float("nan"), progress=False), "step size"),
    ("train y wrong length", lambda: ngdlib.train(_net(), _X(), _r(4), progress=False), "length n = 6"),
    ("train steps < 0", lambda: ngdlib.train(_net(), _X(), _r(), steps=-1, progress=False), "steps"),
    ("model m = 0", lambda: ngdlib.TwoLayerReLU(3, 0), "m >= 1"),
    ("model nu < 0", lambda: ngdlib.TwoLayerReLU(3, 4, nu=-1.0), "nu"),
    ("model nu NaN", lambda: ngdlib.TwoLayerReLU(3, 4, nu=float("nan")), "nu"),
    ("model int dtype", lambda: ngdlib.TwoLayerReLU(3, 4, dtype=torch.int64), "floating"),
    ("model seed float", lambda: ngdlib.TwoLayerReLU(3, 4, seed=1.5), "seed"),
    ("sphere n = 0", lambda: ngdlib.sphere(0, 3), "n must be an int >= 1"),
    ("sphere d = 1", lambda: ngdlib.sphere(3, 1), "parallel"),
    ("dense Jacobian too big", lambda: ngdlib.TwoLayerReLU(100, 100_000).jacobian(ngdlib.sphere(10, 100)), "dense"),
    ("reference too big", lambda: reference.fisher(ngdlib.TwoLayerReLU(10, 1000), ngdlib.sphere(5, 10)), "tiny"),
    ("jvp wrong shape", lambda: _net().jvp(_X(), torch.ones(3, 40, dtype=F64)), "shape of W"),
    ("Forster not in general position", lambda: ngdlib.forster(
        torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=F64), max_iter=500), "general position"),
    ("Forster rank-deficient", lambda: ngdlib.forster(_rank_deficient_X()), "rank(X) = d"),
    ("record bad status", lambda: ngdlib.record("Z-X", "great", summary=""), "status"),
]


@pytest.mark.parametrize("call,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_by_name(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value), f"message does not name the violation ({words!r}): {info.value}"


def test_n_equals_one_is_fine():
    X = _X(1, 3)
    net = _net()
    r = _r(1)
    assert ngdlib.ngd_direction(net, X, r).shape == net.W.shape
    assert ngdlib.limiting_gram(X).item() == 0.5


def test_assumption1_can_be_waived_explicitly():
    """Non-unit inputs are refused by default, accepted when the caller says so (K-FAC invariance experiments)."""
    X = 2 * _X()
    D = ngdlib.kfac_direction(_net(), X, _r(), check_assumption1=False)
    assert bool(torch.isfinite(D).all())
