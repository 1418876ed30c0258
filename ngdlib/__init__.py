"""ngdlib: the mathematics behind the executable companion to Zhang, Martens & Grosse (2019),
"Fast Convergence of Natural Gradient Descent for Overparameterized Neural Networks".

Conventions (see the book's "Notation and conventions"): two-layer ReLU net
f(x) = m^{-1/2} sum_r a_r relu(w_r^T x) with only W (m x d) trained, row-stacked w = W.reshape(-1),
loss L = (1/2n) ||u - y||^2, Fisher F = J^T J / n, NGD direction J^T G^{-1}(u - y) with G = J J^T.
Verification in float64; device and dtype follow the inputs.
"""
from . import reference, testing
from . import bounds, losses, stability  # Part I-a: Conditions 1-2, Theorems 1-3
from . import chatterjee, deep_linear  # Part II-b: Chatterjee's criterion, deep linear networks
from . import generalization, kfac, matrix_free  # Part I-b: K-FAC, generalization bound, Figure 1
from . import approx_fisher, models  # Part II-a: Karakida & Osawa, approximate Fisher in wide networks
from ._checks import check_assumption1
from ._linalg import max_trusted_cond
from .curvature import gd_direction, gram_eigh, kfac_direction, ngd_direction
from .data import forster, sphere
from .device import default_device
from .kernels import limiting_activation_gram, limiting_gram
from .models import DeepMLP, TwoLayerReLU
from .records import record
from .train import History, train

__version__ = "0.1.0"

__all__ = [
    "DeepMLP",
    "History",
    "TwoLayerReLU",
    "approx_fisher",
    "bounds",
    "chatterjee",
    "check_assumption1",
    "models",
    "deep_linear",
    "default_device",
    "forster",
    "generalization",
    "gd_direction",
    "gram_eigh",
    "kfac",
    "kfac_direction",
    "limiting_activation_gram",
    "limiting_gram",
    "losses",
    "matrix_free",
    "max_trusted_cond",
    "ngd_direction",
    "record",
    "reference",
    "sphere",
    "stability",
    "testing",
    "train",
]
