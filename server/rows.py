"""Per-row reductions of 2-D arrays that stay fast when rows are short."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FEW_COLUMNS = 32
"""Up to this many columns, a row reduction runs column by column: numpy
reduces short rows one row at a time, which is several times slower than a
handful of elementwise operations over whole columns."""


def row_max(values: NDArray, out: NDArray | None = None) -> NDArray:
    """Return the largest value of each row of a 2-D array, in its dtype."""
    if values.shape[1] > FEW_COLUMNS:
        return np.max(values, axis=1, out=out)
    if out is None:
        out = np.empty(len(values), values.dtype)
    np.copyto(out, values[:, 0])
    for column in range(1, values.shape[1]):
        np.maximum(out, values[:, column], out=out)
    return out


def row_sum(values: NDArray, out: NDArray | None = None) -> NDArray:
    """Return the sum of each row of a 2-D array, in its dtype or ``out``'s.

    Up to ``FEW_COLUMNS`` columns are added in column order; wider rows go
    through numpy's pairwise sum. The two orders can differ in the last bit.
    """
    if values.shape[1] > FEW_COLUMNS:
        dtype = None if out is None else out.dtype
        return np.sum(values, axis=1, out=out, dtype=dtype)
    if out is None:
        out = np.empty(len(values), values.dtype)
    np.copyto(out, values[:, 0])
    for column in range(1, values.shape[1]):
        np.add(out, values[:, column], out=out)
    return out
