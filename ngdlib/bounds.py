r"""The bounds of Zhang, Martens & Grosse (2019), one function each, named after the result and its equation.

Every function returns exactly what the printed statement demands (step sizes, rates, widths), so a chapter can put
"what the theorem demands" next to "what is observed". Where the paper leaves a constant unspecified (the
:math:`\Omega(\cdot)` of Theorem 3) the function takes it as an argument with default 1 and says so; where the
appendix is missing and the bound is our reconstruction (Condition 1's width) the docstring says so.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_int, check_positive, check_probability, check_tensor

__all__ = [
    "condition1_width",
    "condition1_width_hoeffding",
    "condition2_threshold",
    "condition2_constant",
    "zmg_theorem1_max_step",
    "zmg_theorem1_rate",
    "zmg_theorem2_max_step",
    "zmg_theorem2_rate",
    "zmg_theorem3_width",
    "gd_max_stable_step",
    "gd_optimal_step",
]


def _check_C(C, upper: float, what: str) -> float:
    C = check_positive("C", C, allow_zero=True)
    if not C < upper:
        raise ValueError(f"{what} needs 0 <= C < {upper:.6g}, got C = {C:.6g}: the stability constant is too large "
                         "(the network is not wide enough for the hypothesis to hold)")
    return C


def _check_n_delta_eps(n, delta, eps) -> None:
    check_int("n", n, 1)
    check_probability("delta (failure probability)", delta)
    check_probability("eps (relative deficit of lambda_min)", eps)


def condition1_width(lambda0: float, lambda_max_XXt: float, n: int, delta: float, eps: float = 0.25) -> int:
    r"""Width above which :math:`\lambda_{\min}(G(0)) \ge (1 - \epsilon)\lambda_0` with probability :math:`1 - \delta`.

    Reconstruction (the paper's Appendix D.1 is not available; the paper cites the matrix concentration
    inequalities of Tropp 2015).
    :math:`G(0) = \sum_r A_r / m` with independent PSD summands
    :math:`A_r = (X X^\top) \odot (p_r p_r^\top)`, :math:`p_r = \mathbb 1\{X w_r > 0\}`, whose mean is
    :math:`G^\infty` and whose norm is at most :math:`\lambda_{\max}(X X^\top)` (a principal submatrix of
    :math:`XX^\top`). The matrix Chernoff bound (Tropp 2015, Thm. 5.1.1) gives

    .. math::
        \Pr\{\lambda_{\min}(G(0)) \le (1-\epsilon)\lambda_0\} \le
        n \exp\!\Big(-\frac{m \lambda_0}{\lambda_{\max}(XX^\top)}
        \,\big(\epsilon + (1-\epsilon)\log(1-\epsilon)\big)\Big),

    which is at most :math:`\delta` for
    :math:`m \ge \lambda_{\max}(XX^\top)\log(n/\delta) / (\lambda_0 (\epsilon + (1-\epsilon)\log(1-\epsilon)))`.
    With :math:`\epsilon = 1/4` this is the width for :math:`\lambda_{\min}(G(0)) \ge 3\lambda_0/4`.

    Raises:
        ValueError: if lambda0 or lambda_max_XXt is not a positive finite number, n is not a positive int, or delta,
            eps are not in (0, 1).
    """
    lambda0 = check_positive("lambda0", lambda0)
    lmax = check_positive("lambda_max_XXt", lambda_max_XXt)
    _check_n_delta_eps(n, delta, eps)
    rate = eps + (1 - eps) * math.log(1 - eps)
    return math.ceil(lmax * math.log(n / delta) / (lambda0 * rate))


def condition1_width_hoeffding(lambda0: float, XXt_fro: float, n: int, delta: float, eps: float = 0.25) -> int:
    r"""The entry-wise route to the same guarantee as :func:`condition1_width` (the style of Du et al. 2019, Lemma 3.1).

    Each :math:`G_{ij}(0)` is :math:`x_i^\top x_j` times a mean of m Bernoulli variables, so Hoeffding's inequality
    and a union bound over the :math:`n(n+1)/2` entries give :math:`|G_{ij}(0) - G^\infty_{ij}| \le |x_i^\top x_j|\, t` for
    all i, j with probability :math:`1 - n(n+1)e^{-2mt^2}`; then
    :math:`\|G(0) - G^\infty\|_2 \le \|G(0) - G^\infty\|_F \le t\,\|XX^\top\|_F \le \epsilon\lambda_0` for

    .. math::
        m \ge \frac{\|XX^\top\|_F^2 \log(n(n+1)/\delta)}{2\,\epsilon^2 \lambda_0^2} .

    Cruder than the matrix Chernoff width (it pays :math:`\|XX^\top\|_F^2 \approx n^2/d` instead of
    :math:`\lambda_{\max}(XX^\top)` and :math:`\lambda_0^{-2}` instead of :math:`\lambda_0^{-1}`).

    Raises:
        ValueError: if lambda0 or XXt_fro is not a positive finite number, n is not a positive int, or delta, eps
            are not in (0, 1).
    """
    lambda0 = check_positive("lambda0", lambda0)
    fro = check_positive("XXt_fro", XXt_fro)
    _check_n_delta_eps(n, delta, eps)
    return math.ceil(fro ** 2 * math.log(n * (n + 1) / delta) / (2 * eps ** 2 * lambda0 ** 2))


def condition2_threshold(lambda_min_G0: float, C: float) -> float:
    r"""The largest Jacobian change Condition 2 allows, eq. (4): :math:`\frac{C}{3}\sqrt{\lambda_{\min}(G(0))}`.

    Raises:
        ValueError: if C is negative or lambda_min_G0 is not positive (Condition 1 fails).
    """
    return check_positive("C", C, allow_zero=True) / 3.0 * math.sqrt(check_positive("lambda_min_G0", lambda_min_G0))


def condition2_constant(jacobian_change: float, lambda_min_G0: float) -> float:
    r"""Eq. (4) solved for C: :math:`C = 3\|J - J(0)\|_2 / \sqrt{\lambda_{\min}(G(0))}` (Condition 2 needs C < 1/2).

    Raises:
        ValueError: if jacobian_change is negative or lambda_min_G0 is not positive (Condition 1 fails).
    """
    return 3.0 * check_positive("jacobian_change", jacobian_change, allow_zero=True) / math.sqrt(
        check_positive("lambda_min_G0", lambda_min_G0))


def zmg_theorem1_max_step(C: float) -> float:
    r"""Theorem 1's step-size bound :math:`\eta \le (1 - 2C)/(1 + C)^2`, for Condition 2's :math:`0 \le C < 1/2`.

    The reconstructed proof (chapter Z-T1) shows the same formula with C replaced by the step constant
    :math:`c_k = \|(\bar J_k - J_k)J_k^+\|_2` gives :math:`\|u(k+1) - y\|^2 \le (1-\eta)\|u(k) - y\|^2`.

    Raises:
        ValueError: naming Condition 2 when C is not in [0, 1/2).
    """
    C = _check_C(C, 0.5, "Theorem 1 (Condition 2)")
    return (1 - 2 * C) / (1 + C) ** 2


def zmg_theorem1_rate(eta: float) -> float:
    r"""Theorem 1's per-step factor for the *squared* residual, eq. (5): :math:`\|u(k) - y\|^2 \le (1-\eta)^k
    \|u(0) - y\|^2`. Meaningful for :math:`0 < \eta \le 1`.

    Raises:
        ValueError: if eta is not in (0, 1] (eq. 5's factor 1 - eta is a contraction only there).
    """
    eta = check_positive("eta", eta)
    if eta > 1:
        raise ValueError(f"Theorem 1's rate 1 - eta needs 0 < eta <= 1 (eq. 5), got eta = {eta}")
    return 1.0 - eta


def zmg_theorem2_max_step(mu: float, L: float, C: float) -> float:
    r"""Theorem 2's step-size bound :math:`\eta \le \frac{2}{\mu + L}\,\frac{1 - (1 + \kappa)C}{(1 + C)^2}`,
    :math:`\kappa = L/\mu`, for Condition 3's :math:`0 \le C < 1/(1 + \kappa)`.

    Raises:
        ValueError: if mu, L are not positive with L >= mu, or C is not in Condition 3's range [0, 1/(1 + kappa)).
    """
    mu, L = check_positive("mu", mu), check_positive("L", L)
    if L < mu:
        raise ValueError(f"the smoothness L must be >= the strong convexity mu, got mu = {mu}, L = {L}")
    kappa = L / mu
    C = _check_C(C, 1 / (1 + kappa), f"Theorem 2 (Condition 3, kappa = {kappa:.4g})")
    return 2 / (mu + L) * (1 - (1 + kappa) * C) / (1 + C) ** 2


def zmg_theorem2_rate(eta: float, mu: float, L: float) -> float:
    r"""Theorem 2's per-step factor for the squared residual, eq. (7): :math:`1 - 2\eta\mu L/(\mu + L)`.

    Raises:
        ValueError: if eta, mu, L are not positive finite numbers with L >= mu (mu-strong convexity and
            L-smoothness).
    """
    eta, mu, L = check_positive("eta", eta), check_positive("mu", mu), check_positive("L", L)
    if L < mu:
        raise ValueError(f"the smoothness L must be >= the strong convexity mu, got mu = {mu}, L = {L}")
    return 1.0 - 2 * eta * mu * L / (mu + L)


def zmg_theorem3_width(n: int, nu: float, lambda0: float, delta: float, constant: float = 1.0) -> float:
    r"""Theorem 3's width :math:`m = \Omega\big(n^4 / (\nu^2 \lambda_0^4 \delta^3)\big)`.

    The paper does not state the constant hidden in :math:`\Omega(\cdot)`; it is **unknown** and set to
    ``constant`` (default 1), so this is the scaling the theorem demands, not a certified width.

    Raises:
        ValueError: if n is not a positive int, nu, lambda0 or constant is not positive, or delta is not in (0, 1).
    """
    check_int("n", n, 1)
    nu, lambda0, constant = check_positive("nu", nu), check_positive("lambda0", lambda0), check_positive("constant", constant)
    delta = check_probability("delta (failure probability)", delta)
    return constant * n ** 4 / (nu ** 2 * lambda0 ** 4 * delta ** 3)


def _eig_extremes(G: torch.Tensor) -> tuple[float, float]:
    check_tensor("G", G, ndim=2)
    if G.shape[0] != G.shape[1]:
        raise ValueError(f"G must be square, got shape {tuple(G.shape)}")
    ev = torch.linalg.eigvalsh(G)
    return float(ev[0]), float(ev[-1])


def gd_max_stable_step(G: torch.Tensor) -> float:
    r"""Largest stable step of GD on :math:`\frac12\|u - y\|^2` in the linear (kernel) limit,
    :math:`2/\lambda_{\max}(G)`.

    In output space GD is :math:`r \leftarrow (I - \eta G) r`, which contracts every mode iff
    :math:`\eta < 2/\lambda_{\max}(G)`.

    Raises:
        ValueError: if G is not a finite square matrix or its largest eigenvalue is not positive.
    """
    lmin, lmax = _eig_extremes(G)
    if not lmax > 0:
        raise ValueError(f"G must have a positive largest eigenvalue, got {lmax:.3e}")
    return 2.0 / lmax


def gd_optimal_step(G: torch.Tensor) -> float:
    r"""The fixed step :math:`2/(\lambda_{\max}(G) + \lambda_{\min}(G))` that minimises GD's linear-limit rate
    :math:`\max_i |1 - \eta\lambda_i| = (\kappa - 1)/(\kappa + 1)`, just below :func:`gd_max_stable_step`.

    Raises:
        ValueError: naming Condition 1 when G is not positive definite (or not a finite square matrix).
    """
    lmin, lmax = _eig_extremes(G)
    if not lmin > 0:
        raise ValueError(f"Condition 1: G must be positive definite, got lambda_min = {lmin:.3e}")
    return 2.0 / (lmax + lmin)


def condition3_width(radius: float, nu: float, lambda0: float, kappa: float) -> float:
    r"""Width above which the adversarial lower bound on Condition 3's constant drops below :math:`1/(1 + \kappa)`.

    Reconstruction (book chapter Z-C3), from the small-margin law of
    :func:`ngdlib.stability.adversarial_prediction`: the adversary of norm R changes the Jacobian by
    :math:`\|J - J(0)\|_2 \approx (6R^2/(\pi\nu^2 m))^{1/6}`, so :math:`C = 3\|J - J(0)\|_2/\sqrt{\lambda_0}` and

    .. math::
        C < \frac{1}{1 + \kappa} \iff m > \frac{6 \cdot 3^6 (1 + \kappa)^6 R^2}{\pi \nu^2 \lambda_0^3} .

    With Condition 3's radius :math:`R = \frac{3(1 + \kappa)\|y - u(0)\|}{2\sqrt{\lambda_0}}` the width grows like
    :math:`(1 + \kappa)^8`; at :math:`\kappa = 1` it is Condition 2's :math:`6^7 R^2/(\pi\nu^2\lambda_0^3)`.

    Raises:
        ValueError: if the radius R, nu or lambda0 is not a positive finite number, or kappa = L/mu (the loss's
            condition number) is not finite or is below 1.
    """
    radius, nu, lambda0 = check_positive("radius", radius), check_positive("nu", nu), check_positive("lambda0", lambda0)
    kappa = check_positive("kappa", kappa)
    if kappa < 1:
        raise ValueError(f"kappa = L/mu is a condition number, >= 1; got {kappa}")
    return 6 * 3 ** 6 * (1 + kappa) ** 6 * radius ** 2 / (math.pi * nu ** 2 * lambda0 ** 3)
