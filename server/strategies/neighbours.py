"""Exact k-nearest-neighbour search in bounded memory.

The one neighbour search of the strategies that need one (typicality,
density radii, validation neighbours): Euclidean and exact, never an n x n
matrix. scikit-learn's brute-force ``NearestNeighbors`` finds candidates
(cache-sized tiles, a heap per query: about 3 times faster than
partitioning whole distance rows with numpy in bench/RESULTS.md, with a
fraction of the memory); this module makes the tie-break exact.
Positions are row positions in ``references``.
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
from sklearn.neighbors import NearestNeighbors

TIE_MARGIN = 8
"""Candidates fetched beyond k, so a tie at the k-th distance is seen whole;
rows whose tie runs past them are searched again in full."""

QUERY_ROWS = 4096
"""Queries per scikit-learn call; ``check`` runs between calls."""


def k_nearest(
    references: NDArray,
    k: int,
    queries: NDArray | None = None,
    check: Callable[[], None] = never_cancelled,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The ``k`` nearest references of every query, nearest first.

    For query q_i, N_k(i) holds the k references r_j with the smallest
    Euclidean distance ||q_i - r_j||; among equal distances the lower
    reference position comes first, so the answer is that of a stable sort
    of each full distance row, cut after k.

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
        Runs before each chunk of queries and may raise to stop the work.

    Returns
    -------
    distances : ndarray of shape (n_queries, k), float64
        ||q_i - r_j||, non-decreasing along each row.
    positions : ndarray of shape (n_queries, k), int64
        The reference positions j, in the same order.

    Notes
    -----
    scikit-learn returns the k + ``TIE_MARGIN`` nearest candidates of each
    query by its own distances (the expansion ||q||^2 - 2 q.r + ||r||^2 in
    float64, clipped at 0, then the square root), with ties in no set
    order. When the last candidate is farther than the k-th, every
    reference tied with the k-th is among them, and sorting them by
    (distance, position) gives the exact answer. A row whose tie runs
    past the margin (many duplicates) is searched again over all references
    with ``diversity.squared_distances`` and the same rule; its distances
    may then differ from scikit-learn's in the last bits. Two vectors closer
    than about 1e-8 times their norm may be seen at distance 0 and tie.

    Memory: scikit-learn works in small tiles; the results take
    (n_queries, k) plus a (4096, k + 8) chunk; a row searched again takes a
    distance block of at most ``CHUNK_ELEMENTS`` values. Time
    O(n_queries * n_references * n_features). scikit-learn's OpenMP threads
    use every core, as BLAS does.
    """
    refs = np.ascontiguousarray(references, dtype=np.float64)
    excluding_self = queries is None
    rows = refs if excluding_self else np.asarray(queries, dtype=np.float64)
    fetch = min(len(refs), k + TIE_MARGIN + int(excluding_self))
    search = NearestNeighbors(n_neighbors=fetch, algorithm="brute").fit(refs)
    distances = np.empty((len(rows), k))
    positions = np.empty((len(rows), k), dtype=np.int64)
    for start in range(0, len(rows), QUERY_ROWS):
        check()
        chunk = np.arange(start, min(start + QUERY_ROWS, len(rows)))
        found, where = search.kneighbors(rows[chunk])
        if excluding_self:
            found, where = _drop_self(found, where, chunk)
        settled = (fetch == len(refs)) | (found[:, -1] > found[:, k - 1])
        order = np.lexsort((where, found), axis=1)[:, :k]
        distances[chunk] = np.take_along_axis(found, order, axis=1)
        positions[chunk] = np.take_along_axis(where, order, axis=1)
        unsettled = chunk[~settled]
        if len(unsettled):
            distances[unsettled], positions[unsettled] = _full_search(
                refs, rows[unsettled], k, unsettled if excluding_self else None
            )
    return distances, positions


def _drop_self(
    found: NDArray[np.float64], where: NDArray[np.int64], chunk: NDArray[np.int64]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    # Each row's own position goes; a row that did not find itself (ties
    # at 0 among duplicates) drops its farthest candidate instead.
    keep = where != chunk[:, None]
    keep[keep.all(axis=1), -1] = False
    shape = (len(chunk), where.shape[1] - 1)
    return found[keep].reshape(shape), where[keep].reshape(shape)


def _full_search(
    refs: NDArray[np.float64],
    rows: NDArray[np.float64],
    k: int,
    own: NDArray[np.int64] | None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    # Every distance of each row, in blocks; own[i] (if given) is row i's
    # own reference position, left out.
    row_norms = squared_norms(rows)
    distances = np.empty((len(rows), k))
    positions = np.empty((len(rows), k), dtype=np.int64)
    chunk = max(1, CHUNK_ELEMENTS // max(1, len(refs)))
    for start in range(0, len(rows), chunk):
        stop = min(start + chunk, len(rows))
        block = squared_distances(rows[start:stop], refs, row_norms[start:stop])
        if own is not None:
            block[np.arange(stop - start), own[start:stop]] = np.inf
        squared, positions[start:stop] = _smallest(block, k)
        distances[start:stop] = np.sqrt(squared)
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
        take[row, np.flatnonzero(tied)[room:]] = False

    row_ids, columns = np.nonzero(take)
    columns = columns.reshape(len(block), k)
    values = block[row_ids, columns.ravel()].reshape(len(block), k)
    order = np.lexsort((columns, values), axis=1)
    return (
        np.take_along_axis(values, order, axis=1),
        np.take_along_axis(columns, order, axis=1),
    )
