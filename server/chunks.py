"""Walk pool predictions in row chunks of a few MiB.

Scoring a large pool one chunk of rows at a time keeps every temporary the
size of a chunk, so it stays in cache and the pool is read once. This module
sizes the chunks, turns each chunk of logits or passes into one predictive
distribution per sample in a reused buffer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from alquery.server.probabilities import softmax

CHUNK_BYTES = 2**20
"""Bytes of one chunk in the working dtype: with the float64 scratch a
kernel writes beside it, a few MiB, which stays in cache."""

@dataclasses.dataclass(frozen=True)
class Chunk:
    """One block of rows: pool positions ``start:stop`` and their predictive
    distributions, shape (stop - start, n_classes), in the working dtype.

    ``probabilities`` may be a read-only view of the request's tensor; it
    is only valid until the next chunk is drawn.
    """

    start: int
    stop: int
    probabilities: NDArray


def working_dtype(values: NDArray, *, logits: bool = False) -> np.dtype:
    """Return the dtype the chunks of ``values`` are yielded in.

    float32 for two-axis float32 probabilities, which are used as sent;
    float64 otherwise: passes are averaged and logits go through the
    softmax in float64, as ``probabilities.predictive`` and
    ``probabilities.softmax`` do, so scores match the float64 formula.
    """
    if values.ndim == 2 and values.dtype == np.float32 and not logits:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def chunk_rows(
    values: NDArray, *, logits: bool = False, chunk_bytes: int = CHUNK_BYTES
) -> int:
    """Return how many rows of ``values`` fill ``chunk_bytes`` once in the
    working dtype, at most the number of rows.

    At least 1, so a single row larger than a chunk still makes progress.
    """
    row_bytes = values[0].size * working_dtype(values, logits=logits).itemsize
    return max(1, min(len(values), chunk_bytes // row_bytes))


def probability_chunks(
    values: NDArray, *, logits: bool = False, rows: int
) -> Iterator[Chunk]:
    """Yield the predictive distributions of ``values`` chunk by chunk.

    Parameters
    ----------
    values : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities, or logits when ``logits`` is True.
    logits : bool, default=False
        Whether ``values`` holds logits; each chunk then goes through
        ``probabilities.softmax`` into a reused float64 buffer.
    rows : int
        Rows per chunk (``chunk_rows``).

    Yields
    ------
    Chunk
        Consecutive row blocks covering the pool, in ``working_dtype``.

    Notes
    -----
    Two-axis probabilities already in the working dtype are yielded as views,
    without a copy. Passes are averaged in float64 per chunk:
    p_ic = (1 / T) sum_t p_itc.
    """
    dtype = working_dtype(values, logits=logits)
    n_pool, n_classes = values.shape[0], values.shape[-1]
    direct = values.ndim == 2 and not logits and values.dtype == dtype
    buffer = None if direct else np.empty((rows, n_classes), dtype)
    for start in range(0, n_pool, rows):
        stop = min(start + rows, n_pool)
        block = values[start:stop]
        if direct:
            yield Chunk(start, stop, block)
            continue
        out = buffer[: stop - start]
        if values.ndim == 3:
            passes = softmax(block) if logits else block
            np.mean(passes, axis=1, dtype=np.float64, out=out)
        elif logits:
            softmax(block, out=out)
        else:
            np.copyto(out, block)
        yield Chunk(start, stop, out)
