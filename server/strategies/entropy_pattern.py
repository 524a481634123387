"""An upper bound on entropy read from float32 bit patterns, without a log.

A positive normal float32 x = 2^e (1 + m), m in [0, 1), has the bit
pattern b(x) = (e + 127) 2^23 + m 2^23, so (b(x) - b(1)) / 2^23 = e + m,
and e + m lies within 0.0861 below log2 x = e + log2(1 + m). Weighting that
by x and adding over a row takes an integer subtraction, a conversion, a
product and a sum per value, where a float32 log costs several times more,
and gives an upper bound on the row's entropy that is at most
0.0861 ln 2 = 0.0597 nats too high. ``entropy_screen`` uses it to rule out
most of a pool before any log is taken.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from alquery.server.strategies import uncertainty_chunks as chunks
from alquery.server.strategies.information import grid_offset

ONE_PATTERN = np.int32(0x3F800000)
"""The bit pattern of float32 1.0: 127 2^23."""

MAX_GAP = 1.0 - (1.0 + math.log(math.log(2.0))) / math.log(2.0)
"""max over m in [0, 1] of log2(1 + m) - m (0.0861, at m = 1 / ln 2 - 1):
how far below log2 x the pattern's estimate can be for a normal x."""

VECDOT_CLASSES = 64
"""From this many classes on, a row's products are summed by np.vecdot:
measured 15% faster than a product and a matrix-vector product at 1,000
classes, and twice as slow at 10 (numpy 2.4, one core)."""


def pattern_sum(p: NDArray, out: NDArray[np.float64], scratch: chunks.Scratch) -> None:
    """Write the float32 sum_c p_ic (b(p_ic) - b(1)) of each row into ``out``.

    ``p`` is float32 in [0, 1]; b is the bit pattern read as an int32. The
    difference is taken in int32, exactly, into ``scratch.patterns``, then
    converted to float32 in ``scratch.wide``; each row's dot product with
    its values is summed in float32 into ``scratch.first``. The sums are
    at most 0; ``pattern_bound`` turns them into an upper bound on the
    exact entropy.
    """
    n = len(p)
    differences, terms = scratch.patterns[:n], scratch.wide[:n]
    sums = scratch.first[:n]
    np.subtract(p.view(np.int32), ONE_PATTERN, out=differences)
    np.copyto(terms, differences, casting="unsafe")
    _row_dot(p, terms, sums)
    np.copyto(out, sums)


def _row_dot(p: NDArray, q: NDArray, out: NDArray) -> None:
    # sum_c p_ic q_ic of each row, in float32, overwriting q. np.vecdot
    # (numpy 2) fuses the product and the sum, but is slow on short rows;
    # otherwise multiply, then sum through a matrix-vector product.
    if p.shape[1] >= VECDOT_CLASSES and hasattr(np, "vecdot"):
        np.vecdot(p, q, out=out)
        return
    q *= p
    np.matmul(q, np.ones(p.shape[1], p.dtype), out=out)


def pattern_bound(n_classes: int) -> tuple[float, float]:
    """Return (scale, offset): H_exact <= scale s + offset for every row.

    s = -``pattern_sum`` (at least 0) of a row x of ``n_classes`` float32
    values in [0, 1]; H_exact is ``uncertainty.entropy``'s float64 score of
    the same row.

    Notes
    -----
    With u = 2^-24, L_c = b(x_c) - b(1) (an integer, at most 0) and
    g = (n + 1) u / (1 - (n + 1) u):

    - Per value: a normal x = 2^e (1 + m) has L / 2^23 = e + m, at most
      log2 x, so -x log2 x <= -x L / 2^23. A subnormal x = f 2^-149 has
      L / 2^23 = f 2^-23 - 127, at most 23 above log2 x = log2 f - 149, so
      -x log2 x <= -x L / 2^23 + 23 2^-126. x = 0 and x = 1 give 0 on both
      sides; so does -0.0, whose pattern wraps around in the subtraction
      but is multiplied by zero.
    - Rounding: L converts to float32 within a relative u (exactly for
      x >= 1/4). The product x fl(L) rounds within a relative u and never
      underflows (it is 0, or at least 2^-126 for a normal x, about 2^-119
      for a subnormal x); a subnormal x flushed to zero drops a term of at
      most 2^-96. The terms have one sign, so their float32 sum in any
      order, with the products fused into it or not, is within g of their
      sum.

    So Lambda = -sum_c x_c L_c <= s / ((1 - g) (1 - u)^2) + n 2^-96, and
    the real entropy is H <= ln 2 (Lambda / 2^23 + 23 n 2^-126), which is
    the bound with scale = ln 2 2^-23 / ((1 - g) (1 - u)^2) and an offset
    of n 2^-118. The exact score is within a relative 2^-46 and
    n 2^-53 M of H (``entropy_screen.screen_bound``); both are added.

    Below, H_exact >= H - n 2^-53 M and -x log2 x >= -x L / 2^23 - MAX_GAP x,
    so the bound is at most about MAX_GAP ln 2 = 0.0597 nats above the
    exact score of a row summing to 1; that slack decides how many samples
    pass, never whether a batch sample does.
    """
    u = 2.0**-24
    g = (n_classes + 1) * u / (1.0 - (n_classes + 1) * u)
    relative = (1.0 + 2.0**-46) / ((1.0 - g) * (1.0 - u) ** 2)
    scale = math.log(2.0) * 2.0**-23 * relative
    snapping = n_classes * 2.0**-53 * grid_offset(n_classes)
    offset = (1.0 + 2.0**-46) * n_classes * 2.0**-118 + snapping
    return scale, offset
