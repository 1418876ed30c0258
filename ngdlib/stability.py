r"""Condition 2 (stable Jacobian) of Zhang, Martens & Grosse (2019), measured.

Condition 2 (eq. 4) asks for a constant :math:`0 \le C < 1/2` such that every :math:`w` with
:math:`\|w - w(0)\|_2 \le R` satisfies

.. math::
    \|J(w) - J(0)\|_2 \le \frac{C}{3} \sqrt{\lambda_{\min}(G(0))},
    \qquad R = \frac{3\,\|y - u(0)\|_2}{\sqrt{\lambda_{\min}(G(0))}} .

For the two-layer ReLU net (eq. 8) the Jacobian depends on :math:`W` only through the activation pattern
:math:`P_{ir} = \mathbb 1\{w_r^\top x_i > 0\}`: :math:`J_i = m^{-1/2}(a \odot P_{i\cdot}) \otimes x_i`. For two weight
matrices, with :math:`\Delta = P(W) - P(W_0)`, the difference has the same Khatri-Rao structure and (:math:`a_r^2 = 1`)

.. math::
    (J(W) - J(W_0))(J(W) - J(W_0))^\top = (X X^\top) \odot (\Delta \Delta^\top) / m ,

an :math:`n \times n` matrix whose largest eigenvalue is :math:`\|J(W) - J(W_0)\|_2^2`. Nothing here forms J.

Along a step from :math:`W_k` to :math:`W_{k+1} = W_k + D` the network output is piecewise linear, so with the
*segment-averaged* Jacobian :math:`\bar J_k = \int_0^1 J(W_k + sD)\,ds` the identity
:math:`u(W_{k+1}) - u(W_k) = \bar J_k\,\mathrm{vec}(D)` is exact. :math:`\bar J_k` has the same structure with
:math:`P` replaced by the fraction :math:`\Phi_{ir} \in [0, 1]` of the segment on which neuron r is active on input i.
The reconstructed proof of Theorem 1 (book chapter Z-T1) needs only the *step constant*

.. math::
    c_k = \big\|(\bar J_k - J_k)\, J_k^+\big\|_2, \qquad
    (\bar J_k - J_k) J_k^\top = (X X^\top) \odot \big((\Phi - P_k) P_k^\top\big) / m, \quad J_k^+ = J_k^\top G_k^{-1},

and Condition 2 implies :math:`c_k \le 2C/(3 - C) \le C`.

Functions take ``(model, X, ...)``: the model supplies the output signs, the width and the reference weights
:math:`W_0` = ``model.W``; other weight matrices are passed as tensors shaped like ``model.W``. Device and dtype follow
the inputs.
"""
from __future__ import annotations

import math
import torch

from ._history import History, run_loop
from ._checks import check_int, check_positive, check_probability, check_tensor, check_vector
from ._linalg import max_trusted_cond, psd_eigh
from .curvature import validate
from .device import generator

__all__ = [
    "activation_pattern",
    "jacobian_distance",
    "segment_activation",
    "segment_jvp",
    "step_constant",
    "condition2_radius",
    "condition3_radius",
    "random_perturbation",
    "adversarial_perturbation",
    "adversarial_prediction",
    "random_prediction",
    "trace_ngd",
    "path_constant",
]


# ---------------------------------------------------------------------------------------------------- helpers
def _check_weights(model, W: torch.Tensor, name: str) -> torch.Tensor:
    check_tensor(name, W, ndim=2)
    if tuple(W.shape) != tuple(model.W.shape):
        raise ValueError(f"{name} must have the shape of the model's W, {tuple(model.W.shape)}, got {tuple(W.shape)}")
    if W.dtype != model.W.dtype or W.device != model.W.device:
        raise ValueError(f"{name} has dtype {W.dtype} on {W.device}, the model {model.W.dtype} on {model.W.device}; "
                         "they must match")
    return W.detach()


def activation_pattern(X: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    r"""The 0/1 matrix :math:`P_{ir} = \mathbb 1\{w_r^\top x_i > 0\}` (n x m) for any weights W (m x d).

    Uses relu'(0) = 0, the convention of :class:`~ngdlib.models.TwoLayerReLU`.
    """
    return (X @ W.T > 0).to(X.dtype)


def _khatri_rao_norm(X: torch.Tensor, A: torch.Tensor, m: int) -> float:
    r""":math:`\|K\|_2` for the n x (md) matrix K with rows :math:`m^{-1/2} (a \odot A_{i\cdot}) \otimes x_i`, via
    :math:`K K^\top = (X X^\top) \odot (A A^\top) / m` (n x n)."""
    M = (X @ X.T) * (A @ A.T) / m
    lmax = float(torch.linalg.eigvalsh(M)[-1])
    return math.sqrt(max(lmax, 0.0))


# ---------------------------------------------------------------------------------------------------- Jacobian change
def jacobian_distance(model, X: torch.Tensor, W: torch.Tensor, W_ref: torch.Tensor | None = None, *,
                      check_assumption1: bool = True) -> float:
    r"""Spectral norm :math:`\|J(W) - J(W_{\rm ref})\|_2` of the Jacobian change, eq. (4), in the dual form.

    .. math::
        \|J(W) - J(W_{\rm ref})\|_2^2 = \lambda_{\max}\big((X X^\top) \odot (\Delta\Delta^\top)\big) / m,
        \qquad \Delta = P(W) - P(W_{\rm ref}),

    with :math:`P` the 0/1 activation pattern (n x m). Cost :math:`2 n^2 m + O(n^3)`; J is never formed.

    Args:
        model: a :class:`~ngdlib.models.TwoLayerReLU` (supplies m and the reference weights).
        X: n x d inputs.
        W: weights (m x d) at which J is evaluated.
        W_ref: reference weights (default: ``model.W``, i.e. :math:`W(0)` when the model is at initialisation).
        check_assumption1: validate X against Assumption 1.
    """
    validate(model, X, None, check_assumption1)
    W = _check_weights(model, W, "W")
    W_ref = model.W.detach() if W_ref is None else _check_weights(model, W_ref, "W_ref")
    delta = activation_pattern(X, W) - activation_pattern(X, W_ref)
    return _khatri_rao_norm(X, delta, model.m)


def segment_activation(X: torch.Tensor, W_start: torch.Tensor, W_end: torch.Tensor) -> torch.Tensor:
    r"""Fraction :math:`\Phi_{ir} \in [0, 1]` of the segment :math:`s \in [0, 1]` on which
    :math:`(w_r + s\,\delta_r)^\top x_i > 0`, for :math:`\delta = W_{\rm end} - W_{\rm start}` (n x m).

    With :math:`z = w_r^\top x_i` and :math:`\dot z = \delta_r^\top x_i`:
    :math:`\Phi = \mathrm{clip}(1 + z/\dot z, 0, 1)`
    for :math:`\dot z > 0`, :math:`\mathrm{clip}(-z/\dot z, 0, 1)` for :math:`\dot z < 0`, and
    :math:`\mathbb 1\{z > 0\}` for :math:`\dot z = 0`. The segment-averaged Jacobian is
    :math:`\bar J_i = m^{-1/2} (a \odot \Phi_{i\cdot}) \otimes x_i`.
    """
    Z = X @ W_start.T
    dZ = X @ (W_end - W_start).T
    safe = torch.where(dZ == 0, torch.ones_like(dZ), dZ)
    up = torch.clamp(1 + Z / safe, 0.0, 1.0)
    down = torch.clamp(-Z / safe, 0.0, 1.0)
    still = (Z > 0).to(X.dtype)
    return torch.where(dZ > 0, up, torch.where(dZ < 0, down, still))


def segment_jvp(model, X: torch.Tensor, W_start: torch.Tensor, W_end: torch.Tensor) -> torch.Tensor:
    r""":math:`\bar J\,\mathrm{vec}(W_{\rm end} - W_{\rm start})` (n,), which equals
    :math:`u(W_{\rm end}) - u(W_{\rm start})` exactly (the output is piecewise linear along the segment)."""
    model.check_inputs(X)
    W_start = _check_weights(model, W_start, "W_start")
    W_end = _check_weights(model, W_end, "W_end")
    Phi = segment_activation(X, W_start, W_end)
    return ((X @ (W_end - W_start).T) * Phi * model.a).sum(dim=1) / math.sqrt(model.m)


def _step_constant(X, P_k, Phi, G_k_evals, G_k_evecs, m) -> float:
    B = (X @ X.T) * ((Phi - P_k) @ P_k.T) / m                # (Jbar - J_k) J_k^T   (n x n)
    Ginv = (G_k_evecs / G_k_evals) @ G_k_evecs.T
    return float(torch.linalg.matrix_norm(B @ Ginv, ord=2))


def step_constant(model, X: torch.Tensor, W_start: torch.Tensor, W_end: torch.Tensor, *,
                  check_assumption1: bool = True) -> float:
    r"""The step constant :math:`c = \|(\bar J - J)\,J^+\|_2` of the reconstructed proofs of Theorems 1 and 2.

    :math:`J = J(W_{\rm start})`, :math:`J^+ = J^\top G^{-1}`, :math:`\bar J` the Jacobian averaged over the segment to
    :math:`W_{\rm end}`. Computed as :math:`\|[(XX^\top) \odot ((\Phi - P)P^\top)/m]\, G^{-1}\|_2` (n x n).
    Raises ``ValueError`` when :math:`G(W_{\rm start})` is singular (Condition 1).
    """
    validate(model, X, None, check_assumption1)
    W_start = _check_weights(model, W_start, "W_start")
    W_end = _check_weights(model, W_end, "W_end")
    P = activation_pattern(X, W_start)
    G = (X @ X.T) * (P @ P.T) / model.m
    evals, evecs = psd_eigh(G, "Condition 1: the Gram matrix G = J J^T at the start of the step",
                            "the width is too small or two inputs are (nearly) parallel")
    return _step_constant(X, P, segment_activation(X, W_start, W_end), evals, evecs, model.m)


def condition2_radius(model, X: torch.Tensor, y: torch.Tensor, *, check_assumption1: bool = True) -> float:
    r"""The radius of Condition 2, :math:`R = 3\|y - u(0)\|_2 / \sqrt{\lambda_{\min}(G(0))}`, at the model's W.

    Raises ``ValueError`` (Condition 1) when :math:`G(0)` is singular: then no finite radius exists.

    Raises:
        ValueError: naming Condition 1 when G(0) is singular, or Assumption 1 (unless ``check_assumption1`` is
            False).
    """
    validate(model, X, None, check_assumption1)
    check_vector("y", y, X.shape[0], "one target per input")
    evals, _ = psd_eigh(model.gram(X), "Condition 1: the Gram matrix G(0)",
                        "the radius R of Condition 2 is infinite; increase the width or remove parallel inputs")
    with torch.no_grad():
        res = float(torch.linalg.vector_norm(y - model(X)))
    return 3.0 * res / math.sqrt(float(evals[0]))


# ---------------------------------------------------------------------------------------------------- perturbations
def _check_radius(radius) -> float:
    return check_positive("radius (the R of Condition 2)", radius)


def random_perturbation(model, radius: float, seed: int) -> torch.Tensor:
    r"""A perturbation D (m x d) of Frobenius norm ``radius`` in a uniformly random direction.

    Drawn as a standard Gaussian m x d matrix (float64, CPU generator ``seed``), rescaled to
    :math:`\|D\|_F = R`, then rounded and moved to the model's dtype and device. Use a ``seed`` different from the
    network's: the same seed draws the same Gaussians, so D would be a multiple of W and flip no pattern at all.

    Raises:
        ValueError: if radius (the R of Condition 2) is not a positive finite number or seed is not an int.
    """
    radius = _check_radius(radius)
    Z = torch.randn(*model.W.shape, generator=generator(seed), dtype=torch.float64)
    Z = Z * (radius / float(torch.linalg.vector_norm(Z)))
    return Z.to(dtype=model.W.dtype, device=model.W.device)


def adversarial_perturbation(model, X: torch.Tensor, radius: float, *, target: int | None = None,
                             overshoot: float = 1e-6, check_assumption1: bool = True):
    r"""A perturbation of norm at most ``radius`` that flips as many activation patterns of one input as it can.

    For the target input :math:`x_i`, the margins :math:`|z_r| = |w_r^\top x_i|` are sorted; the neurons with the
    smallest margins are moved by :math:`\delta_r = -(1 + \epsilon) z_r x_i` (cost :math:`(1+\epsilon)|z_r|`), which
    sends :math:`w_r^\top x_i` to :math:`-\epsilon z_r` and so flips :math:`\mathbb 1\{w_r^\top x_i > 0\}`. The longest
    prefix with :math:`(1+\epsilon)^2 \sum z_r^2 \le R^2` is flipped. This concentrates the whole change of J on row i
    (a single row of norm :math:`\sqrt{K/m}` after K flips), which makes :math:`\|J(W_0 + D) - J(W_0)\|_2` large: it
    is a lower bound on the supremum in Condition 2, not the supremum itself.

    Args:
        model: the network; ``model.W`` is the point :math:`W_0` that is perturbed.
        X: n x d inputs.
        radius: the budget :math:`R = \|D\|_F`.
        target: index of the input whose patterns are flipped; ``None`` picks the input with the most affordable flips.
        overshoot: :math:`\epsilon > 0`, how far past the kink a flipped pre-activation lands (relative).
        check_assumption1: validate X against Assumption 1 (unit rows, no two parallel) first.

    Returns:
        ``(D, info)`` with D shaped like W and ``info = {"target": i, "flipped": K, "norm": ||D||_F}``.

    Raises:
        ValueError: naming Assumption 1 (unless ``check_assumption1`` is False), the R of Condition 2 when radius is
            not positive, or when overshoot is not in (0, 1) or target is not an input index.
    """
    validate(model, X, None, check_assumption1)
    radius = _check_radius(radius)
    check_probability("overshoot", overshoot)
    n = X.shape[0]
    W0 = model.W.detach()
    Z = X @ W0.T                                                  # n x m pre-activations
    margins, order = Z.abs().sort(dim=1)
    cost = ((1 + overshoot) ** 2) * (margins ** 2).cumsum(dim=1)
    affordable = (cost <= radius ** 2).sum(dim=1)                 # flips each input could buy
    if target is None:
        i = int(affordable.argmax())
    else:
        if not (check_int("target", target, 0) < n):
            raise ValueError(f"target must be an input index in [0, {n}), got {target!r}")
        i = target
    K = int(affordable[i])
    sel = order[i, :K]
    D = torch.zeros_like(W0)
    D[sel] = -(1 + overshoot) * Z[i, sel][:, None] * X[i][None, :]
    return D, {"target": i, "flipped": K, "norm": float(torch.linalg.vector_norm(D))}


def _std_normal_cdf(q: float) -> float:
    return 0.5 * (1.0 + math.erf(q / math.sqrt(2.0)))


def _std_normal_pdf(q: float) -> float:
    return math.exp(-0.5 * q * q) / math.sqrt(2.0 * math.pi)


def adversarial_prediction(radius: float, nu: float, m: int, *, overshoot: float = 1e-6, exact: bool = True) -> float:
    r"""Predicted :math:`\|J(W_0 + D) - J(W_0)\|_2` of :func:`adversarial_perturbation` (reconstruction).

    The margins :math:`|w_r^\top x_i|` of one input are :math:`|\mathcal N(0, \nu^2)|`. Flipping every neuron with
    margin below :math:`t = q\nu` costs, in expectation, :math:`(1+\epsilon)^2 m \nu^2 [2\Phi(q) - 1 - 2q\varphi(q)]`
    and flips a fraction :math:`K/m = 2\Phi(q) - 1`; the changed row of J has norm :math:`\sqrt{K/m}`. ``exact=True``
    solves the budget equation for q (all neurons flip once :math:`(1+\epsilon)^2 m\nu^2 \le R^2`).
    ``exact=False`` gives the small-margin limit (density :math:`\sqrt{2/\pi}/\nu` at 0, k-th smallest margin
    :math:`k\nu\sqrt{\pi/2}/m`, cost :math:`\pi\nu^2 K^3 / (6 m^2)`):

    .. math::
        \|J - J(0)\|_2 \approx \Big(\frac{6 R^2}{\pi \nu^2 m}\Big)^{1/6} \propto m^{-1/6},

    the exponent of the paper's :math:`O(m^{-1/6})`; it is the large-m limit of the exact prediction.
    """
    radius = _check_radius(radius)
    nu, m = check_positive("nu (the init scale)", nu), check_int("m (the width)", m, 1)
    if not exact:
        return (6 * radius ** 2 / (math.pi * nu ** 2 * m)) ** (1 / 6)
    budget = radius ** 2 / ((1 + overshoot) ** 2 * m * nu ** 2)      # in units of m nu^2

    def cost(q):
        return 2 * _std_normal_cdf(q) - 1 - 2 * q * _std_normal_pdf(q)

    if budget >= 1.0:                                                   # E sum z^2 = m nu^2: everything flips
        return 1.0
    lo, hi = 0.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cost(mid) < budget else (lo, mid)
    return math.sqrt(2 * _std_normal_cdf(0.5 * (lo + hi)) - 1)


def random_prediction(radius: float, nu: float, m: int, d: int) -> float:
    r"""Root of the expected flip fraction under :func:`random_perturbation`, :math:`\sqrt{p}` (reconstruction).

    A random D of norm R moves each pre-activation :math:`z = w_r^\top x_i \sim \mathcal N(0, \nu^2)` by
    :math:`\delta \approx \mathcal N(0, \sigma^2)`, :math:`\sigma = R/\sqrt{md}`, independent of z; the sign flips with
    probability :math:`p = \arctan(\sigma/\nu)/\pi` (the angle between z and z + delta). Every row of
    :math:`J(W_0 + D) - J(W_0)` then has squared norm about p, so :math:`\|J - J(0)\|_2 \gtrsim \sqrt p`, and the
    cross terms between rows vanish as :math:`p \to 0`: asymptotically :math:`\|J - J(0)\|_2 \approx \sqrt p \propto
    m^{-1/4}`.
    """
    radius = _check_radius(radius)
    nu, m, d = check_positive("nu (the init scale)", nu), check_int("m (the width)", m, 1), check_int("d", d, 1)
    return math.sqrt(math.atan(radius / (nu * math.sqrt(m * d))) / math.pi)


# ---------------------------------------------------------------------------------------------------- traced NGD
def path_constant(trace: History, lambda_min_G0: float | None = None) -> float:
    r"""Condition 2's constant restricted to the path of a :func:`trace_ngd` run:
    :math:`3 \max_k \max(\|J(k) - J(0)\|, \|\bar J_k - J(0)\|) / \sqrt{\lambda_{\min}(G(0))}`.

    Args:
        trace: the :class:`~ngdlib.train.History` of :func:`trace_ngd`.
        lambda_min_G0: :math:`\lambda_{\min}(G(0))` (default: the trace's first ``lambda_min_gram``).

    Raises:
        ValueError: if ``trace`` is not a trace of :func:`trace_ngd` (no ``jacobian_change`` series).
    """
    if not isinstance(trace, History) or "jacobian_change" not in trace.series:
        raise ValueError("trace must be the History returned by ngdlib.stability.trace_ngd (with a jacobian_change "
                         f"series), got {type(trace).__name__}")
    lam = trace.lambda_min_gram[0] if lambda_min_G0 is None else lambda_min_G0
    worst = max(trace.jacobian_change + trace.segment_change)
    return 3.0 * worst / math.sqrt(lam)


def trace_ngd(model, X: torch.Tensor, y: torch.Tensor, eta: float = 1.0, steps: int = 10, *, direction=None,
              target: torch.Tensor | None = None, tol: float = 0.0, diverge_factor: float = 1e6,
              check_assumption1: bool = True, method: str = "ngd") -> History:
    r"""Run :math:`w \leftarrow w - \eta\, J^\top G^{-1} v(u, y)` in place and record every Condition-2 quantity.

    With the default :math:`v = u - y` this is NGD for squared loss (eq. 9). ``direction(u, y)`` gives other
    output-space vectors: the gradient of another loss (Gauss-Newton, Theorem 2) or that gradient divided by the loss
    curvature (Remark 2); see :mod:`ngdlib.losses`. Each step records the exact segment quantities of the
    module docstring (:math:`\bar J_k`, :math:`c_k`), so a run certifies its own Theorem-1 hypothesis.

    Recorded series of the returned :class:`~ngdlib.train.History`, per iterate k = 0 .. K (before step k+1):
    ``residual_norm`` :math:`\|u(k) - t\|_2` for the target t (monitored), ``dist_from_init``
    :math:`\|w(k) - w(0)\|_2`, ``lambda_min_gram`` :math:`\lambda_{\min}(G(k))`, ``jacobian_change``
    :math:`\|J(k) - J(0)\|_2`; per step k = 0 .. K-1 (from iterate k to k+1): ``segment_change``
    :math:`\|\bar J_k - J(0)\|_2`, ``step_constant`` :math:`c_k = \|(\bar J_k - J_k) J_k^+\|_2`,
    ``linearisation_error`` :math:`\|u(k+1) - u(k) - \bar J_k \Delta w\|_\infty` (absolute; zero up to round-off,
    a few machine epsilons times :math:`\|u\|_\infty`, because the identity is exact). :func:`path_constant` turns
    a trace into Condition 2's constant along the path.

    Args:
        model: a :class:`~ngdlib.models.TwoLayerReLU`, modified in place; its W at the call is :math:`w(0)`.
        X: inputs (n x d), unit rows (Assumption 1).
        y: targets (n,).
        eta: step size :math:`\eta > 0`.
        steps: number of steps.
        direction: callable ``(u, y) -> v`` (n,); default ``u - y``.
        target: the point t in output space whose distance :math:`\|u - t\|` is recorded (default y).
        tol: stop once the recorded residual is ``<= tol``.
        diverge_factor: stop (``diverged``) once the residual exceeds this times its start or is not finite.
        check_assumption1: validate X against Assumption 1 once, before the first step.
        method: the label recorded in ``history.method``.

    Raises:
        ValueError: (Condition 1) when :math:`G(0)` is singular or md < n; for a step size that is not a positive
            finite number, a negative step count, or inputs and targets that do not fit. A :math:`G(k)` that turns
            singular later stops the run with ``diverged = True`` and the reason in ``stop_reason`` (the divergence
            rule of :mod:`ngdlib.train`).

    Cost per step :math:`O(n^2 m + n m d + n^3)`; memory O(n m).
    """
    check_positive("eta (the step size)", eta)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    validate(model, X, None, check_assumption1)
    check_vector("y", y, X.shape[0], "one target per input")
    if y.dtype != X.dtype or y.device != X.device:
        raise ValueError(f"y has dtype {y.dtype} on {y.device}, X has {X.dtype} on {X.device}; they must match")
    t = y if target is None else check_vector("target", target, X.shape[0], "a point in output space")
    direction = (lambda u, yy: u - yy) if direction is None else direction
    eta = float(eta)
    m = model.m
    out = History(method=method, eta=eta, series={k: [] for k in (
        "residual_norm", "dist_from_init", "lambda_min_gram", "jacobian_change", "segment_change", "step_constant",
        "linearisation_error")})
    state = {}
    with torch.no_grad():
        W0 = model.W.detach().clone()
        P0 = activation_pattern(X, W0)
        XXt = X @ X.T

        def observe(k):
            u = model(X)
            rn = float(torch.linalg.vector_norm(u - t))
            W = model.W.detach()
            P = activation_pattern(X, W)
            G = XXt * (P @ P.T) / m
            if k == 0:   # Condition 1 at initialisation: refuse, naming it (later losses only stop the run)
                if m * model.d < X.shape[0]:
                    raise ValueError(f"Condition 1 cannot hold: J is n x md = {X.shape[0]} x {m * model.d} with "
                                     f"md < n; the width m = {m} is too small")
                evals, evecs = psd_eigh(G, "Condition 1: the Gram matrix G(0) = J(0) J(0)^T",
                                        "increase the width or remove (nearly) parallel inputs")
            else:
                evals, evecs = torch.linalg.eigh(G)
            state.update(u=u, W=W, P=P, evals=evals, evecs=evecs)
            return rn, {"dist_from_init": float(torch.linalg.vector_norm(W - W0)), "lambda_min_gram": float(evals[0]),
                        "jacobian_change": _khatri_rao_norm(X, P - P0, m)}

        def advance(k):
            u, W, P, evals, evecs = (state[key] for key in ("u", "W", "P", "evals", "evecs"))
            lmin, lmax = float(evals[0]), float(evals[-1])
            if not (lmin > 0 and lmax / lmin < max_trusted_cond(X.dtype)):
                return f"G(k) singular at iterate {k} (Condition 1 lost)"
            v = direction(u, y)
            z = evecs @ ((evecs.T @ v) / evals)
            D = (P.T @ (z[:, None] * X)) * (model.a[:, None] / math.sqrt(m))      # J^T z, m x d
            W_new = W - eta * D
            Phi = segment_activation(X, W, W_new)
            pred = ((X @ (W_new - W).T) * Phi * model.a).sum(dim=1) / math.sqrt(m)
            model.W.copy_(W_new)
            du = model(X) - u
            out.append(segment_change=_khatri_rao_norm(X, Phi - P0, m),
                       step_constant=_step_constant(X, P, Phi, evals, evecs, m),
                       linearisation_error=float((du - pred).abs().max()))
            return None

        run_loop(out, observe, advance, steps, tol=tol, diverge_factor=diverge_factor, monitor="residual_norm")
    return out


# ---------------------------------------------------------------------------------------------------- Condition 3
def condition3_radius(model, X: torch.Tensor, y: torch.Tensor, kappa: float, *,
                      check_assumption1: bool = True) -> float:
    r"""The radius of Condition 3 (Theorem 2),
    :math:`R_3 = \frac{3(1 + \kappa)\|y - u(0)\|_2}{2\sqrt{\lambda_{\min}(G(0))}}`.

    :math:`\kappa = L/\mu \ge 1` is the condition number of the loss. At :math:`\kappa = 1` this is Condition 2's
    radius (:func:`condition2_radius`), and in general :math:`(1 + \kappa)/2` times that radius (computed so).

    Raises:
        ValueError: if kappa = L/mu is not a finite number >= 1 (a condition number); naming Condition 1 when
            :math:`G(0)` is singular (no finite radius exists), or Assumption 1 (unless ``check_assumption1`` is
            False); or when X and y do not fit the model (as :func:`condition2_radius`).
    """
    if not (isinstance(kappa, (int, float)) and not isinstance(kappa, bool) and math.isfinite(kappa) and kappa >= 1):
        raise ValueError(f"kappa = L/mu must be a finite number >= 1 (a condition number), got {kappa!r}")
    return (1.0 + kappa) / 2.0 * condition2_radius(model, X, y, check_assumption1=check_assumption1)
