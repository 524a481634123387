"""Exact k-nearest-neighbour search in bounded memory.

The one neighbour search of the strategies that need one (typicality,
density radii, validation neighbours): Euclidean, exact, computed for a
chunk of query rows at a time, never as an n x n matrix. Positions are
row positions in the ``references`` array.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from alquery.server.strategies.diversity import (
    CHUNK_ELEMENTS,
    never_cancelled,
    squared_distances,
    squared_norms,
)
from numpy.typing import NDArray


def k_nearest(
    references: NDArray,
    k: int,
    queries: NDArray | None = None,
    check: Callable[[], None] = never_cancelled,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The ``k`` nearest references of every query, nearest first.

    For query q_i, N_k(i) holds the k references r_j with the smallest
    ||q_i - r_j||^2; among equal distances the lower reference position
    comes first, so the answer is that of a stable sort of each full
    distance row, cut after k.

    Parameters
    ----------
    references : ndarray of shape (n_references, n_features)
    k : int
        ``1 <= k <= n_references``, or ``<= n_references - 1`` without
        ``queries``.
    queries : ndarray of shape (n_queries, n_features), optional
        Without it the references are their own queries and each row's own
        position is left out of its neighbours.
    check : callable, optional
        Runs before each chunk and may raise to stop the work.

    Returns
    -------
    squared_distances : ndarray of shape (n_queries, k), float64
        ||q_i - r_j||^2, non-decreasing along each row, at least 0.
    positions : ndarray of shape (n_queries, k), int64
        The reference positions j, in the same order.

    Notes
    -----
    Distances use the float64 expansion of ``diversity.squared_distances``
    (clipped at 0), so two vectors closer than about 1e-8 times their norm
    may be seen at distance 0 and tie. Rows are processed in chunks whose
    distance block holds at most ``CHUNK_ELEMENTS`` values; peak memory is
    about two blocks (64 MiB) plus the (n_queries, k) results, whatever the
    number of queries. Time O(n_queries * n_references * n_features) for
    the distances plus O(n_queries * n_references) for the selection
    (``numpy.partition``, no full sort). Rows whose k-th distance is tied
    across the cut take the tied references in position order.
    """
    refs = np.asarray(references, dtype=np.float64)
    excluding_self = queries is None
    rows = refs if excluding_self else np.asarray(queries, dtype=np.float64)
    row_norms = squared_norms(rows)
    n_rows = len(rows)
    distances = np.empty((n_rows, k))
    positions = np.empty((n_rows, k), dtype=np.int64)
    chunk = max(1, CHUNK_ELEMENTS // max(1, len(refs)))
    for start in range(0, n_rows, chunk):
        check()
        stop = min(start + chunk, n_rows)
        block = squared_distances(rows[start:stop], refs, row_norms[start:stop])
        if excluding_self:
            own = np.arange(stop - start)
            block[own, start + own] = np.inf
        distances[start:stop], positions[start:stop] = _smallest(block, k)
    return distances, positions


def _smallest(
    block: NDArray[np.float64], k: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    # The k smallest entries of each row and their columns, ordered by
    # (value, column): the first k of a stable argsort, without the sort.
    kth = np.partition(block, k - 1, axis=1)[:, k - 1 : k]
    take = block <= kth
    # Where the k-th value is tied past the cut, keep the lowest columns of
    # the tie: all entries below it, then tied ones up to k in total.
    counts = np.count_nonzero(take, axis=1)
    for row in np.flatnonzero(counts > k):
        tied = block[row] == kth[row, 0]
        room = k - np.count_nonzero(block[row] < kth[row, 0])
        drop = np.flatnonzero(tied)[room:]
        take[row, drop] = False

    row_ids, columns = np.nonzero(take)
    columns = columns.reshape(len(block), k)
    values = block[row_ids, columns.ravel()].reshape(len(block), k)
    order = np.lexsort((columns, values), axis=1)
    return (
        np.take_along_axis(values, order, axis=1),
        np.take_along_axis(columns, order, axis=1),
    )
