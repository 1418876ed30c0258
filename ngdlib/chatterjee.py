r"""Chatterjee's (2022) convergence criterion for gradient descent, and its analytic bounds for feedforward networks.

For a non-negative :math:`C^1` function f on :math:`\mathbb R^p`, a start :math:`x_0` and a radius r > 0 let

.. math::
    \alpha(x_0, r) = \inf\Big\{ \frac{|\nabla f(y)|^2}{f(y)} : y \in B(x_0, r),\ f(y) \ne 0 \Big\}.

**Criterion** {cite}`chatterjee2022convergence`: if :math:`4 f(x_0) < r^2 \alpha(x_0, r)`, gradient flow from
:math:`x_0` stays in the ball, :math:`f(x(t)) \le e^{-\alpha t} f(x_0)`, its path is shorter than
:math:`2\sqrt{f(x_0)/\alpha}`, and it converges to a zero of f. The book's gradient-descent version (ours, chapter
C-TOY; :func:`gd_certificate`): with :math:`\beta \ge \sup_B \|\nabla^2 f\|_2`, :math:`\eta\beta \le 1`,
:math:`\theta = 1 - \eta\beta/2` and :math:`4 f(x_0) < \theta^2 r^2 \alpha`, every iterate stays in the ball,
:math:`f(x_k) \le (1 - \theta\eta\alpha)^k f(x_0)` and the path is shorter than :math:`2\sqrt{f(x_0)/\alpha}/\theta`.

An infimum cannot be certified by sampling: :func:`sampled_ratio_min` only gives an upper bound on alpha (a
consistency check). Certificates use analytic lower bounds: :func:`toy_alpha` (exact) and
:func:`alpha_lower_bound`.

**The network** is :class:`ngdlib.models.FeedForward` (its equation, parameter order and the mean squared loss
:math:`f(\theta) = \frac1n \sum_i (u(x_i) - y_i)^2`, without a factor 1/2, are in its docstring); the analytic bounds
over a ball for it are :func:`alpha_lower_bound` and :func:`hessian_bound`.
"""
from __future__ import annotations

import math

import torch

from ._history import History, run_loop
from ._checks import (COMPUTE_DTYPES, check_finite_result, check_int, check_number, check_positive,
                      check_same_dtype_device, check_tensor, finite_float, is_transformed)
from .device import generator
from .models.feed_forward import FEEDFORWARD_ACTIVATIONS, FeedForward

__all__ = [
    "grad_ratio",
    "sampled_ratio_min",
    "sample_ball",
    "toy_loss",
    "toy_alpha",
    "toy_hessian_bound",
    "criterion_ratio",
    "gd_certificate",
    "gradient_descent",
    "alpha_lower_bound",
    "hessian_bound",
    "slope_floor",
    "full_kernel_at_zero",
    "alpha_lower_bound_shallow",
]

#: max |tanh''(z)| = 4 / (3 sqrt 3), attained at tanh(z) = 1/sqrt(3).
_TANH2_MAX = 4.0 / (3.0 * math.sqrt(3.0))


def _point(name, x) -> torch.Tensor:
    check_tensor(name, x, ndim=1)
    return x


def _callable(f) -> None:
    if not callable(f):
        raise ValueError(f"f must be a callable taking a length-p tensor and returning a non-negative scalar, "
                         f"got {f!r}")


def _toy_point(name, x) -> torch.Tensor:
    _point(name, x)
    if x.shape[0] != 2:
        raise ValueError(f"the toy problem lives in R^2, got {name} of length {x.shape[0]}")
    return x


# ----------------------------------------------------------------------------------------------------------------
# the ratio |grad f|^2 / f
# ----------------------------------------------------------------------------------------------------------------
def _value_and_grad(f, x):
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        v = f(x)
        if not (isinstance(v, torch.Tensor) and v.numel() == 1):
            raise ValueError("f must return a scalar tensor")
        (g,) = torch.autograd.grad(v.reshape(()), x)
    return v.detach().reshape(()), g.detach()


def grad_ratio(f, points: torch.Tensor) -> torch.Tensor:
    """:math:`|\\nabla f(x)|^2 / f(x)` at each row x of ``points`` (k x p), gradients by autograd.

    Args:
        f: a callable taking a length-p tensor and returning a non-negative scalar tensor.
        points: k x p (or a single length-p point).

    Returns:
        A length-k tensor; NaN where f(x) = 0 exactly (the infimum defining alpha excludes zeros of f).
        A ``ValueError`` if f is negative or not finite somewhere (the criterion is for non-negative f).

    Raises:
        ValueError: if f is not callable, the points are not a finite float k x p matrix, f is negative or not
            finite at a point (Chatterjee's f >= 0), or the ratio overflows.
    """
    _callable(f)
    single = isinstance(points, torch.Tensor) and points.ndim == 1
    pts = points[None, :] if single else points
    check_tensor("points", pts, ndim=2)
    out = torch.empty(pts.shape[0], dtype=pts.dtype, device=pts.device)
    for i in range(pts.shape[0]):
        v, g = _value_and_grad(f, pts[i])
        if not bool(torch.isfinite(v)) or float(v) < 0:
            raise ValueError(f"f must be non-negative and finite (Chatterjee's setting), got f = {float(v)!r} at "
                             f"point {i}")
        out[i] = (g ** 2).sum() / v if float(v) > 0 else float("nan")
    if bool(torch.isinf(out).any()):
        raise ValueError("|grad f|^2 / f overflowed to Inf although f and the points are finite (rescale f)")
    return out[0] if single else out


def sample_ball(x0: torch.Tensor, r: float, k: int, seed: int = 0) -> torch.Tensor:
    """k points drawn uniformly from the closed ball :math:`B(x_0, r)` (k x p): Gaussian direction times
    :math:`r U^{1/p}`, drawn in float64 on the CPU, then cast and moved like ``x0``.

    Raises:
        ValueError: if x0 is not a finite float vector, r is not a positive finite number or k is not a positive
            int.
    """
    _point("x0", x0)
    r = check_positive("r (the radius)", r)
    check_int("k", k, 1)
    p = x0.numel()
    g = generator(seed)
    Z = torch.randn(k, p, generator=g, dtype=torch.float64)
    Z = Z / torch.linalg.vector_norm(Z, dim=1, keepdim=True)
    R = r * torch.rand(k, 1, generator=g, dtype=torch.float64) ** (1.0 / p)
    return x0[None, :] + (R * Z).to(dtype=x0.dtype, device=x0.device)


def sampled_ratio_min(f, x0: torch.Tensor, r: float, k: int = 1000, seed: int = 0, extra=None) -> float:
    """Smallest :math:`|\\nabla f|^2/f` over k uniform samples of :math:`B(x_0, r)` (plus the rows of ``extra``,
    e.g. a trajectory). An UPPER bound on :math:`\\alpha(x_0, r)`, never a certificate: use it as a consistency check
    against an analytic lower bound.

    Raises:
        ValueError: if x0 is not a finite vector, r is not positive, k is not a positive int, extra does not have
            x0's dimension, or f is negative or not finite at a sample.
    """
    _callable(f)
    pts = sample_ball(x0, r, k, seed)
    if extra is not None:
        check_tensor("extra", extra, ndim=2)
        if extra.shape[1] != x0.numel():
            raise ValueError(f"extra must have p = {x0.numel()} columns (points of the same space as x0), "
                             f"got shape {tuple(extra.shape)}")
        check_same_dtype_device("extra", extra, "x0", x0)
        inside = torch.linalg.vector_norm(extra - x0[None, :], dim=1) <= r
        pts = torch.cat([pts, extra[inside].to(dtype=pts.dtype, device=pts.device)])
    vals = grad_ratio(f, pts)
    vals = vals[~torch.isnan(vals)]
    return float(vals.min()) if vals.numel() else float("nan")


# ----------------------------------------------------------------------------------------------------------------
# the toy problem f(x) = (x1 x2 - 1)^2
# ----------------------------------------------------------------------------------------------------------------
def toy_loss(x: torch.Tensor) -> torch.Tensor:
    """The toy :math:`f(x) = (x_1 x_2 - 1)^2` on :math:`\\mathbb R^2` (last dimension of size 2).

    >>> import torch
    >>> float(toy_loss(torch.tensor([2.0, 0.5], dtype=torch.float64)))
    0.0

    Raises:
        ValueError: if x is not a float32 / float64 tensor whose last dimension has size 2.
    """
    if not isinstance(x, torch.Tensor) or x.ndim == 0 or x.shape[-1] != 2:
        raise ValueError("toy_loss takes points of R^2 (a tensor whose last dimension has size 2)")
    if is_transformed(x):   # under torch.func (e.g. vmap inside hessian): static checks only
        if x.dtype not in COMPUTE_DTYPES:
            raise ValueError(f"x must be a floating-point tensor in float32 or float64, got dtype {x.dtype}")
    else:
        check_tensor("x", x)
    return (x[..., 0] * x[..., 1] - 1) ** 2


def toy_alpha(x0: torch.Tensor, r: float) -> float:
    """Exact :math:`\\alpha(x_0, r)` for the toy: :math:`|\\nabla f|^2/f = 4|x|^2` wherever f != 0, so the
    infimum over the ball is :math:`4\\,\\max(|x_0| - r, 0)^2` (the ball's closest point to the origin).

    >>> import torch
    >>> toy_alpha(torch.tensor([3.0, 4.0], dtype=torch.float64), 1.0)
    64.0

    Raises:
        ValueError: if x0 is not a point of R^2 or r is not a positive finite number.
    """
    _point("x0", x0)
    if x0.numel() != 2:
        raise ValueError(f"the toy problem lives in R^2, got x0 of length {x0.numel()}")
    r = check_positive("r (the radius)", r)
    return finite_float("alpha(x0, r)", lambda: 4.0 * max(float(torch.linalg.vector_norm(x0)) - r, 0.0) ** 2)


def toy_hessian_bound(x0: torch.Tensor, r: float) -> float:
    """:math:`\\beta = 3(|x_0| + r)^2 + 2 \\ge \\sup_{B(x_0, r)} \\|\\nabla^2 f\\|_2` for the toy.

    From :math:`\\nabla^2 f = 2 (x_2, x_1)^\\top (x_2, x_1) + 2(x_1 x_2 - 1) \\begin{pmatrix}0&1\\\\1&0\\end{pmatrix}`:
    norm at most :math:`2|x|^2 + 2(|x|^2/2 + 1)`.

    Raises:
        ValueError: if x0 is not a point of R^2 or r is not a positive finite number.
    """
    _toy_point("x0", x0)
    r = check_positive("r (the radius)", r)
    return finite_float("the Hessian bound beta", lambda: 3.0 * (float(torch.linalg.vector_norm(x0)) + r) ** 2 + 2.0)


# ----------------------------------------------------------------------------------------------------------------
# the criterion and its gradient-descent version
# ----------------------------------------------------------------------------------------------------------------
def criterion_ratio(f0: float, r: float, alpha: float) -> float:
    """:math:`r^2 \\alpha / (4 f(x_0))`: Chatterjee's criterion :math:`4 f(x_0) < r^2 \\alpha(x_0, r)` holds iff
    this is > 1 (``inf`` when f(x_0) = 0: the start is already a global minimum).

    Raises:
        ValueError: if f0 is negative or r, alpha are not positive finite numbers.
    """
    f0 = check_positive("f(x0)", f0, allow_zero=True)
    r = check_positive("r (the radius)", r)
    alpha = check_positive("alpha", alpha, allow_zero=True)
    return float("inf") if f0 == 0 else finite_float("the criterion ratio", lambda: r * r * alpha / (4.0 * f0))


def gd_certificate(f0: float, r: float, alpha: float, beta: float, eta: float) -> dict:
    """The book's gradient-descent version of the criterion (a reconstruction; chapter C-TOY).

    Hypotheses: :math:`\\alpha \\le \\alpha(x_0, r)`, :math:`\\beta \\ge \\sup_{B(x_0, r)} \\|\\nabla^2 f\\|_2`,
    :math:`\\eta\\beta \\le 1`, and :math:`4 f(x_0) < \\theta^2 r^2 \\alpha` with :math:`\\theta = 1 - \\eta\\beta/2`.
    Conclusions: the iterates :math:`x_{k+1} = x_k - \\eta\\nabla f(x_k)` stay in the ball,
    :math:`f(x_k) \\le (1 - \\theta\\eta\\alpha)^k f(x_0)`, and :math:`\\sum_k |x_{k+1} - x_k| \\le
    2\\sqrt{f(x_0)/\\alpha}/\\theta`.

    Returns a dict with ``theta``, ``holds`` (both hypotheses on eta and the criterion), ``rate``
    (:math:`1 - \\theta\\eta\\alpha`), ``path_bound`` and ``criterion`` (:math:`\\theta^2 r^2\\alpha/(4 f_0)`).

    Raises:
        ValueError: if f0 is negative or r, alpha, beta, eta are not positive finite numbers.
    """
    f0 = check_positive("f(x0)", f0, allow_zero=True)
    r = check_positive("r (the radius)", r)
    alpha = check_positive("alpha", alpha, allow_zero=True)
    beta = check_positive("beta (the Hessian bound)", beta)
    eta = check_positive("eta (the step size)", eta)
    theta = 1.0 - eta * beta / 2.0
    crit = float("inf") if f0 == 0 else theta ** 2 * r * r * alpha / (4.0 * f0) if theta > 0 else 0.0
    holds = eta * beta <= 1.0 and crit > 1.0
    path = 2.0 * math.sqrt(f0 / alpha) / theta if alpha > 0 and theta > 0 else float("inf")
    check_finite_result("the certificate's rate 1 - theta eta alpha", 1.0 - theta * eta * alpha)
    if f0 > 0:
        check_finite_result("the certificate's criterion", crit)
    return {"theta": theta, "holds": holds, "rate": 1.0 - theta * eta * alpha, "path_bound": path,
            "criterion": crit}


def gradient_descent(f, x0: torch.Tensor, eta: float, steps: int, *, tol: float = 0.0, diverge_factor: float = 1e6,
                     keep_path: bool = False):
    """Plain gradient descent :math:`x_{k+1} = x_k - \\eta \\nabla f(x_k)` (autograd).

    Returns ``(x_final, history)``: the last iterate and a :class:`~ngdlib.train.History` with the series, per iterate
    k = 0..K: ``f`` :math:`f(x_k)` (monitored), ``grad_norm`` :math:`|\\nabla f(x_k)|`, ``dist`` :math:`|x_k - x_0|`,
    ``path`` :math:`\\sum_{i<k} |x_{i+1} - x_i|`; with ``keep_path`` also the attribute ``xs``, the iterates as a
    (K+1) x p float64 CPU tensor. Stops after ``steps`` steps, once :math:`f \\le` ``tol``, or by the divergence rule
    of :mod:`ngdlib.train` (``history.diverged``) once f is not finite or exceeds ``diverge_factor`` times
    :math:`f(x_0)`; ``x_final`` is then the diverged iterate.

    Raises:
        ValueError: if f is not callable, x0 is not a finite vector, eta is not a positive finite number, steps is
            negative, tol is NaN, or :math:`f(x_0)` is not finite.
    """
    _callable(f)
    _point("x0", x0)
    eta = check_positive("eta (the step size)", eta)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    check_number("tol (the early-stopping value of f)", tol, low=0.0, allow_inf=True)
    check_number("diverge_factor", diverge_factor, low=0.0, low_open=True, allow_inf=True)
    hist = History(method="gd", eta=eta, series={k: [] for k in ("f", "grad_norm", "dist", "path")})
    state = {"x": x0.detach().clone(), "path": 0.0}
    xs = [state["x"].to("cpu", torch.float64)] if keep_path else None

    def observe(k):
        x = state["x"]
        v, g = _value_and_grad(f, x)
        state["g"], state["gn"] = g, float(torch.linalg.vector_norm(g))
        return float(v), {"grad_norm": state["gn"], "dist": float(torch.linalg.vector_norm(x - x0)),
                          "path": state["path"]}

    def advance(k):
        state["x"] = state["x"] - eta * state["g"]
        state["path"] += eta * state["gn"]
        if keep_path:
            xs.append(state["x"].to("cpu", torch.float64))

    run_loop(hist, observe, advance, steps, tol=tol, diverge_factor=diverge_factor, monitor="f")
    if keep_path:
        hist.xs = torch.stack(xs[: hist.steps + 1])
    return state["x"], hist


# ----------------------------------------------------------------------------------------------------------------
# analytic bounds over a ball for the feedforward network (tanh)
# ----------------------------------------------------------------------------------------------------------------
def _tanh_only(net, what):
    if net.activation != "tanh":
        raise ValueError(f"{what} is derived for tanh (sigma(0) = 0, |sigma(z)| <= |z|, sigma' = sech^2 "
                         f"decreasing in |z|); got activation {net.activation!r}")

def alpha_lower_bound(net: FeedForward, theta0: torch.Tensor, X: torch.Tensor, r: float) -> float:
    """An analytic lower bound on :math:`\\alpha(\\theta_0, r)` for the mean-squared loss (tanh, :math:`W_1 = 0`
    at :math:`\\theta_0`; derived in the book's chapter C-SCALE):

    .. math::
        \\alpha(\\theta_0, r) \\ge \\frac4n \\lambda_{\\min}(X X^\\top)\\, \\lambda^2 (|a_0| - r)_+^2
        \\prod_{l=1}^L \\mathrm{sech}^4(\\zeta_l) \\prod_{l=2}^L (s_l - r)_+^2,

    with :math:`s_l` the :math:`m_l`-th singular value of :math:`W_l^0` (0 if :math:`m_l > m_{l-1}`),
    :math:`\\zeta_1 = r \\max_i |x_i|` and :math:`\\zeta_l = (\\|W_l^0\\|_2 + r)\\min(\\zeta_{l-1},
    \\sqrt{m_{l-1}})` (bounds on :math:`|z_l|` over the ball). Positive only when d >= n (linearly independent
    inputs), :math:`|a_0| > r` and :math:`s_l > r`.
    """
    _tanh_only(net, "alpha_lower_bound")
    net._require_w1_zero(theta0)
    net._check_X(X, theta0)
    r = check_positive("r (the radius)", r)
    n = X.shape[0]
    lam_min = max(float(torch.linalg.eigvalsh(X @ X.T)[0]), 0.0) if n <= net.d else 0.0
    p = net.unflatten(theta0)
    rho = float(torch.linalg.vector_norm(X, dim=1).max())
    zeta = r * rho
    factor = (1.0 / math.cosh(zeta)) ** 4
    for l in range(2, net.depth + 1):
        W0 = p[l - 1]
        sv = torch.linalg.svdvals(W0)
        s_l = float(sv[-1]) if W0.shape[0] <= W0.shape[1] else 0.0
        zeta = (float(sv[0]) + r) * min(zeta, math.sqrt(net.widths[l - 2]))
        factor *= max(s_l - r, 0.0) ** 2 * (1.0 / math.cosh(zeta)) ** 4
    a_norm = float(torch.linalg.vector_norm(p[-1]))
    return finite_float("the lower bound on alpha",
                        lambda: 4.0 / n * lam_min * net.scale ** 2 * max(a_norm - r, 0.0) ** 2 * factor)

def hessian_bound(net: FeedForward, theta0: torch.Tensor, X: torch.Tensor, y: torch.Tensor, r: float) -> float:
    """An analytic :math:`\\beta \\ge \\sup_{B(\\theta_0, r)} \\|\\nabla^2 f\\|_2` for one hidden tanh layer
    (L = 1) and :math:`W_1 = 0` at :math:`\\theta_0` (derived in chapter C-SCALE):

    .. math::
        \\beta = \\frac2n \\sum_i \\Big[\\lambda^2 \\rho^2 A^2 + \\big(\\lambda A \\rho r + |y_i|\\big)\\,
        \\lambda \\rho \\big((|a_0|_\\infty + r)\\, c_2 \\rho + 1\\big)\\Big],

    :math:`A = |a_0| + r`, :math:`\\rho = \\max_i |x_i|`, :math:`c_2 = \\max|\\tanh''| = 4/(3\\sqrt3)`.

    Raises:
        ValueError: if a hypothesis of the derivation fails (the activation is not tanh, the net has more than one
            hidden layer, or :math:`W_1 \\ne 0` at theta0), if theta0, X (n x d) and y (length n) are not finite
            tensors of the net's shapes with one dtype and device, if r (the radius) is not positive, or if beta
            overflows.
    """
    _tanh_only(net, "hessian_bound")
    if net.depth != 1:
        raise ValueError(f"hessian_bound is derived for one hidden layer (L = 1), got L = {net.depth}")
    net._require_w1_zero(theta0)
    net._check_X(X, theta0)
    net._check_y(y, X)
    r = check_positive("r (the radius)", r)
    n = X.shape[0]
    a0 = net.unflatten(theta0)[-1]
    A = float(torch.linalg.vector_norm(a0)) + r
    a_inf = float(a0.abs().max()) + r
    rho = float(torch.linalg.vector_norm(X, dim=1).max())
    lam = net.scale
    hess_u = lam * rho * (a_inf * _TANH2_MAX * rho + 1.0)
    return finite_float("the Hessian bound beta", lambda: 2.0 / n * sum(
        lam ** 2 * rho ** 2 * A ** 2 + (lam * A * rho * r + abs(float(yi))) * hess_u for yi in y))


# ----------------------------------------------------------------------------------------------------------------
# activations with sigma(0) != 0 (chapter C-ACT): the whole kernel at W_1 = 0, and alpha for one hidden layer
# ----------------------------------------------------------------------------------------------------------------
def slope_floor(activation: str, zeta: float) -> float:
    """:math:`\\min_{|t| \\le \\zeta} \\sigma'(t)` for one of ``ngdlib.models.FEEDFORWARD_ACTIVATIONS``.

    tanh and sigmoid have an even derivative that decreases in :math:`|t|` (:math:`\\mathrm{sech}^2(\\zeta)`,
    :math:`s(\\zeta)(1 - s(\\zeta))`); softplus has the increasing derivative :math:`s(t)` (the sigmoid), so its minimum
    is :math:`s(-\\zeta)`.

    >>> round(slope_floor("softplus", 0.0), 12)
    0.5

    Raises:
        ValueError: if activation is not one of ``FEEDFORWARD_ACTIVATIONS``, or zeta (the largest absolute
            pre-activation) is negative or not finite.
    """
    if activation not in FEEDFORWARD_ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(FEEDFORWARD_ACTIVATIONS)}, got {activation!r}")
    zeta = check_positive("zeta (the largest |pre-activation|)", zeta, allow_zero=True)
    if activation == "tanh":
        return finite_float("the slope floor", lambda: 1.0 / math.cosh(zeta) ** 2 if zeta < 350 else 0.0)
    s = 1.0 / (1.0 + math.exp(-zeta)) if zeta < 700 else 1.0
    return finite_float("the slope floor", lambda: s * (1.0 - s) if activation == "sigmoid" else 1.0 - s)


def full_kernel_at_zero(net: FeedForward, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """The whole :math:`J J^\\top` (n x n) at :math:`W_1 = 0`, without forming J (chapter C-ACT):

    .. math::
        J J^\\top = |v|^2 X X^\\top + \\kappa\\, \\mathbf 1 \\mathbf 1^\\top, \\qquad
        \\kappa = \\sum_{l=2}^L |e_l|^2 |h_{l-1}|^2 + \\lambda^2 |h_L|^2,

    with the hidden representations :math:`h_l` and backpropagated vectors :math:`e_l = \\partial u/\\partial z_l`,
    the same for every input when :math:`W_1 = 0` (:meth:`FeedForward.first_layer_backprop`). The blocks of
    :math:`W_2, \\dots, W_L` and a have identical rows, :math:`\\mathrm{vec}(e_l h_{l-1}^\\top)` and
    :math:`\\lambda h_L`; for tanh (:math:`\\sigma(0) = 0`) they vanish and :math:`\\kappa = 0`.

    Raises:
        ValueError: if net is not a ``FeedForward`` network, the identity's hypothesis :math:`W_1 = 0` fails at theta,
            theta is not a finite vector of the net's parameters, X is not a finite n x d matrix of theta's dtype and
            device, or :math:`J J^\\top` overflows.
    """
    if not isinstance(net, FeedForward):
        raise ValueError(f"net must be a FeedForward network, got {type(net).__name__}")
    K1 = net.kernel_at_zero(theta, X)
    p = net.unflatten(theta)
    z = torch.zeros(net.widths[0], dtype=theta.dtype, device=theta.device)
    zs, hs = [z], [net.sigma(z)]
    for W in p[1:-1]:
        z = W @ hs[-1]
        zs.append(z)
        hs.append(net.sigma(z))
    e = net.scale * p[-1] * net._dsigma(zs[-1])
    kappa = net.scale ** 2 * (hs[-1] @ hs[-1])
    for l in range(net.depth - 1, 0, -1):       # e is e_{l+1} (0-based zs[l]); the block W_{l+1} has rows e h_l^T
        kappa = kappa + (e @ e) * (hs[l - 1] @ hs[l - 1])
        e = net._dsigma(zs[l - 1]) * (p[l].T @ e)
    n = X.shape[0]
    return check_finite_result("J J^T at W_1 = 0", K1 + kappa * torch.ones(n, n, dtype=K1.dtype, device=K1.device))


def alpha_lower_bound_shallow(net: FeedForward, theta0: torch.Tensor, X: torch.Tensor, r: float) -> float:
    """An analytic lower bound on :math:`\\alpha(\\theta_0, r)` for one hidden layer (L = 1), any activation of
    ``ngdlib.models.FEEDFORWARD_ACTIVATIONS``, :math:`W_1 = 0` at :math:`\\theta_0` (chapter C-ACT):

    .. math::
        \\alpha(\\theta_0, r) \\ge \\frac4n \\lambda_{\\min}(X X^\\top)\\, \\lambda^2\\, m_\\sigma(r\\rho)^2\\,
        (|a_0| - r)_+^2, \\qquad m_\\sigma(\\zeta) = \\min_{|t| \\le \\zeta} \\sigma'(t),\\ \\rho = \\max_i |x_i|.

    In the ball :math:`|W_1|_F \\le r`, so every pre-activation has :math:`|z| \\le r\\rho`, and
    :math:`|a| \\ge |a_0| - r`; Schur's bound on :math:`(XX^\\top) \\odot (\\Delta\\Delta^\\top)` does the rest. For
    tanh it equals :func:`alpha_lower_bound` at L = 1. The start need not have zero output.

    Raises:
        ValueError: if a hypothesis of the derivation fails (net is not a ``FeedForward`` network with one hidden
            layer, L = 1, or :math:`W_1 \\ne 0` at theta0), theta0 is not a finite vector of the net's parameters, X is
            not a finite n x d matrix of theta0's dtype and device, r (the radius) is not positive, or the bound
            overflows.
    """
    if not isinstance(net, FeedForward):
        raise ValueError(f"net must be a FeedForward network, got {type(net).__name__}")
    if net.depth != 1:
        raise ValueError(f"alpha_lower_bound_shallow is derived for one hidden layer (L = 1), got L = {net.depth}")
    net._require_w1_zero(theta0)
    net._check_X(X, theta0)
    r = check_positive("r (the radius)", r)
    n = X.shape[0]
    lam_min = max(float(torch.linalg.eigvalsh(X @ X.T)[0]), 0.0) if n <= net.d else 0.0
    rho = float(torch.linalg.vector_norm(X, dim=1).max())
    m = slope_floor(net.activation, r * rho)
    a_norm = float(torch.linalg.vector_norm(net.unflatten(theta0)[-1]))
    return finite_float("the lower bound on alpha",
                        lambda: 4.0 / n * lam_min * net.scale ** 2 * m ** 2 * max(a_norm - r, 0.0) ** 2)
