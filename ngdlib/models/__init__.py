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
from . import _two_layer_counts as _k
from ._two_layer_counts import resolve_counts
from .deep_linear import check_layers, dims, end_to_end, gaussian_init
from . import deep_mlp as _deep_mlp
from .deep_mlp import ACTIVATIONS, DeepMLP, Signals
from .feed_forward import FEEDFORWARD_ACTIVATIONS, FeedForward
from .mlp import MLP
from . import two_layer as _two_layer
from .two_layer import TwoLayerReLU

#: Default width chunk: hidden units are processed in blocks of about this many n x chunk entries, so that the
#: temporaries of the structured paths stay O(n * chunk) (16 MB in float64) whatever the width. Measured on a
#: 2-core Xeon: blocks of 2**21 entries keep the 0/1 conversion in cache and ran the (1024, 65536, 128) float32 step
#: 1.3x faster than blocks of 2**24.
CHUNK_ENTRIES = _k.CHUNK_ENTRIES

#: Activation-pattern counts sum_r 1{..}1{..} are integers <= m; float32 (24-bit mantissa) holds them exactly
#: while m <= 2**24, so S01 S01^T is computed in float32 there (twice the speed of float64 on a CPU) with no error.
EXACT_FLOAT32_COUNTS = _k.EXACT_FLOAT32_COUNTS

#: The activation pattern kept between the two passes of the NGD step is stored in the model's dtype up to this many
#: bytes (no conversion in the second pass), else as bools (one byte per entry).
PATTERN_BYTES = _k.PATTERN_BYTES

#: From this many inputs on, the symmetric count matrix is accumulated over the upper triangle of a 4 x 4 grid of row
#: blocks (10 of 16 block products, 62.5 % of the flops); below it, one full product is faster.
SYMMETRIC_MIN_N = _k.SYMMETRIC_MIN_N

#: Smallest n for the int8 counts chosen by ``counts="auto"`` on a CPU. Below it the float32 path is as fast (the
#: conversions dominate); and torch 2.13's CPU ``_int_mm`` returns wrong numbers for a single-row product (found by an
#: exhaustive check of n = 1..39 and shapes up to 513 x 2049: only n = 1 was wrong), which this threshold keeps well
#: away from (an explicit ``counts="int8"`` pads small n with zero columns instead, see :data:`INT8_PAD_BELOW_N`).
INT8_MIN_N = _k.INT8_MIN_N

#: An explicit ``counts="int8"`` with fewer inputs than this pads the pattern with zero columns (which add zero rows
#: and columns to the counts, then cut off): it avoids the single-row ``_int_mm`` bug above on the CPU and meets
#: cuBLAS's shape rule on CUDA (more than 16 rows).
INT8_PAD_BELOW_N = _k.INT8_PAD_BELOW_N

#: The ways to compute the activation counts :math:`S_{01} S_{01}^\top` (the ``counts`` argument of
#: :meth:`ngdlib.models.TwoLayerReLU.gram`, :func:`ngdlib.curvature.ngd_direction`, :func:`ngdlib.curvature.ngd_step`, :func:`ngdlib.curvature.gram_eigh`).
#: Every one of them is exact: the counts are integers and each path only ever holds integers it can represent.
#:
#: - ``"auto"``: on a CPU ``"int8"`` from :data:`INT8_MIN_N` inputs on where ``torch._int_mm`` passes its probe, else
#:   ``"float32"``; on CUDA ``"tf32"``.
#: - ``"int8"``: the 0/1 pattern as int8, products accumulated in int32 (``torch._int_mm``: AMX/VNNI on x86 CPUs, IMMA
#:   tensor cores on CUDA); exact up to :math:`2^{31} - 1`. A ``ValueError`` where the probe fails.
#: - ``"float32"``: the pattern as float32, IEEE float32 products (TF32 switched off on CUDA); every partial sum is an
#:   integer below :math:`2^{24}` (:data:`EXACT_FLOAT32_COUNTS`), hence exact; for wider layers blocks of at most
#:   :math:`2^{24}` units are summed in float64.
#: - ``"tf32"``: as ``"float32"`` with TF32 tensor cores allowed for the count product on CUDA. Exact: TF32 keeps 10 of
#:   float32's 23 significand bits, and 0 and 1 need none, so the inputs are not rounded; each product is 0 or 1; and
#:   the tensor cores accumulate in float32, where every partial sum, an integer below :math:`2^{24}`, is
#:   representable, so no addition rounds whatever the order or the split-K reduction. On a CPU (no TF32 units) it
#:   computes exactly what ``"float32"`` computes.
#: - ``"float64"``: the pattern as float64 (exact up to :math:`2^{53}`): the slow reference.
COUNTS = _k.COUNTS

#: On CUDA the blocks are sized from the device's memory, not from a cache: the stored pattern may take up to half of
#: this fraction of the memory that is free (to the driver and in torch's cache) when the step starts, and each block's
#: temporaries the rest. With the pattern in the count dtype the whole width is one block: one product for
#: :math:`W X^\top`, one for the counts, one for :math:`J^\top z` (n = 1024, m = 2**20 needs 4 GiB in float32).
CUDA_MEMORY_FRACTION = _k.CUDA_MEMORY_FRACTION

#: Largest number of Jacobian entries (n * m * d) that :meth:`TwoLayerReLU.jacobian` will materialise.
MAX_DENSE_ENTRIES = _two_layer.MAX_DENSE_ENTRIES

#: Largest parameter count for which the dense Jacobian / dense Fisher references of :class:`DeepMLP` may be formed.
MAX_DENSE_PARAMS = _deep_mlp.MAX_DENSE_PARAMS

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
