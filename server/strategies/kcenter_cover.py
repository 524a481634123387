"""Nearest-center distances of the pool for the exact k-center greedy."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np
from numpy.typing import NDArray

from alquery.server.strategies.diversity import CHUNK_ELEMENTS
from alquery.server.strategies.kcenter_partition import partition_pool
from alquery.server.threads import compute_threads

LEAF_SIZE = 384
"""Target number of pool rows per group of the partition."""

WORKERS = min(4, compute_threads())
"""Threads that update groups side by side (BLAS then runs on one): this
process's share of the cores (``threads.compute_threads``), at most 4."""

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


def _shifted_copy(
    embeddings: NDArray,
    shift: NDArray[np.float64],
    dtype: type,
    norms: NDArray[np.float64] | None = None,
) -> NDArray:
    # The shifted pool in ``dtype``, a chunk at a time; fills ``norms`` with
    # the exact squared norms on the way. Values beyond float32 become inf
    # (the caller then screens in float64).
    n_pool, n_features = embeddings.shape
    copy = np.empty((n_pool, n_features), dtype=dtype)
    rows_per_chunk = max(1, CHUNK_ELEMENTS // max(1, n_features))
    for start in range(0, n_pool, rows_per_chunk):
        chunk = slice(start, start + rows_per_chunk)
        rows = shifted(embeddings[chunk], shift)
        if norms is not None:
            norms[chunk] = row_norms(rows)
        with np.errstate(over="ignore"):
            copy[chunk] = rows
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
        screen = _shifted_copy(embeddings, shift, np.float32, self.norms)
        magnitude = max(labeled_magnitude, float(self.norms.max(initial=0.0)))
        eps = float(np.finfo(np.float64).eps)
        # Each of the three terms of the expansion is off by at most about
        # n_features * eps times the largest squared norm; doubled.
        self.slack = 8.0 * (n_features + 2) * eps * magnitude
        unit = float(np.finfo(np.float32).eps) / 2.0
        if not SCREEN_MAGNITUDES[0] < magnitude < SCREEN_MAGNITUDES[1]:
            # Outside float32's range, the screening runs in float64.
            unit = eps / 2.0
            screen = _shifted_copy(embeddings, shift, np.float64)
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
        distance computed at once, in contiguous chunks of the pool."""
        self.add_centers(center[None, :])
        center_norm = self.center_norms[:1]
        distances = np.empty(len(self.nearest))
        rows_per_chunk = max(1, CHUNK_ELEMENTS // max(1, len(center)))
        for start in range(0, len(distances), rows_per_chunk):
            chunk = slice(start, start + rows_per_chunk)
            rows = shifted(self.embeddings[chunk], self.shift)
            every = np.broadcast_to(center, rows.shape)
            distances[chunk] = paired_squared_distances(
                rows, self.norms[chunk], every, center_norm
            )
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

        Stale groups are updated until none could hold a farther sample;
        with an ``executor``, several at a time (see ``_stale_groups``).
        """
        bound = self.bound
        while True:
            top = bound.max()
            groups = self._stale_groups(top, executor)
            if not len(groups):
                break
            if executor is None or len(groups) == 1:
                counts = [self._update(int(group)) for group in groups]
            else:
                counts = list(executor.map(self._update, groups.tolist()))
            self.evaluations += sum(count[0] for count in counts)
            self.screened += sum(count[1] for count in counts)
        starts = self.partition.starts
        best = []
        for group in np.flatnonzero(bound == top):
            rows = slice(starts[group], starts[group + 1])
            best.append(starts[group] + np.flatnonzero(self.nearest[rows] == top))
        positions = np.concatenate(best)
        position = positions[np.argmin(self.partition.order[positions])]
        return int(position), float(top)

    def _stale_groups(self, top: float, executor: Executor | None) -> NDArray:
        # The stale groups whose bound reaches ``top`` must be updated. When
        # that is a single group and an executor has workers to spare, the
        # next stale groups by bound are updated beside it: they are the
        # likeliest to be needed next, and updating early is never wrong.
        stale = self.applied < self.n_centers
        needed = np.flatnonzero(stale & (self.bound >= top))
        if len(needed) != 1 or executor is None:
            return needed
        others = np.flatnonzero(stale)
        others = others[np.argsort(-self.bound[others], kind="stable")]
        return others[: self.workers]

    def _update(self, group: int) -> tuple[int, int]:
        # Apply to ``group`` the centers it has not seen; return how many
        # distances were computed exactly and how many were screened.
        start, stop = self.partition.starts[group : group + 2]
        n_centers = self.n_centers
        per_chunk = max(1, CHUNK_ELEMENTS // max(1, stop - start))
        evaluations = screened = 0
        for first in range(self.applied[group], n_centers, per_chunk):
            pending = slice(first, min(first + per_chunk, n_centers))
            counts = self._apply(group, pending)
            evaluations += counts[0]
            screened += counts[1]
        self.applied[group] = n_centers
        self.bound[group] = self.nearest[start:stop].max()
        return evaluations, screened

    def _prefixes(self, group: int, pending: slice) -> NDArray[np.int64]:
        # How many of the group's rows (farthest from m first) each pending
        # center might bring closer: rows where
        # d(x, m) >= d(c, m) - sqrt(bound).
        start, stop = self.partition.starts[group : group + 2]
        middle = self.partition.centers[group]
        to_middle = self.centers[pending] @ middle
        to_middle *= -2.0
        to_middle += self.center_norms[pending]
        to_middle += middle @ middle
        low = np.sqrt(np.maximum(to_middle - 2.0 * self.slack, 0.0))
        threshold = low - np.sqrt(self.bound[group] + 2.0 * self.slack)
        reach = self.partition.reach[start:stop]
        # reach is non-increasing: count the rows with reach >= threshold.
        return np.searchsorted(-reach, -threshold, side="right")

    def _apply(self, group: int, pending: slice) -> tuple[int, int]:
        start = int(self.partition.starts[group])
        prefixes = self._prefixes(group, pending)
        centers = np.arange(pending.start, pending.stop)[prefixes > 0]
        if not len(centers):
            return 0, 0
        rows = slice(start, start + int(prefixes.max()))
        approx = self.screen[rows] @ self.screen_centers[centers].T
        approx *= -2.0
        approx += self.screen_norms[rows, None]
        approx += self.screen_center_norms[centers][None, :]
        # A pair can set the row's new nearest distance only if its screened
        # distance is within 2 * margin of the lowest upper bound on it.
        margin = 2.0 * (self.slack + self.screen_slack)
        lowest = approx.min(axis=1).astype(np.float64) + margin
        ceiling = np.minimum(self.nearest[rows], lowest) + margin
        row_hits, center_hits = np.nonzero(approx <= ceiling[:, None])
        self._exact(start + row_hits, centers[center_hits])
        return len(row_hits), approx.size

    def _exact(self, positions: NDArray[np.int64], centers: NDArray[np.int64]) -> None:
        # Exact distances for the (position, center) pairs; keep the minima.
        # Pairs of one center take it broadcast rather than copied.
        per_chunk = max(1, CHUNK_ELEMENTS // max(1, self.centers.shape[1]))
        for first in range(0, len(positions), per_chunk):
            where = positions[first : first + per_chunk]
            which = centers[first : first + per_chunk]
            rows = shifted(self.embeddings[self.partition.order[where]], self.shift)
            if which.min() == which.max():
                paired = np.broadcast_to(self.centers[which[0]], rows.shape)
            else:
                paired = self.centers[which]
            distances = paired_squared_distances(
                rows, self.sorted_norms[where], paired, self.center_norms[which]
            )
            np.minimum.at(self.nearest, where, distances)
