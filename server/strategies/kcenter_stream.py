"""Streaming passes over the pool for the exact k-center greedy.

Each pass reads the pool a cache-sized block at a time into one reused
float64 block, shifted by the pool mean, and splits the rows into one
contiguous range per worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np
from numpy.typing import NDArray

from alquery.server.strategies.diversity import CHUNK_ELEMENTS
from alquery.server.strategies.kcenter_native import exact_norms

CACHE_ELEMENTS = 1 << 16
"""A streaming block holds at most this many float64 values (512 KiB), so
it stays in a core's cache."""

PROJECTED_DIMS = 32
"""The pool is projected onto this many leading principal directions (when
it has more dimensions): the groups are formed there, O(n_pool *
PROJECTED_DIMS) per level instead of O(n_pool * n_features), and the
projection bounds distances from below (``kcenter_basis``)."""


def cache_rows(n_features: int) -> int:
    """Rows per block: at most CACHE_ELEMENTS (and CHUNK_ELEMENTS) values."""
    return max(1, min(CACHE_ELEMENTS, CHUNK_ELEMENTS) // max(1, n_features))


def stream(
    n_rows: int,
    n_features: int,
    executor: Executor | None,
    workers: int,
    job: Callable[[slice, NDArray[np.float64]], None],
) -> None:
    """Call ``job(rows, block)`` for consecutive row ranges covering
    ``n_rows``, each with a float64 block of shape (len(rows), n_features)
    to fill; one contiguous share of the rows per worker, side by side."""
    per_block = cache_rows(n_features)
    n_parts = 1 if executor is None else max(1, min(workers, n_rows))
    bounds = np.linspace(0, n_rows, n_parts + 1).astype(np.int64)

    def run(part: int) -> None:
        block = np.empty((per_block, n_features))
        for start in range(int(bounds[part]), int(bounds[part + 1]), per_block):
            rows = slice(start, min(start + per_block, int(bounds[part + 1])))
            job(rows, block[: rows.stop - rows.start])

    if n_parts == 1:
        run(0)
    else:
        list(executor.map(run, range(n_parts)))


def norms_and_projection(
    embeddings: NDArray,
    shift: NDArray[np.float64],
    basis: NDArray[np.float64] | None,
    executor: Executor | None,
    workers: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray | None]:
    """Return, in one pass over the pool, the exact squared norms of the
    shifted pool (float64), its projection ``(x - shift) @ basis`` (float64;
    the shifted pool itself when ``basis`` is None), and, for a float32
    pool, the squared norms of its rows as they are, summed in float32
    (None otherwise)."""
    n_pool, n_features = embeddings.shape
    norms = np.empty(n_pool)
    width = n_features if basis is None else basis.shape[1]
    projected = np.empty((n_pool, width))
    raw_norms = None
    if embeddings.dtype == np.float32:
        raw_norms = np.empty(n_pool, dtype=np.float32)

    def job(rows: slice, block: NDArray[np.float64]) -> None:
        raw = embeddings[rows]
        np.subtract(raw, shift, out=block)
        norms[rows] = exact_norms(block)
        projected[rows] = block if basis is None else block @ basis
        if raw_norms is not None:
            raw_norms[rows] = np.einsum("ij,ij->i", raw, raw)

    stream(n_pool, n_features, executor, workers, job)
    return norms, projected, raw_norms


def shifted_copy(
    embeddings: NDArray,
    shift: NDArray[np.float64],
    dtype: type,
    executor: Executor | None,
    workers: int,
) -> NDArray:
    """Return ``embeddings - shift`` in ``dtype``, computed in float64 a
    block at a time. Values beyond float32 become inf (the greedy then
    screens in float64)."""
    copy = np.empty(embeddings.shape, dtype=dtype)

    def job(rows: slice, block: NDArray[np.float64]) -> None:
        np.subtract(embeddings[rows], shift, out=block)
        with np.errstate(over="ignore"):
            copy[rows] = block

    stream(len(copy), embeddings.shape[1], executor, workers, job)
    return copy
