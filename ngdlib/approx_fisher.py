r"""Function-space kernels of exact and approximate natural gradient for deep MLPs (Karakida & Osawa 2020).

Setting (:class:`~ngdlib.models.DeepMLP`): squared loss :math:`\mathcal L = \frac{1}{2N}\|f - y\|^2`, Fisher
:math:`F = J^\top J / N`, residual :math:`r = f - y`, gradient :math:`\nabla\mathcal L = J^\top r / N`. An approximate
Fisher :math:`G` gives the step :math:`\theta \leftarrow \theta - \eta\, G^+ \nabla \mathcal L` and, to first order, the
function-space update

.. math::
    f(x') \leftarrow f(x') - \eta\, \bar\Theta(x', X)\, r, \qquad
    \bar\Theta(x', X) = \frac1N J(x')\, G^+ J(X)^\top .

If :math:`\bar\Theta(X, X) = \alpha I` ("isotropic gradient in function space") the training residual evolves as
:math:`r_t = (1 - \alpha\eta)^t r_0`, and :math:`\eta = 1/\alpha` converges in one step. Each variant is a small
object (a :class:`FisherVariant`: its blocks, its function-space kernel and step in the dual N x N form, never with a
parameter-space matrix, its :math:`\alpha`, its infinite-width limit), looked up by name in :data:`VARIANTS`:

================  =======================  ===========================================================================
name              class                    :math:`\alpha` on the training set
================  =======================  ===========================================================================
``"exact"``       :class:`Exact`           1
``"block_diag"``  :class:`BlockDiagonal`   L (every layer Gram nonsingular)
``"tri_diag"``    :class:`TriDiagonal`     :math:`\lceil L/3 \rceil`
``"kfac"``        :class:`KFAC`            :math:`N(L-1) + 1` (hidden widths and :math:`M_0 (+1) \ge N`)
``"unit_wise"``   :class:`UnitWise`        tanh: :math:`\sum_{l<L} M_l + 1`; ReLU: about :math:`\sum_l M_l / 2 + 1`
================  =======================  ===========================================================================

The dense (P x P) oracles these are tested against live in :mod:`ngdlib.reference`.

Reference: R. Karakida and K. Osawa, NeurIPS 2020, Secs. 3-5; the tri-diagonal pseudo-inverse for
:math:`L \equiv 2 \pmod 3` and the output-layer constant of K-FAC are derived in the book (chapters K-TRI, K-KFAC).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._history import History, run_loop
from ._checks import check_finite_result, check_number, check_same_dtype_device, check_tensor, check_vector
from ._linalg import (gram_factor_eigh, pinv, pinv_gram, pinv_gram_factor, psd_eigh, solve_checked, solve_psd,
                      solve_psd_batched, solve_shifted_psd_batched)
from .models import DeepMLP, Signals
from .kernels import relu_input_layer, relu_layer

__all__ = [
    "VARIANTS",
    "FisherVariant",
    "Exact",
    "BlockDiagonal",
    "TriDiagonal",
    "KFAC",
    "UnitWise",
    "TriDiag",
    "tri_coefficients",
    "Isotropy",
    "isotropy",
    "predicted_alpha",
    "function_kernel",
    "ngd_direction",
    "linearized_prediction",
    "ntk_test_prediction",
    "train_ngd",
    "limiting_factors",
    "limiting_function_kernel",
    "MultiSignals",
    "multi_output_signals",
    "multi_output_kernel",
    "damped_kfac_kernel",
]

# ---------------------------------------------------------------------------------------------------------- helpers
@dataclass
class TriDiag:
    """The L x L tri-diagonal all-ones matrix T and what the block tri-diagonal step needs from it.

    Attributes:
        T: the matrix (float64, CPU).
        d: the minimum-norm solution of :math:`T d = 1` (:math:`= T^{-1} 1` when T is invertible).
        alpha: :math:`1^\\top d`, the isotropy constant of block tri-diagonal NGD.
        singular: whether T is singular (exactly when :math:`L \\equiv 2 \\pmod 3`).
        null: unit vector spanning :math:`\\ker T` (proportional to (1, -1, 0, 1, -1, 0, ..., 1, -1)), or None.
    """

    T: torch.Tensor
    d: torch.Tensor
    alpha: float
    singular: bool
    null: torch.Tensor | None


def tri_coefficients(L: int) -> TriDiag:
    """Coefficients of block tri-diagonal NGD for L layers (see :class:`TriDiag`).

    :math:`\\det T_L = \\det T_{L-1} - \\det T_{L-2}` with :math:`\\det T_1 = 1`, :math:`\\det T_2 = 0`: the sequence
    1, 0, -1, -1, 0, 1, ... vanishes exactly for :math:`L \\equiv 2 \\pmod 3`. Then :math:`\\ker T` is spanned by
    z = (1, -1, 0, 1, -1, 0, ..., 1, -1), and :math:`1^\\top z = 0`, so :math:`T d = 1` is still solvable.

    >>> [round(tri_coefficients(L).alpha, 12) for L in range(1, 9)]
    [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0]

    Raises:
        ValueError: if L (the number of layers) is not an int >= 1.
    """
    if not (isinstance(L, int) and not isinstance(L, bool) and L >= 1):
        raise ValueError(f"L (the number of layers) must be an int >= 1, got {L!r}")
    T = torch.zeros(L, L, dtype=torch.float64)
    idx = torch.arange(L)
    T[idx, idx] = 1.0
    T[idx[:-1], idx[:-1] + 1] = 1.0
    T[idx[:-1] + 1, idx[:-1]] = 1.0
    ones = torch.ones(L, dtype=torch.float64)
    singular = L % 3 == 2
    if singular:
        z = torch.tensor([(1.0, -1.0, 0.0)[k % 3] for k in range(L)], dtype=torch.float64)
        z = z / z.norm()
        d = pinv(T, hermitian=True) @ ones
    else:
        z = None
        d = solve_checked(T, ones, f"the tri-diagonal coefficient matrix T (L = {L}, nonsingular for L mod 3 != 2)",
                          "report this: T is a fixed integer matrix")
    return TriDiag(T=T, d=d, alpha=float(d.sum()), singular=singular, null=z)


@dataclass
class Isotropy:
    """How close a function-space kernel :math:`\\bar\\Theta` (N x N) is to :math:`\\alpha I`.

    Attributes:
        alpha: :math:`\\mathrm{tr}\\,\\bar\\Theta / N`.
        coefficients: the per-sample coefficients :math:`\\bar\\Theta_{nn}` (N,).
        spread: :math:`(\\max_n \\bar\\Theta_{nn} - \\min_n \\bar\\Theta_{nn}) / \\alpha`.
        rel_std: standard deviation of the coefficients over :math:`\\alpha`.
        offdiag: :math:`\\max_{n \\ne m} |\\bar\\Theta_{nm}| / \\alpha`.
        defect: :math:`\\|\\bar\\Theta - \\alpha I\\|_2 / \\alpha`; with :math:`\\eta = 1/\\alpha` the linearised
            residual contracts at least by this factor per step.
        eig_min, eig_max: extreme eigenvalues of the symmetric part.
    """

    alpha: float
    coefficients: torch.Tensor
    spread: float
    rel_std: float
    offdiag: float
    defect: float
    eig_min: float
    eig_max: float


def isotropy(K: torch.Tensor) -> Isotropy:
    """Measure the isotropy of a square kernel (see :class:`Isotropy`).

    Raises:
        ValueError: if K is not a finite square float matrix, or its mean diagonal is not positive (then no
            isotropy constant exists).
    """
    check_tensor("K", K, ndim=2)
    if K.shape[0] != K.shape[1]:
        raise ValueError(f"K must be square (a training-set kernel), got shape {tuple(K.shape)}")
    n = K.shape[0]
    diag = torch.diagonal(K)
    alpha = float(diag.mean())
    if not alpha > 0:
        raise ValueError(f"the kernel has non-positive mean diagonal {alpha:.3e}: no isotropy constant")
    off = K - torch.diag(diag)
    Ks = check_finite_result("the symmetric part (K + K^T) / 2", (K + K.T) / 2)
    ev = torch.linalg.eigvalsh(Ks)
    eye = torch.eye(n, dtype=K.dtype, device=K.device)
    return Isotropy(
        alpha=alpha,
        coefficients=diag.detach().clone(),
        spread=float((diag.max() - diag.min()) / alpha),
        rel_std=float(diag.std(correction=0) / alpha) if n > 1 else 0.0,
        offdiag=float(off.abs().max() / alpha) if n > 1 else 0.0,
        defect=float(torch.linalg.matrix_norm(Ks - alpha * eye, ord=2) / alpha),
        eig_min=float(ev[0]),
        eig_max=float(ev[-1]),
    )


def _check_model(model) -> None:
    if not isinstance(model, DeepMLP):
        raise ValueError(f"model must be an ngdlib.DeepMLP, got {type(model).__name__}")


def _check_singular(singular) -> str:
    if singular not in ("raise", "pinv"):
        raise ValueError(f"singular must be 'raise' or 'pinv', got {singular!r}")
    return singular


def _inv_psd(A: torch.Tensor, what: str, remedy: str, singular: str, rank_cap: int | None = None):
    """Inverse of a PSD matrix (checked), or its pseudo-inverse when ``singular == 'pinv'``.

    The pseudo-inverse is :func:`ngdlib._linalg.pinv_gram` (the library's one rank cut-off, at most ``rank_cap``
    eigenvalues: the structural rank when it is known).
    """
    if singular == "raise":
        evals, evecs = psd_eigh(A, what, remedy)
        return (evecs / evals) @ evecs.T
    return pinv_gram(A, rank_cap=rank_cap, what=what)


def _projector_factor(F: torch.Tensor) -> torch.Tensor:
    """:math:`(F F^\\top)^+` for a factor F (N x k), from the factor's SVD (:func:`ngdlib._linalg.pinv_gram_factor`)."""
    return pinv_gram_factor(F, "a Kronecker factor")


def _validate(model, X, X_test=None):
    _check_model(model)
    model.check_inputs(X)
    if X_test is not None:
        model.check_inputs(X_test)


def _layer_remedy(l: int, model: DeepMLP, n: int) -> str:
    return (f"the layer Gram Theta_{l} = J_{l} J_{l}^T must be nonsingular (Karakida & Osawa's condition; widths "
            f"{model.widths}, N = {n}). The output layer's Theta_L = A_(L-1) A_(L-1)^T needs M_(L-1) (+1 with bias) "
            f">= N; the other Theta_l are Hadamard products (D_l D_l^T) * (A_(l-1) A_(l-1)^T) and are generically "
            f"nonsingular once the layer has enough parameters; pass singular='pinv' to use the pseudo-inverse anyway")


# ------------------------------------------------------------------------------------------------ the variants
class FisherVariant:
    r"""An approximate Fisher :math:`G` of a :class:`~ngdlib.models.DeepMLP`, as an object: which blocks of
    :math:`F = J^\top J / N` it keeps, its function-space kernel :math:`\bar\Theta(X', X) = \frac1N J(X') (G + \rho
    I)^+ J(X)^\top` and step direction in the dual (N x N) form, its isotropy constant :math:`\alpha`, and its
    infinite-width limit. One subclass per variant; :data:`VARIANTS` maps the names the chapters use to the instances
    (``VARIANTS["kfac"]``), and every public function accepts either.

    Attributes:
        name: the variant's name in :data:`VARIANTS`.
        blocks: the blocks of F that G keeps, in words (the dense oracles of :mod:`ngdlib.reference` build them
            independently from this description).
        dampable: whether damping :math:`\rho > 0` is implemented.
    """

    name = ""
    blocks = ""
    dampable = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def check_rho(self, rho) -> float:
        """The damping :math:`\\rho`, checked: a finite number >= 0, and 0 unless the variant is dampable.

        Raises:
            ValueError: for a negative, NaN or infinite rho, or rho > 0 for a variant without damping.
        """
        if not (isinstance(rho, (int, float)) and not isinstance(rho, bool) and math.isfinite(rho) and rho >= 0):
            raise ValueError(f"rho (the damping) must be a finite number >= 0, got {rho!r}")
        if rho > 0 and not self.dampable:
            dampable = tuple(v.name for v in VARIANTS.values() if v.dampable)
            raise ValueError(f"damping rho > 0 is implemented for {dampable} only (the book uses it for unit-wise "
                             f"ReLU); {self.name!r} uses the pure pseudo-inverse")
        return float(rho)

    def kernel(self, model: DeepMLP, s: Signals, s2: Signals, rho: float, singular: str) -> torch.Tensor:
        """:math:`\\bar\\Theta(X', X)` (N' x N) from the signals of X (``s``) and X' (``s2``)."""
        raise NotImplementedError

    def direction(self, model: DeepMLP, s: Signals, r: torch.Tensor, rho: float, singular: str) -> list:
        """:math:`(G + \\rho I)^+ J^\\top r / N` as L blocks shaped like the layer blocks."""
        raise NotImplementedError

    def multi_output_kernel(self, model: DeepMLP, ms: MultiSignals, s: Signals) -> torch.Tensor:
        """The C-output kernel (N C x N C) from the multi-output signals ``ms`` and their stacking ``s``."""
        raise NotImplementedError

    def alpha(self, model: DeepMLP, n: int) -> float:
        """The isotropy constant :math:`\\alpha` for ``n`` training points (see :func:`predicted_alpha`).

        Raises:
            ValueError: where the variant has no closed form at these sizes.
        """
        raise NotImplementedError

    def limiting_kernel(self, model: DeepMLP, train: list, cross: list, n: int) -> torch.Tensor:
        """The infinite-width kernel from the limiting factors ``train`` (X, X) and ``cross`` (X', X) of
        :func:`limiting_factors`.

        Raises:
            ValueError: where the variant has no closed-form limit.
        """
        raise ValueError(f"limiting_function_kernel: {self.name} has no closed-form limit here")


class _LayerCoefficients(FisherVariant):
    r"""Variants whose step is :math:`v_l = J_l^\top C_l r` with N x N coefficient maps :math:`C_l` computed from the
    layer Grams :math:`\Theta_l` alone: then :math:`\bar\Theta(X', X) = \sum_l \Theta_l(X', X) C_l`."""

    def maps(self, model: DeepMLP, grams: list, rho: float, singular: str, *, limit: bool = False) -> list:
        """The maps :math:`C_l` (N x N) from the layer Grams (``limit``: the Grams are infinite-width limits)."""
        raise NotImplementedError

    def kernel(self, model, s, s2, rho, singular):
        """This variant's function-space kernel (:meth:`FisherVariant.kernel`)."""
        grams = _layer_grams(s, s)
        Cs = self.maps(model, grams, rho, singular)
        grams2 = grams if s2 is s else _layer_grams(s, s2)
        return check_finite_result(f"the function kernel ({self.name})", sum(G2 @ C for G2, C in zip(grams2, Cs)))

    def direction(self, model, s, r, rho, singular):
        """This variant's step direction (:meth:`FisherVariant.direction`)."""
        Cs = self.maps(model, _layer_grams(s, s), rho, singular)
        return check_finite_result(f"the {self.name} direction",
                                   [D.T @ ((C @ r)[:, None] * A) for A, D, C in zip(s.A, s.D, Cs)])

    def multi_output_kernel(self, model, ms, s):
        """This variant's C-output kernel (:meth:`FisherVariant.multi_output_kernel`)."""
        grams = _layer_grams(s, s)
        Cs = self.maps(model, grams, 0.0, "raise")
        return check_finite_result(f"the C-output function kernel ({self.name})",
                                   sum(G @ M for G, M in zip(grams, Cs)))

    def limiting_kernel(self, model, train, cross, n):
        """This variant's infinite-width kernel (:meth:`FisherVariant.limiting_kernel`)."""
        grams = [Ki * Si for Ki, Si in train]
        grams2 = [Ki * Si for Ki, Si in cross]
        return sum(G2 @ C for G2, C in zip(grams2, self.maps(model, grams, 0.0, "raise", limit=True)))


class Exact(_LayerCoefficients):
    r"""Exact NGD, :math:`G = F`: :math:`\bar\Theta(x', X) = \Theta(x', X)\Theta^{-1}`, so :math:`\bar\Theta = I`
    and :math:`\alpha = 1`. Coefficient maps :math:`C_l = (\Theta + \rho N I)^{-1}` for every layer."""

    name = "exact"
    blocks = "all of F"
    dampable = True

    def maps(self, model, grams, rho, singular, *, limit=False):
        """The N x N coefficient maps C_l of this variant, from the layer Grams."""
        n = grams[0].shape[0]
        eye = torch.eye(n, dtype=grams[0].dtype, device=grams[0].device)
        if limit:
            Ci = _inv_psd(sum(grams), "the infinite-width NTK", _LIMIT_REMEDY, "raise")
        else:
            Ci = _inv_psd(sum(grams) + rho * n * eye, "the NTK Theta = J J^T", "J must have full row rank N (the "
                          "network is too narrow or two inputs coincide); pass singular='pinv' for the pseudo-inverse",
                          singular)
        return [Ci] * model.L

    def alpha(self, model, n):
        """This variant's :math:`\\alpha` (:meth:`FisherVariant.alpha`)."""
        return 1.0


class BlockDiagonal(_LayerCoefficients):
    r"""Layer-wise block-diagonal NGD, :math:`G = \mathrm{blockdiag}_l(J_l^\top J_l / N)`:
    :math:`\bar\Theta(x', X) = \sum_l \Theta_l(x', X)\Theta_l^{-1}`, so :math:`\bar\Theta = L\, I` exactly whenever
    every layer Gram :math:`\Theta_l` is nonsingular: :math:`\alpha = L`."""

    name = "block_diag"
    blocks = "the diagonal layer blocks F_ll"
    dampable = True

    def maps(self, model, grams, rho, singular, *, limit=False):
        """The N x N coefficient maps C_l of this variant, from the layer Grams."""
        n = grams[0].shape[0]
        eye = torch.eye(n, dtype=grams[0].dtype, device=grams[0].device)
        if limit:
            return [_inv_psd(G, f"the infinite-width layer Gram {l + 1}", _LIMIT_REMEDY, "raise")
                    for l, G in enumerate(grams)]
        return [_inv_psd(G + rho * n * eye, f"the layer Gram Theta_{l + 1}", _layer_remedy(l + 1, model, n), singular)
                for l, G in enumerate(grams)]

    def alpha(self, model, n):
        """This variant's :math:`\\alpha` (:meth:`FisherVariant.alpha`)."""
        return float(model.L)


class TriDiagonal(_LayerCoefficients):
    r"""Block tri-diagonal NGD: the layer blocks :math:`(l, l')` with :math:`|l - l'| \le 1` kept. Ansatz
    :math:`v_l = J_l^\top \Theta_l^{-1} c_l`: the system :math:`G v = J^\top r / N` becomes :math:`(T \otimes I)\, c
    = 1 \otimes r` with :math:`T` the L x L tri-diagonal all-ones matrix (:func:`tri_coefficients`), so
    :math:`c_l = d_l r` with :math:`T d = 1` and :math:`\bar\Theta = (1^\top d)\, I`: :math:`\alpha = 1^\top T^+ 1 =
    \lceil L/3 \rceil`. For singular T (:math:`L \equiv 2 \pmod 3`) the minimum-norm correction along
    :math:`\ker T` is added (invisible on the training set)."""

    name = "tri_diag"
    blocks = "the layer blocks F_ll' with |l - l'| <= 1"

    def maps(self, model, grams, rho, singular, *, limit=False):
        """The N x N coefficient maps C_l of this variant, from the layer Grams.

        Raises:
            ValueError: for the infinite-width limit when T is singular (L = 3s + 2), or when a layer Gram Theta_l is
                singular or too ill-conditioned (block tri-diagonal NGD has no dual form unless every Theta_l is
                invertible).
        """
        n = grams[0].shape[0]
        td = tri_coefficients(model.L)
        if limit:
            if td.singular:
                raise ValueError("limiting_function_kernel: tri_diag is implemented for invertible T (L != 3s + 2)")
            inv = [_inv_psd(G, f"the infinite-width layer Gram {l + 1}", _LIMIT_REMEDY, "raise")
                   for l, G in enumerate(grams)]
        else:      # needs every Theta_l invertible
            inv = [_inv_psd(G, f"the layer Gram Theta_{l + 1}", _layer_remedy(l + 1, model, n).split("; pass")[0] +
                            " (block tri-diagonal NGD has no dual form otherwise)", "raise") for l, G in enumerate(grams)]
        d = td.d.to(dtype=grams[0].dtype, device=grams[0].device)
        Cs = [d[l] * inv[l] for l in range(model.L)]
        if td.singular:
            z = td.null.to(dtype=grams[0].dtype, device=grams[0].device)
            S = sum(z[l] ** 2 * inv[l] for l in range(model.L))
            R = sum(z[l] * d[l] * inv[l] for l in range(model.L))
            Q = -solve_psd(S, R, "the tri-diagonal null-space correction's S = sum_l z_l^2 Theta_l^{-1} (positive "
                           "definite: a positive combination of inverses)", "report this: it cannot be singular")
            Cs = [Cs[l] + z[l] * inv[l] @ Q for l in range(model.L)]
        return Cs

    def alpha(self, model, n):
        """This variant's :math:`\\alpha` (:meth:`FisherVariant.alpha`)."""
        return tri_coefficients(model.L).alpha


def _check_hidden_widths(model: DeepMLP, n: int, name: str) -> None:
    if not all(m >= n for m in model.hidden):
        raise ValueError(f"{name}: isotropy needs every hidden width >= N = {n}, got hidden widths {model.hidden}")


class KFAC(FisherVariant):
    r"""K-FAC: per layer :math:`G_l = (D_l^\top D_l / N) \otimes (A_{l-1}^\top A_{l-1} / N)` with pseudo-inverses of
    the factors: :math:`\bar\Theta(x', X) = N \sum_l [A'A^\top (AA^\top)^+] \odot [D'D^\top (DD^\top)^+]`. With all
    hidden widths :math:`\ge N` and :math:`M_0 (+1) \ge N` every factor projection is the identity except the output
    layer's :math:`P_{D_L} = 11^\top/N`, hence :math:`\alpha = N(L-1) + 1` (the authors' code uses :math:`NL`, which
    treats the output layer like a hidden one). The factors are singular by construction, so ``singular`` is
    ignored: K-FAC always uses their pseudo-inverses."""

    name = "kfac"
    blocks = "per layer, the Kronecker product of the factors D_l^T D_l / N and A_(l-1)^T A_(l-1) / N"

    def kernel(self, model, s, s2, rho, singular):
        """This variant's function-space kernel (:meth:`FisherVariant.kernel`)."""
        out = 0
        for A, D, A2, D2 in zip(s.A, s.D, s2.A, s2.D):
            PA = (A2 @ A.T) @ _projector_factor(A)
            PD = (D2 @ D.T) @ _projector_factor(D)
            out = out + PA * PD
        return check_finite_result("the function kernel (kfac)", s.n * out)

    def direction(self, model, s, r, rho, singular):
        """This variant's step direction (:meth:`FisherVariant.direction`)."""
        out = []
        for A, D in zip(s.A, s.D):
            left = D.T @ _projector_factor(D)                 # pinv(D) = D^T (D D^T)^+   (M_l x N)
            right = _projector_factor(A) @ A                  # pinv(A)^T = (A A^T)^+ A  (N x cols)
            out.append(s.n * left @ (r[:, None] * right))
        return check_finite_result("the kfac direction", out)

    def multi_output_kernel(self, model, ms, s):
        """This variant's C-output kernel (:meth:`FisherVariant.multi_output_kernel`)."""
        out = 0
        ones = torch.ones(ms.c, ms.c, dtype=ms.f.dtype, device=ms.f.device)
        for A, D in zip(ms.A, s.D):
            PA = torch.kron((A @ A.T) @ _projector_factor(A), ones)
            PD = (D @ D.T) @ _projector_factor(D)
            out = out + PA * PD
        return check_finite_result("the C-output function kernel (kfac)", ms.n * out)

    def alpha(self, model, n):
        """This variant's :math:`\\alpha` (:meth:`FisherVariant.alpha`).

        Raises:
            ValueError: if a hidden width is below N, or if M_0 (+1 with bias) < N with a bias or with L = 1 (then the
                input factor is not the identity and alpha has no closed form).
        """
        _check_hidden_widths(model, n, self.name)
        L, b = model.L, int(model.bias)
        if model.d + b >= n:
            return float(n * (L - 1) + 1)
        if L >= 2 and not model.bias:
            return float(n * (L - 2) + model.d + 1)
        raise ValueError(f"kfac: with M_0 = {model.d} < N = {n} the input factor is not the identity; a closed form "
                         "exists only without bias and for inputs in radial isotropic position (L >= 2)")

    def limiting_kernel(self, model, train, cross, n):
        """This variant's infinite-width kernel (:meth:`FisherVariant.limiting_kernel`)."""
        out = 0
        for l, ((Ki, Si), (Ki2, Si2)) in enumerate(zip(train, cross)):
            PA = Ki2 @ pinv_gram(Ki, rank_cap=min(n, model.d + int(model.bias)) if l == 0 else None,
                                 what=f"the infinite-width input Gram of layer {l + 1}")
            PS = (torch.full_like(Si2, 1.0 / n) if l == model.L - 1
                  else Si2 @ pinv_gram(Si, what=f"the infinite-width derivative Gram of layer {l + 1}"))
            out = out + PA * PS
        return n * out


class UnitWise(FisherVariant):
    r"""Unit-wise NGD: one block per unit (a row :math:`[w_i \mid b_i]` of a layer block): :math:`\bar\Theta =
    \sum_{l,i} \Theta_{l,i}(x', X)\Theta_{l,i}^+`; on the training set each unit contributes the projection onto the
    inputs where its backward signal is non-zero. tanh: :math:`\alpha = \sum_{l<L} M_l + 1`; ReLU: a diagonal with the
    number of active units per input (about :math:`M/2` per layer), with damping :math:`\rho` available."""

    name = "unit_wise"
    blocks = "the unit blocks (one row [w_i | b_i] of a layer block each)"
    dampable = True

    def kernel(self, model, s, s2, rho, singular):
        """This variant's function-space kernel (:meth:`FisherVariant.kernel`)."""
        out = 0
        for l in range(model.L):
            A, A2, D2 = s.A[l], s2.A[l], s2.D[l]
            K2 = A2 @ A.T
            maps = _unit_maps(model, s, l, rho, singular)
            if maps[0] == "shared":
                _, Kinv, Dinv = maps
                out = out + (K2 @ Kinv) * (D2 @ Dinv.T)
            else:
                Z = maps[1]                                   # (M, N, N): w_i = Z_i r
                out = out + torch.einsum("pi,pq,iqr->pr", D2, K2, Z)
        return check_finite_result("the function kernel (unit_wise)", out)

    def direction(self, model, s, r, rho, singular):
        """This variant's step direction (:meth:`FisherVariant.direction`)."""
        out = []
        for l in range(model.L):
            A = s.A[l]
            maps = _unit_maps(model, s, l, rho, singular)
            if maps[0] == "shared":
                _, Kinv, Dinv = maps
                W = Kinv @ (r[:, None] * Dinv)                   # column i: K^{-1}(r / delta_i)
            else:
                W = torch.einsum("iqr,r->qi", maps[1], r)
            out.append(W.T @ A)
        return check_finite_result("the unit_wise direction", out)

    def multi_output_kernel(self, model, ms, s):
        """This variant's C-output kernel (:meth:`FisherVariant.multi_output_kernel`)."""
        return self.kernel(model, s, s, 0.0, "pinv")

    def alpha(self, model, n):
        """This variant's :math:`\\alpha` (:meth:`FisherVariant.alpha`).

        Raises:
            ValueError: if a hidden width is below N, or the first layer's input dimension M_0 (+1 with bias) is below
                N (the first-layer units' projections are then not diagonal).
        """
        _check_hidden_widths(model, n, self.name)
        b = int(model.bias)
        if model.d + b < n:
            raise ValueError(f"unit_wise: the first-layer units see inputs of dimension M_0 (+1) = {model.d + b} < "
                             f"N = {n}; their projections are not diagonal and alpha has no closed form")
        if model.activation == "tanh":
            return float(sum(model.hidden) + 1)
        return float(sum(model.hidden) / 2 + 1)


#: The variants by the names the chapters use: ``VARIANTS["kfac"]`` is the :class:`KFAC` object. Iterating gives the
#: names in the book's order (exact, block-diagonal, tri-diagonal, K-FAC, unit-wise).
VARIANTS = {v.name: v for v in (Exact(), BlockDiagonal(), TriDiagonal(), KFAC(), UnitWise())}

_LIMIT_REMEDY = "the inputs must be distinct (and, for the first layer, of rank N when it is inverted alone)"


def _variant(variant) -> FisherVariant:
    """The :class:`FisherVariant` for a name in :data:`VARIANTS` or an instance (returned as it is).

    Raises:
        ValueError: if ``variant`` is neither a name in :data:`VARIANTS` nor a :class:`FisherVariant`.
    """
    if isinstance(variant, FisherVariant):
        return variant
    if isinstance(variant, str) and variant in VARIANTS:
        return VARIANTS[variant]
    raise ValueError(f"variant must be one of {tuple(VARIANTS)} or a FisherVariant, got {variant!r}")


def _layer_grams(s: Signals, s2: Signals) -> list:
    """:math:`\\Theta_l(X', X) = (D_l' D_l^\\top) \\odot (A_{l-1}' A_{l-1}^\\top)` for every layer."""
    return [(D2 @ D.T) * (A2 @ A.T) for A, D, A2, D2 in zip(s.A, s.D, s2.A, s2.D)]


def predicted_alpha(model: DeepMLP, variant, n: int) -> float:
    """The isotropy constant :math:`\\alpha` that the library's definitions give for ``n`` training points.

    - ``exact``: 1. ``block_diag``: L. ``tri_diag``: :math:`1^\\top T^+ 1 = \\lceil L/3 \\rceil`.
    - ``kfac`` (every factor of rank N: the hidden layer inputs and the backward signals :math:`D_l`; hidden widths
      >= n is necessary but, for ReLU, not sufficient: the neural-tangents/curvlinops oracle found rank
      :math:`D_2 = 6 < N = 8` at widths (10, 12, 12), and then :math:`\\alpha = \\sum_{l<L} \\mathrm{rank}\\, D_l + 1`,
      which this closed form does not see; check the ranks, e.g. with :func:`ngdlib.reference.factor_ranks`):
      :math:`N(L-1) + 1` when :math:`M_0` (+1 with a bias) >= n; for
      :math:`M_0 < n`, no first-layer bias and inputs in radial isotropic position (:func:`ngdlib.data.forster`), every
      leverage of the input factor is :math:`M_0/N` and :math:`\\alpha = N(L-2) + M_0 + 1`.
    - ``unit_wise``: tanh (all layer inputs of size >= n): :math:`\\sum_{l=1}^{L-1} M_l + 1`. ReLU: the expectation
      over the initialisation, :math:`\\sum_l M_l / 2 + 1` (each unit is active on an input with probability 1/2);
      the per-sample coefficients fluctuate around it.

    Each value is the variant object's :meth:`FisherVariant.alpha`.

    Raises:
        ValueError: for a bad model, variant or n, or where the library has no closed form (the kernel is then not
            isotropic).
    """
    _check_model(model)
    fv = _variant(variant)
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise ValueError(f"n (the number of training points) must be a positive int, got {n!r}")
    return fv.alpha(model, n)


def _unit_maps(model: DeepMLP, s: Signals, l: int, rho: float, singular: str):
    """For unit-wise NGD in layer l (0-based): Z (M x N x N) with w_i = Z_i r, or the tanh shortcut.

    Returns ``("shared", Kinv, Dinv)`` (every unit has full support: w_i = K^{-1} (r / delta_i)) or
    ``("batched", Z)``.

    Raises:
        ValueError: with ``singular='raise'``, when the layer's input Gram A A^T is singular or too ill-conditioned
            (the layer's input dimension M_l (+1 with bias) must be >= N), or when a damped unit Gram is singular.
    """
    A, D = s.A[l], s.D[l]
    n = s.n
    K = A @ A.T
    eye = torch.eye(n, dtype=K.dtype, device=K.device)
    mask = D != 0
    remedy = (f"unit-wise NGD: the layer-{l + 1} input Gram A A^T must be nonsingular, i.e. the layer input "
              f"dimension M_{l} (+1 with bias) = {A.shape[1]} must be >= N = {n}; pass singular='pinv' or rho > 0")
    if rho > 0:
        Th = D.T[:, :, None] * K[None, :, :] * D.T[:, None, :]      # (M, N, N): Theta_{l,i} (checked finite below)
        Z = D.T[:, :, None] * solve_shifted_psd_batched(Th, rho * n, eye.expand_as(Th),
                                                        f"the unit Gram matrices Theta_({l + 1},i)")
        return ("batched", Z)
    K_ok = True
    try:
        evals, evecs = psd_eigh(K, f"unit-wise NGD, layer {l + 1}: A A^T", remedy)
    except ValueError:
        if singular == "raise":
            raise
        K_ok = False
    if K_ok:
        # exact support formula: Theta_{l,i}^+ = E_S diag(1/delta_S) K_SS^{-1} diag(1/delta_S) E_S^T
        if bool(mask.all()):
            return ("shared", (evecs / evals) @ evecs.T, 1.0 / D)
        m = mask.T.to(K.dtype)                                      # (M, N)
        # off the support the system is decoupled (right-hand side 0, so z = 0 there); it is padded with the mean
        # eigenvalue of K rather than 1, so that the padding does not worsen the condition number of K_SS
        Kt = m[:, :, None] * K[None] * m[:, None, :] + torch.diag_embed(1 - m) * (torch.trace(K) / n)
        Dinv = torch.where(mask, 1.0 / torch.where(mask, D, torch.ones_like(D)), torch.zeros_like(D)).T
        Z = solve_psd_batched(Kt, torch.diag_embed(Dinv), f"unit-wise NGD, layer {l + 1}: the support blocks K_SS of "
                              "A A^T (positive definite with A A^T)", remedy)   # K_SS^{-1} diag(1/delta_S)
        return ("batched", Z)
    # batched pseudo-inverse of each Theta_{l,i} = diag(delta_i) A A^T diag(delta_i), asked of its factor
    # diag(delta_i) U_A Sigma_A (N x r, r = rank A <= min(N, layer input size)), from one thin SVD of A
    U, lam, keep = gram_factor_eigh(A, f"the layer-{l + 1} input A")
    Fa = U[:, keep] * lam[keep].sqrt()
    P = pinv_gram_factor(D.T[:, :, None] * Fa[None], f"the unit Gram factors of layer {l + 1}")
    return ("batched", D.T[:, :, None] * P)


# ---------------------------------------------------------------------------------------------------------- public API
def function_kernel(model: DeepMLP, X: torch.Tensor, variant, *, X_test: torch.Tensor | None = None,
                    rho: float = 0.0, singular: str = "raise") -> torch.Tensor:
    """Function-space kernel :math:`\\bar\\Theta(X', X) = \\frac1N J(X') (G + \\rho I)^+ J(X)^\\top` of one variant.

    Computed in the dual form (N x N matrices built from the forward activations and backward signals) by the
    variant's :meth:`FisherVariant.kernel`; see each variant class for its formula.

    Args:
        model: a :class:`~ngdlib.models.DeepMLP`.
        X: the N training inputs that define G.
        variant: a name in :data:`VARIANTS` or a :class:`FisherVariant`.
        X_test: evaluate at these inputs (N' x M_0) instead of X; the result is then N' x N.
        rho: damping (exact, block_diag, unit_wise only): :math:`(G + \\rho I)^{-1}` i.e.
            :math:`(\\Theta_\\cdot + \\rho N I)^{-1}` per block.
        singular: ``"raise"`` (default) refuses a singular Gram block with a ``ValueError`` that names the
            condition; ``"pinv"`` uses the pseudo-inverse (for showing what happens when the condition fails).
            K-FAC always uses pseudo-inverses of its factors (they are singular by construction).

    Raises:
        ValueError: for a bad model, inputs, variant, damping or ``singular``, or (``singular="raise"``) a singular
            Gram block, named with its condition.
    """
    _validate(model, X, X_test)
    fv = _variant(variant)
    rho = fv.check_rho(rho)
    singular = _check_singular(singular)
    s = model.signals(X)
    s2 = s if X_test is None else model.signals(X_test)
    return fv.kernel(model, s, s2, rho, singular)


def ngd_direction(model: DeepMLP, X: torch.Tensor, r: torch.Tensor, variant, *, rho: float = 0.0,
                  singular: str = "raise") -> list:
    """The step direction :math:`(G + \\rho I)^+ \\nabla\\mathcal L` with :math:`\\nabla\\mathcal L = J^\\top r / N`,
    as L blocks shaped like the layer blocks (apply with ``model.apply_step(V, eta)``).

    Its first-order effect on the outputs is ``function_kernel(model, X, variant) @ r``. Per variant (dual form, the
    variant's :meth:`FisherVariant.direction`): exact :math:`v_l = J_l^\\top \\Theta^{-1} r`; block_diag
    :math:`J_l^\\top \\Theta_l^{-1} r`; tri_diag :math:`J_l^\\top \\Theta_l^{-1}(d_l r + z_l q)` (q the minimum-norm
    correction when T is singular); kfac :math:`N\\, D_l^\\top (D_l D_l^\\top)^+ \\mathrm{diag}(r) (A A^\\top)^+ A`;
    unit_wise row i of layer l: :math:`A^\\top \\mathrm{diag}(\\delta_i) \\Theta_{l,i}^+ r`.

    Raises:
        ValueError: for a bad model, inputs, residual, variant, damping or ``singular``, or (``singular="raise"``) a
            singular Gram block, named with its condition.
    """
    _validate(model, X)
    fv = _variant(variant)
    rho = fv.check_rho(rho)
    singular = _check_singular(singular)
    s = model.signals(X)
    check_vector("r", r, s.n, "the residual f - y has one entry per training input")
    if r.dtype != X.dtype or r.device != X.device:
        raise ValueError(f"r has dtype {r.dtype} on {r.device}, X has {X.dtype} on {X.device}; they must match")
    return fv.direction(model, s, r, rho, singular)


def linearized_prediction(K_train: torch.Tensor, K_test: torch.Tensor | None, f0_train: torch.Tensor,
                          f0_test: torch.Tensor | None, y: torch.Tensor, eta: float, steps: int):
    """Outputs of the linearised dynamics :math:`f_{t+1} = f_t - \\eta \\bar\\Theta(\\cdot, X)(f_t(X) - y)`.

    .. math::
        f_t(X) = y + (I - \\eta\\bar\\Theta)^t (f_0 - y), \\qquad
        f_t(x') = f_0(x') - \\bar\\Theta(x', X)\\, \\bar\\Theta^{-1}[I - (I - \\eta\\bar\\Theta)^t](f_0 - y),

    where :math:`\\bar\\Theta^{-1}[I - (I - \\eta\\bar\\Theta)^t] = \\eta\\sum_{s<t}(I - \\eta\\bar\\Theta)^s`
    (no inverse
    is needed). For exact NGD, :math:`\\bar\\Theta = I` and :math:`\\bar\\Theta(x', X) = \\Theta(x', X)\\Theta^{-1}`
    give Karakida & Osawa's :math:`f_t(x') = f_0(x') - \\Theta(x', X)\\Theta^{-1}[1 - (1 - \\eta)^t](f_0 - y)`.

    Returns:
        ``(F_train, F_test)``: tensors of shape (steps + 1, N) and (steps + 1, N') (``None`` without a test kernel).

    Raises:
        ValueError: if K_train is not square, K_test has not N columns, the outputs or targets have the wrong
            length, eta is not positive and finite, steps is not a non-negative int, or the outputs overflow.
    """
    check_tensor("K_train", K_train, ndim=2)
    n = K_train.shape[0]
    if K_train.shape != (n, n):
        raise ValueError(f"K_train must be square, got {tuple(K_train.shape)}")
    check_vector("f0_train", f0_train, n, "one output per training input")
    check_vector("y", y, n, "one target per training input")
    for name, t in (("f0_train", f0_train), ("y", y)):
        check_same_dtype_device(name, t, "K_train", K_train)
    if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
        raise ValueError(f"eta must be a positive finite number, got {eta!r}")
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    evals, evecs = torch.linalg.eigh((K_train + K_train.T) / 2)
    r0 = evecs.T @ (f0_train - y)
    ts = torch.arange(steps + 1, dtype=K_train.dtype, device=K_train.device)
    base = (1 - eta * evals)[None, :].expand(steps, n)
    # integer powers by repeated products (a float power of a negative base would be NaN)
    decay = torch.cat([torch.ones(1, n, dtype=K_train.dtype, device=K_train.device), torch.cumprod(base, dim=0)])
    F_train = y[None, :] + (decay * r0[None, :]) @ evecs.T
    check_finite_result("the linearised outputs (|1 - eta lambda|^t overflows: eta too large for this many steps)",
                        F_train)
    if K_test is None:
        return F_train, None
    check_tensor("K_test", K_test, ndim=2)
    if K_test.shape[1] != n:
        raise ValueError(f"K_test must have N = {n} columns, got {tuple(K_test.shape)}")
    check_vector("f0_test", f0_test, K_test.shape[0], "one output per test input")
    for name, t in (("K_test", K_test), ("f0_test", f0_test)):
        check_same_dtype_device(name, t, "K_train", K_train)
    small = evals.abs() < 1e-300
    phi = torch.where(small, eta * ts[:, None].expand_as(decay),
                      (1 - decay) / torch.where(small, torch.ones_like(evals), evals)[None, :])
    F_test = f0_test[None, :] - ((phi * r0[None, :]) @ evecs.T) @ K_test.T
    return F_train, check_finite_result("the linearised test outputs", F_test)


def ntk_test_prediction(model: DeepMLP, X: torch.Tensor, y: torch.Tensor, X_test: torch.Tensor, eta: float,
                        t: int) -> torch.Tensor:
    """Karakida & Osawa's exact-NGD prediction :math:`f_t(x') = f_0(x') - \\Theta(x', X)\\Theta^{-1}[1 - (1-\\eta)^t]
    (f_0 - y)` at the current parameters (the closed form, written out; :func:`linearized_prediction` is the
    general version).

    Raises:
        ValueError: for a bad model, inputs or targets, eta not positive and finite, t not a non-negative int, or
            an NTK Theta that is singular (J must have full row rank N).
    """
    _validate(model, X, X_test)
    check_vector("y", y, X.shape[0], "one target per training input")
    check_same_dtype_device("y", y, "X", X)
    check_number("eta (the step size)", eta, low=0.0, low_open=True)
    if not (isinstance(t, int) and not isinstance(t, bool) and t >= 0):
        raise ValueError(f"t must be a non-negative int, got {t!r}")
    with torch.no_grad():
        f0, f0t = model(X), model(X_test)
        Th = model.ntk(X)
        Tht = model.ntk(X, X_test)
    evals, evecs = psd_eigh(Th, "the NTK Theta = J J^T", "J must have full row rank N")
    z = evecs @ ((evecs.T @ (f0 - y)) / evals)
    return check_finite_result("the NTK test prediction", f0t - (1 - (1 - eta) ** t) * (Tht @ z))


def train_ngd(model: DeepMLP, X: torch.Tensor, y: torch.Tensor, variant: str, eta: float, steps: int, *,
              X_test: torch.Tensor | None = None, rho: float = 0.0, singular: str = "raise",
              diverge_factor: float = 1e6, tol: float = 0.0) -> History:
    """Run ``steps`` steps :math:`\\theta \\leftarrow \\theta - \\eta\\, (G + \\rho I)^+ \\nabla\\mathcal L` in
    place (the real, nonlinear network) and return its :class:`~ngdlib.train.History`.

    Recorded series, per iterate (index 0 = start): ``residual_norm`` :math:`\\|f - y\\|` (monitored), ``loss``
    :math:`\\mathcal L = \\|f - y\\|^2 / (2N)`, ``f_train`` (the outputs on X) and, with ``X_test``, ``f_test``.
    The run stops by the divergence rule of :mod:`ngdlib.train` (``history.diverged``) once :math:`\\|f - y\\|`
    exceeds ``diverge_factor`` times its start or becomes non-finite, and early (``"tolerance reached"``) once
    :math:`\\|f - y\\| \\le` ``tol``; ``history.steps`` is then the number of steps that reaching it took.

    Raises:
        ValueError: for a bad model, inputs, targets, variant, damping or ``singular``; a step size that is not a
            positive finite number; a negative step count or tolerance; or a singular Gram block
            (``singular="raise"``).
    """
    _validate(model, X, X_test)
    fv = _variant(variant)
    fv.check_rho(rho)
    _check_singular(singular)
    check_vector("y", y, X.shape[0], "one target per training input")
    check_same_dtype_device("y", y, "X", X)
    check_number("diverge_factor", diverge_factor, low=0.0, low_open=True, allow_inf=True)
    tol = check_number("tol (the residual norm to stop at)", tol, low=0.0)
    eta = check_number("eta (the step size)", eta, low=0.0, low_open=True)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    names = ("residual_norm", "loss", "f_train") + (("f_test",) if X_test is not None else ())
    run = History(method=fv.name, eta=eta, series={k: [] for k in names})
    n = X.shape[0]
    state = {}

    def observe(k):
        f = model(X)
        state["f"] = f
        rn = float(torch.linalg.vector_norm(f - y))
        rec = {"loss": rn * rn / (2 * n), "f_train": f.clone()}
        if X_test is not None:
            rec["f_test"] = model(X_test).clone()
        return rn, rec

    def advance(k):
        V = ngd_direction(model, X, state["f"] - y, fv, rho=rho, singular=singular)
        model.apply_step(V, eta)

    with torch.no_grad():
        run_loop(run, observe, advance, steps, tol=tol, diverge_factor=diverge_factor, monitor="residual_norm")
    return run


# ------------------------------------------------------------------------------------------------------ infinite width
def limiting_factors(model: DeepMLP, X: torch.Tensor, X_test: torch.Tensor | None = None) -> list:
    r"""Infinite-width limits of the layer factors of a ReLU :class:`~ngdlib.models.DeepMLP` (widths M_1.. -> infinity).

    For layer l = 1..L returns ``(K_in, K_sig)``, the limits of :math:`A_{l-1}(X') A_{l-1}(X)^\top` and
    :math:`D_l(X') D_l(X)^\top` (N' x N, or N x N without ``X_test``):

    .. math::
        K_0 = \sigma_w^2 X'X^\top / M_0 + \sigma_b^2,\quad
        K_l = \sigma_w^2\, \mathbb E[\phi(u)\phi(u')] + \sigma_b^2,\quad
        \dot S_l = \sigma_w^2\, \mathbb E[\phi'(u)\phi'(u')],\quad u \sim \mathcal N(0, K_{l-1}),

    with the ReLU arc-cosine closed forms; :math:`D_l D_l^\top \to \prod_{k=l}^{L-1} \dot S_k` (1 for the output
    layer), so the limiting layer Gram is :math:`\Theta_l^\infty = K_{l-1} \odot \prod_{k \ge l} \dot S_k` (the NTK of
    Jacot et al. split by layer). The biases contribute :math:`\sigma_b^2` only if the model has them.

    Raises:
        ValueError: for a model whose activation is not ReLU (tanh needs numerical integration), or bad inputs.
    """
    _validate(model, X, X_test)
    if model.activation != "relu":
        raise ValueError("limiting_factors has closed forms for ReLU only (tanh needs numerical integration)")
    Z = X if X_test is None else torch.cat([X, X_test])
    n = X.shape[0]
    sw2 = model.sigma_w ** 2
    sb2 = model.sigma_b ** 2 if model.bias else 0.0
    K, c, q, w = relu_input_layer(Z, sw2, sb2)   # the arc-cosine recursion of ngdlib.kernels, stable near 0 and pi
    Ks, Sdots = [K], []
    for _ in range(1, model.L):
        K, c, q, w, e_dphi = relu_layer(c, q, w, sw2, sb2)
        Ks.append(K)
        Sdots.append(sw2 * e_dphi)
    ones = torch.ones_like(Ks[0])
    out = []
    for l in range(1, model.L + 1):
        prod = ones
        for k in range(l, model.L):
            prod = prod * Sdots[k - 1]
        rows = slice(0, n) if X_test is None else slice(n, None)
        out.append((Ks[l - 1][rows, :n], prod[rows, :n]))
    check_finite_result("the infinite-width layer factors", [t for pair in out for t in pair])
    return out


def limiting_function_kernel(model: DeepMLP, X: torch.Tensor, variant, *,
                             X_test: torch.Tensor | None = None) -> torch.Tensor:
    r"""Infinite-width limit of :func:`function_kernel` for a ReLU network (exact, block_diag, tri_diag, kfac).

    Built from :func:`limiting_factors` by the variant's :meth:`FisherVariant.limiting_kernel`: exact
    :math:`\Theta^\infty(x', X)(\Theta^\infty)^{-1}`; block_diag :math:`\sum_l \Theta^\infty_l(x', X)
    (\Theta_l^\infty)^{-1}`; tri_diag with the coefficients of :func:`tri_coefficients` (T invertible); kfac
    :math:`N\sum_l [K_{l-1}(x',X) K_{l-1}^+] \odot [\dot S_l(x', X) \dot S_l^{-1}]`, with the output layer's
    error-signal projection :math:`11^\top/N`.

    Raises:
        ValueError: for a bad model, inputs or variant; for unit_wise (no closed-form limit), tri_diag with singular
            T, a non-ReLU network, or a singular limiting Gram matrix.
    """
    fv = _variant(variant)
    if isinstance(fv, UnitWise):
        raise ValueError("limiting_function_kernel: unit_wise has no closed-form limit here")
    train = limiting_factors(model, X)
    cross = train if X_test is None else limiting_factors(model, X, X_test)
    return fv.limiting_kernel(model, train, cross, X.shape[0])


# ----------------------------------------------------------------------------------------------- several outputs (C)
@dataclass
class MultiSignals(Signals):
    """Forward activations and backward signals of a :class:`~ngdlib.models.DeepMLP` trunk with a C-output head.

    Attributes:
        A: list of L tensors; ``A[l]`` is the scaled input of layer l+1 (N x (M_l + 1), or N x M_l without bias).
        D: list of L tensors; ``D[l]`` (N x C x M_{l+1}) holds :math:`\\delta^c_{l+1}(x_n) = \\partial f_c(x_n) /
            \\partial u_{l+1}`; ``D[-1]`` is the identity :math:`\\delta^c_L = e_c` repeated over n.
        f: outputs (N x C).

    ``n`` (the number of inputs) is inherited from :class:`~ngdlib.models.Signals`.
    """

    @property
    def c(self) -> int:
        """The number of outputs C."""
        return self.f.shape[1]

    def stacked(self) -> Signals:
        """The N C "rows" (n, c), index n C + c, of the Jacobian :math:`J_{(n,c)} = \\delta^c(x_n) \\otimes a(x_n)`:
        ``A`` repeated C times, ``D`` flattened, as a :class:`~ngdlib.models.Signals` with N C rows."""
        C = self.c
        return Signals(A=[a.repeat_interleave(C, dim=0) for a in self.A],
                       D=[d.reshape(-1, d.shape[2]) for d in self.D], f=self.f.reshape(-1))


def _check_head(model: DeepMLP, head) -> torch.Tensor:
    check_tensor("head", head, ndim=2)
    cols = model.widths[-2] + int(model.bias)
    if head.shape[1] != cols:
        raise ValueError(f"head must be C x (M_(L-1) + bias) = C x {cols} (one row per output, like the output layer "
                         f"block of the model), got {tuple(head.shape)}")
    check_same_dtype_device("head", head, "the model", model)
    return head


def multi_output_signals(model: DeepMLP, head: torch.Tensor, X: torch.Tensor) -> MultiSignals:
    r"""Signals of the C-output network that shares the hidden layers of ``model`` and replaces its output layer by
    ``head`` (C x (M_{L-1} + 1); the model's own output block is ignored):

    .. math::
        f_c(x) = P^{\rm head}_c\, a_{L-1}(x), \qquad
        \delta^c_{L-1} = \phi'(u_{L-1}) \odot \tfrac{\sigma_w}{\sqrt{M_{L-1}}} W^{\rm head\,\top}_{c}, \qquad
        \delta^c_l = \phi'(u_l) \odot \tfrac{\sigma_w}{\sqrt{M_l}} W_{l+1}^\top \delta^c_{l+1} .

    The Jacobian of output c at input n has the row :math:`J_{(n,c)} = [\delta^c_l(x_n) \otimes a_{l-1}(x_n)]_l`.

    Raises:
        ValueError: if ``model`` is not a DeepMLP, X does not fit it, or ``head`` has the wrong shape, dtype or
            device, or is not finite.
    """
    _validate(model, X)
    _check_head(model, head)
    with torch.no_grad():
        A, dphi = [], []
        h = X
        for l, P in enumerate(model.blocks[:-1]):
            a = model._scaled_input(h)
            A.append(a)
            u = a @ P.T
            if model.activation == "relu":
                h, dp = torch.relu(u), (u > 0).to(u.dtype)
            else:
                h = torch.tanh(u)
                dp = 1 - h * h
            dphi.append(dp)
        a = model._scaled_input(h)
        A.append(a)
        f = a @ head.T                                            # (N, C)
        n, C = X.shape[0], head.shape[0]
        D = [None] * model.L
        delta = torch.eye(C, dtype=X.dtype, device=X.device).expand(n, C, C)   # (N, C, M_L = C)
        D[-1] = delta
        W_next = head
        for l in range(model.L - 2, -1, -1):
            m_l = model.widths[l + 1]
            delta = dphi[l][:, None, :] * (delta @ W_next[:, :m_l]) * (model.sigma_w / math.sqrt(m_l))
            D[l] = delta
            W_next = model.blocks[l]
        check_finite_result("the C-output signals", A + D + [f])
    return MultiSignals(A=A, D=D, f=f)


def multi_output_kernel(model: DeepMLP, head: torch.Tensor, X: torch.Tensor, variant: str) -> torch.Tensor:
    r"""Function-space kernel :math:`\bar\Theta = \frac1N J G^+ J^\top` (N C x N C, rows (n, c) = n C + c) of the
    C-output network of :func:`multi_output_signals`, with :math:`F = J^\top J / N` (the Fisher of the squared loss
    :math:`\frac1{2N}\sum_{n,c}(f_c(x_n) - y_{nc})^2`, normalised by the number of inputs N, not N C).

    Dual forms: exact, block_diag, tri_diag and unit_wise are those of :func:`function_kernel` applied to the N C
    rows (:meth:`MultiSignals.stacked`); the unit-wise blocks are pseudo-inverted (each unit's Gram has rank at most
    N < N C when C > 1). K-FAC uses the factors :math:`B_l = \frac1N\sum_{n,c}\delta^c_l\delta^{c\top}_l` and
    :math:`A_l = \frac1N\sum_n a_{l-1}a_{l-1}^\top`:

    .. math::
        \bar\Theta_{\rm KFAC} = N \sum_l \big[P_{A_{l-1}} \otimes 1_C 1_C^\top\big] \odot P_{D_l}, \quad
        P_{A} = A (A^\top A)^+ A^\top,\ P_{D} = D (D^\top D)^+ D^\top \ (D: N C \times M_l).

    With every hidden width :math:`\ge N C` and :math:`M_0 (+1) \ge N` this is :math:`(N(L-1) + 1) I`: the same
    :math:`\alpha` as for one output, under a width condition C times stronger.

    Raises:
        ValueError: for a bad model, inputs, head or variant; for exact / block_diag / tri_diag when a Gram matrix
            that must be inverted is singular (the message names it).
    """
    fv = _variant(variant)
    ms = multi_output_signals(model, head, X)
    return fv.multi_output_kernel(model, ms, ms.stacked())


# ------------------------------------------------------------------------------------------------- damped K-FAC
def damped_kfac_kernel(model: DeepMLP, X: torch.Tensor, rho: float, *,
                       X_test: torch.Tensor | None = None) -> torch.Tensor:
    r"""Function-space kernel of K-FAC with Tikhonov damping, :math:`\bar\Theta_\rho(X', X) = \frac1N J(X')\,
    (G_{\rm KFAC} + \rho I)^{-1} J(X)^\top` with :math:`G_{\rm KFAC} = \bigoplus_l B_l \otimes A_l`,
    :math:`B_l = D_l^\top D_l / N`, :math:`A_l = A_{l-1}^\top A_{l-1} / N` (the same convention as ``rho`` in
    :func:`function_kernel`: the damping is added to the whole approximate Fisher, not to each factor).

    Dual form: with the eigen-decompositions :math:`D_l D_l^\top = U \mathrm{diag}(\sigma^2) U^\top` and
    :math:`A_{l-1} A_{l-1}^\top = W \mathrm{diag}(\mu^2) W^\top`, the nonzero spectrum of :math:`B_l \otimes A_l` is
    :math:`\sigma_i^2\mu_j^2/N^2` on the directions :math:`v_i \otimes w_j`, and :math:`J` has no component outside
    them, so

    .. math::
        \bar\Theta_\rho(x_n', x_m) = \frac1N \sum_l \sum_{i,j} \frac{P'_{ni} Q'_{nj} P_{mi} Q_{mj}}
        {\sigma_i^2 \mu_j^2 / N^2 + \rho}, \qquad P = U\mathrm{diag}(\sigma),\ Q = W\mathrm{diag}(\mu),

    (:math:`P' = D_l(X') D_l^\top U \mathrm{diag}(1/\sigma)`, likewise :math:`Q'`): :math:`O(N^2 r^2)` per layer,
    never a parameter-space matrix. At :math:`\rho = 0` it is the pseudo-inverse kernel of ``function_kernel(...,
    "kfac")``; as :math:`\rho \to \infty`, :math:`N\rho\,\bar\Theta_\rho \to \Theta` (the NTK: damped NGD becomes
    gradient descent).

    Raises:
        ValueError: for a bad model or inputs, or ``rho`` negative, NaN or infinite.
    """
    _validate(model, X, X_test)
    check_number("rho (the damping)", rho, low=0.0)
    rho = float(rho)
    s = model.signals(X)
    s2 = s if X_test is None else model.signals(X_test)
    n = s.n

    def factor(F, F2):
        U, lam, keep = gram_factor_eigh(F, "a Kronecker factor")
        lam, U = lam[keep], U[:, keep]
        sig = lam.sqrt()
        return U * sig, (F2 @ F.T) @ (U / sig), lam

    out = 0
    for A, D, A2, D2 in zip(s.A, s.D, s2.A, s2.D):
        P, P2, lamD = factor(D, D2)
        Q, Q2, lamA = factor(A, A2)
        Wt = 1.0 / (lamD[:, None] * lamA[None, :] / n ** 2 + rho)
        out = out + torch.einsum("ni,nj,ij,mi,mj->nm", P2, Q2, Wt, P, Q) / n
    return check_finite_result("the damped K-FAC function kernel", out)
