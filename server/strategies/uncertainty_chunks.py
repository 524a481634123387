"""Chunk kernels of the single-pass uncertainty measures.

``scores_by_chunk`` walks the pool in row chunks (``chunks``) and lets a
kernel write each chunk's part of the n_pool scores vector, reusing one set
of scratch buffers, so no temporary grows past a chunk.

Precision. Two-axis float32 probabilities are read as float32; logits go
through the softmax, and passes are averaged, in float64. Against the
float64 formula on the same input values, least confidence, margin and
ratio of confidence are exact (the top two values are found exactly in any
dtype; 1 - p, the gap and the ratio are taken in float64). Entropy's terms
p ln p are computed in float64 and added exactly after snapping
(``information.snap_to_grid``), so it is within n_classes 2^-53 M of the
formula (M from ``information.grid_offset``; 9e-13 for 1,000 classes).
np.log is about twice as fast in float32 here, but a float32 log moves
entropies by up to 2e-7 relative, which reorders close samples; the top-k
route for entropy (``entropy_screen``) uses it only to rule out samples
that a proven error bound keeps out of the batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from alquery.server.chunks import (
    CHUNK_BYTES,
    chunk_rows,
    probability_chunks,
    working_dtype,
)
from alquery.server.parts import map_parts, row_parts
from alquery.server.rows import FEW_COLUMNS, row_max, row_sum
from alquery.server.strategies.information import snap_to_grid


class Scratch:
    """Buffers one scoring pass reuses for every chunk.

    ``wide`` has the chunk's shape in the working dtype; ``clamped`` and
    ``terms`` too, in float64. ``first``, ``second`` and ``third`` hold one
    value per row, ``where`` one index, ``rows`` the row numbers. The
    one-value-per-row buffers are made at once (they are small); the others
    on first use, then kept for the pass, so a small pool's call (one chunk
    through one kernel) makes only what its kernel reads, not all eight.
    """

    def __init__(self, rows: int, n_classes: int, dtype: np.dtype) -> None:
        self._rows, self._n_classes, self._dtype = rows, n_classes, dtype
        self.first = np.empty(rows, dtype)
        self.second = np.empty(rows, dtype)
        self.third = np.empty(rows, dtype)

    @classmethod
    def allocate(cls, rows: int, n_classes: int, dtype: np.dtype) -> Scratch:
        """Return buffers for chunks of ``rows`` rows of ``n_classes``."""
        return cls(rows, n_classes, dtype)

    @functools.cached_property
    def wide(self) -> NDArray:
        return np.empty((self._rows, self._n_classes), self._dtype)

    @functools.cached_property
    def clamped(self) -> NDArray[np.float64]:
        return np.empty((self._rows, self._n_classes))

    @functools.cached_property
    def terms(self) -> NDArray[np.float64]:
        return np.empty((self._rows, self._n_classes))

    @functools.cached_property
    def where(self) -> NDArray[np.intp]:
        return np.empty(self._rows, np.intp)

    @functools.cached_property
    def rows(self) -> NDArray[np.intp]:
        return np.arange(self._rows)


Kernel = Callable[[NDArray, NDArray[np.float64], Scratch], None]
"""Writes the scores of one chunk: (probabilities, out, scratch)."""


def scores_by_chunk(
    values: NDArray,
    kernel: Kernel,
    *,
    logits: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
) -> NDArray[np.float64]:
    """Return one float64 score per pool sample, computed chunk by chunk.

    Parameters
    ----------
    values : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities, or logits when ``logits`` is True.
    kernel : Kernel
        Scores one chunk of predictive distributions.
    logits : bool, default=False
        Whether ``values`` holds logits.
    chunk_bytes : int, default=CHUNK_BYTES
        Working bytes per chunk.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64

    Notes
    -----
    A pool of at least ``CHUNKS_PER_THREAD`` chunks per thread is split into
    contiguous parts scored at the same time, one thread and one scratch
    each (``parts.row_parts``), on up to ``threads.compute_threads()``
    threads (a ``--workers`` worker's share of the cores). The scores do
    not depend on the split.
    """
    rows = chunk_rows(values, logits=logits, chunk_bytes=chunk_bytes)
    dtype = working_dtype(values, logits=logits)
    scores = np.empty(len(values))
    one_view = values.ndim == 2 and not logits and values.dtype == dtype
    if one_view and rows == len(values):
        # One chunk that ``probability_chunks`` would yield as the array
        # itself: score it here, without the generator and the split
        # (small requests, most calls, take this path).
        kernel(values, scores, Scratch(rows, values.shape[-1], dtype))
        return scores

    def score(start: int, stop: int) -> None:
        scratch = Scratch.allocate(rows, values.shape[-1], dtype)
        for chunk in probability_chunks(values[start:stop], logits=logits, rows=rows):
            out = scores[start + chunk.start : start + chunk.stop]
            kernel(chunk.probabilities, out, scratch)

    # Each row's score depends on that row alone, so the split over the
    # threads never changes a score.
    map_parts(score, row_parts(len(values), rows))
    return scores


def scores_at(
    probabilities: NDArray,
    positions: NDArray[np.intp],
    kernel: Kernel,
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> NDArray[np.float64]:
    """Return ``kernel``'s score of the rows at ``positions``, in their order.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, n_classes)
        Checked probabilities, read in their own dtype.
    positions : ndarray of shape (n,), intp
        Pool positions of the rows to score.
    kernel : Kernel
        Scores one chunk; it may use any buffer of its scratch.
    chunk_bytes : int, default=CHUNK_BYTES
        Bytes of one gathered chunk.

    Returns
    -------
    scores : ndarray of shape (n,), float64

    Notes
    -----
    The rows are gathered a chunk at a time into a buffer of their own, so
    a row's score is the one ``scores_by_chunk`` gives it. Many positions
    are split over the threads as ``scores_by_chunk`` splits rows.
    """
    rows = chunk_rows(probabilities, chunk_bytes=chunk_bytes)
    n_classes, dtype = probabilities.shape[1], probabilities.dtype
    scores = np.empty(len(positions))

    def score(start: int, stop: int) -> None:
        scratch = Scratch.allocate(rows, n_classes, dtype)
        block = np.empty((rows, n_classes), dtype)
        for first in range(start, stop, rows):
            chosen = positions[first : min(first + rows, stop)]
            gathered = block[: len(chosen)]
            np.take(probabilities, chosen, axis=0, out=gathered)
            kernel(gathered, scores[first : first + len(chosen)], scratch)

    map_parts(score, row_parts(len(positions), rows))
    return scores


def top_one(p: NDArray, out: NDArray[np.float64], scratch: Scratch) -> None:
    """Write max_c p_ic of each row into ``out``."""
    np.copyto(out, row_max(p, out=scratch.first[: len(p)]))


def margin_gap(p: NDArray, out: NDArray[np.float64], scratch: Scratch) -> None:
    """Write p_(1) - p_(2) of each row into ``out``, subtracted in float64."""
    first, second = top_two(p, scratch)
    np.subtract(first, second, out=out, dtype=np.float64)


def top_ratio(p: NDArray, out: NDArray[np.float64], scratch: Scratch) -> None:
    """Write p_(2) / p_(1) of each row into ``out``, divided in float64."""
    first, second = top_two(p, scratch)
    np.divide(second, first, out=out, dtype=np.float64)


def entropy_sum(p: NDArray, out: NDArray[np.float64], scratch: Scratch) -> None:
    """Write sum_c p_ic ln p_ic (at most 0) of each row into ``out``.

    The terms are computed in float64 whatever the dtype of ``p`` (a float32
    log would move entropies by up to 2e-7 relative). Zeros are raised to
    float64's smallest normal number t before the log; their term t ln t
    (-1.6e-305) then snaps to exactly 0. The terms are snapped to a grid and
    summed exactly (``information.snap_to_grid``), so the class order does
    not matter.
    """
    clamped, terms = scratch.clamped[: len(p)], scratch.terms[: len(p)]
    np.maximum(p, np.finfo(np.float64).tiny, out=clamped, dtype=np.float64)
    np.log(clamped, out=terms)
    terms *= clamped
    snap_to_grid(terms, p.shape[1])
    row_sum(terms, out=out)


def top_two(p: NDArray, scratch: Scratch) -> tuple[NDArray, NDArray]:
    """Return the largest and second largest value of each row of ``p``.

    A value held twice is both (the gap is then 0). Few classes are swept
    column by column; more go through argmax, masking the winner in a copy,
    and a second max. Both views live in ``scratch``.
    """
    n, n_classes = p.shape
    first, second = scratch.first[:n], scratch.second[:n]
    if n_classes <= FEW_COLUMNS:
        lower = scratch.third[:n]
        np.maximum(p[:, 0], p[:, 1], out=first)
        np.minimum(p[:, 0], p[:, 1], out=second)
        for column in range(2, n_classes):
            values = p[:, column]
            np.minimum(first, values, out=lower)
            np.maximum(second, lower, out=second)
            np.maximum(first, values, out=first)
        return first, second
    rows, where = scratch.rows[:n], scratch.where[:n]
    np.argmax(p, axis=1, out=where)
    first[:] = p[rows, where]
    masked = scratch.wide[:n]
    np.copyto(masked, p)
    masked[rows, where] = -np.inf
    np.max(masked, axis=1, out=second)
    return first, second
