"""Nearest-center distances of the pool for the exact k-center greedy."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np
from numpy.typing import NDArray

from alquery.server.strategies.diversity import CHUNK_ELEMENTS
from alquery.server.strategies.kcenter_partition import partition_pool
from alquery.server.strategies.kcenter_update import update_groups
from alquery.server.threads import compute_threads

LEAF_SIZE = 384
"""Target number of pool rows per group of the partition."""

WORKERS = min(4, compute_threads())
"""Threads that update groups side by side (BLAS then runs on one): this
process's share of the cores (``threads.compute_threads``), at most 4."""

CACHE_ELEMENTS = 1 << 16
"""Streaming loops work on float64 blocks of at most this many values
(512 KiB), reused, so they stay in a core's cache."""

SCREEN_MAGNITUDES = (1e-20, 1e30)
"""Screening runs in float32 only when the largest squared norm lies
between these (float32 squares neither overflow nor underflow)."""


def pool_shift(embeddings: NDArray) -> NDArray[np.float64]:
    """Return the pool mean, float64: every vector is shifted by it."""
    return np.mean(embeddings, axis=0, dtype=np.float64)


def shifted(rows: NDArray, shift: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return ``rows`` in float64 less ``shift``."""
    return np.asarray(rows, dtype=np.float64) - shift


def paired_squared_distances(
    rows: NDArray[np.float64],
    row_norms: NDArray[np.float64],
    centers: NDArray[np.float64],
    center_norms: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Return ||r_i - c_i||^2 for aligned rows and centers, float64.

    Computed as ||r||^2 - 2 r.c + ||c||^2, clipped below at 0. The dot
    product of a pair depends on that pair alone (einsum, not BLAS), so a
    distance is the same number whichever rows share the call: this is the
    definition of the exact distance both the greedy and its test reference
    use. ``centers`` may be one row broadcast over all.
    """
    out = np.einsum("ij,ij->i", rows, centers)
    out *= -2.0
    out += row_norms
    out += center_norms
    np.maximum(out, 0.0, out=out)
    return out


def row_norms(rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return ||r||^2 of every row, float64 (one row per einsum sum)."""
    return np.einsum("ij,ij->i", rows, rows)


def _cache_rows(n_features: int) -> int:
    # Rows per pass of a streaming loop: a float64 block that stays in a
    # core's cache (and never more than CHUNK_ELEMENTS values).
    return max(1, min(CACHE_ELEMENTS, CHUNK_ELEMENTS) // max(1, n_features))


def _halves(n_rows: int, executor: Executor | None) -> list[slice]:
    # Contiguous row ranges, one per worker (one in all without executor).
    n_parts = 1 if executor is None else WORKERS
    bounds = np.linspace(0, n_rows, n_parts + 1).astype(np.int64)
    return [slice(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _run(executor: Executor | None, job: Callable, parts: list) -> None:
    # ``job`` on every part, side by side when there is an executor.
    if executor is None or len(parts) == 1:
        for part in parts:
            job(part)
    else:
        list(executor.map(job, parts))


def _shifted_copy(
    embeddings: NDArray,
    shift: NDArray[np.float64],
    dtype: type,
    norms: NDArray[np.float64] | None = None,
    executor: Executor | None = None,
) -> NDArray:
    # The shifted pool in ``dtype``, a cache-sized block at a time; fills
    # ``norms`` with the exact squared norms on the way. Values beyond
    # float32 become inf (the caller then screens in float64).
    n_pool, n_features = embeddings.shape
    copy = np.empty((n_pool, n_features), dtype=dtype)
    rows_per_chunk = _cache_rows(n_features)

    def fill(part: slice) -> None:
        block = np.empty((rows_per_chunk, n_features))
        for start in range(part.start, part.stop, rows_per_chunk):
            chunk = slice(start, min(start + rows_per_chunk, part.stop))
            rows = block[: chunk.stop - chunk.start]
            np.subtract(embeddings[chunk], shift, out=rows)
            if norms is not None:
                norms[chunk] = row_norms(rows)
            with np.errstate(over="ignore"):
                copy[chunk] = rows

    _run(executor, fill, _halves(n_pool, executor))
    return copy


class LazyCover:
    """Nearest-center distances of the pool, brought up to date lazily.

    The pool is reordered once by a coarse partition (``partition_pool``)
    so that each group's rows are contiguous. A group remembers how many
    centers it has seen and the largest nearest distance among its rows,
    ``bound``. Centers added since then are applied only when the group
    could hold the next pick, i.e. when its (stale) bound is the largest:
    true nearest distances never exceed stale ones, so a group whose bound
    is below the best up-to-date distance cannot hold the farthest sample.

    Applying centers to a group skips, by the triangle inequality about the
    group's center m, every row x with d(x, m) < d(c, m) - sqrt(bound): c
    cannot come closer to x than its nearest center. Rows are stored
    farthest-from-m first, so the rows left are a prefix, screened by one
    BLAS product (float32) against all pending centers at once. Only pairs
    whose screened distance might reach the row's new nearest distance
    (within a proven rounding bound) get the exact float64 distance
    (``paired_squared_distances``). Every bound leaves a margin for the
    rounding of the exact expansion (``slack``) and of the screening
    (``screen_slack``), so a row's nearest distance is always the minimum of
    its exact distances to all centers, to the bit.
    """

    def __init__(
        self,
        embeddings: NDArray,
        shift: NDArray[np.float64],
        capacity: int,
        labeled_magnitude: float,
        check: Callable[[], None],
        executor: Executor | None = None,
    ):
        self.embeddings = embeddings
        self.shift = shift
        n_pool, n_features = embeddings.shape
        self.norms = np.empty(n_pool)
        screen = _shifted_copy(
            embeddings, shift, np.float32, self.norms, executor
        )
        magnitude = max(labeled_magnitude, float(self.norms.max(initial=0.0)))
        eps = float(np.finfo(np.float64).eps)
        # Each of the three terms of the expansion is off by at most about
        # n_features * eps times the largest squared norm; doubled.
        self.slack = 8.0 * (n_features + 2) * eps * magnitude
        unit = float(np.finfo(np.float32).eps) / 2.0
        if not SCREEN_MAGNITUDES[0] < magnitude < SCREEN_MAGNITUDES[1]:
            # Outside float32's range, the screening runs in float64.
            unit = eps / 2.0
            screen = _shifted_copy(embeddings, shift, np.float64, None, executor)
        # The rounding of the values to the screening type, then of the
        # n_features-term sums (any order), of the three terms; doubled.
        self.screen_slack = 8.0 * (n_features + 6) * unit * magnitude
        check()
        # In partition order from here on: rows, norms and nearest distances.
        self.partition, screen = partition_pool(
            screen, LEAF_SIZE, self.screen_slack, executor=executor
        )
        order = self.partition.order
        self.screen = screen
        self.screen_norms = row_norms(screen)
        self.sorted_norms = self.norms[order]
        self.nearest = np.full(n_pool, np.inf)
        n_groups = len(self.partition.starts) - 1
        self.bound = np.full(n_groups, np.inf)
        self.applied = np.zeros(n_groups, dtype=np.int64)
        self.centers = np.empty((capacity, n_features))
        self.center_norms = np.empty(capacity)
        self.screen_centers = np.empty((capacity, n_features), dtype=screen.dtype)
        self.screen_center_norms = np.empty(capacity)
        self.n_centers = 0
        self.evaluations = 0
        self.screened = 0
        self.workers = WORKERS
        self.executor = executor

    def add_centers(self, centers: NDArray[np.float64]) -> None:
        """Append (shifted, float64) centers; groups see them when needed."""
        stop = self.n_centers + len(centers)
        self.centers[self.n_centers : stop] = centers
        self.center_norms[self.n_centers : stop] = row_norms(centers)
        screen = centers.astype(self.screen.dtype)
        self.screen_centers[self.n_centers : stop] = screen
        self.screen_center_norms[self.n_centers : stop] = row_norms(
            screen.astype(np.float64)
        )
        self.n_centers = stop

    def add_first_center(self, center: NDArray[np.float64]) -> None:
        """Make ``center`` (shifted, float64) the only center, every exact
        distance computed at once, a cache-sized block of the pool at a
        time."""
        self.add_centers(center[None, :])
        center_norm = self.center_norms[:1]
        distances = np.empty(len(self.nearest))
        rows_per_chunk = _cache_rows(len(center))

        def fill(part: slice) -> None:
            block = np.empty((rows_per_chunk, len(center)))
            for start in range(part.start, part.stop, rows_per_chunk):
                chunk = slice(start, min(start + rows_per_chunk, part.stop))
                rows = block[: chunk.stop - chunk.start]
                np.subtract(self.embeddings[chunk], self.shift, out=rows)
                every = np.broadcast_to(center, rows.shape)
                distances[chunk] = paired_squared_distances(
                    rows, self.norms[chunk], every, center_norm
                )

        _run(self.executor, fill, _halves(len(distances), self.executor))
        self.evaluations += len(distances)
        self.nearest = distances[self.partition.order]
        self.applied[:] = 1
        starts = self.partition.starts
        self.bound = np.maximum.reduceat(self.nearest, starts[:-1])

    def remove(self, position: int) -> None:
        """Take the row at partition ``position`` out of the running."""
        self.nearest[position] = -1.0
        starts = self.partition.starts
        group = int(np.searchsorted(starts, position, side="right")) - 1
        if self.applied[group] == self.n_centers:
            self.bound[group] = self.nearest[starts[group] : starts[group + 1]].max()

    def farthest(self, executor: Executor | None = None) -> tuple[int, float]:
        """Return the partition position of the sample farthest from every
        center (ties: the lower pool position) and its squared distance.

        Stale groups are updated until none could hold a farther sample,
        all the groups of a round at once (``kcenter_update``), their
        batches side by side on ``executor``.
        """
        bound = self.bound
        while True:
            top = bound.max()
            groups = self._stale_groups(top)
            if not len(groups):
                break
            counts = update_groups(self, groups, executor)
            self.evaluations += counts[0]
            self.screened += counts[1]
        starts = self.partition.starts
        best = []
        for group in np.flatnonzero(bound == top):
            rows = slice(starts[group], starts[group + 1])
            best.append(starts[group] + np.flatnonzero(self.nearest[rows] == top))
        positions = np.concatenate(best)
        position = positions[np.argmin(self.partition.order[positions])]
        return int(position), float(top)

    def _stale_groups(self, top: float) -> NDArray[np.int64]:
        # The stale groups whose bound reaches ``top``: one of them might
        # hold the farthest sample.
        stale = self.applied < self.n_centers
        return np.flatnonzero(stale & (self.bound >= top))

    def exact(self, positions: NDArray[np.int64], centers: NDArray[np.int64]) -> None:
        """Compute the exact distances of the (partition position, center)
        pairs and keep the minima in ``nearest``; a center alone in a chunk
        is broadcast rather than copied."""
        n_features = self.centers.shape[1]
        per_chunk = _cache_rows(n_features)
        block = np.empty((min(per_chunk, len(positions)), n_features))
        for first in range(0, len(positions), per_chunk):
            where = positions[first : first + per_chunk]
            which = centers[first : first + per_chunk]
            rows = block[: len(where)]
            pool_rows = self.embeddings[self.partition.order[where]]
            np.subtract(pool_rows, self.shift, out=rows)
            if which.min() == which.max():
                paired = np.broadcast_to(self.centers[which[0]], rows.shape)
            else:
                paired = self.centers[which]
            distances = paired_squared_distances(
                rows, self.sorted_norms[where], paired, self.center_norms[which]
            )
            np.minimum.at(self.nearest, where, distances)
