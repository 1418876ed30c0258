r"""Every network of the book, one module each; import them from here.

=============================  ==========================================  =============================================
class / functions              equation and normalisation                  paper
=============================  ==========================================  =============================================
:class:`TwoLayerReLU`          :math:`f(x) = m^{-1/2}\sum_r a_r\,          Zhang, Martens & Grosse (2019), eq. (8)
                               \mathrm{relu}(w_r^\top x)`, only W trained
:class:`DeepMLP`               :math:`u_l = \sigma_w M_{l-1}^{-1/2} W_l    Karakida & Osawa (2020), Sec. 2
                               h_{l-1} + \sigma_b b_l` (NTK
                               parameterisation), one output
:class:`MLP`                   two hidden ReLU layers, NTK                 Zhang, Martens & Grosse (2019), Figure 1
                               parameterisation, several outputs
:class:`FeedForward`           :math:`u(x) = \lambda a^\top \sigma(W_L     Chatterjee (2022)
                               \cdots \sigma(W_1 x))`, no biases
:func:`end_to_end` and the     :math:`x \mapsto W_N \cdots W_1 x`, the     Arora, Cohen, Golowich & Hu (2019)
deep linear layers             network is the list of its layers
=============================  ==========================================  =============================================

The two-layer network's speed kernels (the exact activation counts and the blocked products with :math:`J^\top`) live
privately beside it in ``_two_layer_counts.py``; the path is chosen by the ``counts`` argument (:data:`COUNTS`). Paper
modules (:mod:`ngdlib.approx_fisher`, :mod:`ngdlib.chatterjee`, :mod:`ngdlib.deep_linear`, ...) import their network
from here and keep only their paper's mathematics.
"""
from ._two_layer_counts import (CHUNK_ENTRIES, COUNTS, CUDA_MEMORY_FRACTION, EXACT_FLOAT32_COUNTS, INT8_MIN_N,
                                INT8_PAD_BELOW_N, PATTERN_BYTES, SYMMETRIC_MIN_N, resolve_counts)
from .deep_linear import check_layers, dims, end_to_end, gaussian_init
from .deep_mlp import ACTIVATIONS, MAX_DENSE_PARAMS, DeepMLP, Signals
from .feed_forward import FEEDFORWARD_ACTIVATIONS, FeedForward
from .mlp import MLP
from .two_layer import MAX_DENSE_ENTRIES, TwoLayerReLU

__all__ = [
    "TwoLayerReLU",
    "COUNTS",
    "resolve_counts",
    "DeepMLP",
    "Signals",
    "MLP",
    "FeedForward",
    "check_layers",
    "dims",
    "end_to_end",
    "gaussian_init",
    "ACTIVATIONS",
    "FEEDFORWARD_ACTIVATIONS",
    "MAX_DENSE_PARAMS",
    "MAX_DENSE_ENTRIES",
    "CHUNK_ENTRIES",
    "CUDA_MEMORY_FRACTION",
    "EXACT_FLOAT32_COUNTS",
    "INT8_MIN_N",
    "INT8_PAD_BELOW_N",
    "PATTERN_BYTES",
    "SYMMETRIC_MIN_N",
]
