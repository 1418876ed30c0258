r"""Deep linear networks trained by gradient descent on whitened data (Arora, Cohen, Golowich & Hu, 2019).

The network (:mod:`ngdlib.models`): a depth-N linear network is a list of matrices
``layers = [W_1, ..., W_N]`` with :math:`W_j \in \mathbb R^{d_j \times
d_{j-1}}`; it maps :math:`x \mapsto W_N \cdots W_1 x`. Its end-to-end matrix is :math:`W_{1:N} = W_N W_{N-1} \cdots W_1
\in \mathbb R^{d_N \times d_0}` (:func:`ngdlib.models.end_to_end`).

**Whitened data.** For n samples (rows of X, n x d_0, and of Y, n x d_N) with :math:`X^\top X / n = I` the loss is

.. math::
    L(W_1, \dots, W_N) = \frac{1}{2n} \sum_{i=1}^n \|W_{1:N} x_i - y_i\|^2
    = \ell(W_{1:N}) + \text{const},\qquad \ell(W) = \tfrac12 \|W - \Phi\|_F^2,\quad \Phi = Y^\top X / n,

with const :math:`= \|Y\|_F^2/(2n) - \|\Phi\|_F^2/2` (:func:`ngdlib.data.whitened_data`, :func:`data_loss`). Everything below
works with :math:`\ell` and the target :math:`\Phi` (d_N x d_0).

**Gradients.** :math:`\nabla_{W_j} L = W_{j+1:N}^\top (W_{1:N} - \Phi) W_{1:j-1}^\top` with
:math:`W_{j+1:N} = W_N \cdots W_{j+1}` and :math:`W_{1:j-1} = W_{j-1} \cdots W_1` (identities when empty)
(:func:`gradients`).

**Balancedness** (Arora et al., Definition 1): the layers are :math:`\delta`-balanced if
:math:`\|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F \le \delta` for j = 1..N-1; :func:`balancedness` returns the
smallest such :math:`\delta` (0 for N = 1).

**Deficiency margin** (Definition 2): W has margin c > 0 with respect to :math:`\Phi` if
:math:`\|W - \Phi\|_F \le \sigma_{\min}(\Phi) - c`, where :math:`\sigma_{\min}` is the
:math:`\min(d_0, d_N)`-th singular value; :func:`deficiency_margin` returns the largest such c (negative if none).

**Theorem 1** of Arora, Cohen, Golowich & Hu (2019) (as recalled on the book's claim page A-T1,
``chapters/arora/a-bal.md``; the constants 256 and 6144 are NOT confirmed from the paper's text): margin c > 0, :math:`\delta \le c^2 / (256 N^3 \|\Phi\|_F^{2(N-1)/N})`,
:math:`\eta \le c^{(4N-2)/N} / (6144 N^3 \|\Phi\|_F^{(6N-4)/N})` give
:math:`\ell(t+1) \le (1 - \eta c^{2(N-1)/N}) \ell(t)` (:func:`arora_theorem1_delta_bound`, :func:`arora_theorem1_eta_bound`,
:func:`arora_theorem1_rate`). What the book derives itself is the gradient-flow rate :func:`flow_rate`.

All matrices are float tensors; device and dtype follow the inputs (float64 for verification). Random draws come from
:func:`ngdlib.device.generator` on the CPU and are then moved.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._history import History, run_loop
from ._checks import (check_finite_result, check_int, check_number, check_positive,
                      check_same_dtype_device, check_tensor, finite_float)
from ._linalg import psd_power
from .data import WhitenedData, whitened_data  # noqa: F401  (moved to ngdlib.data; old name kept for callers)
from .models.deep_linear import _prefixes, _suffixes, check_layers, dims, end_to_end, gaussian_init  # noqa: F401

__all__ = [
    "RECALLED_T1_CONSTANTS",
    "loss",
    "gradients",
    "gd_step",
    "balancedness",
    "balancedness_gaps",
    "deficiency_margin",
    "sigma_min",
    "balanced_init",
    "data_loss",
    "train_gd",
    "gradient_flow",
    "end_to_end_velocity",
    "balanced_velocity",
    "arora_theorem1_delta_bound",
    "arora_theorem1_eta_bound",
    "arora_theorem1_rate",
    "flow_rate",
]

#: The constants of Arora et al.'s Theorem 1 as recalled on the book's claim page A-T1 (chapters/arora/a-bal.md). NOT
#: confirmed from the paper's text: the book asserts only what its own derivation or a direct measurement supports.
RECALLED_T1_CONSTANTS = {"delta": 256.0, "eta": 6144.0, "status": "recalled, not confirmed from the paper's text"}


# ----------------------------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------------------------
def _check_phi(Phi, layers) -> torch.Tensor:
    check_tensor("Phi", Phi, ndim=2)
    shape = (layers[-1].shape[0], layers[0].shape[1])
    if tuple(Phi.shape) != shape:
        raise ValueError(f"Phi (the target end-to-end matrix) must be d_N x d_0 = {shape}, got {tuple(Phi.shape)}")
    if Phi.dtype != layers[0].dtype or Phi.device != layers[0].device:
        raise ValueError(f"Phi has dtype {Phi.dtype} on {Phi.device}, the layers {layers[0].dtype} on "
                         f"{layers[0].device}; they must match")
    return Phi




# ----------------------------------------------------------------------------------------------------------------
# the network, its loss and its gradients
# ----------------------------------------------------------------------------------------------------------------
def loss(layers, Phi) -> float:
    """:math:`\\ell(W_{1:N}) = \\tfrac12 \\|W_{1:N} - \\Phi\\|_F^2` (the whitened-data loss up to a constant)."""
    layers = check_layers(layers)
    _check_phi(Phi, layers)
    return check_finite_result("the loss", 0.5 * float(torch.linalg.matrix_norm(end_to_end(layers) - Phi) ** 2))


def _gradients(layers, Phi):
    P = _prefixes(layers)
    S = _suffixes(layers)
    E = P[-1] - Phi
    # dL/dW_j = (W_N ... W_{j+1})^T E (W_{j-1} ... W_1)^T ; with 0-based index k = j - 1: S[k+1]^T E P[k]^T
    return [S[k + 1].T @ E @ P[k].T for k in range(len(layers))], E


def gradients(layers, Phi) -> list:
    """Gradients :math:`G_j = \\nabla_{W_j} \\ell(W_{1:N}) = W_{j+1:N}^\\top (W_{1:N} - \\Phi) W_{1:j-1}^\\top`
    of the loss :math:`\\tfrac12\\|W_N\\cdots W_1 - \\Phi\\|_F^2`, one per layer (same shapes as the layers)."""
    layers = check_layers(layers)
    _check_phi(Phi, layers)
    return check_finite_result("the gradients", _gradients(layers, Phi)[0])


def gd_step(layers, Phi, eta) -> list:
    """One gradient-descent step :math:`W_j \\leftarrow W_j - \\eta G_j` on every layer at once (new tensors)."""
    layers = check_layers(layers)
    _check_phi(Phi, layers)
    eta = check_positive("eta (the step size)", eta)
    G, _ = _gradients(layers, Phi)
    return check_finite_result("the gradient step", [W - eta * g for W, g in zip(layers, G)])


def balancedness_gaps(layers) -> list:
    """The N - 1 matrices :math:`D_j = W_{j+1}^\\top W_{j+1} - W_j W_j^\\top` (d_j x d_j), j = 1..N-1."""
    layers = check_layers(layers)
    return check_finite_result("the balancedness gaps",
                               [layers[k + 1].T @ layers[k + 1] - layers[k] @ layers[k].T
                                for k in range(len(layers) - 1)])


def balancedness(layers) -> float:
    """:math:`\\max_j \\|W_{j+1}^\\top W_{j+1} - W_j W_j^\\top\\|_F`: the smallest :math:`\\delta` for which the
    layers are :math:`\\delta`-balanced (Arora et al. 2019, Definition 1). 0 for a single layer."""
    gaps = balancedness_gaps(layers)
    if not gaps:
        return 0.0
    return check_finite_result("the balancedness", max(float(torch.linalg.matrix_norm(D)) for D in gaps))


def sigma_min(W: torch.Tensor) -> float:
    """The :math:`\\min(d_N, d_0)`-th (smallest) singular value of a d_N x d_0 matrix."""
    check_tensor("W", W, ndim=2)
    return float(torch.linalg.svdvals(W)[-1])


def deficiency_margin(W: torch.Tensor, Phi: torch.Tensor) -> float:
    """:math:`c = \\sigma_{\\min}(\\Phi) - \\|W - \\Phi\\|_F`, the largest deficiency margin of the end-to-end
    matrix W with respect to :math:`\\Phi` (Arora et al. 2019, Definition 2); the margin condition holds iff c > 0.

    A positive c forces :math:`\\sigma_{\\min}(W) \\ge c` (Weyl: :math:`\\sigma_{\\min}(W) \\ge \\sigma_{\\min}(\\Phi)
    - \\|W - \\Phi\\|_2`), so W has full rank and its loss is below that of every rank-deficient matrix.

    Raises:
        ValueError: if W and Phi are not finite matrices of the same shape, dtype and device.
    """
    check_tensor("W", W, ndim=2)
    check_tensor("Phi", Phi, ndim=2)
    if W.shape != Phi.shape:
        raise ValueError(f"W and Phi must have the same shape d_N x d_0, got {tuple(W.shape)} and {tuple(Phi.shape)}")
    check_same_dtype_device("Phi", Phi, "W", W)
    return check_finite_result("the deficiency margin", sigma_min(Phi) - float(torch.linalg.matrix_norm(W - Phi)))


# ----------------------------------------------------------------------------------------------------------------
# initialisations
# ----------------------------------------------------------------------------------------------------------------
def balanced_init(A: torch.Tensor, hidden_dims) -> list:
    """Procedure 1 of Arora et al. (2019): layers whose product is A and which are exactly balanced.

    With the thin SVD :math:`A = U \\Sigma V^\\top` (r = min(d_0, d_N) singular values),

    .. math::
        W_1 \\simeq \\Sigma^{1/N} V^\\top,\\quad W_j \\simeq \\Sigma^{1/N}\\ (1 < j < N),
        \\quad W_N \\simeq U \\Sigma^{1/N},

    where :math:`\\simeq` means "equal up to zero padding" to the shapes d_j x d_{j-1}. Then
    :math:`W_N \\cdots W_1 = U \\Sigma V^\\top = A` and :math:`W_{j+1}^\\top W_{j+1} = W_j W_j^\\top =
    \\mathrm{diag}(\\Sigma^{2/N}, 0)`, i.e. 0-balanced.

    Args:
        A: the end-to-end matrix to realise, d_N x d_0.
        hidden_dims: the N - 1 hidden widths (d_1, ..., d_{N-1}), each >= min(d_0, d_N) (condition (i) of the
            paper); an empty sequence gives N = 1 and ``[A]``.

    Raises:
        ValueError: naming condition (i) of Procedure 1 when a hidden width is below min(d_0, d_N), or when A or
            hidden_dims is malformed.
    """
    check_tensor("A", A, ndim=2)
    if isinstance(hidden_dims, (str, torch.Tensor)) or not hasattr(hidden_dims, "__iter__"):
        raise ValueError(f"hidden_dims must be a sequence of the N - 1 hidden widths (d_1, ..., d_(N-1)), "
                         f"got {hidden_dims!r}")
    hidden = list(hidden_dims)
    dN, d0 = A.shape
    r = min(d0, dN)
    for j, h in enumerate(hidden, start=1):
        check_int(f"hidden width d_{j}", h, 1)
        if h < r:
            raise ValueError(f"condition (i) violated: hidden width d_{j} = {h} < min(d_0, d_N) = {r}; "
                             "Procedure 1 needs every hidden layer at least as wide as min(d_0, d_N)")
    N = len(hidden) + 1
    if N == 1:
        return [A.clone()]
    U, s, Vh = torch.linalg.svd(A, full_matrices=False)      # U: dN x r, s: r, Vh: r x d0
    root = s ** (1.0 / N)
    widths = [d0] + hidden + [dN]
    kw = {"dtype": A.dtype, "device": A.device}
    layers = []
    for j in range(1, N + 1):
        W = torch.zeros(widths[j], widths[j - 1], **kw)
        if j == 1:
            W[:r, :] = root[:, None] * Vh
        elif j == N:
            W[:, :r] = U * root[None, :]
        else:
            W[:r, :r] = torch.diag(root)
        layers.append(W)
    return layers


# ----------------------------------------------------------------------------------------------------------------
# whitened data
# ----------------------------------------------------------------------------------------------------------------
def data_loss(layers, X: torch.Tensor, Y: torch.Tensor) -> float:
    """The loss on the data, :math:`\\frac{1}{2n}\\sum_i \\|W_{1:N} x_i - y_i\\|^2 = \\frac{1}{2n}\\|X W_{1:N}^\\top -
    Y\\|_F^2` (rows of X and Y are samples).

    Raises:
        ValueError: if X is not n x d_0 and Y n x d_N for the network, or the layers are malformed.
    """
    layers = check_layers(layers)
    check_tensor("X", X, ndim=2)
    check_tensor("Y", Y, ndim=2)
    check_same_dtype_device("X", X, "the layers", layers[0])
    check_same_dtype_device("Y", Y, "the layers", layers[0])
    W = end_to_end(layers)
    if X.shape[1] != W.shape[1] or Y.shape[1] != W.shape[0] or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X must be n x d_0 and Y n x d_N for a network with d_0 = {W.shape[1]}, d_N = {W.shape[0]}; "
                         f"got X {tuple(X.shape)}, Y {tuple(Y.shape)}")
    return check_finite_result("the data loss", float(((X @ W.T - Y) ** 2).sum() / (2 * X.shape[0])))


# ----------------------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------------------
def train_gd(layers, Phi, eta: float, steps: int, *, tol: float = 0.0, diverge_factor: float = 1e6,
             track_sigma_min: bool = True, track_balancedness: bool = True):
    """Gradient descent :math:`W_j \\leftarrow W_j - \\eta \\nabla_{W_j} \\ell` for ``steps`` steps.

    Returns ``(layers, history)``: the final layers (new tensors; the inputs are not modified) and a
    :class:`~ngdlib.train.History` with the series, per iterate t = 0..T (index t is before step t+1): ``loss``
    :math:`\\ell(t) = \\tfrac12\\|W_{1:N}(t) - \\Phi\\|_F^2` (monitored), ``balancedness``
    :math:`\\max_j \\|W_{j+1}^\\top W_{j+1} - W_j W_j^\\top\\|_F`, ``grad_sq`` :math:`\\sum_j \\|G_j(t)\\|_F^2`,
    ``pair_grad_sq`` (per pair j = 1..N-1, :math:`\\|G_{j+1}\\|_F^2 + \\|G_j\\|_F^2`, for the balancedness drift
    bound of chapter A-BAL) and ``sigma_min`` (the smallest singular value of :math:`W_{1:N}(t)`). Stops early once
    :math:`\\ell \\le` ``tol``, or by the divergence rule of :mod:`ngdlib.train` (``history.diverged``) once the
    loss is non-finite or above ``diverge_factor`` times its start. ``track_sigma_min`` / ``track_balancedness`` off
    record NaN instead (faster for long sweeps).

    Raises:
        ValueError: for layers that do not chain, a target of the wrong shape, a step size that is not a positive
            finite number, a negative step count, or a start whose loss is not finite.
    """
    layers = check_layers(layers)
    _check_phi(Phi, layers)
    eta = check_positive("eta (the step size)", eta)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    check_number("tol (the early-stopping loss)", tol, low=0.0, allow_inf=True)
    check_number("diverge_factor", diverge_factor, low=0.0, low_open=True, allow_inf=True)
    hist = History(method="gd", eta=eta, series={k: [] for k in ("loss", "balancedness", "grad_sq", "pair_grad_sq",
                                                                  "sigma_min")})
    state = {"layers": [W.detach().clone() for W in layers]}

    def observe(t):
        cur = state["layers"]
        G, E = _gradients(cur, Phi)
        state["G"] = G
        rec = {}
        if track_balancedness:
            gaps = [cur[k + 1].T @ cur[k + 1] - cur[k] @ cur[k].T for k in range(len(cur) - 1)]
            rec["balancedness"] = max((float(torch.linalg.matrix_norm(D)) for D in gaps), default=0.0)
            gsq = [float((g ** 2).sum()) for g in G]
            rec["grad_sq"] = sum(gsq)
            rec["pair_grad_sq"] = [gsq[k + 1] + gsq[k] for k in range(len(cur) - 1)]
        else:
            rec["balancedness"] = float("nan")
            rec["grad_sq"] = float(sum((g ** 2).sum() for g in G))
            rec["pair_grad_sq"] = []
        lt = 0.5 * float((E ** 2).sum())
        finite = math.isfinite(lt)
        rec["sigma_min"] = float(torch.linalg.svdvals(E + Phi)[-1]) if track_sigma_min and finite else float("nan")
        return lt, rec

    def advance(t):
        state["layers"] = [W - eta * g for W, g in zip(state["layers"], state["G"])]

    run_loop(hist, observe, advance, steps, tol=tol, diverge_factor=diverge_factor, monitor="loss")
    return state["layers"], hist


def gradient_flow(layers, Phi, times, *, rtol: float = 1e-10, atol: float = 1e-12) -> list:
    """Gradient flow :math:`\\dot W_j = -\\nabla_{W_j} \\ell` integrated with SciPy's DOP853 (float64, on the CPU).

    Returns one list of layers per entry of ``times`` (increasing, starting at 0 or later), on the inputs' device
    and dtype. The integrator's tolerances bound the error: relative ``rtol`` per unit time, roughly.

    Raises:
        ValueError: if times is not a non-empty increasing sequence of non-negative numbers, the integration fails,
            or the flow overflows.
    """
    from scipy.integrate import solve_ivp

    layers = check_layers(layers)
    _check_phi(Phi, layers)
    if isinstance(times, str) or not hasattr(times, "__iter__"):
        raise ValueError(f"times must be a non-empty increasing sequence of non-negative numbers, got {times!r}")
    times = [check_number("times[k] (an integration time)", t) for t in times]
    check_number("rtol (the integrator's relative tolerance)", rtol, low=0.0, low_open=True)
    check_number("atol (the integrator's absolute tolerance)", atol, low=0.0, low_open=True)
    if not times or any(t < 0 for t in times) or any(b <= a for a, b in zip(times, times[1:])):
        raise ValueError(f"times must be a non-empty increasing sequence of non-negative numbers, got {times!r}")
    shapes = [tuple(W.shape) for W in layers]
    sizes = [W.numel() for W in layers]
    Phi64 = Phi.detach().to("cpu", torch.float64)

    def unpack(z):
        out, k = [], 0
        zt = torch.from_numpy(z)
        for shp, sz in zip(shapes, sizes):
            out.append(zt[k:k + sz].reshape(shp))
            k += sz
        return out

    def rhs(_t, z):
        G, _ = _gradients(unpack(z), Phi64)
        return -torch.cat([g.reshape(-1) for g in G]).numpy()

    z0 = torch.cat([W.detach().to("cpu", torch.float64).reshape(-1) for W in layers]).numpy()
    sol = solve_ivp(rhs, (0.0, times[-1]), z0, method="DOP853", t_eval=times, rtol=rtol, atol=atol)
    if not sol.success:
        raise ValueError(f"gradient flow integration failed: {sol.message}")
    if not bool(torch.isfinite(torch.from_numpy(sol.y)).all()):
        raise ValueError("gradient flow overflowed to NaN or Inf (the layers or Phi are too large; rescale them)")
    dt, dev = layers[0].dtype, layers[0].device
    return [[W.clone().to(dtype=dt, device=dev) for W in unpack(sol.y[:, i].copy())] for i in range(len(times))]


# ----------------------------------------------------------------------------------------------------------------
# end-to-end dynamics of gradient flow
# ----------------------------------------------------------------------------------------------------------------
def end_to_end_velocity(layers, Phi) -> torch.Tensor:
    """:math:`\\frac{d}{dt} W_{1:N}` under gradient flow, for any layers:
    :math:`-\\sum_j W_{j+1:N} W_{j+1:N}^\\top \\nabla\\ell(W_{1:N}) W_{1:j-1}^\\top W_{1:j-1}` (product rule)."""
    layers = check_layers(layers)
    _check_phi(Phi, layers)
    P = _prefixes(layers)
    S = _suffixes(layers)
    E = P[-1] - Phi
    return check_finite_result("the end-to-end velocity",
                               -sum(S[k + 1] @ S[k + 1].T @ E @ P[k].T @ P[k] for k in range(len(layers))))


def balanced_velocity(W: torch.Tensor, Phi: torch.Tensor, N: int) -> torch.Tensor:
    """The end-to-end velocity that exact balancedness predicts (Arora, Cohen & Hazan 2018, used by Arora et al. 2019):

    .. math::
        \\dot W = -\\sum_{j=1}^N (W W^\\top)^{(N-j)/N}\\, \\nabla\\ell(W)\\, (W^\\top W)^{(j-1)/N},
        \\qquad \\nabla\\ell(W) = W - \\Phi .

    Raises:
        ValueError: if N is not a positive int, W and Phi are not finite matrices of one shape, dtype and device, or
            a matrix power fails (:func:`ngdlib._linalg.psd_power`).
    """
    N = check_int("the depth N", N, 1)
    check_tensor("W", W, ndim=2)
    check_tensor("Phi", Phi, ndim=2)
    if W.shape != Phi.shape:
        raise ValueError(f"W and Phi must have the same shape d_N x d_0, got {tuple(W.shape)} and {tuple(Phi.shape)}")
    check_same_dtype_device("Phi", Phi, "W", W)
    grad = W - Phi
    WWt, WtW = W @ W.T, W.T @ W
    return check_finite_result("the balanced velocity", -sum(psd_power(WWt, (N - j) / N) @ grad @
                                                             psd_power(WtW, (j - 1) / N) for j in range(1, N + 1)))


# ----------------------------------------------------------------------------------------------------------------
# Theorem 1's bounds (constants recalled, NOT confirmed) and the gradient-flow rate (derived in the book)
# ----------------------------------------------------------------------------------------------------------------
def _phi_fro(Phi) -> float:
    if isinstance(Phi, torch.Tensor):
        check_tensor("Phi", Phi, ndim=2)
        return check_positive("||Phi||_F (the target's Frobenius norm)", float(torch.linalg.matrix_norm(Phi)))
    return check_positive("||Phi||_F", Phi)


def arora_theorem1_delta_bound(c: float, Phi, N: int, constant: float = RECALLED_T1_CONSTANTS["delta"]) -> float:
    """Balancedness required by Theorem 1 (as recalled): :math:`\\delta \\le c^2 / (K N^3 \\|\\Phi\\|_F^{2(N-1)/N})`
    with K = 256. **The constant is recalled, not confirmed from the paper's text.**

    Args:
        c: the deficiency margin (> 0).
        Phi: the target matrix, or its Frobenius norm.
        N: the depth.
        constant: K.

    Raises:
        ValueError: if the margin c or the constant is not positive, N is not a positive int, or Phi is zero.
    """
    c = check_positive("the deficiency margin c", c)
    N = check_int("the depth N", N, 1)
    constant = check_positive("the constant K", constant)
    phi = _phi_fro(Phi)
    return finite_float("Theorem 1's delta bound", lambda: c ** 2 / (constant * N ** 3 * phi ** (2 * (N - 1) / N)))


def arora_theorem1_eta_bound(c: float, Phi, N: int, constant: float = RECALLED_T1_CONSTANTS["eta"]) -> float:
    """Step size allowed by Theorem 1 (as recalled): :math:`\\eta \\le c^{(4N-2)/N} / (K N^3
    \\|\\Phi\\|_F^{(6N-4)/N})` with K = 6144. **The constant is recalled, not confirmed from the paper's text.**

    Raises:
        ValueError: if the margin c or the constant is not positive, N is not a positive int, or Phi is zero.
    """
    c = check_positive("the deficiency margin c", c)
    N = check_int("the depth N", N, 1)
    constant = check_positive("the constant K", constant)
    phi = _phi_fro(Phi)
    return finite_float("Theorem 1's eta bound",
                         lambda: c ** ((4 * N - 2) / N) / (constant * N ** 3 * phi ** ((6 * N - 4) / N)))


def arora_theorem1_rate(eta: float, c: float, N: int) -> float:
    """The per-step factor of Theorem 1's conclusion, :math:`\\ell(t+1) \\le (1 - \\eta c^{2(N-1)/N})\\, \\ell(t)`.

    Raises:
        ValueError: if eta or the margin c is not a positive finite number or N is not a positive int.
    """
    eta = check_positive("eta (the step size)", eta)
    c = check_positive("the deficiency margin c", c)
    N = check_int("the depth N", N, 1)
    return finite_float("Theorem 1's rate", lambda: 1.0 - eta * c ** (2 * (N - 1) / N))


def flow_rate(c: float, N: int) -> float:
    """Exponent of the gradient-flow bound derived in the book (chapter A-T1): for exactly balanced layers whose
    end-to-end matrix has deficiency margin c, :math:`\\ell(t) \\le e^{-\\kappa t} \\ell(0)` with
    :math:`\\kappa = 2 c^{2(N-1)/N}`.

    Raises:
        ValueError: if the margin c is not a positive finite number or N is not a positive int.
    """
    c = check_positive("the deficiency margin c", c)
    N = check_int("the depth N", N, 1)
    return finite_float("the flow rate", lambda: 2.0 * c ** (2 * (N - 1) / N))


# ----------------------------------------------------------------------------------------------------------------
# Many independent networks at once (batched): Monte-Carlo over random starts (chapters A-T2, A-GAUSS)
# ----------------------------------------------------------------------------------------------------------------
__all__ += [
    "BatchedRun",
    "balanced_init_batched",
    "balancedness_batched",
    "train_gd_batched",
    "margin_probability",
    "arora_theorem1_iterations",
    "gaussian_gap_second_moment",
]


def balanced_init_batched(A: torch.Tensor, hidden_dims) -> list:
    """Procedure 1 (:func:`balanced_init`) for B end-to-end matrices at once: ``A`` is (B, d_N, d_0); returns the
    layers as (B, d_j, d_{j-1}) tensors, network b realising ``A[b]`` with exactly balanced layers.

    Args:
        A: the B end-to-end matrices to realise, B x d_N x d_0.
        hidden_dims: the N - 1 hidden widths, each >= min(d_0, d_N) (condition (i) of the paper).
    """
    check_tensor("A", A, ndim=3)
    B, dN, d0 = A.shape
    single = balanced_init(A[0], hidden_dims)          # validates hidden_dims (condition (i)) on the first network
    N = len(single)
    if N == 1:
        return [A.clone()]
    r = min(d0, dN)
    U, s, Vh = torch.linalg.svd(A, full_matrices=False)      # U: B x dN x r, s: B x r, Vh: B x r x d0
    root = s ** (1.0 / N)
    layers = []
    for j, W1 in enumerate(single, start=1):
        W = torch.zeros((B,) + tuple(W1.shape), dtype=A.dtype, device=A.device)
        if j == 1:
            W[:, :r, :] = root[:, :, None] * Vh
        elif j == N:
            W[:, :, :r] = U * root[:, None, :]
        else:
            W[:, :r, :r] = torch.diag_embed(root)
        layers.append(W)
    return layers


def _batched_balancedness(layers) -> torch.Tensor:
    if len(layers) == 1:
        return torch.zeros(layers[0].shape[0], dtype=layers[0].dtype, device=layers[0].device)
    gaps = [layers[k + 1].transpose(1, 2) @ layers[k + 1] - layers[k] @ layers[k].transpose(1, 2)
            for k in range(len(layers) - 1)]
    return torch.stack([torch.linalg.matrix_norm(D) for D in gaps]).amax(dim=0)


def balancedness_batched(layers) -> torch.Tensor:
    """:func:`balancedness` of each of B networks: a length-B tensor of
    :math:`\\max_j \\|W_{j+1}^\\top W_{j+1} - W_j W_j^\\top\\|_F` (0 for depth 1)."""
    layers = check_layers(layers, batched=True)
    return check_finite_result("the balancedness", _batched_balancedness(layers))


@dataclass
class BatchedRun:
    """What :func:`train_gd_batched` returns for B networks run side by side.

    Attributes:
        eta: the step size.
        loss0: :math:`\\ell(0)` per network (B).
        loss: the last recorded :math:`\\ell` per network (B); for a diverged network, its last finite value.
        hit: per network, the first step t with :math:`\\ell(t) \\le` its ``tol`` (-1 if never within ``steps``).
        diverged: per network, whether the run was stopped (frozen) because its loss became non-finite or exceeded
            ``diverge_factor`` times its start.
        max_balancedness: per network, the maximum over the recorded iterates of the balancedness (NaN when not
            tracked).
        steps: the number of steps taken (the loop stops once every network has hit its tolerance or diverged).
        history: the :class:`~ngdlib.train.History` of the shared loop (``ngdlib._history.run_loop``): per
            iterate, ``running`` (the monitored series: networks neither converged nor diverged) and ``max_loss``
            (the largest loss among the networks not diverged).
    """

    eta: float
    loss0: torch.Tensor
    loss: torch.Tensor
    hit: torch.Tensor
    diverged: torch.Tensor
    max_balancedness: torch.Tensor
    steps: int
    history: History | None = None


def train_gd_batched(layers, Phi, eta: float, steps: int, *, tol=0.0, diverge_factor: float = 1e6,
                     track_balancedness: bool = False):
    """Gradient descent :math:`W_j \\leftarrow W_j - \\eta \\nabla_{W_j} \\ell` on B independent networks at once
    (batched matrix products; the same step size for all). Each network b is the iteration of :func:`train_gd` on
    ``[W[b] for W in layers]``.

    Returns ``(layers, run)``: the final layers (new tensors) and a :class:`BatchedRun`. Network b records the first
    step at which :math:`\\ell \\le` ``tol`` (a number or a length-B tensor) and keeps iterating (it is not frozen);
    a network whose loss becomes non-finite or exceeds ``diverge_factor`` times its start is frozen and marked
    diverged. The loop ends after ``steps`` steps or once every network has hit its tolerance or diverged. It is the
    library's one loop (``ngdlib._history.run_loop``) monitoring the number of networks still running (stop at
    0); the divergence rule is applied per network (freeze and flag) instead of to the whole batch.

    Args:
        layers: B networks, W_j of shape (B, d_j, d_{j-1}) (``check_layers(layers, batched=True)``).
        Phi: the target, d_N x d_0 (shared) or B x d_N x d_0 (one per network).
        eta: the step size (> 0).
        steps: the maximum number of steps (>= 0).
        tol: the loss at which a network counts as converged: a number >= 0 or a length-B tensor of them.
        diverge_factor: a network is stopped once its loss exceeds this factor times its start (> 0).
        track_balancedness: record the maximum balancedness over the run (costs one gap per layer pair per step).

    Raises:
        ValueError: if layers fails ``check_layers(layers, batched=True)``, Phi is not a finite d_N x d_0 or B x d_N x d_0
            tensor of the layers' dtype and device, eta is not a positive finite number, steps is not an int >= 0,
            tol is negative (or a tensor not of length B), or diverge_factor is not positive.
    """
    layers = check_layers(layers, batched=True)
    B = layers[0].shape[0]
    if isinstance(Phi, torch.Tensor) and Phi.ndim == 2:
        _check_phi(Phi, [W[0] for W in layers])
        Phi = Phi.expand(B, *Phi.shape)
    else:
        check_tensor("Phi", Phi, ndim=3)
        shape = (B, layers[-1].shape[1], layers[0].shape[2])
        if tuple(Phi.shape) != shape:
            raise ValueError(f"Phi (the target) must be d_N x d_0 or B x d_N x d_0 = {shape}, got {tuple(Phi.shape)}")
        check_same_dtype_device("Phi", Phi, "the layers", layers[0])
    eta = check_positive("eta (the step size)", eta)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if isinstance(tol, torch.Tensor):
        check_tensor("tol (the convergence losses)", tol, ndim=1)
        if tol.shape[0] != B or bool((tol < 0).any()):
            raise ValueError(f"tol must be a number >= 0 or a length-{B} tensor of them, got shape {tuple(tol.shape)}")
        tol = tol.to(dtype=layers[0].dtype, device=layers[0].device)
    else:
        tol = torch.full((B,), check_number("tol (the convergence loss)", tol, low=0.0, allow_inf=True),
                         dtype=layers[0].dtype, device=layers[0].device)
    check_number("diverge_factor", diverge_factor, low=0.0, low_open=True, allow_inf=True)
    N = len(layers)
    layers = [W.detach().clone() for W in layers]
    kw = {"dtype": layers[0].dtype, "device": layers[0].device}
    hit = torch.full((B,), -1, dtype=torch.long, device=layers[0].device)
    diverged = torch.zeros(B, dtype=torch.bool, device=layers[0].device)
    max_bal = torch.full((B,), float("nan"), **kw)
    if track_balancedness:
        max_bal = _batched_balancedness(layers)
    st = {"layers": layers, "P": None, "E": None, "loss0": None, "loss": None, "hit": hit, "diverged": diverged,
          "max_bal": max_bal}

    def observe(t):
        P = [st["layers"][0]]
        for W in st["layers"][1:]:
            P.append(W @ P[-1])
        E = P[-1] - Phi
        lt = 0.5 * (E ** 2).sum(dim=(1, 2))
        if st["loss0"] is None:
            st["loss0"], st["loss"] = lt.clone(), lt.clone()
        st["diverged"] = st["diverged"] | ~torch.isfinite(lt) | (lt > diverge_factor * st["loss0"].clamp_min(1e-300))
        active = ~st["diverged"]
        st["loss"] = torch.where(active, lt, st["loss"])
        newly = active & (st["hit"] < 0) & (lt <= tol)
        st["hit"] = torch.where(newly, torch.full_like(st["hit"], t), st["hit"])
        st["P"], st["E"] = P, E
        running = int((~((st["hit"] >= 0) | st["diverged"])).sum())
        max_loss = float(st["loss"][active].max()) if bool(active.any()) else float("nan")
        return running, {"max_loss": max_loss}

    def advance(t):
        # gradients G_k = (W_N ... W_{k+2})^T E (W_k ... W_1)^T, by a backward sweep of the suffix products
        P, S, Ws = st["P"], st["E"], st["layers"]
        grads = [None] * N
        for k in range(N - 1, -1, -1):
            grads[k] = S @ P[k - 1].transpose(1, 2) if k > 0 else S
            if k > 0:
                S = Ws[k].transpose(1, 2) @ S
        active = ~st["diverged"]
        keep = active[:, None, None]
        st["layers"] = [torch.where(keep, W - eta * g, W) for W, g in zip(Ws, grads)]
        if track_balancedness:
            st["max_bal"] = torch.where(active, torch.maximum(st["max_bal"], _batched_balancedness(st["layers"])),
                                        st["max_bal"])
        return None

    hist = History(method="gd-batched", eta=eta, series={"running": [], "max_loss": []})
    run_loop(hist, observe, advance, steps, tol=0.0, diverge_factor=math.inf, monitor="running")
    return st["layers"], BatchedRun(eta=eta, loss0=st["loss0"], loss=st["loss"], hit=st["hit"],
                                    diverged=st["diverged"], max_balancedness=st["max_bal"], steps=hist.steps,
                                    history=hist)


def margin_probability(s: float, phi_norm: float, d0: int, kappa: float = 0.0) -> float:
    """For a scalar output (d_N = 1) and a balanced start (Procedure 1) from :math:`A \\sim \\mathcal N(0, s^2 I_{d_0})`,
    the exact probability that the deficiency margin is at least :math:`\\kappa s`:

    .. math::
        P(c \\ge \\kappa s) = P\\big(\\|A - \\phi\\| \\le \\|\\phi\\| - \\kappa s\\big)
        = F_{\\chi'^2_{d_0}(\\|\\phi\\|^2/s^2)}\\!\\left(\\frac{(\\|\\phi\\| - \\kappa s)^2}{s^2}\\right),

    the non-central chi-square distribution function with d_0 degrees of freedom and non-centrality
    :math:`\\|\\phi\\|^2/s^2` (the end-to-end vector of Procedure 1 is A itself, and :math:`\\sigma_{\\min}(\\phi) =
    \\|\\phi\\|`). 0 when :math:`\\kappa s \\ge \\|\\phi\\|`.

    Args:
        s: the standard deviation of the entries of A (> 0).
        phi_norm: :math:`\\|\\phi\\|`, the norm of the target row (> 0).
        d0: the input dimension (>= 1).
        kappa: the margin asked for, in units of s (>= 0; 0 gives P(c > 0)).

    Raises:
        ValueError: if s or phi_norm is not a positive finite number, d0 is not a positive int, kappa is negative or
            not finite, or the probability is not finite.
    """
    from scipy.stats import ncx2

    s = check_positive("s (the init scale)", s)
    phi_norm = check_positive("||phi|| (the target's norm)", phi_norm)
    if not (isinstance(d0, int) and not isinstance(d0, bool) and d0 >= 1):
        raise ValueError(f"d0 (the input dimension) must be a positive int, got {d0!r}")
    kappa = check_positive("kappa (the margin in units of s)", kappa, allow_zero=True)
    if kappa * s >= phi_norm:
        return 0.0
    lam = (phi_norm / s) ** 2
    return finite_float("the margin probability", lambda: float(ncx2.cdf(((phi_norm - kappa * s) / s) ** 2, d0, lam)))


def arora_theorem1_iterations(loss0: float, eps: float, eta: float, c: float, N: int) -> float:
    """The number of steps after which Theorem 1's conclusion (as recalled) guarantees :math:`\\ell \\le \\epsilon`:
    the least T with :math:`(1 - \\eta c^{2(N-1)/N})^T \\ell(0) \\le \\epsilon`, i.e.
    :math:`T = \\lceil \\log(\\ell(0)/\\epsilon) / (-\\log(1 - \\eta c^{2(N-1)/N})) \\rceil` (0 if
    :math:`\\ell(0) \\le \\epsilon`). For small :math:`\\eta c^{2(N-1)/N}` this is
    :math:`\\approx \\log(\\ell(0)/\\epsilon) / (\\eta c^{2(N-1)/N})`, the count Theorem 2 quotes (as recalled).

    Args:
        loss0: :math:`\\ell(0)` (> 0).
        eps: the target loss (> 0).
        eta: the step size (> 0; :math:`\\eta c^{2(N-1)/N} < 1`).
        c: the deficiency margin (> 0).
        N: the depth.

    Raises:
        ValueError: if loss0, eps, eta or the margin c is not a positive finite number, N is not a positive int, or
            the step breaks Theorem 1's contraction, :math:`\\eta c^{2(N-1)/N} \\ge 1`.
    """
    loss0 = check_positive("loss0 (the initial loss)", loss0)
    eps = check_positive("eps (the target loss)", eps)
    arora_theorem1_rate(eta, c, N)                  # validates eta, c, N
    q = eta * c ** (2 * (N - 1) / N)          # not 1 - arora_theorem1_rate(...): that cancels to ~1e-16 / q relative
    if not 0 < q < 1:
        raise ValueError(f"arora_theorem1_iterations needs 0 < eta c^(2(N-1)/N) < 1, got {q!r}")
    if loss0 <= eps:
        return 0.0
    return finite_float("Theorem 1's iteration count", lambda: float(math.ceil(math.log(loss0 / eps) / -math.log1p(-q))))


def gaussian_gap_second_moment(d_prev: int, d_mid: int, d_next: int, std: float) -> float:
    """:math:`E\\|W_{j+1}^\\top W_{j+1} - W_j W_j^\\top\\|_F^2` for independent layers with i.i.d.
    :math:`N(0, \\text{std}^2)` entries, :math:`W_j` of shape d_mid x d_prev and :math:`W_{j+1}` of shape
    d_next x d_mid (the book's derivation in chapter A-GAUSS):

    .. math::
        \\text{std}^4\\, d_{mid}\\,\\big[(d_{prev} + d_{next})(d_{mid} + 1) + (d_{next} - d_{prev})^2\\big].

    Args:
        d_prev: d_{j-1}, the columns of W_j.
        d_mid: d_j, the rows of W_j and columns of W_{j+1}.
        d_next: d_{j+1}, the rows of W_{j+1}.
        std: the entries' standard deviation (> 0).

    Raises:
        ValueError: if a width d_prev, d_mid or d_next is not a positive int, std is not a positive finite number,
            or the moment overflows.
    """
    for name, v in (("d_prev", d_prev), ("d_mid", d_mid), ("d_next", d_next)):
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"{name} (a layer width) must be a positive int, got {v!r}")
    std = check_positive("std", std)
    return finite_float("the second moment of the balancedness gap",
                        lambda: std ** 4 * d_mid * ((d_prev + d_next) * (d_mid + 1) + (d_next - d_prev) ** 2))
