"""Device and random-number conventions.

Every random draw in ngdlib is made on the CPU from a ``torch.Generator`` seeded explicitly and then moved to the
target device, so a seed gives the same numbers on CPU and CUDA and never touches the global RNG.
"""
from __future__ import annotations

import torch

from ._checks import check_int

__all__ = ["default_device", "generator"]


def default_device() -> torch.device:
    """CUDA when present, otherwise the CPU (which is always enough)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (an int)."""
    return torch.Generator(device="cpu").manual_seed(check_int("seed", seed))
