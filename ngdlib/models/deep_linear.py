r"""Deep linear networks (Arora, Cohen, Golowich & Hu, 2019): a network is the list of its layers.

A depth-N linear network is a list of matrices ``layers = [W_1, ..., W_N]`` with :math:`W_j \in \mathbb R^{d_j \times
d_{j-1}}` (float tensors of one dtype and device); it maps

.. math::
    x \mapsto W_N W_{N-1} \cdots W_1 x = W_{1:N}\, x, \qquad W_{1:N} \in \mathbb R^{d_N \times d_0}

(:func:`end_to_end`). There is no nonlinearity and no normalisation factor: the scale lives in the layers (e.g.
:func:`gaussian_init`'s ``std``). Training, balancedness and the paper's theorems are in :mod:`ngdlib.deep_linear`.
"""
from __future__ import annotations

import torch

from .._checks import check_device, check_dtype, check_finite_result, check_positive, check_tensor
from ..device import generator

__all__ = ["check_layers", "dims", "end_to_end", "gaussian_init"]


def check_layers(layers, *, batched: bool = False) -> list:
    """Check a deep linear network: a non-empty list of finite float tensors ``W_j`` of shape (d_j, d_{j-1}), same
    dtype and device, with chaining shapes (W_{j+1} has d_j columns). Returns it as a list.

    With ``batched=True``, B networks at once: every W_j is (B, d_j, d_{j-1}) with the same batch size B.

    Args:
        layers: [W_1, ..., W_N].
        batched: the W_j carry a leading batch dimension.

    Raises:
        ValueError: if layers is not a non-empty list of finite float32 / float64 tensors with 2 dimensions (3 when
            batched), the W_j differ in dtype, device or batch size B, or their shapes do not chain.
    """
    nd = 3 if batched else 2
    if not isinstance(layers, (list, tuple)) or len(layers) == 0:
        what = "3-D tensors (W_j is B x d_j x d_{j-1}: B networks at once)" if batched else \
            "2-D tensors (W_j is d_j x d_{j-1})"
        raise ValueError(f"layers must be a non-empty list [W_1, ..., W_N] of {what}")
    layers = list(layers)
    for j, W in enumerate(layers, start=1):
        check_tensor(f"W_{j}", W, ndim=nd)
    dt, dev = layers[0].dtype, layers[0].device
    for j, W in enumerate(layers, start=1):
        if W.dtype != dt or W.device != dev:
            raise ValueError(f"W_{j} has dtype {W.dtype} on {W.device}, W_1 has {dt} on {dev}; they must match")
        if batched and W.shape[0] != layers[0].shape[0]:
            raise ValueError(f"W_{j} holds {W.shape[0]} networks, W_1 holds {layers[0].shape[0]}: the batch sizes "
                             "must match")
    for j in range(1, len(layers)):
        if layers[j].shape[-1] != layers[j - 1].shape[-2]:
            per = " per network" if batched else ""
            raise ValueError(
                f"layer shapes do not chain: W_{j + 1} is {tuple(layers[j].shape[-2:])}{per} but W_{j} is "
                f"{tuple(layers[j - 1].shape[-2:])}; W_{j + 1} must have d_{j} = {layers[j - 1].shape[-2]} columns")
    return layers


def dims(layers) -> tuple:
    """The widths ``(d_0, d_1, ..., d_N)`` of a network."""
    layers = check_layers(layers)
    return (layers[0].shape[1],) + tuple(W.shape[0] for W in layers)


def _prefixes(layers):
    """P[j] = W_j ... W_1 for j = 0..N (P[0] = identity of size d_0)."""
    d0 = layers[0].shape[1]
    P = [torch.eye(d0, dtype=layers[0].dtype, device=layers[0].device)]
    for W in layers:
        P.append(W @ P[-1])
    return P


def _suffixes(layers):
    """S[j] = W_N ... W_{j+1} for j = 0..N (S[N] = identity of size d_N)."""
    dN = layers[-1].shape[0]
    N = len(layers)
    S = [None] * (N + 1)
    S[N] = torch.eye(dN, dtype=layers[0].dtype, device=layers[0].device)
    for j in range(N - 1, -1, -1):
        S[j] = S[j + 1] @ layers[j]
    return S


def end_to_end(layers) -> torch.Tensor:
    """The end-to-end matrix :math:`W_{1:N} = W_N \\cdots W_1` (d_N x d_0).

    >>> import torch
    >>> end_to_end([torch.eye(2, dtype=torch.float64), 2 * torch.eye(2, dtype=torch.float64)])[0, 0].item()
    2.0
    """
    layers = check_layers(layers)
    P = layers[0]
    for W in layers[1:]:
        P = W @ P
    return check_finite_result("the end-to-end matrix W_N ... W_1", P)


def gaussian_init(widths, std: float, seed: int = 0, dtype: torch.dtype = torch.float64, device=None) -> list:
    """Layer-wise independent Gaussian initialisation: every entry of every :math:`W_j` i.i.d. N(0, std^2).

    Args:
        widths: (d_0, d_1, ..., d_N).
        std: the standard deviation (> 0).
        seed: seed of the CPU generator (draws in float64, then cast and moved).
        dtype: dtype of the returned layers.
        device: device of the returned layers (default CPU).

    Raises:
        ValueError: if widths is not a sequence of at least two positive ints, std is not positive, or the dtype /
            device is not usable.
    """
    widths = list(widths)
    if len(widths) < 2 or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
        raise ValueError(f"widths must be a sequence (d_0, ..., d_N) of at least two positive ints, got {widths!r}")
    std = check_positive("std", std)
    check_dtype(dtype)
    check_device(device)
    g = generator(seed)
    out = []
    for j in range(1, len(widths)):
        W = std * torch.randn(widths[j], widths[j - 1], generator=g, dtype=torch.float64)
        out.append(W.to(dtype=dtype, device=device))
    return out
