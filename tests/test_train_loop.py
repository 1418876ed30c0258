"""The one training loop and the one history type (ngdlib._history): every trainer returns a History, and all of them
apply the same divergence rule (a non-finite start raises; later, stop and flag diverged=True, recording only finite
iterates)."""
import math

import pytest
import torch

import ngdlib
from ngdlib import approx_fisher as af
from ngdlib import chatterjee as ch
from ngdlib import deep_linear as dl
from ngdlib import losses, stability
from ngdlib._history import History, run_loop

F64 = torch.float64


def _runs(eta):
    """One short run of every trainer at step size eta (large eta: divergence)."""
    X = ngdlib.sphere(6, 3, seed=0)
    y = torch.linspace(-1.0, 1.0, 6, dtype=F64)
    deep = ngdlib.DeepMLP((3, 8, 8), seed=1)
    Xd = ngdlib.sphere(5, 3, seed=2)
    layers = dl.gaussian_init([3, 4, 2], 0.5, seed=0)
    Phi = 0.5 * torch.ones(2, 3, dtype=F64)
    return {
        "train": ngdlib.train(ngdlib.TwoLayerReLU(3, 60, seed=1), X, y, "gd", eta, 30, progress=False),
        "trace_ngd": stability.trace_ngd(ngdlib.TwoLayerReLU(3, 60, seed=1), X, y, min(eta, 1.0), 3),
        "train_loss": losses.train_loss(ngdlib.TwoLayerReLU(3, 60, seed=1), X, y, losses.LogCoshLoss(1.0, 2.0),
                                        min(eta, 0.5), 3),
        "train_ngd": af.train_ngd(deep, Xd, torch.ones(5, dtype=F64), "block_diag", eta, 20),
        "train_gd": dl.train_gd(layers, Phi, eta, 30)[1],
        "gradient_descent": ch.gradient_descent(ch.toy_loss, torch.tensor([1.5, 0.5], dtype=F64), eta, 30)[1],
    }


def test_every_trainer_returns_the_one_history():
    for name, h in _runs(0.05).items():
        assert type(h) is History, name
        assert isinstance(h.eta, float) and h.method, name
        assert not h.diverged and h.stop_reason in ("steps done", "tolerance reached"), (name, h.stop_reason)
        first = h.series_names()[0]
        assert len(getattr(h, first)) == h.steps + 1 and h.tensor(first).dtype == F64, name


def test_every_trainer_stops_and_flags_divergence():
    runs = _runs(50.0)
    for name in ("train", "train_ngd", "train_gd", "gradient_descent"):
        h = runs[name]
        first = h.series_names()[0]
        assert h.diverged and ("blew up" in h.stop_reason or "refused" in h.stop_reason), (name, h.stop_reason)
        assert all(math.isfinite(v) for v in getattr(h, first)), name


def test_a_non_finite_start_raises():
    hist = History(method="x", eta=1.0)
    with pytest.raises(ValueError, match="not finite"):
        run_loop(hist, lambda k: (float("nan"), {}), lambda k: None, 3, monitor="loss")


def test_a_refused_step_stops_with_its_reason():
    hist = History(method="x", eta=1.0)
    run_loop(hist, lambda k: (1.0, {"k": k}), lambda k: "G(k) singular" if k == 1 else None, 5, monitor="loss")
    assert hist.diverged and hist.stop_reason == "G(k) singular" and hist.k == [0, 1] and hist.steps == 1


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="accuracy"):
        History(method="x", eta=1.0).accuracy
