r"""Strongly convex, smooth losses for Theorem 2 and Remark 2 of Zhang, Martens & Grosse (2019).

A loss :math:`\ell(u, y)` acts on each output separately; the training objective is the **sum**
:math:`\sum_i \ell(u_i, y_i)`, so its gradient in output space is the vector :math:`g_i = \partial_u \ell(u_i, y_i)`
and its Hessian the diagonal :math:`H = \mathrm{diag}(h_i)`, :math:`h_i = \partial_u^2 \ell(u_i, y_i)`. (Dividing by
n rescales g and H alike and changes none of the steps below.) For :math:`\ell = \frac12 (u - y)^2`, :math:`g = u - y`
and :math:`H = I`.

Two steps (both never form J):

* Gauss-Newton step of Theorem 2 (the classical Gauss-Newton matrix :math:`J^\top J`, Euclidean metric in output
  space): :math:`w \leftarrow w - \eta\, J^\top G^{-1} g`.
* Remark 2's step with the loss curvature (generalised Gauss-Newton :math:`J^\top H J`):
  :math:`w \leftarrow w - \eta\, (J^\top H J)^+ J^\top g = w - \eta\, J^\top G^{-1} H^{-1} g`.

The second identity holds whenever J has full row rank and H is positive definite: :math:`p = J^\top G^{-1}H^{-1}g`
solves :math:`J^\top H J p = J^\top H G G^{-1} H^{-1} g = J^\top g` and lies in the row space of J, which is the range
of :math:`J^\top H J`, so it is the minimum-norm solution :math:`(J^\top H J)^+ J^\top g`.

Test losses, with :math:`r = u - y`, both :math:`\mu`-strongly convex and L-smooth and minimised at :math:`u = y`:

* :class:`LogCoshLoss` ``centre="steep"`` (the book's test loss):
  :math:`\ell = \frac{\mu}{2} r^2 + (L - \mu)\log\cosh r`, curvature :math:`\mu + (L - \mu)\,\mathrm{sech}^2 r`, equal
  to L at the minimum and tending to :math:`\mu` far from it.
* :class:`LogCoshLoss` ``centre="flat"``: :math:`\ell = \frac{L}{2} r^2 - (L - \mu)\log\cosh r`, curvature
  :math:`\mu + (L - \mu)\tanh^2 r`, equal to :math:`\mu` at the minimum: the case in which Theorem 2's
  :math:`\kappa`-dependent rate is nearly attained.
* :class:`OutputRidgeLoss`: :math:`\frac12 (u - y)^2 + \frac{\lambda}{2} u^2`, minimised at :math:`y/(1 + \lambda)`,
  not at y: the counter-example to Theorem 2 as printed (it presumes :math:`\arg\min_u \ell(u, y) = y`).
"""
from __future__ import annotations

import math

import torch

from . import reference
from ._checks import check_positive, check_vector
from .curvature import ngd_direction, validate
from .stability import trace_ngd

__all__ = [
    "LogCoshLoss",
    "OutputRidgeLoss",
    "RegularisedLogisticLoss",
    "gauss_newton_direction",
    "curvature_direction",
    "reference_curvature_direction",
    "one_step_factor",
    "train_loss",
]

_VARIANTS = ("gauss-newton", "remark2")


def _log_cosh(r: torch.Tensor) -> torch.Tensor:
    a = r.abs()
    return a + torch.log1p(torch.exp(-2 * a)) - math.log(2.0)      # exact, no overflow for large |r|


class _Loss:
    """Common interface: value, grad and curvature of :math:`\\ell(u, y)` entry-wise, and the minimiser in u."""

    mu: float
    L: float

    @property
    def kappa(self) -> float:
        """Condition number :math:`\\kappa = L/\\mu`."""
        return self.L / self.mu

    def minimiser(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def secant(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r""":math:`s_i = g_i / (u_i - u^*_i) \in [\mu, L]` (the limit :math:`h(u^*)` where :math:`u_i = u^*_i`)."""
        e = u - self.minimiser(y)
        g, h = self.grad(u, y), self.curvature(u, y)
        tiny = e.abs() <= 1e-150
        return torch.where(tiny, h, g / torch.where(tiny, torch.ones_like(e), e))

    def ratio(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r""":math:`q_i = g_i / ((u_i - u^*_i) h_i)`: the output-space factor of Remark 2's step (1 at the minimum)."""
        return self.secant(u, y) / self.curvature(u, y)


class LogCoshLoss(_Loss):
    r"""Smooth strongly convex test loss of :math:`r = u - y`.

    ``centre="steep"``: :math:`\ell(r) = \frac{\mu}{2}r^2 + (L - \mu)\log\cosh r`,
    :math:`\ell' = \mu r + (L-\mu)\tanh r`, :math:`\ell'' = \mu + (L-\mu)\,\mathrm{sech}^2 r \in (\mu, L]`.

    ``centre="flat"``: :math:`\ell(r) = \frac{L}{2}r^2 - (L - \mu)\log\cosh r`,
    :math:`\ell' = L r - (L-\mu)\tanh r`, :math:`\ell'' = \mu + (L-\mu)\tanh^2 r \in [\mu, L)`.

    Both are :math:`\mu`-strongly convex, have L-Lipschitz gradient, and are minimised at :math:`r = 0` (u = y).

    >>> loss = LogCoshLoss(1.0, 4.0)
    >>> float(loss.curvature(torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))[0])
    4.0
    """

    def __init__(self, mu: float, L: float, centre: str = "steep"):
        mu, L = check_positive("mu (the strong convexity)", mu), check_positive("L (the smoothness)", L)
        if not mu <= L:
            raise ValueError(f"need 0 < mu <= L (mu-strongly convex, L-smooth), got mu = {mu!r}, L = {L!r}")
        if centre not in ("steep", "flat"):
            raise ValueError(f"centre must be 'steep' or 'flat', got {centre!r}")
        self.mu, self.L, self.centre = float(mu), float(L), centre

    def __repr__(self) -> str:
        return f"LogCoshLoss(mu={self.mu:g}, L={self.L:g}, centre={self.centre!r})"

    def minimiser(self, y: torch.Tensor) -> torch.Tensor:
        """The minimiser in u: y itself."""
        return y

    def value(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Entry-wise loss."""
        r = u - y
        if self.centre == "steep":
            return 0.5 * self.mu * r ** 2 + (self.L - self.mu) * _log_cosh(r)
        return 0.5 * self.L * r ** 2 - (self.L - self.mu) * _log_cosh(r)

    def grad(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Entry-wise derivative in u."""
        r = u - y
        if self.centre == "steep":
            return self.mu * r + (self.L - self.mu) * torch.tanh(r)
        return self.L * r - (self.L - self.mu) * torch.tanh(r)

    def curvature(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Entry-wise second derivative in u (the diagonal of H)."""
        t = torch.tanh(u - y)
        if self.centre == "steep":
            return self.mu + (self.L - self.mu) * (1 - t ** 2)
        return self.mu + (self.L - self.mu) * t ** 2

    def ratio_interval(self, rho: float) -> tuple[float, float]:
        r"""An interval that holds :math:`q(r) = \ell'(r)/(r\,\ell''(r))` for all :math:`|r| \le \rho`, **for every
        kappa**.

        q is a mediant of 1 (the :math:`\mu` part) and of :math:`\sinh(2r)/(2r)` (steep) or
        :math:`(r - \tanh r)/(r\tanh^2 r)` (flat), so it lies between them: :math:`[1, \sinh(2\rho)/(2\rho)]` for the
        steep loss and :math:`[1/3, 1]` for the flat one (proof in chapter Z-T2).
        """
        rho = check_positive("rho", rho, allow_zero=True)
        if self.centre == "flat":
            return (1.0 / 3.0, 1.0)
        return (1.0, math.sinh(2 * rho) / (2 * rho) if rho > 0 else 1.0)


class OutputRidgeLoss(_Loss):
    r""":math:`\ell(u, y) = \frac12 (u - y)^2 + \frac{\lambda}{2} u^2`: :math:`(1 + \lambda)`-strongly convex and
    smooth (:math:`\mu = L = 1 + \lambda`) but minimised at :math:`u^* = y/(1 + \lambda) \ne y`."""

    def __init__(self, lam: float):
        lam = check_positive("lam", lam, allow_zero=True)
        self.lam = float(lam)
        self.mu = self.L = 1.0 + self.lam

    def __repr__(self) -> str:
        return f"OutputRidgeLoss(lam={self.lam:g})"

    def minimiser(self, y: torch.Tensor) -> torch.Tensor:
        """:math:`y / (1 + \\lambda)`."""
        return y / (1 + self.lam)

    def value(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Entry-wise loss."""
        return 0.5 * (u - y) ** 2 + 0.5 * self.lam * u ** 2

    def grad(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Entry-wise derivative in u."""
        return (u - y) + self.lam * u

    def curvature(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Entry-wise second derivative: the constant :math:`1 + \\lambda`."""
        return torch.full_like(u, 1.0 + self.lam)


# ---------------------------------------------------------------------------------------------------- directions
def gauss_newton_direction(model, X: torch.Tensor, g: torch.Tensor, *, check_assumption1: bool = True):
    r"""Theorem 2's Gauss-Newton direction :math:`J^\top G^{-1} g` (m x d) for the output gradient g (n,)."""
    return ngd_direction(model, X, g, check_assumption1=check_assumption1)


def _check_curvature(h: torch.Tensor, n: int) -> torch.Tensor:
    check_vector("h", h, n, "the diagonal of the loss Hessian H, one entry per input")
    if not bool((h > 0).all()):
        raise ValueError(f"Remark 2 needs a positive definite loss Hessian H = diag(h) (a strongly convex loss); "
                         f"got min h = {float(h.min()):.3e}")
    return h


def curvature_direction(model, X: torch.Tensor, g: torch.Tensor, h: torch.Tensor, *,
                        check_assumption1: bool = True) -> torch.Tensor:
    r"""Remark 2's direction :math:`(J^\top H J)^+ J^\top g = J^\top G^{-1} H^{-1} g` (m x d),
    :math:`H = \mathrm{diag}(h)`.

    Raises ``ValueError`` unless every :math:`h_i > 0` (strongly convex loss) and G is non-singular (Condition 1).
    """
    validate(model, X, g, check_assumption1)
    _check_curvature(h, X.shape[0])
    return ngd_direction(model, X, g / h, check_assumption1=False)


def reference_curvature_direction(model, X: torch.Tensor, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    r"""Dense float64 reference for :func:`curvature_direction`: ``pinv(J^T diag(h) J) @ J^T g`` with J from autodiff.

    For tiny sizes only (``ngdlib.reference.MAX_PARAMS``): it forms the (md) x (md) generalised Gauss-Newton matrix.
    """
    _check_curvature(h, X.shape[0])
    J = reference.jacobian(model, X)
    GGN = J.T @ (h[:, None] * J)
    return (torch.linalg.pinv(GGN, hermitian=True) @ (J.T @ g)).reshape(model.W.shape)


# ---------------------------------------------------------------------------------------------------- analysis
def one_step_factor(loss, u: torch.Tensor, y: torch.Tensor, eta: float, c: float, variant: str = "gauss-newton"):
    r"""Certified bound on :math:`\|e(k+1)\|_2 / \|e(k)\|_2`, :math:`e = u - u^*`, for one step of either variant.

    Reconstruction (chapter Z-T2). The step moves the outputs by exactly :math:`-\eta \bar J J^+ v` with
    :math:`\bar J J^+ = I + E`, :math:`\|E\|_2 = c` the step constant of :func:`ngdlib.stability.step_constant`, and
    :math:`v = \varphi \odot e` with :math:`\varphi` the secant slope :math:`s_i = g_i/e_i \in [\mu, L]`
    (Gauss-Newton) or :math:`q_i = s_i/h_i` (Remark 2). Hence

    .. math::
        \|e(k+1)\|_2 \le \big(\max_i |1 - \eta\varphi_i| + \eta\, c \max_i |\varphi_i|\big)\,\|e(k)\|_2 .

    Raises:
        ValueError: if variant is not 'gauss-newton' or 'remark2'.
    """
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
    phi = loss.secant(u, y) if variant == "gauss-newton" else loss.ratio(u, y)
    return float((1 - eta * phi).abs().max()) + eta * c * float(phi.abs().max())


def train_loss(model, X: torch.Tensor, y: torch.Tensor, loss, eta: float, steps: int, *,
               variant: str = "gauss-newton", tol: float = 0.0, target: torch.Tensor | None = None,
               keep_outputs: bool = False, check_assumption1: bool = True):
    r"""Train with Theorem 2's Gauss-Newton step or Remark 2's curvature step and record the
    :class:`~ngdlib.train.History` of :func:`ngdlib.stability.trace_ngd` (residuals, step constants :math:`c_k`, ...).

    ``variant="gauss-newton"``: :math:`w \leftarrow w - \eta J^\top G^{-1} g`; ``variant="remark2"``:
    :math:`w \leftarrow w - \eta J^\top G^{-1} H^{-1} g`. The recorded residual is :math:`\|u - t\|` with
    ``target`` t (default: y, as Theorem 2 is printed; pass ``loss.minimiser(y)`` for the corrected statement).
    ``keep_outputs=True`` also records u(k) for every iterate as the series ``outputs``. The run stops by the
    divergence rule of :mod:`ngdlib.train` (``history.diverged``).

    Raises:
        ValueError: for an unknown variant, a loss without ``grad`` / ``curvature`` / ``minimiser``, a non-positive
            curvature (Remark 2), or any input :func:`ngdlib.stability.trace_ngd` refuses.
    """
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
    for name in ("grad", "curvature", "minimiser"):
        if not callable(getattr(loss, name, None)):
            raise ValueError(f"loss must provide {name}(...) (see ngdlib.losses.LogCoshLoss), got {loss!r}")
    outputs = []

    def direction(u, yy):
        if keep_outputs:
            outputs.append(u.detach().cpu().clone())
        g = loss.grad(u, yy)
        if variant == "gauss-newton":
            return g
        return g / _check_curvature(loss.curvature(u, yy), u.shape[0])

    tr = trace_ngd(model, X, y, eta, steps, direction=direction, target=target, tol=tol,
                   check_assumption1=check_assumption1, method=variant)
    if keep_outputs:
        with torch.no_grad():
            outputs.append(model(X).detach().cpu().clone())
        tr.series["outputs"] = outputs[: tr.steps + 1]
    return tr


# ---------------------------------------------------------------------------------------------------- cross-entropy
class RegularisedLogisticLoss(_Loss):
    r"""Binary cross-entropy with an :math:`L_2` penalty **on the output**, labels :math:`y \in \{-1, +1\}`:

    .. math::
        \ell(u, y) = \log(1 + e^{-y u}) + \frac{\lambda}{2} u^2,\qquad
        \ell'' = \sigma(u)\,\sigma(-u) + \lambda \in (\lambda, \lambda + \tfrac14],

    so :math:`\mu = \lambda` (an infimum, approached as :math:`|u| \to \infty`) and :math:`L = \lambda + 1/4`
    (attained at u = 0): the "regularized cross-entropy loss" of Section 3.1 read as a loss of u (chapter Z-XENT). Its
    minimiser is :math:`u^* = t\,y` with :math:`t > 0` the root of :math:`\lambda t = \sigma(-t)`; :math:`t = 1`
    (so :math:`u^* = y`, as Theorem 2 as printed presumes) only at :math:`\lambda = \sigma(-1) = 1/(1 + e)`.

    >>> loss = RegularisedLogisticLoss(1 / (1 + math.e))
    >>> round(loss.margin, 12)
    1.0
    """

    def __init__(self, lam: float):
        if not (isinstance(lam, (int, float)) and not isinstance(lam, bool) and math.isfinite(lam) and lam > 0):
            raise ValueError(f"lam must be a positive finite number (the L2 penalty that makes the cross-entropy "
                             f"strongly convex), got {lam!r}")
        self.lam = float(lam)
        self.mu, self.L = self.lam, self.lam + 0.25
        # lambda t = sigma(-t): the left side increases from 0, the right decreases from 1/2, so one root in
        # (0, 1/(2 lambda)]; bisection to the last bit of float64
        lo, hi = 0.0, 0.5 / self.lam
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if self.lam * mid < 1.0 / (1.0 + math.exp(mid)):
                lo = mid
            else:
                hi = mid
            if hi - lo <= 4 * math.ulp(hi):
                break
        self.margin = 0.5 * (lo + hi)

    def __repr__(self) -> str:
        return f"RegularisedLogisticLoss(lam={self.lam:g})"

    @staticmethod
    def _labels(y: torch.Tensor) -> torch.Tensor:
        if not bool(((y == 1) | (y == -1)).all()):
            raise ValueError("the logistic loss needs labels y in {-1, +1}")
        return y

    def minimiser(self, y: torch.Tensor) -> torch.Tensor:
        r""":math:`u^* = t\,y`, t = :attr:`margin` (the root of :math:`\lambda t = \sigma(-t)`)."""
        return self.margin * self._labels(y)

    def value(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Entry-wise loss."""
        z = -self._labels(y) * u      # log(1 + e^z), exact to round-off (torch's softplus is linear beyond z = 20)
        return torch.logaddexp(torch.zeros_like(z), z) + 0.5 * self.lam * u ** 2

    def grad(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""Entry-wise derivative in u: :math:`-y\,\sigma(-y u) + \lambda u`."""
        y = self._labels(y)
        return -y * torch.sigmoid(-y * u) + self.lam * u

    def curvature(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""Entry-wise second derivative: :math:`\sigma(u)\sigma(-u) + \lambda`."""
        self._labels(y)
        return torch.sigmoid(u) * torch.sigmoid(-u) + self.lam
