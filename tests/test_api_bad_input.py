"""Bad input across the whole public API of ngdlib (core + Part II): one table of (id, callable, words).

Every row must raise ``ValueError`` whose message contains the expected words (a tuple: all of them). Nothing may
escape as a raw ``LinAlgError``, ``IndexError``, ``TypeError``, ``AttributeError``, a torch ``RuntimeError`` or a CUDA
assert, and no valid call may return a NaN or Inf silently (``test_valid_calls_are_finite``). The core's semantic
cases (singular Gram at small width, K-FAC rank, Forster's general position, ...) live in ``tests/test_bad_input.py``;
this file extends them to every public callable and every kind of malformed input.

How the table is built:

* ``SPECS``: for each public callable a valid call (``make`` builds the arguments, ``call`` calls) and, per tensor
  argument, the mutations that apply: ``nan``/``inf`` (one entry), ``int`` (int64), ``half`` (float16), ``f32``
  (float32 where another argument or the model is float64: a dtype mismatch), ``ndim`` (one extra dimension),
  ``empty`` (zero rows), ``list`` (a Python list instead of a tensor), ``short``/``cols`` (one row / column fewer:
  mismatched lengths or widths). Each (callable, argument, mutation) is one row ``"<api>: <arg> <mutation>"``.
* ``CASES``: hand-written rows: Assumption 1 (non-unit, parallel inputs), Condition 1 (widths too small, singular
  Gram matrices, reported with the measured condition number), rank-deficient data where a solve happens, n = 1
  where it is illegal, nonsensical scalars (negative widths / steps / step sizes, NaN step sizes, depth < 1, bad
  dtypes and devices, ...).
* Overflow rows (in ``CASES``): finite inputs whose result overflows (inputs of size 1e200, a step size 1e300, ...)
  are refused ("overflowed"), never returned as NaN / Inf, and never reach LAPACK as a raw ``LinAlgError``.
* ``N1_OK``: n = 1 (one input, one sample, depth 1, a 1 x 1 kernel) where it is legal: it must work and be finite.
* ``test_every_public_callable_is_covered`` scans ``__all__`` of every module in scope (and the public methods and
  properties of its classes) and requires a row for each, or an entry in ``EXEMPT`` with the reason.

Public API in scope (``module.name``; classes with their public methods/properties):

* ngdlib.models: TwoLayerReLU(d, m, nu, seed, dtype, device) . check_inputs forward activation_pattern features
  gram jvp vjp jacobian extra_repr; resolve_counts; COUNTS; DeepMLP(widths, activation, sigma_w, sigma_b, bias, seed,
  dtype, device) . dtype device d hidden layer_sizes n_params check_inputs forward_with forward signals layer_grams
  ntk jvp vjp layer_jacobian jacobian unit_jacobian autodiff_jacobian apply_step get_blocks set_blocks extra_repr;
  Signals . n; MLP(d_in, width, d_out, seed, sigma_w, dtype, device) . num_params forward extra_repr;
  FeedForward(d, widths, activation, scale) . depth unflatten flatten positive_init forward loss loss_fn
  first_layer_backprop kernel_at_zero first_layer_jacobian; check_layers dims end_to_end gaussian_init (deep linear
  layers); ACTIVATIONS FEEDFORWARD_ACTIVATIONS MAX_DENSE_PARAMS
* ngdlib.curvature: ngd_direction ngd_step kfac_direction gd_direction validate gram_eigh
* ngdlib.kernels: limiting_gram limiting_activation_gram angles relu_input_layer relu_layer
* ngdlib.data: sphere sphere_teacher teacher forster whitened_data WhitenedData
* ngdlib.train: train, History (of every trainer) . steps tensor series_names append; METHODS
* ngdlib.records: record records_dir environment paper_record; STATUSES SCALES
* ngdlib.testing: tolerance assert_close assert_within_se fit_loglog_slope verdict PrecisionWarning; TOLERANCES
* ngdlib.reference: jacobian gram fisher fisher_pinv loss_grad features kfac_preconditioner ngd_direction
  kfac_direction gd_direction; deep_forward deep_jacobian deep_factors deep_fisher_approx deep_kernel DenseKernel .
  tolerance rel_error gap; deep_grid GridCase . label; grid_rows GridRow . tol compared; layer_ranks factor_ranks
  grid_table; dense_kernel dense_direction dense_multi_output_kernel; MAX_PARAMS DEEP_VARIANTS
* ngdlib.approx_fisher: tri_coefficients TriDiag isotropy Isotropy predicted_alpha function_kernel ngd_direction
  linearized_prediction ntk_test_prediction train_ngd limiting_factors limiting_function_kernel; VARIANTS;
  FisherVariant Exact BlockDiagonal TriDiagonal KFAC UnitWise . check_rho (the rest through the functions)
* ngdlib.deep_linear: loss gradients gd_step balancedness balancedness_gaps
  deficiency_margin sigma_min balanced_init data_loss train_gd gradient_flow end_to_end_velocity balanced_velocity
  arora_theorem1_delta_bound arora_theorem1_eta_bound arora_theorem1_rate flow_rate; RECALLED_T1_CONSTANTS
* ngdlib.chatterjee: grad_ratio sampled_ratio_min sample_ball toy_loss toy_alpha toy_hessian_bound criterion_ratio
  gd_certificate gradient_descent; alpha_lower_bound hessian_bound; slope_floor full_kernel_at_zero
  alpha_lower_bound_shallow

(Constants are data, not callables, and are not scanned.)

Documented non-finite sentinels, which are part of the API and therefore not "returned silently": ``grad_ratio`` is
NaN where f(x) = 0 exactly (the infimum defining alpha excludes zeros of f); ``criterion_ratio`` is +Inf when
f(x0) = 0; ``gd_certificate``'s ``path_bound`` is +Inf when alpha = 0 or theta <= 0 (no bound); the training
histories record NaN for ``lambda_min_gram`` / ``sigma_min`` / ``balancedness`` when tracking is switched off and stop
with ``diverged = True`` (never a non-finite entry) when the iteration blows up.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import math

import pytest
import torch

import ngdlib
from ngdlib import _linalg
from ngdlib import approx_fisher as af
from ngdlib import chatterjee as ch
from ngdlib import deep_linear as dl
from ngdlib import kernels as kn
from ngdlib import reference, testing
from ngdlib import curvature as cv
from ngdlib import joint as jt
from ngdlib import separation as sep
from ngdlib.models import DeepMLP

F64 = torch.float64
NAN, INF = float("nan"), float("inf")
HAS_CUDA = torch.cuda.is_available()


def _g(seed):
    return torch.Generator().manual_seed(seed)


# ======================================================================================================== fixtures
def core(n=6, d=3, m=40):
    """A two-layer net, n unit inputs in general position, a residual."""
    return {"model": ngdlib.TwoLayerReLU(d, m, seed=1), "X": ngdlib.sphere(n, d, seed=0),
            "r": torch.linspace(-1.0, 1.0, n, dtype=F64)}


def deep(n=5, widths=(6, 7, 8), activation="relu", bias=True):
    """A deep NTK MLP (L = 3), N training inputs, 3 test inputs, a residual / target."""
    return {"model": DeepMLP(widths, activation=activation, bias=bias, seed=100),
            "X": ngdlib.sphere(n, widths[0], seed=0), "Xt": ngdlib.sphere(3, widths[0], seed=50),
            "r": torch.linspace(-1.0, 1.0, n, dtype=F64)}


def lin():
    """A depth-2 linear network 3 -> 4 -> 2, a target Phi (2 x 3), whitened data (10 samples)."""
    layers = dl.gaussian_init([3, 4, 2], 0.5, seed=0)
    data = ngdlib.data.whitened_data(10, 3, 2, seed=2)
    A = torch.randn(3, 3, generator=_g(3), dtype=F64)
    return {"layers": layers, "Phi": 0.5 * torch.randn(2, 3, generator=_g(1), dtype=F64),
            "W": dl.end_to_end(layers), "X": data.X, "Y": data.Y, "M": A @ A.T + torch.eye(3, dtype=F64)}


def cha():
    """Chatterjee: a one-hidden-layer tanh net at W_1 = 0, 3 inputs, targets; the toy's points."""
    net = ch.FeedForward(4, [3], "tanh", scale=2.0)
    theta = net.positive_init(0)
    return {"net": net, "theta": theta, "params": [p.clone() for p in net.unflatten(theta)],
            "X": ngdlib.sphere(3, 4, seed=0), "y": torch.tensor([0.5, -0.2, 0.1], dtype=F64),
            "x0": torch.tensor([3.0, 4.0], dtype=F64), "pts": torch.tensor([[1.0, 2.0], [0.5, 0.3]], dtype=F64),
            "extra": torch.tensor([[3.1, 4.0], [2.9, 4.1]], dtype=F64)}


def _multi():
    """deep() with a 2-output head (C x (M_(L-1) + 1) = 2 x 9)."""
    return {**deep(), "head": torch.randn(2, 9, generator=_g(7), dtype=F64)}


def _relu_state():
    """The state (diag, 1 - rho, 1 + rho) that kernels.relu_layer carries, for core()'s inputs."""
    _, c, q, w = kn.relu_input_layer(core()["X"], 2.0, 0.1)
    return {"c": c, "q": q, "w": w}


# ======================================================================================================== mutations
WORDS = {
    "nan": "NaN or Inf", "inf": "NaN or Inf", "int": "floating", "half": "float32 or float64", "f32": "dtype",
    "ndim": "dimension", "empty": "empty", "list": "torch.Tensor",
}
VALUES = ["nan", "inf"]
BASIC = VALUES + ["int", "half", "list", "ndim", "empty"]   # any tensor argument
WITH_REF = BASIC + ["f32"]                                  # an argument whose dtype must match the model / others


def _mutate(t, kind):
    if kind in ("nan", "inf"):
        t = t.detach().clone().contiguous()
        t.view(-1)[0 if kind == "nan" else -1] = NAN if kind == "nan" else INF
        return t
    return {
        "int": lambda: t.to(torch.int64), "half": lambda: t.half(), "f32": lambda: t.float(),
        "ndim": lambda: t.unsqueeze(0), "empty": lambda: t[:0], "list": lambda: t.tolist(),
        "short": lambda: t[:-1], "cols": lambda: t[:, :-1],
    }[kind]()


def _set(args, path, kind):
    name, _, idx = path.partition(".")
    if idx:
        seq = list(args[name])
        seq[int(idx)] = _mutate(seq[int(idx)], kind)
        args[name] = seq
    else:
        args[name] = _mutate(args[name], kind)
    return args


def S(key, make, call, **muts):
    """A spec: the valid call ``call(make())`` and the mutations per argument (``layers_1`` is ``layers[1]``)."""
    return key, make, call, {k.replace("_", ".") if k[-1].isdigit() else k: v for k, v in muts.items()}


def _X_muts(cols_words="columns"):
    return WITH_REF + [("cols", cols_words)]


def _r_muts(n):
    return WITH_REF + [("short", f"length n = {n}")]


# ----------------------------------------------------------------------------------------------- core
SPECS = [
    S("models.TwoLayerReLU.check_inputs", core, lambda a: a["model"].check_inputs(a["X"]), X=_X_muts()),
    S("models.TwoLayerReLU.forward", core, lambda a: a["model"](a["X"]), X=_X_muts()),
    S("models.TwoLayerReLU.activation_pattern", core, lambda a: a["model"].activation_pattern(a["X"]), X=_X_muts()),
    S("models.TwoLayerReLU.features", core, lambda a: a["model"].features(a["X"]), X=_X_muts()),
    S("models.TwoLayerReLU.gram", core, lambda a: a["model"].gram(a["X"]), X=_X_muts()),
    S("models.TwoLayerReLU.jacobian", core, lambda a: a["model"].jacobian(a["X"]), X=_X_muts()),
    S("models.TwoLayerReLU.jvp", lambda: {**core(), "D": torch.ones(40, 3, dtype=F64)},
      lambda a: a["model"].jvp(a["X"], a["D"]), X=_X_muts(), D=WITH_REF + [("short", "shape of W")]),
    S("models.TwoLayerReLU.vjp", core, lambda a: a["model"].vjp(a["X"], a["r"]), X=_X_muts(), r=_r_muts(6)),
    S("curvature.ngd_direction", core, lambda a: cv.ngd_direction(a["model"], a["X"], a["r"]),
      X=_X_muts(), r=_r_muts(6)),
    S("curvature.ngd_step", core, lambda a: cv.ngd_step(a["model"], a["X"], a["r"]), X=_X_muts(), r=_r_muts(6)),
    S("curvature.kfac_direction", core, lambda a: cv.kfac_direction(a["model"], a["X"], a["r"]),
      X=_X_muts(), r=_r_muts(6)),
    S("curvature.gd_direction", core, lambda a: cv.gd_direction(a["model"], a["X"], a["r"]),
      X=_X_muts(), r=_r_muts(6)),
    S("curvature.validate", core, lambda a: cv.validate(a["model"], a["X"], a["r"]), X=_X_muts(), r=_r_muts(6)),
    S("curvature.gram_eigh", core, lambda a: cv.gram_eigh(a["model"], a["X"]), X=_X_muts()),
    S("kernels.limiting_gram", core, lambda a: ngdlib.limiting_gram(a["X"]), X=BASIC),
    S("kernels.limiting_activation_gram", core, lambda a: ngdlib.limiting_activation_gram(a["X"]), X=BASIC),
    S("kernels.angles", lambda: {**core(), "X2": core()["X"].clone()}, lambda a: kn.angles(a["X"], a["X2"]),
      X=BASIC, X2=BASIC + [("cols", "same number of columns")]),
    S("kernels.relu_input_layer", core, lambda a: kn.relu_input_layer(a["X"], 2.0, 0.1), X=BASIC),
    S("kernels.relu_layer", _relu_state, lambda a: kn.relu_layer(a["c"], a["q"], a["w"], 2.0, 0.1),
      c=BASIC, q=BASIC + [("short", "N x N")], w=BASIC + [("short", "N x N")]),
    S("data.forster", lambda: {"X": ngdlib.sphere(8, 3, seed=4)}, lambda a: ngdlib.forster(a["X"]), X=BASIC),
    S("train.train", core, lambda a: ngdlib.train(a["model"], a["X"], a["r"], steps=2, progress=False),
      X=_X_muts(), r=_r_muts(6)),
    S("reference.jacobian", core, lambda a: reference.jacobian(a["model"], a["X"]), X=_X_muts()),
    S("reference.gram", core, lambda a: reference.gram(a["model"], a["X"]), X=_X_muts()),
    S("reference.fisher", core, lambda a: reference.fisher(a["model"], a["X"]), X=_X_muts()),
    S("reference.fisher_pinv", core, lambda a: reference.fisher_pinv(a["model"], a["X"]), X=_X_muts()),
    S("reference.features", core, lambda a: reference.features(a["model"], a["X"]), X=_X_muts()),
    S("reference.kfac_preconditioner", core, lambda a: reference.kfac_preconditioner(a["model"], a["X"]),
      X=_X_muts()),
    S("reference.loss_grad", core, lambda a: reference.loss_grad(a["model"], a["X"], a["r"]),
      X=_X_muts(), r=_r_muts(6)),
    S("reference.ngd_direction", core, lambda a: reference.ngd_direction(a["model"], a["X"], a["r"]),
      X=_X_muts(), r=_r_muts(6)),
    S("reference.kfac_direction", core, lambda a: reference.kfac_direction(a["model"], a["X"], a["r"]),
      X=_X_muts(), r=_r_muts(6)),
    S("reference.gd_direction", core, lambda a: reference.gd_direction(a["model"], a["X"], a["r"]),
      X=_X_muts(), r=_r_muts(6)),
    S("testing.fit_loglog_slope", lambda: {"x": torch.tensor([1.0, 2.0, 4.0], dtype=F64),
                                           "y": torch.tensor([1.0, 0.5, 0.26], dtype=F64)},
      lambda a: testing.fit_loglog_slope(a["x"], a["y"]),
      x=[("nan", "finite"), ("inf", "finite"), ("ndim", "1-D"), ("short", "same length"), ("empty", "at least two")],
      y=[("nan", "finite"), ("inf", "finite"), ("ndim", "1-D"), ("short", "same length")]),
    S("testing.assert_within_se", lambda: {"est": torch.tensor([1.0, 2.0, 3.0], dtype=F64),
                                           "tru": torch.tensor([1.1, 2.0, 3.0], dtype=F64),
                                           "se": torch.tensor([0.1, 0.2, 0.1], dtype=F64)},
      lambda a: testing.assert_within_se(a["est"], a["tru"], a["se"]),
      se=[("nan", "standard error"), ("inf", "standard error"), ("short", "shape")],
      tru=[("short", "shape")]),
]

# ----------------------------------------------------------------------------------------------- deep (Part II-a)
_dX = _X_muts()
SPECS += [
    S("models.DeepMLP.check_inputs", deep, lambda a: a["model"].check_inputs(a["X"]), X=_dX),
    S("models.DeepMLP.forward", deep, lambda a: a["model"](a["X"]), X=_dX),
    S("models.DeepMLP.forward_with", deep, lambda a: a["model"].forward_with(a["model"].get_blocks(), a["X"]), X=_dX),
    S("models.DeepMLP.signals", deep, lambda a: a["model"].signals(a["X"]), X=_dX),
    S("models.DeepMLP.layer_grams", deep, lambda a: a["model"].layer_grams(a["X"], a["Xt"]), X=_dX, Xt=_dX),
    S("models.DeepMLP.ntk", deep, lambda a: a["model"].ntk(a["X"], a["Xt"]), X=_dX, Xt=_dX),
    S("models.DeepMLP.jvp", lambda: {**deep(), "V": deep()["model"].get_blocks()},
      lambda a: a["model"].jvp(a["X"], a["V"]), X=_dX, V_0=WITH_REF + [("short", "shape")]),
    S("models.DeepMLP.vjp", deep, lambda a: a["model"].vjp(a["X"], a["r"]), X=_dX,
      r=[m if m != "list" else ("list", "list of L") for m in _r_muts(5)]),   # a list is read as c_1, ..., c_L
    S("models.DeepMLP.layer_jacobian", deep, lambda a: a["model"].layer_jacobian(a["X"], 2), X=_dX),
    S("models.DeepMLP.jacobian", deep, lambda a: a["model"].jacobian(a["X"]), X=_dX),
    S("models.DeepMLP.unit_jacobian", deep, lambda a: a["model"].unit_jacobian(a["X"], 2, 3), X=_dX),
    S("models.DeepMLP.autodiff_jacobian", deep, lambda a: a["model"].autodiff_jacobian(a["X"]), X=_dX),
    S("models.DeepMLP.apply_step", lambda: {**deep(), "V": deep()["model"].get_blocks()},
      lambda a: a["model"].apply_step(a["V"], 0.1), V_0=WITH_REF + [("short", "shape")]),
    S("models.DeepMLP.set_blocks", lambda: {**deep(), "V": deep()["model"].get_blocks()},
      lambda a: a["model"].set_blocks(a["V"]), V_2=WITH_REF + [("short", "shape")]),
    S("approx_fisher.isotropy", lambda: {"K": torch.eye(3, dtype=F64) + 0.1}, lambda a: af.isotropy(a["K"]),
      K=BASIC + [("short", "square")]),
    S("approx_fisher.function_kernel", deep, lambda a: af.function_kernel(a["model"], a["X"], "exact",
                                                                         X_test=a["Xt"]), X=_dX, Xt=_dX),
    S("approx_fisher.ngd_direction", deep, lambda a: af.ngd_direction(a["model"], a["X"], a["r"], "block_diag"),
      X=_dX, r=_r_muts(5)),
    S("approx_fisher.linearized_prediction",
      lambda: {"K": torch.eye(3, dtype=F64) + 0.1, "Kt": torch.ones(2, 3, dtype=F64),
               "f0": torch.zeros(3, dtype=F64), "f0t": torch.zeros(2, dtype=F64),
               "y": torch.tensor([1.0, -1.0, 0.5], dtype=F64)},
      lambda a: af.linearized_prediction(a["K"], a["Kt"], a["f0"], a["f0t"], a["y"], 0.5, 3),
      K=WITH_REF + [("short", "square")], Kt=WITH_REF + [("cols", "columns")], f0=_r_muts(3),
      f0t=WITH_REF + [("short", "length n = 2")], y=_r_muts(3)),
    S("approx_fisher.ntk_test_prediction", lambda: {**deep(), "y": torch.ones(5, dtype=F64)},
      lambda a: af.ntk_test_prediction(a["model"], a["X"], a["y"], a["Xt"], 0.5, 2), X=_dX, Xt=_dX,
      y=_r_muts(5)),
    S("approx_fisher.train_ngd", deep, lambda a: af.train_ngd(a["model"], a["X"], a["r"], "exact", 0.5, 2,
                                                             X_test=a["Xt"]), X=_dX, Xt=_dX, r=_r_muts(5)),
    S("reference.deep_fisher_approx", deep, lambda a: reference.deep_fisher_approx(a["model"], a["X"], "tri_diag"),
      X=_dX),
    S("reference.dense_kernel", deep, lambda a: reference.dense_kernel(a["model"], a["X"], "kfac", X_test=a["Xt"]),
      X=_dX, Xt=_dX),
    S("reference.dense_direction", deep, lambda a: reference.dense_direction(a["model"], a["X"], a["r"], "exact"),
      X=_dX, r=_r_muts(5)),
    S("reference.deep_forward", deep, lambda a: reference.deep_forward(a["model"], a["X"]), X=_dX),
    S("reference.deep_jacobian", deep, lambda a: reference.deep_jacobian(a["model"], a["X"]), X=_dX),
    S("reference.deep_factors", deep, lambda a: reference.deep_factors(a["model"], a["X"]), X=_dX),
    S("reference.deep_fisher_approx", deep, lambda a: reference.deep_fisher_approx(a["model"], a["X"], "kfac"), X=_dX),
    S("reference.deep_kernel", deep, lambda a: reference.deep_kernel(a["model"], a["X"], "tri_diag", X_test=a["Xt"]),
      X=_dX, Xt=_dX),
    S("reference.layer_ranks", deep, lambda a: reference.layer_ranks(a["model"], a["X"]), X=_dX),
    S("reference.factor_ranks", deep, lambda a: reference.factor_ranks(a["model"], a["X"]), X=_dX),
    S("reference.DenseKernel.rel_error",
      lambda: {"dk": reference.deep_kernel(deep()["model"], deep()["X"], "exact"), "K": torch.eye(5, dtype=F64)},
      lambda a: a["dk"].rel_error(a["K"]), K=WITH_REF + [("short", "shape")]),
    S("approx_fisher.limiting_factors", deep, lambda a: af.limiting_factors(a["model"], a["X"], a["Xt"]),
      X=_dX, Xt=_dX),
    S("approx_fisher.limiting_function_kernel", deep,
      lambda a: af.limiting_function_kernel(a["model"], a["X"], "block_diag", X_test=a["Xt"]), X=_dX, Xt=_dX),
    # C outputs (K-MULTI): the head replaces the output block, C x (M_(L-1) + 1)
    S("approx_fisher.multi_output_signals", _multi, lambda a: af.multi_output_signals(a["model"], a["head"], a["X"]),
      X=_dX, head=WITH_REF + [("cols", "C x")]),
    S("approx_fisher.multi_output_kernel", _multi,
      lambda a: af.multi_output_kernel(a["model"], a["head"], a["X"], "unit_wise"), X=_dX,
      head=WITH_REF + [("cols", "C x")]),
    S("reference.dense_multi_output_kernel", _multi,
      lambda a: reference.dense_multi_output_kernel(a["model"], a["head"], a["X"], "kfac"), X=_dX,
      head=WITH_REF + [("cols", "C x")]),
    S("approx_fisher.damped_kfac_kernel", deep, lambda a: af.damped_kfac_kernel(a["model"], a["X"], 1e-3,
                                                                               X_test=a["Xt"]), X=_dX, Xt=_dX),
]

# ----------------------------------------------------------------------------------------------- deep linear (II-b)
_LAY = {"layers_0": WITH_REF, "layers_1": WITH_REF + [("cols", "do not chain")]}
_PHI = WITH_REF + [("short", "d_N x d_0")]
SPECS += [
    S("models.check_layers", lin, lambda a: dl.check_layers(a["layers"]), **_LAY),
    S("models.dims", lin, lambda a: dl.dims(a["layers"]), **_LAY),
    S("models.end_to_end", lin, lambda a: dl.end_to_end(a["layers"]), **_LAY),
    S("deep_linear.balancedness", lin, lambda a: dl.balancedness(a["layers"]), **_LAY),
    S("deep_linear.balancedness_gaps", lin, lambda a: dl.balancedness_gaps(a["layers"]), **_LAY),
    S("deep_linear.loss", lin, lambda a: dl.loss(a["layers"], a["Phi"]), **_LAY, Phi=_PHI),
    S("deep_linear.gradients", lin, lambda a: dl.gradients(a["layers"], a["Phi"]), **_LAY, Phi=_PHI),
    S("deep_linear.gd_step", lin, lambda a: dl.gd_step(a["layers"], a["Phi"], 0.1), **_LAY, Phi=_PHI),
    S("deep_linear.train_gd", lin, lambda a: dl.train_gd(a["layers"], a["Phi"], 0.1, 3), **_LAY, Phi=_PHI),
    S("deep_linear.gradient_flow", lin, lambda a: dl.gradient_flow(a["layers"], a["Phi"], [0.0, 0.05]),
      **_LAY, Phi=_PHI),
    S("deep_linear.end_to_end_velocity", lin, lambda a: dl.end_to_end_velocity(a["layers"], a["Phi"]),
      **_LAY, Phi=_PHI),
    S("deep_linear.sigma_min", lin, lambda a: dl.sigma_min(a["W"]), W=BASIC),
    S("deep_linear.deficiency_margin", lin, lambda a: dl.deficiency_margin(a["W"], a["Phi"]),
      W=WITH_REF, Phi=WITH_REF + [("short", "same shape")]),
    S("deep_linear.balanced_init", lin, lambda a: dl.balanced_init(a["Phi"], [4, 3]), Phi=BASIC),
    S("data.whitened_data", lambda: {"P": torch.ones(2, 3, dtype=F64)},
      lambda a: ngdlib.data.whitened_data(10, 3, 2, Phi_true=a["P"]), P=BASIC + [("short", "d_out x d_in")]),
    S("deep_linear.data_loss", lin, lambda a: dl.data_loss(a["layers"], a["X"], a["Y"]), **_LAY,
      X=WITH_REF + [("short", "n x d_0")], Y=WITH_REF + [("short", "n x d_0")]),
    S("_linalg.psd_power", lin, lambda a: _linalg.psd_power(a["M"], 0.5), M=BASIC + [("short", "square")]),
    S("deep_linear.balanced_velocity", lin, lambda a: dl.balanced_velocity(a["W"], a["Phi"], 3),
      W=WITH_REF + [("short", "same shape")], Phi=WITH_REF + [("short", "same shape")]),
    S("deep_linear.arora_theorem1_delta_bound", lin, lambda a: dl.arora_theorem1_delta_bound(0.1, a["Phi"], 3),
      Phi=[m if m != "list" else ("list", "Phi") for m in BASIC]),   # Phi may be a tensor or the number ||Phi||_F
    S("deep_linear.arora_theorem1_eta_bound", lin, lambda a: dl.arora_theorem1_eta_bound(0.1, a["Phi"], 3),
      Phi=[m if m != "list" else ("list", "Phi") for m in BASIC]),
]

# ----------------------------------------------------------------------------------------------- Chatterjee (II-b)
_TH = WITH_REF + [("short", "length")]
_CX = WITH_REF + [("cols", "n x d")]
SPECS += [
    S("chatterjee.grad_ratio", cha, lambda a: ch.grad_ratio(ch.toy_loss, a["pts"]), pts=BASIC),
    S("chatterjee.sample_ball", cha, lambda a: ch.sample_ball(a["x0"], 1.0, 5), x0=BASIC),
    S("chatterjee.sampled_ratio_min", cha, lambda a: ch.sampled_ratio_min(ch.toy_loss, a["x0"], 0.5, k=20,
                                                                         extra=a["extra"]),
      x0=BASIC, extra=WITH_REF + [("cols", "columns")]),
    S("chatterjee.toy_loss", cha, lambda a: ch.toy_loss(a["x0"]),
      x0=["nan", "inf", "int", "half", ("list", "R^2"), ("empty", "R^2")]),
    S("chatterjee.toy_alpha", cha, lambda a: ch.toy_alpha(a["x0"], 1.0), x0=BASIC),
    S("chatterjee.toy_hessian_bound", cha, lambda a: ch.toy_hessian_bound(a["x0"], 1.0), x0=BASIC),
    S("chatterjee.gradient_descent", cha, lambda a: ch.gradient_descent(ch.toy_loss, a["x0"], 0.001, 3), x0=BASIC),
    S("models.FeedForward.unflatten", cha, lambda a: a["net"].unflatten(a["theta"]), theta=BASIC +
      [("short", "length")]),
    S("models.FeedForward.flatten", cha, lambda a: a["net"].flatten(a["params"]),
      params_0=VALUES + ["int", "half", "list", ("ndim", "shapes"), "empty", "f32", ("short", "shapes")],
      params_1=VALUES + ["int", "half", "list", ("ndim", "shapes"), "empty", "f32", ("short", "shapes")]),
    S("models.FeedForward.forward", cha, lambda a: a["net"].forward(a["theta"], a["X"]), theta=_TH, X=_CX),
    S("models.FeedForward.loss", cha, lambda a: a["net"].loss(a["theta"], a["X"], a["y"]), theta=_TH, X=_CX,
      y=_r_muts(3)),
    S("models.FeedForward.loss_fn", cha, lambda a: a["net"].loss_fn(a["X"], a["y"]), X=_CX, y=_r_muts(3)),
    S("models.FeedForward.first_layer_backprop", cha, lambda a: a["net"].first_layer_backprop(a["theta"]),
      theta=BASIC + [("short", "length")]),
    S("models.FeedForward.kernel_at_zero", cha, lambda a: a["net"].kernel_at_zero(a["theta"], a["X"]),
      theta=_TH, X=_CX),
    S("models.FeedForward.first_layer_jacobian", cha,
      lambda a: a["net"].first_layer_jacobian(a["theta"], a["X"]), theta=_TH, X=_CX),
    S("chatterjee.alpha_lower_bound", cha, lambda a: ch.alpha_lower_bound(a["net"], a["theta"], a["X"], 0.1),
      theta=_TH, X=_CX),
    S("chatterjee.hessian_bound", cha,
      lambda a: ch.hessian_bound(a["net"], a["theta"], a["X"], a["y"], 0.1), theta=_TH, X=_CX, y=_r_muts(3)),
    S("chatterjee.full_kernel_at_zero", cha, lambda a: ch.full_kernel_at_zero(a["net"], a["theta"], a["X"]),
      theta=_TH, X=_CX),
    S("chatterjee.alpha_lower_bound_shallow", cha,
      lambda a: ch.alpha_lower_bound_shallow(a["net"], a["theta"], a["X"], 0.1), theta=_TH, X=_CX),
]


def _generated():
    rows = []
    for key, make, call, muts in SPECS:
        for path, kinds in muts.items():
            for kind in kinds:
                kind, words = kind if isinstance(kind, tuple) else (kind, WORDS[kind])
                rows.append((f"{key}: {path} {kind}",
                             (lambda make=make, call=call, path=path, kind=kind: call(_set(make(), path, kind))),
                             words))
    return rows


# ======================================================================================================== hand rows
def _parallel(X, i=3, j=1):
    X = X.clone()
    X[i] = X[j]
    return X


def _rank_deficient(n=6):
    t = torch.linspace(0.1, 3.0, n, dtype=F64)
    return torch.stack([torch.cos(t), torch.sin(t), torch.zeros_like(t)], dim=1)


def _narrow_deep():
    """Last hidden width 3 (+1 bias) < N = 5: the output layer's Gram Theta_L has rank 4 < 5."""
    return DeepMLP((6, 8, 3), activation="tanh", seed=3), ngdlib.sphere(5, 6, seed=2)


def _dup_deep():
    a = deep()
    return a["model"], torch.cat([a["X"], a["X"][:1]])


def _c(**kw):
    return {**core(), **kw}


def _d(**kw):
    return {**deep(), **kw}


def _l(**kw):
    return {**lin(), **kw}


def _h(**kw):
    return {**cha(), **kw}


COND = "condition number"

CASES = [
    # ---------------------------------------------------------------- models.TwoLayerReLU: constructor and scalars
    ("models.TwoLayerReLU: d is a bool", lambda: ngdlib.TwoLayerReLU(True, 4), "d >= 1"),
    ("models.TwoLayerReLU: negative width", lambda: ngdlib.TwoLayerReLU(3, -2), "m >= 1"),
    ("models.TwoLayerReLU: width is a float", lambda: ngdlib.TwoLayerReLU(3, 4.0), "m >= 1"),
    ("models.TwoLayerReLU: nu Inf", lambda: ngdlib.TwoLayerReLU(3, 4, nu=INF), "nu"),
    ("models.TwoLayerReLU: dtype float16", lambda: ngdlib.TwoLayerReLU(3, 4, dtype=torch.float16),
     "float32 or float64"),
    ("models.TwoLayerReLU: dtype given as a string", lambda: ngdlib.TwoLayerReLU(3, 4, dtype="float64"), "dtype"),
    ("models.TwoLayerReLU: unknown device", lambda: ngdlib.TwoLayerReLU(3, 4, device="gpu"), "device"),
    ("models.TwoLayerReLU.gram: chunk 0", lambda: core()["model"].gram(core()["X"], chunk=0), "chunk"),
    ("models.TwoLayerReLU.vjp: chunk negative", lambda: core()["model"].vjp(core()["X"], core()["r"], chunk=-3),
     "chunk"),
    ("models.TwoLayerReLU.gram: counts unknown", lambda: core()["model"].gram(core()["X"], counts="fp8"),
     "counts must be one of"),
    ("models.resolve_counts: counts unknown", lambda: ngdlib.models.resolve_counts("bf16", "cpu", 8),
     "counts must be one of"),
    ("models.resolve_counts: counts not a string", lambda: ngdlib.models.resolve_counts(None, "cpu", 8),
     "counts must be one of"),
    ("curvature.ngd_direction: counts unknown", lambda: cv.ngd_direction(**core(), counts="int4"),
     "counts must be one of"),
    ("curvature.ngd_step: counts unknown", lambda: cv.ngd_step(**_c(), counts=32), "counts must be one of"),
    ("curvature.kfac_direction: counts unknown", lambda: cv.kfac_direction(**core(), counts="half"),
     "counts must be one of"),
    ("curvature.gram_eigh: counts unknown", lambda: cv.gram_eigh(core()["model"], core()["X"], counts="TF32"),
     "counts must be one of"),
    ("models.TwoLayerReLU.jvp: D a list", lambda: core()["model"].jvp(core()["X"], [[0.0] * 3] * 40),
     "torch.Tensor"),
    # ---------------------------------------------------------------- curvature: Assumption 1, Condition 1, rank
    ("curvature.ngd_direction: non-unit inputs", lambda: cv.ngd_direction(**_c(X=1.5 * core()["X"])),
     ("Assumption 1", "unit norm")),
    ("curvature.gd_direction: parallel inputs", lambda: cv.gd_direction(**_c(X=_parallel(core()["X"]))),
     ("Assumption 1", "parallel")),
    ("curvature.validate: antiparallel inputs", lambda: cv.validate(**_c(X=_parallel(core()["X"]) * torch.tensor(
        [1, 1, 1, -1, 1, 1], dtype=F64)[:, None])), ("Assumption 1", "antiparallel")),
    ("curvature.validate: r dtype differs from X", lambda: cv.validate(**_c(r=core()["r"].float())), "dtype"),
    ("curvature.ngd_step: width md < n", lambda: cv.ngd_step(**_c(model=ngdlib.TwoLayerReLU(3, 1, seed=0))),
     "Condition 1"),
    ("curvature.gram_eigh: width md < n", lambda: cv.gram_eigh(ngdlib.TwoLayerReLU(3, 1), core()["X"]),
     "Condition 1"),
    ("curvature.gram_eigh: parallel inputs make G singular",
     lambda: cv.gram_eigh(core()["model"], _parallel(core()["X"])), ("Condition 1", COND)),
    ("curvature.ngd_step: parallel inputs make G singular",
     lambda: cv.ngd_step(**_c(X=_parallel(core()["X"]))), ("Condition 1", COND)),
    ("curvature.ngd_direction: chunk 0", lambda: cv.ngd_direction(**core(), chunk=0), "chunk"),
    ("curvature.ngd_direction: model is not a TwoLayerReLU", lambda: cv.ngd_direction(
        DeepMLP((3, 4)), core()["X"], core()["r"]), "TwoLayerReLU"),
    ("curvature.kfac_direction: n = 1 < d", lambda: cv.kfac_direction(**core(n=1)), "rank(X) = d"),
    ("curvature.kfac_direction: rank-deficient X", lambda: cv.kfac_direction(**_c(X=_rank_deficient())),
     ("rank(X) = d", COND)),
    # ---------------------------------------------------------------- kernels
    ("kernels.limiting_activation_gram: non-unit inputs",
     lambda: ngdlib.limiting_activation_gram(2 * core()["X"]), ("Assumption 1", "unit norm")),
    ("kernels.limiting_gram: 1-D input", lambda: ngdlib.limiting_gram(core()["X"][0]), "2 dimension"),
    # ---------------------------------------------------------------- data
    ("data.sphere: n negative", lambda: ngdlib.sphere(-1, 3), "n must be an int >= 1"),
    ("data.sphere: d = 0", lambda: ngdlib.sphere(3, 0), "d must be an int >= 1"),
    ("data.sphere: n is a bool", lambda: ngdlib.sphere(True, 3), "n must be an int >= 1"),
    ("data.sphere: int dtype", lambda: ngdlib.sphere(3, 3, dtype=torch.int64), "float32 or float64"),
    ("data.sphere_teacher: n_test = 0", lambda: ngdlib.data.sphere_teacher(3, 3, n_test=0), "n_test"),
    ("data.sphere_teacher: frequency NaN", lambda: ngdlib.data.sphere_teacher(3, 3, frequency=NAN), "frequency"),
    ("data.sphere_teacher: d = 1", lambda: ngdlib.data.sphere_teacher(3, 1), "parallel"),
    ("data.shared_direction_sphere: share = 1", lambda: ngdlib.data.shared_direction_sphere(3, 3, 1.0), "share"),
    ("data.shared_direction_sphere: share negative", lambda: ngdlib.data.shared_direction_sphere(3, 3, -0.1),
     "share"),
    ("data.shared_direction_sphere: n = 0", lambda: ngdlib.data.shared_direction_sphere(0, 3, 0.5), "n"),
    ("approx_fisher.train_ngd: tol negative", lambda: af.train_ngd(deep()["model"], deep()["X"], deep()["r"], "exact",
                                                                    1.0, 2, tol=-1.0), "tol"),
    ("data.sphere_teacher: n is a bool", lambda: ngdlib.data.sphere_teacher(True, 3), "n must be an int >= 1"),
    ("data.teacher: X 1-D", lambda: ngdlib.data.teacher(torch.ones(3, dtype=F64), 0), "2 dimension"),
    ("data.teacher: frequency 0", lambda: ngdlib.data.teacher(ngdlib.sphere(3, 3), 0, frequency=0.0), "frequency"),
    ("data.sphere: float16", lambda: ngdlib.sphere(3, 3, dtype=torch.float16), "float32 or float64"),
    ("data.sphere: unknown device", lambda: ngdlib.sphere(3, 3, device="tpu"), "device"),
    ("data.sphere: seed is a float", lambda: ngdlib.sphere(3, 3, seed=0.5), "seed"),
    ("data.forster: n = 1 < d", lambda: ngdlib.forster(ngdlib.sphere(1, 3)), "rank(X) = d"),
    ("data.forster: rank-deficient X", lambda: ngdlib.forster(_rank_deficient()), ("rank(X) = d", COND)),
    ("data.forster: tol negative", lambda: ngdlib.forster(ngdlib.sphere(8, 3, seed=4), tol=-1e-9), "tol"),
    ("data.forster: tol NaN", lambda: ngdlib.forster(ngdlib.sphere(8, 3, seed=4), tol=NAN), "tol"),
    ("data.forster: max_iter 0", lambda: ngdlib.forster(ngdlib.sphere(8, 3, seed=4), max_iter=0), "max_iter"),
    ("data.forster: callback not callable", lambda: ngdlib.forster(ngdlib.sphere(8, 3, seed=4), callback=3),
     "callback"),
    # ---------------------------------------------------------------- train
    ("train.train: steps is a float", lambda: ngdlib.train(**_tr(), steps=2.0, progress=False), "steps"),
    ("train.train: eta negative", lambda: ngdlib.train(**_tr(), eta=-0.5, progress=False), "step size"),
    ("train.train: eta Inf", lambda: ngdlib.train(**_tr(), eta=INF, progress=False), "step size"),
    ("train.train: tol NaN", lambda: ngdlib.train(**_tr(), tol=NAN, progress=False), "tol"),
    ("train.train: tol negative", lambda: ngdlib.train(**_tr(), tol=-1.0, progress=False), "tol"),
    ("train.train: diverge_factor NaN", lambda: ngdlib.train(**_tr(), diverge_factor=NAN, progress=False),
     "diverge_factor"),
    ("train.train: diverge_factor 0", lambda: ngdlib.train(**_tr(), diverge_factor=0.0, progress=False),
     "diverge_factor"),
    ("train.train: non-unit inputs", lambda: ngdlib.train(**_tr(X=3 * core()["X"]), progress=False),
     "Assumption 1"),
    ("train.train: width too small (Condition 1)",
     lambda: ngdlib.train(**_tr(model=ngdlib.TwoLayerReLU(3, 1, seed=0)), progress=False), "Condition 1"),
    ("train.train: kfac on rank-deficient X", lambda: ngdlib.train(**_tr(X=_rank_deficient()), method="kfac",
                                                                  progress=False), "rank(X) = d"),
    ("train.train: y dtype differs from X", lambda: ngdlib.train(**_tr(y=core()["r"].float()), progress=False),
     "dtype"),
    ("train.History.tensor: unknown series", lambda: _hist().tensor("accuracy"), "series"),
    # ---------------------------------------------------------------- records
    ("records.record: bad status", lambda: ngdlib.record("Z-X", "fine", summary="s"), "status"),
    ("records.paper_record: bad scale", lambda: ngdlib.records.paper_record(
        "x.json", scale="huge", sizes={"N": 1}, device="cpu", started=0.0, results={"a": 1.0}), "scale"),
    ("records.paper_record: empty sizes", lambda: ngdlib.records.paper_record(
        "x.json", scale="paper", sizes={}, device="cpu", started=0.0, results={"a": 1.0}), "sizes"),
    ("records.paper_record: unknown device", lambda: ngdlib.records.paper_record(
        "x.json", scale="paper", sizes={"N": 1}, device="abacus", started=0.0, results={"a": 1.0}), "device"),
    ("records.paper_record: started in the future", lambda: ngdlib.records.paper_record(
        "x.json", scale="paper", sizes={"N": 1}, device="cpu", started=1e300, results={"a": 1.0}), "started"),
    ("records.paper_record: NaN result", lambda: ngdlib.records.paper_record(
        "x.json", scale="paper", sizes={"N": 1}, device="cpu", started=0.0, results={"a": [1.0, NAN]}), "not finite"),
    ("records.paper_record: tensor size", lambda: ngdlib.records.paper_record(
        "x.json", scale="paper", sizes={"N": {"w": torch.ones(2)}}, device="cpu", started=0.0, results={"a": 1.0}),
     "tolist"),
    ("records.paper_record: nothing decided", lambda: ngdlib.records.paper_record(
        "x.json", scale="paper", sizes={"N": 1}, device="cpu", started=1e-300 + __import__("time").perf_counter()),
     "nothing to record"),
    ("records.record: empty claim", lambda: ngdlib.record("", "verified", summary="s"), "claim"),
    ("records.record: claim not a string", lambda: ngdlib.record(3, "verified", summary="s"), "claim"),
    ("records.record: summary not a string", lambda: ngdlib.record("Z-X", "verified", summary=None), "summary"),
    ("records.record: slack NaN", lambda: ngdlib.record("Z-X", "verified", summary="s", slack=NAN), "not finite"),
    ("records.record: value tensor with Inf", lambda: ngdlib.record(
        "Z-X", "verified", summary="s", err=torch.tensor([1.0, INF])), "NaN or Inf"),
    # ---------------------------------------------------------------- testing
    ("testing.tolerance: float16", lambda: testing.tolerance(torch.float16), "no tolerance"),
    ("testing.assert_close: rtol negative", lambda: testing.assert_close(torch.ones(2, dtype=F64),
                                                                         torch.ones(2, dtype=F64), rtol=-1e-3),
     "rtol"),
    ("testing.assert_close: atol NaN", lambda: testing.assert_close(torch.ones(2, dtype=F64),
                                                                    torch.ones(2, dtype=F64), atol=NAN), "atol"),
    ("testing.assert_close: worst 0", lambda: testing.assert_close(torch.ones(2, dtype=F64),
                                                                   torch.ones(2, dtype=F64), worst=0), "worst"),
    ("testing.assert_within_se: se negative", lambda: testing.assert_within_se(1.0, 1.0, -0.1), "standard error"),
    ("testing.assert_within_se: k zero", lambda: testing.assert_within_se(1.0, 1.0, 0.1, k=0.0), "k"),
    ("testing.assert_within_se: k NaN", lambda: testing.assert_within_se(1.0, 1.0, 0.1, k=NAN), "k"),
    ("testing.verdict: unknown status", lambda: testing.verdict("Z-X", True, "d", status="great"), "status"),
    ("testing.fit_loglog_slope: one point (n = 1)", lambda: testing.fit_loglog_slope([1.0], [2.0]), "at least two"),
    ("testing.fit_loglog_slope: non-positive x", lambda: testing.fit_loglog_slope([0.0, 1.0], [1.0, 2.0]),
     "positive"),
    ("testing.fit_loglog_slope: all x equal (rank-deficient fit)",
     lambda: testing.fit_loglog_slope([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]), ("rank", COND)),
    # ---------------------------------------------------------------- reference
    ("reference.fisher: too big", lambda: reference.fisher(ngdlib.TwoLayerReLU(10, 1000), ngdlib.sphere(5, 10)),
     "tiny"),
    ("reference.jacobian: model is not a TwoLayerReLU", lambda: reference.jacobian(DeepMLP((3, 4)), core()["X"]),
     "TwoLayerReLU"),
    ("reference.kfac_preconditioner: rank-deficient X",
     lambda: reference.kfac_preconditioner(core()["model"], _rank_deficient()), ("rank(X) = d", COND)),
    ("reference.kfac_preconditioner: n = 1 < d",
     lambda: reference.kfac_preconditioner(core()["model"], core(n=1)["X"]), "rank(X) = d"),
    ("reference.kfac_direction: rank-deficient X",
     lambda: reference.kfac_direction(core()["model"], _rank_deficient(), core()["r"]), "rank(X) = d"),
    ("reference.loss_grad: y dtype differs from X",
     lambda: reference.loss_grad(core()["model"], core()["X"], core()["r"].float()), "dtype"),
    # ---------------------------------------------------------------- models.MLP (Figure 1's network)
    ("models.MLP: width 0", lambda: ngdlib.models.MLP(4, 0, 2), "width"),
    ("models.MLP: sigma_w NaN", lambda: ngdlib.models.MLP(4, 3, 2, sigma_w=NAN), "sigma_w"),
    ("models.MLP.forward: X of the wrong width", lambda: ngdlib.models.MLP(4, 3, 2)(torch.ones(2, 5, dtype=F64)),
     "columns"),
    ("models.MLP.forward: X with a NaN", lambda: ngdlib.models.MLP(4, 3, 2)(torch.full((2, 4), NAN, dtype=F64)),
     "NaN"),
    # ---------------------------------------------------------------- models.DeepMLP
    ("models.DeepMLP: widths with a bool", lambda: DeepMLP((3, True)), "widths"),
    ("models.DeepMLP: negative width", lambda: DeepMLP((3, -4)), "widths"),
    ("models.DeepMLP: widths not a sequence", lambda: DeepMLP(3.5), "widths"),
    ("models.DeepMLP: sigma_w NaN", lambda: DeepMLP((3, 4), sigma_w=NAN), "sigma_w"),
    ("models.DeepMLP: sigma_b negative", lambda: DeepMLP((3, 4), sigma_b=-0.1), "sigma_b"),
    ("models.DeepMLP: activation unknown", lambda: DeepMLP((3, 4), activation="gelu"), "activation"),
    ("models.DeepMLP: dtype float16", lambda: DeepMLP((3, 4), dtype=torch.float16), "float32 or float64"),
    ("models.DeepMLP: dtype given as a string", lambda: DeepMLP((3, 4), dtype="float64"), "dtype"),
    ("models.DeepMLP: unknown device", lambda: DeepMLP((3, 4), device="gpu"), "device"),
    ("models.DeepMLP: seed is a float", lambda: DeepMLP((3, 4), seed=1.5), "seed"),
    ("models.DeepMLP.apply_step: eta NaN", lambda: deep()["model"].apply_step(deep()["model"].get_blocks(), NAN),
     "eta"),
    ("models.DeepMLP.apply_step: eta not a number", lambda: deep()["model"].apply_step(deep()["model"].get_blocks(),
                                                                                    "0.1"), "eta"),
    ("models.DeepMLP.apply_step: too few blocks", lambda: deep()["model"].apply_step(
        deep()["model"].get_blocks()[:1], 0.1), "list of L"),
    ("models.DeepMLP.set_blocks: too many blocks", lambda: deep()["model"].set_blocks(
        deep()["model"].get_blocks() * 2), "list of L"),
    ("models.DeepMLP.forward_with: too few blocks", lambda: deep()["model"].forward_with(
        deep()["model"].get_blocks()[:2], deep()["X"]), "list of L"),
    ("models.DeepMLP.forward_with: a block of the wrong shape", lambda: deep()["model"].forward_with(
        [torch.ones(2, 2, dtype=F64)] * 3, deep()["X"]), "shape"),
    ("models.DeepMLP.jvp: V not a list of L blocks", lambda: deep()["model"].jvp(deep()["X"], [torch.ones(7, 7)]),
     "list of L"),
    ("models.DeepMLP.vjp: c list of wrong length", lambda: deep()["model"].vjp(deep()["X"], [deep()["r"]] * 2),
     "list of L"),
    ("models.DeepMLP.layer_jacobian: l = 0", lambda: deep()["model"].layer_jacobian(deep()["X"], 0), "layer index"),
    ("models.DeepMLP.layer_jacobian: l = L + 1", lambda: deep()["model"].layer_jacobian(deep()["X"], 4),
     "layer index"),
    ("models.DeepMLP.layer_jacobian: l is a bool", lambda: deep()["model"].layer_jacobian(deep()["X"], True),
     "layer index"),
    ("models.DeepMLP.layer_jacobian: X a list", lambda: deep()["model"].layer_jacobian(deep()["X"].tolist(), 1),
     "torch.Tensor"),
    ("models.DeepMLP.jacobian: too big", lambda: DeepMLP((50, 200)).jacobian(ngdlib.sphere(3, 50)), "tiny sizes"),
    ("models.DeepMLP.autodiff_jacobian: too big", lambda: DeepMLP((50, 200)).autodiff_jacobian(ngdlib.sphere(3, 50)),
     "tiny sizes"),
    ("models.DeepMLP.unit_jacobian: unit index out of range",
     lambda: deep()["model"].unit_jacobian(deep()["X"], 1, 7), "unit index"),
    ("models.DeepMLP.unit_jacobian: negative unit index",
     lambda: deep()["model"].unit_jacobian(deep()["X"], 1, -1), "unit index"),
    ("models.DeepMLP.unit_jacobian: layer index 0", lambda: deep()["model"].unit_jacobian(deep()["X"], 0, 0),
     "layer index"),
    # ---------------------------------------------------------------- approx_fisher
    ("approx_fisher.tri_coefficients: L = 0", lambda: af.tri_coefficients(0), "L (the number of layers)"),
    ("approx_fisher.damped_kfac_kernel: rho negative", lambda: af.damped_kfac_kernel(deep()["model"], deep()["X"], -1.0),
     "rho"),
    ("approx_fisher.damped_kfac_kernel: rho NaN", lambda: af.damped_kfac_kernel(deep()["model"], deep()["X"], NAN),
     "rho"),
    ("approx_fisher.multi_output_kernel: unknown variant",
     lambda: af.multi_output_kernel(_multi()["model"], _multi()["head"], _multi()["X"], "diag"), "variant"),
    ("approx_fisher.multi_output_kernel: model not a DeepMLP",
     lambda: af.multi_output_kernel(ngdlib.TwoLayerReLU(3, 4), _multi()["head"], _multi()["X"], "exact"), "DeepMLP"),
    ("reference.dense_multi_output_kernel: unknown variant",
     lambda: reference.dense_multi_output_kernel(_multi()["model"], _multi()["head"], _multi()["X"], "diag"), "variant"),
    ("reference.dense_multi_output_kernel: too many parameters for the dense reference",
     lambda: reference.dense_multi_output_kernel(DeepMLP((6, 80, 80), seed=1), torch.ones(2, 81, dtype=F64),
                                          ngdlib.sphere(5, 6, seed=0), "exact"), "tiny sizes"),
    ("approx_fisher.tri_coefficients: L is a float", lambda: af.tri_coefficients(3.0), "L (the number of layers)"),
    ("approx_fisher.tri_coefficients: L is a bool", lambda: af.tri_coefficients(True), "L (the number of layers)"),
    ("approx_fisher.isotropy: non-positive diagonal", lambda: af.isotropy(-torch.eye(3, dtype=F64)),
     "non-positive"),
    ("approx_fisher.predicted_alpha: n = 0", lambda: af.predicted_alpha(deep()["model"], "exact", 0), "n (the"),
    ("approx_fisher.predicted_alpha: n is a bool", lambda: af.predicted_alpha(deep()["model"], "exact", True),
     "n (the"),
    ("approx_fisher.predicted_alpha: unknown variant", lambda: af.predicted_alpha(deep()["model"], "diag", 5),
     "variant"),
    ("approx_fisher.predicted_alpha: model not a DeepMLP",
     lambda: af.predicted_alpha(ngdlib.TwoLayerReLU(3, 4), "exact", 5), "DeepMLP"),
    ("approx_fisher.predicted_alpha: hidden width below N (kfac)",
     lambda: af.predicted_alpha(_narrow_deep()[0], "kfac", 5), "hidden width"),
    ("approx_fisher.function_kernel: rho NaN", lambda: af.function_kernel(**_fk(), variant="exact", rho=NAN), "rho"),
    ("approx_fisher.function_kernel: rho negative", lambda: af.function_kernel(**_fk(), variant="unit_wise",
                                                                               rho=-1.0), "rho"),
    ("approx_fisher.function_kernel: rho for kfac", lambda: af.function_kernel(**_fk(), variant="kfac", rho=0.1),
     "pure pseudo-inverse"),
    ("approx_fisher.function_kernel: unknown variant", lambda: af.function_kernel(**_fk(), variant="diag"),
     "variant"),
    ("approx_fisher.function_kernel: singular mode unknown",
     lambda: af.function_kernel(**_fk(), variant="exact", singular="ignore"), "singular"),
    ("approx_fisher.function_kernel: narrow last layer (block_diag)",
     lambda: af.function_kernel(*_narrow_deep(), "block_diag"), ("must be nonsingular", COND)),
    ("approx_fisher.function_kernel: narrow last layer (tri_diag)",
     lambda: af.function_kernel(*_narrow_deep(), "tri_diag"), ("must be nonsingular", COND)),
    ("approx_fisher.function_kernel: duplicated input (exact)",
     lambda: af.function_kernel(*_dup_deep(), "exact"), ("full row rank", COND)),
    ("approx_fisher.function_kernel: unit_wise with M_0 + 1 < N",
     lambda: af.function_kernel(DeepMLP((3, 9), activation="tanh", seed=3), ngdlib.sphere(8, 3, seed=2),
                                "unit_wise"), ("input Gram", COND)),
    ("approx_fisher.function_kernel: model not a DeepMLP",
     lambda: af.function_kernel(ngdlib.TwoLayerReLU(6, 4), deep()["X"], "exact"), "DeepMLP"),
    ("approx_fisher.ngd_direction: narrow last layer (block_diag)",
     lambda: af.ngd_direction(*_narrow_deep(), deep()["r"], "block_diag"), ("must be nonsingular", COND)),
    ("approx_fisher.ngd_direction: duplicated input (exact)",
     lambda: af.ngd_direction(*_dup_deep(), torch.ones(6, dtype=F64), "exact"), ("full row rank", COND)),
    ("approx_fisher.ngd_direction: rho NaN", lambda: af.ngd_direction(**_fk(), r=deep()["r"], variant="exact",
                                                                      rho=NAN), "rho"),
    ("approx_fisher.linearized_prediction: eta NaN", lambda: af.linearized_prediction(**_lp(eta=NAN)), "eta"),
    ("approx_fisher.linearized_prediction: eta 0", lambda: af.linearized_prediction(**_lp(eta=0.0)), "eta"),
    ("approx_fisher.linearized_prediction: steps negative", lambda: af.linearized_prediction(**_lp(steps=-1)),
     "steps"),
    ("approx_fisher.linearized_prediction: steps is a float", lambda: af.linearized_prediction(**_lp(steps=2.0)),
     "steps"),
    ("approx_fisher.linearized_prediction: K_test without f0_test",
     lambda: af.linearized_prediction(**_lp(f0_test=None)), "torch.Tensor"),
    ("approx_fisher.ntk_test_prediction: eta NaN", lambda: af.ntk_test_prediction(**_ntp(eta=NAN)), "eta"),
    ("approx_fisher.ntk_test_prediction: eta negative", lambda: af.ntk_test_prediction(**_ntp(eta=-0.5)), "eta"),
    ("approx_fisher.ntk_test_prediction: t negative", lambda: af.ntk_test_prediction(**_ntp(t=-1)), "t must"),
    ("approx_fisher.ntk_test_prediction: duplicated input",
     lambda: af.ntk_test_prediction(**_ntp(X=_dup_deep()[1], y=torch.ones(6, dtype=F64))), ("full row rank", COND)),
    ("approx_fisher.FisherVariant.check_rho: rho NaN", lambda: af.VARIANTS["exact"].check_rho(NAN), "rho"),
    ("approx_fisher.FisherVariant.check_rho: damping for K-FAC", lambda: af.VARIANTS["kfac"].check_rho(0.1),
     "damping"),
    ("approx_fisher.train_ngd: eta NaN", lambda: af.train_ngd(**_tn(eta=NAN)), "eta"),
    ("approx_fisher.train_ngd: eta 0", lambda: af.train_ngd(**_tn(eta=0.0)), "eta"),
    ("approx_fisher.train_ngd: steps negative", lambda: af.train_ngd(**_tn(steps=-2)), "steps"),
    ("approx_fisher.train_ngd: diverge_factor NaN", lambda: af.train_ngd(**_tn(), diverge_factor=NAN),
     "diverge_factor"),
    ("approx_fisher.train_ngd: unknown variant", lambda: af.train_ngd(**_tn(variant="full")), "variant"),
    ("approx_fisher.train_ngd: narrow last layer (block_diag)",
     lambda: af.train_ngd(*_narrow_deep(), torch.ones(5, dtype=F64), "block_diag", 0.5, 1),
     ("must be nonsingular", COND)),
    ("reference.deep_fisher_approx: too big",
     lambda: reference.deep_fisher_approx(DeepMLP((50, 200)), ngdlib.sphere(3, 50), "exact"), "tiny sizes"),
    ("reference.deep_fisher_approx: unknown variant",
     lambda: reference.deep_fisher_approx(deep()["model"], deep()["X"], "diag"), "variant"),
    ("reference.deep_kernel: unknown variant", lambda: reference.deep_kernel(deep()["model"], deep()["X"], "diag"),
     "variant"),
    ("reference.deep_kernel: rho NaN", lambda: reference.deep_kernel(deep()["model"], deep()["X"], "exact", rho=NAN),
     "rho"),
    ("reference.deep_kernel: rtol out of range",
     lambda: reference.deep_kernel(deep()["model"], deep()["X"], "exact", rtol=2.0), "rtol"),
    ("reference.deep_kernel: too big", lambda: reference.deep_kernel(DeepMLP((50, 200)), ngdlib.sphere(3, 50), "exact"),
     "tiny sizes"),
    ("reference.deep_jacobian: not a DeepMLP", lambda: reference.deep_jacobian(core()["model"], core()["X"]),
     "DeepMLP"),
    ("reference.deep_forward: wrong number of blocks",
     lambda: reference.deep_forward(deep()["model"], deep()["X"], blocks=[torch.ones(7, 7, dtype=F64)]), "blocks"),
    ("reference.deep_grid: seed not an int", lambda: reference.deep_grid(1.5), "seed"),
    ("reference.deep_grid: N not between the input dimensions", lambda: reference.deep_grid(0, n=3, d_small=3),
     "d_small < n"),
    ("reference.grid_rows: kernel not callable", lambda: reference.grid_rows(0, "exact", None, lambda c: None),
     "callables"),
    ("reference.grid_table: no rows", lambda: reference.grid_table([]), "non-empty"),
    ("reference.dense_kernel: rho NaN", lambda: reference.dense_kernel(**_fk(), variant="exact", rho=NAN), "rho"),
    ("reference.dense_kernel: rho negative", lambda: reference.dense_kernel(**_fk(), variant="exact", rho=-1.0), "rho"),
    ("reference.dense_direction: rho NaN", lambda: reference.dense_direction(**_fk(), r=deep()["r"], variant="exact",
                                                                          rho=NAN), "rho"),
    ("approx_fisher.limiting_factors: tanh", lambda: af.limiting_factors(
        DeepMLP((6, 7, 8), activation="tanh"), deep()["X"]), "ReLU only"),
    ("approx_fisher.limiting_function_kernel: unit_wise",
     lambda: af.limiting_function_kernel(**_fk(), variant="unit_wise"), "unit_wise"),
    ("approx_fisher.limiting_function_kernel: tri_diag with singular T",
     lambda: af.limiting_function_kernel(DeepMLP((6, 7, 7, 7, 8)), deep()["X"], "tri_diag"), "3s + 2"),
    ("approx_fisher.limiting_function_kernel: duplicated input",
     lambda: af.limiting_function_kernel(*_dup_deep(), "exact"), COND),
    # ---------------------------------------------------------------- overflow: finite inputs, non-finite result
    ("models.TwoLayerReLU.forward: output overflows", lambda: _huge_two_layer(), "overflowed"),
    ("models.DeepMLP.ntk: inputs of size 1e200 overflow", lambda: deep()["model"].ntk(1e200 * deep()["X"]),
     "overflowed"),
    ("models.DeepMLP.signals: parameters of size 1e300 overflow", lambda: _huge_deep().signals(deep()["X"]),
     "overflowed"),
    ("approx_fisher.function_kernel: kfac factors overflow",
     lambda: af.function_kernel(deep()["model"], 1e200 * deep()["X"], "kfac"), "overflowed"),
    ("approx_fisher.limiting_factors: inputs of size 1e200 overflow",
     lambda: af.limiting_factors(deep()["model"], 1e200 * deep()["X"]), "overflowed"),
    ("approx_fisher.isotropy: K + K^T overflows", lambda: af.isotropy(torch.full((3, 3), 1e308, dtype=F64)),
     "overflowed"),
    ("approx_fisher.linearized_prediction: eta so large that (1 - eta lambda)^t overflows",
     lambda: af.linearized_prediction(**_lp(eta=1e300)), "overflowed"),
    ("models.end_to_end: product overflows", lambda: dl.end_to_end([torch.full((3, 3), 1e200, dtype=F64)] * 2),
     "overflowed"),
    ("deep_linear.loss: product overflows", lambda: dl.loss([torch.full((3, 3), 1e200, dtype=F64)] * 2,
                                                            torch.ones(3, 3, dtype=F64)), "overflowed"),
    ("deep_linear.balancedness: gaps overflow", lambda: dl.balancedness([torch.full((3, 3), 1e200, dtype=F64)] * 2),
     "overflowed"),
    ("deep_linear.arora_theorem1_eta_bound: ||Phi||^((6N-4)/N) overflows",
     lambda: dl.arora_theorem1_eta_bound(1e-3, 1e300, 50), "overflowed"),
    ("chatterjee.toy_alpha: |x0|^2 overflows", lambda: ch.toy_alpha(torch.tensor([1e200, 0.0], dtype=F64), 1.0),
     "overflowed"),
    ("chatterjee.criterion_ratio: r^2 alpha overflows", lambda: ch.criterion_ratio(1e-300, 1e300, 1e300),
     "overflowed"),
    ("chatterjee.gradient_descent: f(x0) overflows",
     lambda: ch.gradient_descent(ch.toy_loss, torch.tensor([1e200, 1e200], dtype=F64), 0.1, 2), "not finite"),
    # ---------------------------------------------------------------- deep_linear
    ("models.check_layers: empty list", lambda: dl.check_layers([]), "non-empty"),
    ("models.check_layers: a single tensor, not a list", lambda: dl.check_layers(torch.eye(2, dtype=F64)),
     "non-empty list"),
    ("models.dims: layers on a dtype mix", lambda: dl.dims([torch.eye(2, dtype=F64), torch.eye(2)]),
     "must match"),
    ("deep_linear.gd_step: eta NaN", lambda: dl.gd_step(lin()["layers"], lin()["Phi"], NAN), "eta"),
    ("deep_linear.gd_step: eta 0", lambda: dl.gd_step(lin()["layers"], lin()["Phi"], 0.0), "eta"),
    ("deep_linear.train_gd: eta negative", lambda: dl.train_gd(lin()["layers"], lin()["Phi"], -0.1, 3), "eta"),
    ("deep_linear.train_gd: steps negative", lambda: dl.train_gd(lin()["layers"], lin()["Phi"], 0.1, -3), "steps"),
    ("deep_linear.train_gd: tol NaN", lambda: dl.train_gd(lin()["layers"], lin()["Phi"], 0.1, 3, tol=NAN), "tol"),
    ("deep_linear.train_gd: diverge_factor NaN",
     lambda: dl.train_gd(lin()["layers"], lin()["Phi"], 0.1, 3, diverge_factor=NAN), "diverge_factor"),
    ("deep_linear.gradient_flow: decreasing times",
     lambda: dl.gradient_flow(lin()["layers"], lin()["Phi"], [0.2, 0.1]), "increasing"),
    ("deep_linear.gradient_flow: NaN time", lambda: dl.gradient_flow(lin()["layers"], lin()["Phi"], [0.0, NAN]),
     "times"),
    ("deep_linear.gradient_flow: no times", lambda: dl.gradient_flow(lin()["layers"], lin()["Phi"], []), "times"),
    ("deep_linear.gradient_flow: rtol 0", lambda: dl.gradient_flow(lin()["layers"], lin()["Phi"], [0.1], rtol=0.0),
     "rtol"),
    ("deep_linear.balanced_init: hidden width too small", lambda: dl.balanced_init(lin()["Phi"], [1]),
     "condition (i)"),
    ("deep_linear.balanced_init: hidden_dims an int", lambda: dl.balanced_init(lin()["Phi"], 4), "hidden_dims"),
    ("deep_linear.balanced_init: hidden width a bool", lambda: dl.balanced_init(lin()["Phi"], [True]),
     "hidden width"),
    ("models.gaussian_init: one width only", lambda: dl.gaussian_init([3], 0.5), "at least two"),
    ("models.gaussian_init: negative width", lambda: dl.gaussian_init([3, -1], 0.5), "positive ints"),
    ("models.gaussian_init: std NaN", lambda: dl.gaussian_init([3, 2], NAN), "std"),
    ("models.gaussian_init: int dtype", lambda: dl.gaussian_init([3, 2], 0.5, dtype=torch.int64),
     "float32 or float64"),
    ("models.gaussian_init: unknown device", lambda: dl.gaussian_init([3, 2], 0.5, device="gpu"), "device"),
    # batched deep linear networks (chapters A-T2, A-GAUSS)
    ("models.check_layers: batched, 2-D layer", lambda: ngdlib.models.check_layers([lin()["W"]], batched=True),
     "3 dimension"),
    ("models.check_layers: batched, batch sizes differ",
     lambda: ngdlib.models.check_layers([torch.ones(2, 4, 3, dtype=F64), torch.ones(3, 2, 4, dtype=F64)], batched=True),
     "batch sizes"),
    ("models.check_layers: batched, shapes do not chain",
     lambda: ngdlib.models.check_layers([torch.ones(2, 4, 3, dtype=F64), torch.ones(2, 2, 3, dtype=F64)], batched=True),
     "do not chain"),
    ("deep_linear.balanced_init_batched: hidden width too small",
     lambda: dl.balanced_init_batched(torch.ones(2, 3, 5, dtype=F64), [2]), "condition (i)"),
    ("deep_linear.balanced_init_batched: 2-D A", lambda: dl.balanced_init_batched(lin()["Phi"], [4]),
     "3 dimension"),
    ("deep_linear.balancedness_batched: NaN entry",
     lambda: dl.balancedness_batched([torch.full((2, 4, 3), NAN, dtype=F64)]), "NaN"),
    ("deep_linear.train_gd_batched: eta negative",
     lambda: dl.train_gd_batched([W[None] for W in lin()["layers"]], lin()["Phi"], -0.1, 3), "eta"),
    ("deep_linear.train_gd_batched: Phi of the wrong shape",
     lambda: dl.train_gd_batched([W[None] for W in lin()["layers"]], lin()["Phi"].T, 0.1, 3), "d_N x d_0"),
    ("deep_linear.train_gd_batched: tol of the wrong length",
     lambda: dl.train_gd_batched([W[None] for W in lin()["layers"]], lin()["Phi"], 0.1, 3,
                                 tol=torch.zeros(2, dtype=F64)), "tol"),
    ("deep_linear.train_gd_batched: steps negative",
     lambda: dl.train_gd_batched([W[None] for W in lin()["layers"]], lin()["Phi"], 0.1, -1), "steps"),
    ("deep_linear.margin_probability: s zero", lambda: dl.margin_probability(0.0, 1.0, 20), "s (the init scale)"),
    ("deep_linear.margin_probability: d0 zero", lambda: dl.margin_probability(0.1, 1.0, 0), "d0"),
    ("deep_linear.margin_probability: kappa NaN", lambda: dl.margin_probability(0.1, 1.0, 20, NAN), "kappa"),
    ("deep_linear.arora_theorem1_iterations: eta c^p >= 1", lambda: dl.arora_theorem1_iterations(1.0, 0.1, 2.0, 1.0, 2),
     "0 < eta c"),
    ("deep_linear.arora_theorem1_iterations: eps negative", lambda: dl.arora_theorem1_iterations(1.0, -0.1, 0.1, 1.0, 2),
     "eps"),
    ("deep_linear.gaussian_gap_second_moment: width 0", lambda: dl.gaussian_gap_second_moment(3, 0, 3, 1.0),
     "d_mid"),
    ("deep_linear.gaussian_gap_second_moment: std NaN", lambda: dl.gaussian_gap_second_moment(3, 3, 3, NAN),
     "std"),
    ("data.whitened_data: n < d_in", lambda: ngdlib.data.whitened_data(3, 5, 1), "n >= d_in"),
    ("data.whitened_data: n = 1 < d_in", lambda: ngdlib.data.whitened_data(1, 2, 1), "n >= d_in"),
    ("data.whitened_data: noise NaN", lambda: ngdlib.data.whitened_data(10, 3, 2, noise=NAN), "noise"),
    ("data.whitened_data: d_out = 0", lambda: ngdlib.data.whitened_data(10, 3, 0), "d_out"),
    ("data.whitened_data: float16", lambda: ngdlib.data.whitened_data(10, 3, 2, dtype=torch.float16),
     "float32 or float64"),
    ("deep_linear.data_loss: X and Y row counts differ",
     lambda: dl.data_loss(lin()["layers"], lin()["X"], lin()["Y"][:-1]), "n x d_0"),
    ("deep_linear.sigma_min: 1-D", lambda: dl.sigma_min(torch.ones(3, dtype=F64)), "2 dimension"),
    ("deep_linear.deficiency_margin: shapes differ",
     lambda: dl.deficiency_margin(lin()["W"], lin()["Phi"].T), "same shape"),
    ("_linalg.psd_power: not PSD", lambda: _linalg.psd_power(-torch.eye(2, dtype=F64), 0.5),
     "positive semi-definite"),
    ("_linalg.psd_power: not symmetric", lambda: _linalg.psd_power(torch.tensor([[1.0, 2.0], [0.0, 1.0]],
                                                                                dtype=F64), 0.5), "symmetric"),
    ("_linalg.psd_power: p NaN", lambda: _linalg.psd_power(lin()["M"], NAN), "p"),
    ("_linalg.psd_power: negative power of a singular matrix",
     lambda: _linalg.psd_power(torch.diag(torch.tensor([1.0, 0.0], dtype=F64)), -0.5), COND),
    ("_linalg.rank_rtol: a list", lambda: _linalg.rank_rtol([[1.0]]), "float32 or float64 matrix"),
    ("_linalg.rank_rtol: float16", lambda: _linalg.rank_rtol(torch.eye(2, dtype=torch.float16)), "float32 or float64"),
    ("_linalg.max_trusted_cond: float16", lambda: _linalg.max_trusted_cond(torch.float16), "float32 or float64"),
    ("_linalg.psd_eigh_floor: not square", lambda: _linalg.psd_eigh_floor(torch.ones(2, 3, dtype=F64)), "square"),
    ("_linalg.pinv: NaN", lambda: _linalg.pinv(torch.full((2, 2), NAN, dtype=F64)), "NaN"),
    ("_linalg.pinv_psd: indefinite", lambda: _linalg.pinv_psd(torch.diag(torch.tensor([1.0, -1.0], dtype=F64))),
     "positive semi-definite"),
    ("_linalg.numerical_rank: 1-D", lambda: _linalg.numerical_rank(torch.ones(3, dtype=F64)), "2 dimension"),
    ("_linalg.psd_eigh: singular", lambda: _linalg.psd_eigh(torch.zeros(2, 2, dtype=F64), "G", "fix it"),
     ("G", "singular", "fix it")),
    ("_linalg.solve_psd: singular",
     lambda: _linalg.solve_psd(torch.zeros(2, 2, dtype=F64), torch.ones(2, dtype=F64), "G", "fix it"), ("G", COND)),
    ("_linalg.solve_psd_cholesky: indefinite",
     lambda: _linalg.solve_psd_cholesky(-torch.eye(2, dtype=F64), torch.ones(2, dtype=F64), "G", "fix it"),
     ("G", "fix it")),
    ("_linalg.pinv_gram: not square", lambda: _linalg.pinv_gram(torch.ones(2, 3, dtype=F64)), "square"),
    ("_linalg.pinv_gram: rank_cap negative", lambda: _linalg.pinv_gram(torch.eye(2, dtype=F64), rank_cap=-1),
     "rank_cap"),
    ("_linalg.gram_factor_eigh: 1-D", lambda: _linalg.gram_factor_eigh(torch.ones(3, dtype=F64)), "matrix"),
    ("_linalg.pinv_gram_factor: NaN", lambda: _linalg.pinv_gram_factor(torch.full((2, 3), NAN, dtype=F64)), "NaN"),
    ("_linalg.solve_psd_batched: singular member",
     lambda: _linalg.solve_psd_batched(torch.stack([torch.eye(2, dtype=F64), torch.zeros(2, 2, dtype=F64)]),
                                       torch.ones(2, 2, dtype=F64), "G", "fix it"), ("G", "batch index 1", COND)),
    ("_linalg.solve_psd_batched: batch shapes differ",
     lambda: _linalg.solve_psd_batched(torch.eye(2, dtype=F64).expand(3, 2, 2), torch.ones(2, 2, dtype=F64),
                                       "G", "fix it"), "batch"),
    ("_linalg.solve_shifted_psd_batched: shift 0",
     lambda: _linalg.solve_shifted_psd_batched(torch.eye(2, dtype=F64).expand(3, 2, 2), 0.0, torch.ones(3, 2, dtype=F64)),
     "shift"),
    ("_linalg.solve_checked: singular",
     lambda: _linalg.solve_checked(torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=F64), torch.ones(2, dtype=F64),
                                   "T", "fix it"), ("T", COND)),
    ("_linalg.check_full_column_rank: n < d",
     lambda: _linalg.check_full_column_rank(torch.ones(1, 2, dtype=F64), "Theorem 4"), ("Theorem 4", "rank")),
    ("deep_linear.balanced_velocity: depth 0", lambda: dl.balanced_velocity(lin()["W"], lin()["Phi"], 0), "depth N"),
    ("deep_linear.balanced_velocity: depth a float", lambda: dl.balanced_velocity(lin()["W"], lin()["Phi"], 2.0),
     "depth N"),
    ("deep_linear.arora_theorem1_delta_bound: depth 0", lambda: dl.arora_theorem1_delta_bound(0.1, 1.0, 0), "depth N"),
    ("deep_linear.arora_theorem1_delta_bound: margin NaN", lambda: dl.arora_theorem1_delta_bound(NAN, 1.0, 3),
     "deficiency margin"),
    ("deep_linear.arora_theorem1_delta_bound: constant 0", lambda: dl.arora_theorem1_delta_bound(0.1, 1.0, 3, constant=0.0),
     "constant"),
    ("deep_linear.arora_theorem1_delta_bound: Phi = 0", lambda: dl.arora_theorem1_delta_bound(0.1, torch.zeros(2, 2, dtype=F64),
                                                                                  3), "Phi"),
    ("deep_linear.arora_theorem1_eta_bound: margin 0", lambda: dl.arora_theorem1_eta_bound(0.0, 1.0, 3), "deficiency margin"),
    ("deep_linear.arora_theorem1_eta_bound: ||Phi|| negative", lambda: dl.arora_theorem1_eta_bound(0.1, -1.0, 3), "Phi"),
    ("deep_linear.arora_theorem1_eta_bound: constant negative",
     lambda: dl.arora_theorem1_eta_bound(0.1, 1.0, 3, constant=-6144.0), "constant"),
    ("deep_linear.arora_theorem1_rate: eta NaN", lambda: dl.arora_theorem1_rate(NAN, 0.1, 3), "eta"),
    ("deep_linear.arora_theorem1_rate: depth -1", lambda: dl.arora_theorem1_rate(0.1, 0.1, -1), "depth N"),
    ("deep_linear.flow_rate: margin negative", lambda: dl.flow_rate(-0.1, 3), "deficiency margin"),
    ("deep_linear.flow_rate: depth is a bool", lambda: dl.flow_rate(0.1, True), "depth N"),
    ("train.History.tensor: unknown series of train_gd",
     lambda: dl.train_gd(lin()["layers"], lin()["Phi"], 0.1, 2)[1].tensor("accuracy"), "series"),
    # ---------------------------------------------------------------- chatterjee
    ("chatterjee.grad_ratio: f not callable", lambda: ch.grad_ratio(3.0, cha()["pts"]), "callable"),
    ("chatterjee.grad_ratio: f negative", lambda: ch.grad_ratio(lambda x: -(x ** 2).sum(), cha()["pts"]),
     "non-negative"),
    ("chatterjee.grad_ratio: f returns a vector", lambda: ch.grad_ratio(lambda x: x ** 2, cha()["pts"]), "scalar"),
    ("chatterjee.grad_ratio: f returns NaN", lambda: ch.grad_ratio(lambda x: (x ** 2).sum() * NAN, cha()["pts"]),
     "finite"),
    ("chatterjee.sample_ball: r 0", lambda: ch.sample_ball(cha()["x0"], 0.0, 5), "radius"),
    ("chatterjee.sample_ball: k 0", lambda: ch.sample_ball(cha()["x0"], 1.0, 0), "k must"),
    ("chatterjee.sample_ball: k a bool", lambda: ch.sample_ball(cha()["x0"], 1.0, True), "k must"),
    ("chatterjee.sample_ball: seed a float", lambda: ch.sample_ball(cha()["x0"], 1.0, 3, seed=0.5), "seed"),
    ("chatterjee.sampled_ratio_min: r NaN", lambda: ch.sampled_ratio_min(ch.toy_loss, cha()["x0"], NAN), "radius"),
    ("chatterjee.sampled_ratio_min: f not callable", lambda: ch.sampled_ratio_min(None, cha()["x0"], 0.5, k=3),
     "callable"),
    ("chatterjee.toy_loss: point in R^3", lambda: ch.toy_loss(torch.ones(3, dtype=F64)), "R^2"),
    ("chatterjee.toy_alpha: point in R^3", lambda: ch.toy_alpha(torch.ones(3, dtype=F64), 1.0), "R^2"),
    ("chatterjee.toy_alpha: r negative", lambda: ch.toy_alpha(cha()["x0"], -1.0), "radius"),
    ("chatterjee.toy_hessian_bound: r Inf", lambda: ch.toy_hessian_bound(cha()["x0"], INF), "radius"),
    ("chatterjee.toy_hessian_bound: point in R^3", lambda: ch.toy_hessian_bound(torch.ones(3, dtype=F64), 1.0),
     "R^2"),
    ("chatterjee.criterion_ratio: r 0", lambda: ch.criterion_ratio(1.0, 0.0, 1.0), "radius"),
    ("chatterjee.criterion_ratio: f0 negative", lambda: ch.criterion_ratio(-1.0, 1.0, 1.0), "f(x0)"),
    ("chatterjee.criterion_ratio: alpha NaN", lambda: ch.criterion_ratio(1.0, 1.0, NAN), "alpha"),
    ("chatterjee.gd_certificate: eta negative", lambda: ch.gd_certificate(1.0, 1.0, 1.0, 1.0, -0.1), "eta"),
    ("chatterjee.gd_certificate: beta 0", lambda: ch.gd_certificate(1.0, 1.0, 1.0, 0.0, 0.1), "beta"),
    ("chatterjee.gradient_descent: eta NaN", lambda: ch.gradient_descent(ch.toy_loss, cha()["x0"], NAN, 3), "eta"),
    ("chatterjee.gradient_descent: steps negative", lambda: ch.gradient_descent(ch.toy_loss, cha()["x0"], 0.1, -1),
     "steps"),
    ("chatterjee.gradient_descent: tol NaN", lambda: ch.gradient_descent(ch.toy_loss, cha()["x0"], 0.1, 3, tol=NAN),
     "tol"),
    ("chatterjee.gradient_descent: f not callable", lambda: ch.gradient_descent("f", cha()["x0"], 0.1, 3),
     "callable"),
    ("train.History.tensor: unknown series of gradient_descent",
     lambda: ch.gradient_descent(ch.toy_loss, cha()["x0"], 0.001, 1)[1].tensor("accuracy"), "series"),
    ("models.FeedForward: d = 0", lambda: ch.FeedForward(0, [3]), "d >= 1"),
    ("models.FeedForward: widths an int", lambda: ch.FeedForward(4, 3), "widths"),
    ("models.FeedForward: width a bool", lambda: ch.FeedForward(4, [True]), "widths"),
    ("models.FeedForward: no hidden layer", lambda: ch.FeedForward(4, []), "hidden widths"),
    ("models.FeedForward: relu", lambda: ch.FeedForward(4, [3], "relu"), "smooth and strictly increasing"),
    ("models.FeedForward: scale NaN", lambda: ch.FeedForward(4, [3], scale=NAN), "scale"),
    ("models.FeedForward.positive_init: a_norm 0", lambda: cha()["net"].positive_init(a_norm=0.0), "a_norm"),
    ("models.FeedForward.positive_init: hidden_low NaN",
     lambda: ch.FeedForward(4, [3, 3]).positive_init(hidden_low=NAN), "hidden_low"),
    ("models.FeedForward.positive_init: hidden_low > hidden_high",
     lambda: ch.FeedForward(4, [3, 3]).positive_init(hidden_low=2.0, hidden_high=1.0), "hidden_low"),
    ("models.FeedForward.positive_init: int dtype", lambda: cha()["net"].positive_init(dtype=torch.int64),
     "float32 or float64"),
    ("models.FeedForward.positive_init: unknown device", lambda: cha()["net"].positive_init(device="gpu"),
     "device"),
    ("models.FeedForward.first_layer_backprop: W_1 != 0",
     lambda: cha()["net"].first_layer_backprop(torch.ones(cha()["net"].num_params, dtype=F64)), "W_1 = 0"),
    ("models.FeedForward.kernel_at_zero: W_1 != 0",
     lambda: cha()["net"].kernel_at_zero(torch.ones(cha()["net"].num_params, dtype=F64), cha()["X"]), "W_1 = 0"),
    ("chatterjee.alpha_lower_bound: r 0",
     lambda: ch.alpha_lower_bound(cha()["net"], cha()["theta"], cha()["X"], 0.0), "radius"),
    ("chatterjee.alpha_lower_bound: softplus",
     lambda: ch.alpha_lower_bound(ch.FeedForward(4, [3], "softplus"), cha()["theta"], cha()["X"], 0.1), "tanh"),
    ("chatterjee.hessian_bound: two hidden layers", lambda: ch.hessian_bound(ch.FeedForward(4, [3, 3]),
        ch.FeedForward(4, [3, 3]).positive_init(0), cha()["X"], cha()["y"], 0.1), "one hidden layer"),
    ("chatterjee.hessian_bound: r NaN",
     lambda: ch.hessian_bound(cha()["net"], cha()["theta"], cha()["X"], cha()["y"], NAN), "radius"),
    ("chatterjee.slope_floor: relu", lambda: ch.slope_floor("relu", 0.1), "activation"),
    ("chatterjee.slope_floor: zeta -1", lambda: ch.slope_floor("sigmoid", -1.0), "zeta"),
    ("chatterjee.slope_floor: zeta NaN", lambda: ch.slope_floor("softplus", NAN), "zeta"),
    ("chatterjee.full_kernel_at_zero: not a FeedForward", lambda: ch.full_kernel_at_zero(None, cha()["theta"],
                                                                                          cha()["X"]), "FeedForward"),
    ("chatterjee.full_kernel_at_zero: W_1 != 0", lambda: ch.full_kernel_at_zero(
        cha()["net"], torch.ones(cha()["net"].num_params, dtype=F64), cha()["X"]), "W_1 = 0"),
    ("chatterjee.alpha_lower_bound_shallow: two hidden layers", lambda: ch.alpha_lower_bound_shallow(
        ch.FeedForward(4, [3, 3]), ch.FeedForward(4, [3, 3]).positive_init(0), cha()["X"], 0.1), "one hidden layer"),
    ("chatterjee.alpha_lower_bound_shallow: r 0",
     lambda: ch.alpha_lower_bound_shallow(cha()["net"], cha()["theta"], cha()["X"], 0.0), "radius"),
    ("chatterjee.alpha_lower_bound_shallow: not a FeedForward",
     lambda: ch.alpha_lower_bound_shallow("net", cha()["theta"], cha()["X"], 0.1), "FeedForward"),
]


def _huge_two_layer():
    net = ngdlib.TwoLayerReLU(3, 4, seed=0)
    with torch.no_grad():
        net.W.fill_(1.5e308)
        net.a.fill_(1.0)
    return net(torch.full((1, 3), 3 ** -0.5, dtype=F64))


def _huge_deep():
    model = deep()["model"]
    model.set_blocks([1e300 * b for b in model.get_blocks()])
    return model


def _tr(**kw):
    a = core()
    return {"model": a["model"], "X": a["X"], "y": a["r"], **kw}


def _hist():
    return ngdlib.train(**_tr(), steps=1, progress=False)


def _fk():
    a = deep()
    return {"model": a["model"], "X": a["X"]}


def _lp(**kw):
    base = {"K_train": torch.eye(3, dtype=F64) + 0.1, "K_test": torch.ones(2, 3, dtype=F64),
            "f0_train": torch.zeros(3, dtype=F64), "f0_test": torch.zeros(2, dtype=F64),
            "y": torch.tensor([1.0, -1.0, 0.5], dtype=F64), "eta": 0.5, "steps": 3}
    return {**base, **kw}


def _ntp(**kw):
    a = deep()
    return {"model": a["model"], "X": a["X"], "y": torch.ones(5, dtype=F64), "X_test": a["Xt"], "eta": 0.5, "t": 2,
            **kw}


def _tn(**kw):
    a = deep()
    return {"model": a["model"], "X": a["X"], "y": a["r"], "variant": "exact", "eta": 0.5, "steps": 2, **kw}


def _jt():
    """core() plus a moved state (W, a) and the initial one, for ngdlib.joint."""
    a = core()
    W0, a0 = a["model"].W.detach().clone(), a["model"].a.clone()
    return {**a, "W": W0 + 0.1, "a": a0 * 0.9, "W0": W0, "a0": a0}


# ----------------------------------------------------------------------------------------------- joint, separation
SPECS += [
    S("joint.joint_gram", _jt, lambda a: jt.joint_gram(a["model"], a["X"], a["W"], a["a"]),
      X=_X_muts(), W=WITH_REF + [("short", "shapes")], a=WITH_REF + [("short", "shapes")]),
    S("joint.joint_direction", _jt, lambda a: jt.joint_direction(a["model"], a["X"], a["r"], a["W"], a["a"]),
      X=_X_muts(), r=_r_muts(6), W=WITH_REF + [("short", "shapes")], a=WITH_REF + [("short", "shapes")]),
    S("joint.joint_jacobian_change", _jt,
      lambda a: jt.joint_jacobian_change(a["model"], a["X"], a["W"], a["a"], a["W0"], a["a0"]),
      X=_X_muts(), W=WITH_REF + [("short", "shapes")], a0=WITH_REF + [("short", "shapes")]),
    S("joint.limiting_output_gram", core, lambda a: jt.limiting_output_gram(a["X"], 1.0), X=BASIC),
    S("joint.joint_limiting_gram", core, lambda a: jt.joint_limiting_gram(a["X"], 0.5), X=BASIC),
    S("joint.train_joint_ngd", _tr, lambda a: jt.train_joint_ngd(a["model"], a["X"], a["y"], 0.5, 2),
      X=_X_muts(), y=_r_muts(6)),
    S("separation.separation", core, lambda a: sep.separation(a["X"]), X=BASIC),
]
CASES += [
    ("joint.limiting_output_gram: nu negative", lambda: jt.limiting_output_gram(core()["X"], -1.0), "nu"),
    ("joint.limiting_output_gram: inputs not unit", lambda: jt.limiting_output_gram(2 * core()["X"], 1.0), "unit"),
    ("joint.train_joint_ngd: step size 0", lambda: jt.train_joint_ngd(**_tr(), eta=0.0), "step size"),
    ("joint.train_joint_ngd: steps negative", lambda: jt.train_joint_ngd(**_tr(), steps=-1), "steps"),
    ("joint.train_joint_ngd: width too small", lambda: jt.train_joint_ngd(
        ngdlib.TwoLayerReLU(3, 1, seed=1), core()["X"], core()["r"]), "Condition 1"),
    ("train.History.tensor: unknown series of train_joint_ngd",
     lambda: jt.train_joint_ngd(**_tr(), eta=0.5, steps=1).tensor("accuracy"), "series"),
    ("separation.separation: one input", lambda: sep.separation(core()["X"][:1]), "at least two"),
    ("separation.close_pair_data: delta 0", lambda: sep.close_pair_data(6, 3, 0.0), "separation delta"),
    ("separation.close_pair_data: delta above sqrt 2", lambda: sep.close_pair_data(6, 3, 2.0), "separation delta"),
    ("separation.close_pair_data: n = 1", lambda: sep.close_pair_data(1, 3, 0.1), "n >= 2"),
    ("separation.cap_data: d = 2", lambda: sep.cap_data(6, 2, 0.1), "d >= 3"),
    ("separation.cap_data: delta NaN", lambda: sep.cap_data(6, 3, NAN), "separation delta"),
    ("separation.pair_upper_bound: delta negative", lambda: sep.pair_upper_bound(-0.1), "separation delta"),
    ("separation.oymak_soltanolkotabi_bound: n = 1", lambda: sep.oymak_soltanolkotabi_bound(0.1, 1), "n must be"),
    ("separation.oymak_soltanolkotabi_bound: delta Inf", lambda: sep.oymak_soltanolkotabi_bound(INF, 5),
     "separation delta"),
]

ALL_ROWS = CASES + _generated()


# ======================================================================================================== n = 1 legal
def _n1_core():
    return core(n=1)


N1_OK = [
    ("curvature.ngd_direction: n = 1", lambda: cv.ngd_direction(**_n1_core())),
    ("curvature.gd_direction: n = 1", lambda: cv.gd_direction(**_n1_core())),
    ("curvature.gram_eigh: n = 1", lambda: cv.gram_eigh(_n1_core()["model"], _n1_core()["X"])),
    ("models.TwoLayerReLU.jacobian: n = 1", lambda: _n1_core()["model"].jacobian(_n1_core()["X"])),
    ("models.TwoLayerReLU: m = 1, d = 1", lambda: ngdlib.TwoLayerReLU(1, 1)(torch.ones(1, 1, dtype=F64))),
    ("kernels.limiting_gram: n = 1", lambda: ngdlib.limiting_gram(_n1_core()["X"])),
    ("data.sphere: n = 1, d = 1", lambda: ngdlib.sphere(1, 1)),
    ("train.train: n = 1", lambda: ngdlib.train(_n1_core()["model"], _n1_core()["X"], _n1_core()["r"], steps=2,
                                                progress=False).tensor("residual_norm")),
    ("reference.ngd_direction: n = 1", lambda: reference.ngd_direction(**_n1_core())),
    ("testing.fit_loglog_slope: two points", lambda: testing.fit_loglog_slope([1.0, 2.0], [1.0, 0.5])),
    ("testing.assert_within_se: scalars", lambda: testing.assert_within_se(1.0, 1.05, 0.1)),
    ("testing.assert_close: one entry", lambda: testing.assert_close(torch.ones(1, dtype=F64),
                                                                     torch.ones(1, dtype=F64))),
    ("models.DeepMLP.ntk: N = 1", lambda: deep(n=1)["model"].ntk(deep(n=1)["X"])),
    ("models.DeepMLP: a single layer (L = 1)", lambda: DeepMLP((4,))(ngdlib.sphere(2, 4))),
    ("approx_fisher.function_kernel: N = 1 (exact)", lambda: af.function_kernel(**_fk1(), variant="exact")),
    ("approx_fisher.function_kernel: N = 1 (kfac)", lambda: af.function_kernel(**_fk1(), variant="kfac")),
    ("approx_fisher.function_kernel: N = 1 (unit_wise)", lambda: af.function_kernel(**_fk1(), variant="unit_wise")),
    ("approx_fisher.ngd_direction: N = 1 (tri_diag)",
     lambda: af.ngd_direction(**_fk1(), r=torch.ones(1, dtype=F64), variant="tri_diag")),
    ("approx_fisher.isotropy: 1 x 1", lambda: af.isotropy(torch.full((1, 1), 2.0, dtype=F64))),
    ("approx_fisher.predicted_alpha: n = 1", lambda: af.predicted_alpha(deep()["model"], "kfac", 1)),
    ("approx_fisher.tri_coefficients: L = 1", lambda: af.tri_coefficients(1)),
    ("approx_fisher.linearized_prediction: N = 1",
     lambda: af.linearized_prediction(torch.ones(1, 1, dtype=F64), None, torch.zeros(1, dtype=F64), None,
                                      torch.ones(1, dtype=F64), 0.5, 2)[0]),
    ("approx_fisher.train_ngd: N = 1", lambda: af.train_ngd(**_fk1(), y=torch.ones(1, dtype=F64),
                                                            variant="block_diag", eta=0.5, steps=2).f_train),
    ("approx_fisher.limiting_function_kernel: N = 1", lambda: af.limiting_function_kernel(**_fk1(), variant="exact")),
    ("models.end_to_end: depth 1", lambda: dl.end_to_end([lin()["Phi"]])),
    ("deep_linear.balancedness: depth 1", lambda: dl.balancedness([lin()["Phi"]])),
    ("deep_linear.train_gd: depth 1", lambda: dl.train_gd([lin()["W"]], lin()["Phi"], 0.1, 3)[1].tensor("loss")),
    ("deep_linear.balanced_init: depth 1", lambda: dl.balanced_init(lin()["Phi"], [])),
    ("deep_linear.arora_theorem1_delta_bound: depth 1", lambda: dl.arora_theorem1_delta_bound(0.1, lin()["Phi"], 1)),
    ("data.whitened_data: n = 1, d_in = 1", lambda: ngdlib.data.whitened_data(1, 1, 1).Phi),
    ("deep_linear.data_loss: one sample", lambda: dl.data_loss([torch.ones(1, 1, dtype=F64)],
                                                               torch.ones(1, 1, dtype=F64),
                                                               torch.ones(1, 1, dtype=F64))),
    ("_linalg.psd_power: 1 x 1", lambda: _linalg.psd_power(torch.full((1, 1), 4.0, dtype=F64), -0.5)),
    ("chatterjee.grad_ratio: a single point", lambda: ch.grad_ratio(ch.toy_loss, cha()["x0"])),
    ("chatterjee.sample_ball: k = 1", lambda: ch.sample_ball(cha()["x0"], 1.0, 1)),
    ("models.FeedForward.loss: n = 1", lambda: cha()["net"].loss(cha()["theta"], cha()["X"][:1], cha()["y"][:1])),
    ("chatterjee.alpha_lower_bound: n = 1",
     lambda: ch.alpha_lower_bound(cha()["net"], cha()["theta"], cha()["X"][:1], 0.1)),
]


def _fk1():
    a = deep(n=1)
    return {"model": a["model"], "X": a["X"]}


# ======================================================================================================== the tests
@pytest.fixture(autouse=True)
def _records_to_tmp(tmp_path, monkeypatch):
    """A row of records.record that wrongly succeeded must not write into the book's records."""
    monkeypatch.setenv("NGDLIB_RECORDS", str(tmp_path))


def _words(w):
    return (w,) if isinstance(w, str) else tuple(w)


@pytest.mark.parametrize("call,words", [r[1:] for r in ALL_ROWS], ids=[r[0] for r in ALL_ROWS])
def test_bad_input_is_refused_by_name(call, words):
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    missing = [w for w in _words(words) if w not in msg]
    assert not missing, f"message does not name the violation ({missing}): {msg}"


def _finite(obj, path="result"):
    """Every tensor / float reachable from ``obj`` is finite (lists, tuples, dicts, dataclasses)."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point():
            assert bool(torch.isfinite(obj).all()), f"{path} contains NaN or Inf"
    elif isinstance(obj, float):
        assert math.isfinite(obj), f"{path} = {obj}"
    elif isinstance(obj, (list, tuple)):
        for i, o in enumerate(obj):
            _finite(o, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for k, o in obj.items():
            _finite(o, f"{path}.{k}")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            _finite(getattr(obj, f.name), f"{path}.{f.name}")


@pytest.mark.parametrize("spec", SPECS, ids=[s[0] for s in SPECS])
def test_valid_calls_are_finite(spec):
    """The unmutated call of every spec works and returns only finite numbers (so each row isolates one defect)."""
    _, make, call, _ = spec
    _finite(call(make()))


@pytest.mark.parametrize("call", [r[1] for r in N1_OK], ids=[r[0] for r in N1_OK])
def test_n_equals_one_works_where_legal(call):
    _finite(call())


def test_nan_and_failed_checks_stay_loud_in_the_testing_helpers():
    """The testing helpers report a NaN actual / estimate as a failed check (AssertionError), by design."""
    with pytest.raises(AssertionError):
        testing.assert_close(torch.tensor([NAN], dtype=F64), torch.ones(1, dtype=F64))
    with pytest.raises(AssertionError):
        testing.assert_within_se(torch.tensor([NAN], dtype=F64), 1.0, 0.1)


def test_toy_loss_still_works_under_torch_func():
    """toy_loss refuses NaN for plain tensors but must stay usable under torch.func (vmap inside hessian)."""
    H = torch.func.hessian(ch.toy_loss)(torch.tensor([1.0, 2.0], dtype=F64))
    assert torch.isfinite(H).all()


# ---------------------------------------------------------------------------------------------- CUDA-only rows
CUDA_CASES = [
    ("curvature.ngd_direction: X on CUDA, model on CPU",
     lambda: cv.ngd_direction(core()["model"], core()["X"].cuda(), core()["r"].cuda()), "cuda"),
    ("models.DeepMLP.jvp: V on CUDA, model on CPU",
     lambda: deep()["model"].jvp(deep()["X"], [b.cuda() for b in deep()["model"].get_blocks()]), "cuda"),
    ("models.check_layers: layers on two devices",
     lambda: dl.check_layers([torch.eye(2, dtype=F64), torch.eye(2, dtype=F64).cuda()]), "must match"),
    ("models.DeepMLP.unit_jacobian: index past the width on CUDA",
     lambda: DeepMLP((6, 7, 8), device="cuda").unit_jacobian(ngdlib.sphere(5, 6, device="cuda"), 1, 99),
     "unit index"),
    ("models.TwoLayerReLU: device index past the GPUs", lambda: ngdlib.TwoLayerReLU(3, 4, device="cuda:99"),
     "does not exist"),
]


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA")
@pytest.mark.parametrize("call,words", [r[1:] for r in CUDA_CASES], ids=[r[0] for r in CUDA_CASES])
def test_cuda_bad_input_is_refused(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert all(w in str(info.value) for w in _words(words)), str(info.value)


@pytest.mark.skipif(HAS_CUDA, reason="CUDA present")
def test_cuda_device_without_gpu_is_refused():
    for make in (lambda: ngdlib.TwoLayerReLU(3, 4, device="cuda"), lambda: ngdlib.sphere(3, 3, device="cuda"),
                 lambda: DeepMLP((3, 4), device="cuda"), lambda: dl.gaussian_init([2, 2], 1.0, device="cuda")):
        with pytest.raises(ValueError, match="no CUDA"):
            make()


# ======================================================================================================== coverage
MODULES = ["models", "curvature", "kernels", "data", "train", "records", "testing", "reference",
           "approx_fisher", "deep_linear", "chatterjee", "joint", "separation", "_linalg"]

#: Public callables with no malformed input to refuse (or whose refusal would break their contract), and why.
EXEMPT = {
    "train.History.series_names": "no arguments",
    "train.History.append": "records what a trainer observes (called by the training loop; any keyword names a series)",
    "models.TwoLayerReLU.extra_repr": "no arguments (nn.Module repr)",
    "models.MLP.extra_repr": "no arguments (nn.Module repr)",
    "models.MLP.num_params": "no arguments",
    "models.DeepMLP.extra_repr": "no arguments (nn.Module repr)",
    "models.DeepMLP.dtype": "property, no arguments",
    "models.DeepMLP.device": "property, no arguments",
    "models.DeepMLP.d": "property, no arguments",
    "models.DeepMLP.hidden": "property, no arguments",
    "models.DeepMLP.layer_sizes": "no arguments",
    "models.DeepMLP.n_params": "no arguments",
    "models.DeepMLP.get_blocks": "no arguments",
    "models.Signals": "plain record built by DeepMLP.signals (validated there); not constructed by users",
    "models.Signals.n": "property, no arguments",
    "approx_fisher.TriDiag": "plain record returned by tri_coefficients (validated there)",
    "approx_fisher.Isotropy": "plain record returned by isotropy (validated there)",
    "approx_fisher.MultiSignals": "plain record returned by multi_output_signals (validated there)",
    "approx_fisher.MultiSignals.n": "property, no arguments",
    "approx_fisher.MultiSignals.c": "property, no arguments",
    "approx_fisher.MultiSignals.stacked": "no arguments (reshapes a validated record)",
    "data.WhitenedData": "plain record returned by whitened_data (validated there)",
    "deep_linear.BatchedRun": "plain record returned by train_gd_batched (validated there)",
    "models.FeedForward.depth": "property, no arguments",
    "train.History": "plain record returned by every trainer (validated there)",
    "train.History.steps": "property, no arguments",
    "records.records_dir": "no arguments (reads $NGDLIB_RECORDS / the working directory)",
    "records.environment": "no arguments",
    "testing.PrecisionWarning": "a warning class, raised by assert_close",
    "reference.DenseKernel": "plain record returned by deep_kernel (validated there)",
    "reference.DenseKernel.tolerance": "no arguments",
    "reference.DenseKernel.gap": "property, no arguments",
    "reference.GridCase": "plain record built by deep_grid (validated there)",
    "reference.GridCase.label": "property, no arguments",
    "reference.GridRow": "plain record built by grid_rows (validated there)",
    "reference.GridRow.tol": "property, no arguments",
    "reference.GridRow.compared": "property, no arguments",
}


#: The variant objects of approx_fisher: their methods take signals that the public functions (function_kernel,
#: ngd_direction, multi_output_kernel, predicted_alpha, limiting_function_kernel, which have rows) build and validate.
for _cls in ("FisherVariant", "Exact", "BlockDiagonal", "TriDiagonal", "KFAC", "UnitWise"):
    EXEMPT[f"approx_fisher.{_cls}"] = "a stateless variant object, constructed without arguments"
    for _m in ("kernel", "direction", "multi_output_kernel", "alpha", "limiting_kernel", "maps"):
        if hasattr(getattr(af, _cls), _m):
            EXEMPT[f"approx_fisher.{_cls}.{_m}"] = "called by the public functions of approx_fisher, which validate"
    if _cls != "FisherVariant":
        EXEMPT[f"approx_fisher.{_cls}.check_rho"] = "inherited from FisherVariant.check_rho (rows there)"


def _public_api():
    keys = set()
    for mod in MODULES:
        M = importlib.import_module(f"ngdlib.{mod}")
        for name in M.__all__:
            obj = getattr(M, name)
            if inspect.isclass(obj):
                keys.add(f"{mod}.{name}")
                # own and inherited members, from ngdlib classes only (e.g. inherited methods)
                for klass in obj.__mro__:
                    if not klass.__module__.startswith("ngdlib"):
                        continue
                    for k, v in vars(klass).items():
                        if not k.startswith("_") and (callable(v) or isinstance(v, property)):
                            keys.add(f"{mod}.{name}.{k}")
            elif callable(obj):
                keys.add(f"{mod}.{name}")
    return keys


def test_every_public_callable_is_covered():
    covered = {r[0].split(":")[0] for r in ALL_ROWS + N1_OK}
    api = _public_api()
    missing = sorted(api - covered - set(EXEMPT))
    assert not missing, f"public callables with no bad-input row and no exemption: {missing}"
    stale = sorted((covered | set(EXEMPT)) - api)
    assert not stale, f"rows or exemptions name callables that are not public API: {stale}"
