"""An upper bound on entropy read from float32 bit patterns, without a log.

A positive normal float32 x = 2^e (1 + m), m in [0, 1), has the bit
pattern b(x) = (e + 127) 2^23 + m 2^23, so (b(x) - b(1)) / 2^23 = e + m,
and e + m lies within 0.0861 below log2 x = e + log2(1 + m). Weighting that
by x and adding over a row takes a conversion, a subtraction, a product and
a sum per value, where a float32 log costs several times more, and gives an
upper bound on the row's entropy that is at most about 0.0861 ln 2 = 0.0597
nats too high. ``entropy_screen`` uses it to rule out most of a pool before
any log is taken.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from alquery.server.strategies import uncertainty_chunks as chunks
from alquery.server.strategies.information import grid_offset

ONE_PATTERN = np.float32(0x3F800000)
"""The bit pattern of float32 1.0, 127 2^23, as a float32 (exactly)."""

MAX_GAP = 1.0 - (1.0 + math.log(math.log(2.0))) / math.log(2.0)
"""max over m in [0, 1] of log2(1 + m) - m (0.0861, at m = 1 / ln 2 - 1):
how far below log2 x the pattern's estimate can be for a normal x."""


def pattern_sum(p: NDArray, out: NDArray[np.float64], scratch: chunks.Scratch) -> None:
    """Write sum_c p_ic (fl(b(p_ic)) - b(1)) of each row, in float32, to ``out``.

    ``p`` is float32 in [0, 1]; b is the bit pattern read as an int32 and
    converted to float32 (fl) in ``scratch.wide``, where b(1) is taken off
    and the product with ``p`` formed; ``scratch.first`` receives the
    float32 sums, added by a matrix-vector product with a vector of ones.
    The sums are at most 0; ``pattern_bound`` turns them into an upper
    bound on the exact entropy.

    Notes
    -----
    Four passes over a chunk in cache. An exact int32 subtraction before
    the conversion, or np.vecdot for the products and the sum, measured
    slower with two threads (np.vecdot ran on one core at a time here).
    """
    n = len(p)
    terms, sums = scratch.wide[:n], scratch.first[:n]
    np.copyto(terms, p.view(np.int32), casting="unsafe")
    terms -= ONE_PATTERN
    terms *= p
    np.matmul(terms, np.ones(p.shape[1], np.float32), out=sums)
    np.copyto(out, sums)


def pattern_bound(n_classes: int) -> tuple[float, float]:
    """Return (scale, offset): H_exact <= scale s + offset for every row.

    s = -``pattern_sum`` (at least 0) of a row x of ``n_classes`` float32
    values in [0, 1]; H_exact is ``uncertainty.entropy``'s float64 score of
    the same row.

    Notes
    -----
    With u = 2^-24, B = b(1) = 127 2^23 and g = (n + 1) u / (1 - (n + 1) u):

    - Per value, in real arithmetic: a normal x = 2^e (1 + m) has
      (b(x) - B) / 2^23 = e + m, at most log2 x, so
      -x log2 x <= x (B - b(x)) / 2^23. A subnormal x = f 2^-149 has
      (b - B) / 2^23 = f 2^-23 - 127, at most 23 above log2 x = log2 f - 149,
      so -x log2 x <= x (B - b) / 2^23 + 23 2^-126. x = 0 and x = 1 give 0
      on both sides.
    - Rounding: b < 2^30 converts to a float32 fl(b) within 32 (half the
      spacing below 2^30), and fl(b) <= B. fl(b) - B rounds within a
      relative u (it is exact from fl(b) >= B / 2 on), so
      B - b <= |fl(fl(b) - B)| / (1 - u) + 32. The product with x rounds
      within a relative u and never underflows (it is 0, or at least
      2^-126 for a normal x, about 2^-119 for a subnormal one); a subnormal
      x flushed to zero drops a term of at most 2^-96. -0.0, whose pattern
      is negative, is multiplied by zero and adds 0. The terms have one
      sign, so their float32 sum in any order, fused or not, is within g
      of their sum.

    So sum_c x_c (B - b_c) <= s / ((1 - g) (1 - u)^2) + 32 n + n 2^-96
    (every x_c <= 1), and the real entropy is
    H <= ln 2 (sum_c x_c (B - b_c) / 2^23 + 23 n 2^-126): the bound with
    scale = ln 2 2^-23 / ((1 - g) (1 - u)^2) and an offset of
    ln 2 2^-18 n (0.0026 nats for 1,000 classes), plus n 2^-118. The
    exact score is within a relative 2^-46 and n 2^-53 M of H
    (``entropy_screen.screen_bound``); both are added.

    Below, H_exact >= H - n 2^-53 M and -x log2 x >= x (B - b) / 2^23 -
    MAX_GAP x, so for a row summing to 1 the bound is at most about
    MAX_GAP ln 2 = 0.0597 nats, plus the offset, above the exact score;
    that slack decides how many samples pass, never whether a batch
    sample does.
    """
    u = 2.0**-24
    g = (n_classes + 1) * u / (1.0 - (n_classes + 1) * u)
    relative = (1.0 + 2.0**-46) / ((1.0 - g) * (1.0 - u) ** 2)
    scale = math.log(2.0) * 2.0**-23 * relative
    rounding = math.log(2.0) * 2.0**-18 * n_classes + n_classes * 2.0**-118
    snapping = n_classes * 2.0**-53 * grid_offset(n_classes)
    return scale, (1.0 + 2.0**-46) * rounding + snapping
