"""The tiny deep MLPs shared by tests/test_deep.py and tests/test_approx_fisher.py (cases as data)."""
import torch

import ngdlib
from ngdlib.models import DeepMLP

# name, widths (M_0, hidden...), activation, bias, N
MODELS = [
    ("relu-L3", (6, 7, 8), "relu", True, 5),
    ("tanh-L3", (6, 7, 8), "tanh", True, 5),
    ("relu-L2-nobias", (6, 9), "relu", False, 5),
    ("tanh-L4", (7, 7, 8, 9), "tanh", True, 5),
    ("tanh-L5", (6, 6, 7, 6, 8), "tanh", True, 5),      # L = 5 = 3s + 2: T singular
    ("relu-L1", (7,), "relu", True, 5),                 # a single (output) layer: a linear model
]

SEEDS = [0, 1]


def build(spec, seed, dtype=torch.float64, device="cpu"):
    _, widths, act, bias, n = spec
    X = ngdlib.sphere(n, widths[0], seed=seed, dtype=dtype, device=device)
    Xt = ngdlib.sphere(3, widths[0], seed=seed + 50, dtype=dtype, device=device)
    model = DeepMLP(widths, activation=act, bias=bias, seed=seed + 100, dtype=dtype, device=device)
    r = torch.randn(n, generator=torch.Generator().manual_seed(seed + 200), dtype=torch.float64).to(device, dtype)
    return model, X, Xt, r
