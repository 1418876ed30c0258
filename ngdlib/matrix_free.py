r"""Matrix-free natural gradient for a deep network, for the paper's Figure 1 (Zhang, Martens & Grosse 2019).

The NGD direction for squared loss is the minimum-norm solution of :math:`J \delta = r` with :math:`r = u - y`
(eq. 3: :math:`\delta = J^\top (J J^\top)^{-1} r = J^+ r` when J has full row rank). The paper obtains it "by
running 100 iterations of conjugate gradient" (Martens, 2010); here CG runs on the normal equations

.. math::
    J^\top J\, \delta = J^\top r, \qquad \delta_0 = 0,

in parameter space, with every product :math:`J^\top J v` computed as a forward-mode ``torch.func.jvp`` followed by a
reverse-mode ``torch.func.vjp``: J is never formed. Every CG iterate lies in the Krylov space
:math:`\mathrm{span}\{J^\top r, (J^\top J) J^\top r, \dots\} \subset \mathrm{range}(J^\top)`, so the limit is the
minimum-norm solution :math:`J^+ r`, the NGD direction, not merely some solution.

The network of the figure is :class:`ngdlib.models.MLP` (two hidden ReLU layers, NTK parameterisation). Also here:
:func:`load_digits_4_9`, the 4-vs-9 subset of the 8 x 8 digits that scikit-learn ships (no download).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call, jvp, vjp

from ._checks import check_data, check_tensor
from .device import generator

__all__ = [
    "load_digits_4_9",
    "figure1_targets",
    "flat_params",
    "outputs_at",
    "jvp_flat",
    "vjp_flat",
    "cg_ngd_direction",
    "CGResult",
]


def load_digits_4_9(n_per_class: int | None = None, seed: int = 0, dtype: torch.dtype = torch.float64,
                    device=None):
    r"""The digits 4 and 9 of scikit-learn's 8 x 8 handwritten digits (shipped inside the wheel: no download).

    Pixels (0..16) are divided by 16, each image is centred by the mean image of the two classes and scaled to
    Euclidean norm :math:`\sqrt{64} = 8` (mean squared pixel 1). The paper uses MNIST; these are the 8 x 8 digits.

    Args:
        n_per_class: how many images of each class to keep (a random subset drawn from ``seed``); ``None``: all
            (181 fours and 180 nines).
        seed: seed of the subset draw.
        dtype: dtype of X.
        device: device of X and the labels (default CPU).

    Returns:
        ``(X, labels)``: X is n x 64, labels is a length-n int64 tensor with 0 for a "4" and 1 for a "9".

    Raises:
        ValueError: if n_per_class is neither ``None`` nor an int in [1, 180] (each class must supply it: there are
            181 fours but only 180 nines).
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.as_tensor(data.data, dtype=torch.float64) / 16.0
    target = torch.as_tensor(data.target)
    keep = []
    g = generator(seed)
    for digit in (4, 9):
        idx = torch.nonzero(target == digit).flatten()
        if n_per_class is not None:
            if not (isinstance(n_per_class, int) and 1 <= n_per_class <= idx.numel()):
                raise ValueError(f"n_per_class must be an int in [1, {idx.numel()}] (images of digit {digit}), "
                                 f"got {n_per_class!r}")
            idx = idx[torch.randperm(idx.numel(), generator=g)[:n_per_class]]
        keep.append(idx)
    idx = torch.cat(keep)
    X = images[idx]
    X = X - X.mean(dim=0)
    X = X / torch.linalg.vector_norm(X, dim=1, keepdim=True) * math.sqrt(X.shape[1])
    labels = (target[idx] == 9).long()
    X = X.to(dtype)
    return (X.to(device), labels.to(device)) if device is not None else (X, labels)


def figure1_targets(labels: torch.Tensor, seed: int = 0, noise: float = 0.3, dtype: torch.dtype = torch.float64):
    r"""Figure 1's targets: one-hot(label) - 0.5 + noise * N(0, I) in :math:`\mathbb R^2` (n x 2).

    Raises:
        ValueError: if labels is not a 1-D tensor of class indices.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D tensor of class indices, got shape {tuple(labels.shape)}")
    onehot = torch.nn.functional.one_hot(labels.cpu(), 2).to(torch.float64)
    z = torch.randn(onehot.shape, generator=generator(seed), dtype=torch.float64)
    return (onehot - 0.5 + noise * z).to(dtype).to(labels.device)


# ---------------------------------------------------------------------------------------------- flat parameters
def flat_params(model: nn.Module) -> torch.Tensor:
    """All trained parameters of ``model`` as one detached vector (in ``named_parameters`` order)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _unflatten(model: nn.Module, theta: torch.Tensor) -> dict:
    out, k = {}, 0
    for name, p in model.named_parameters():
        out[name] = theta[k:k + p.numel()].view_as(p)
        k += p.numel()
    return out


def _check_theta(model, theta, what="theta"):
    check_tensor(what, theta, ndim=1)
    P = sum(p.numel() for p in model.parameters())
    if theta.numel() != P:
        raise ValueError(f"{what} must have one entry per parameter ({P}), got {theta.numel()}")


def outputs_at(model: nn.Module, X: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The model's outputs at the flat parameter vector ``theta`` (the model itself is not changed)."""
    _check_theta(model, theta)
    return functional_call(model, _unflatten(model, theta), (X,))


def jvp_flat(model: nn.Module, X: torch.Tensor, v: torch.Tensor, theta: torch.Tensor | None = None):
    r"""Forward mode: :math:`J v` (same shape as the outputs) at ``theta`` (default: the model's parameters)."""
    theta = flat_params(model) if theta is None else theta
    _check_theta(model, v, "v")
    return jvp(lambda t: outputs_at(model, X, t), (theta,), (v,))[1]


def vjp_flat(model: nn.Module, X: torch.Tensor, w: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
    r"""Reverse mode: :math:`J^\top w` (one entry per parameter) for ``w`` shaped like the outputs.

    Raises:
        ValueError: if theta is not a finite float vector with one entry per parameter of the model, or w does not
            have the shape of the outputs.
    """
    theta = flat_params(model) if theta is None else theta
    out, pullback = vjp(lambda t: outputs_at(model, X, t), theta)
    if w.shape != out.shape:
        raise ValueError(f"w must have the shape of the outputs, {tuple(out.shape)}, got {tuple(w.shape)}")
    return pullback(w)[0]


class CGResult:
    """What :func:`cg_ngd_direction` returns.

    Attributes:
        direction: the flat NGD direction :math:`\\delta \\approx J^+ r` (step: ``theta - eta * direction``).
        iterations: CG iterations run.
        normal_residuals: :math:`\\|J^\\top r - J^\\top J \\delta_k\\| / \\|J^\\top r\\|` for k = 0 .. iterations.
        output_residual: :math:`\\|J \\delta - r\\| / \\|r\\|` at the end (0 for the exact NGD direction).
    """

    def __init__(self, direction, iterations, normal_residuals, output_residual):
        self.direction = direction
        self.iterations = iterations
        self.normal_residuals = normal_residuals
        self.output_residual = output_residual

    def __repr__(self) -> str:
        return (f"CGResult(iterations={self.iterations}, normal_residual={self.normal_residuals[-1]:.2e}, "
                f"output_residual={self.output_residual:.2e})")


def cg_ngd_direction(model: nn.Module, X: torch.Tensor, r: torch.Tensor, iters: int = 100, rtol: float = 0.0
                     ) -> CGResult:
    r"""NGD direction by conjugate gradient on :math:`J^\top J \delta = J^\top r` from :math:`\delta_0 = 0`,
    matrix-free.

    Each iteration costs one ``jvp`` and one ``vjp`` (about three forward passes); J and :math:`J^\top J` are never
    formed. The iterates stay in :math:`\mathrm{range}(J^\top)`, so with enough iterations the result is the
    minimum-norm solution :math:`J^+ r = J^\top (J J^\top)^{-1} r`, the NGD direction of eq. (3) for
    :math:`r = u - y` (the paper runs 100 iterations).

    Args:
        model: any ``nn.Module`` whose trained parameters are ``model.parameters()``.
        X: inputs (n x d_in).
        r: residual shaped like the outputs (e.g. n x 2), :math:`r = u - y`.
        iters: maximum number of CG iterations.
        rtol: stop early when :math:`\|J^\top r - J^\top J \delta_k\| \le` rtol :math:`\|J^\top r\|`.

    Returns:
        A :class:`CGResult`.

    Raises:
        ValueError: if X is not a finite float matrix, r is not a finite float tensor of the outputs' shape, or iters
            is not a positive int.
    """
    check_data(X)
    check_tensor("r", r)
    if not (isinstance(iters, int) and iters >= 1):
        raise ValueError(f"iters must be a positive int, got {iters!r}")
    theta = flat_params(model)

    def normal_op(v):
        return vjp_flat(model, X, jvp_flat(model, X, v, theta), theta)

    b = vjp_flat(model, X, r, theta)
    bnorm = float(torch.linalg.vector_norm(b))
    delta = torch.zeros_like(theta)
    if bnorm == 0.0:
        return CGResult(delta, 0, [0.0], 0.0 if float(r.norm()) == 0 else 1.0)
    res = b.clone()
    p = res.clone()
    rs = float(res @ res)
    history = [1.0]
    k = 0
    for k in range(1, iters + 1):
        Ap = normal_op(p)
        pAp = float(p @ Ap)
        if pAp <= 0:          # p in the null space of J: the Krylov space is exhausted
            k -= 1
            break
        alpha = rs / pAp
        delta = delta + alpha * p
        res = res - alpha * Ap
        rs_new = float(res @ res)
        history.append(rs_new ** 0.5 / bnorm)
        if history[-1] <= rtol:
            break
        p = res + (rs_new / rs) * p
        rs = rs_new
    out_res = float(torch.linalg.vector_norm(jvp_flat(model, X, delta, theta) - r) / torch.linalg.vector_norm(r))
    return CGResult(delta, k, history, out_res)
