"""Greedy k-center (core-set) selection: exact, with lazily updated groups."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np
from alquery.server.blas_threads import one_blas_thread
from alquery.server.registry import Ranking, Strategy, register
from alquery.server.strategies.diversity import CHUNK_ELEMENTS, never_cancelled
from alquery.server.strategies.kcenter_partition import partition_pool
from numpy.typing import NDArray

LEAF_SIZE = 384
"""Target number of pool rows per group of the partition."""

WORKERS = min(4, len(os.sched_getaffinity(0)))
"""Threads that update groups side by side (BLAS then runs on one)."""

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
        self.partition, screen = partition_pool(screen, LEAF_SIZE, self.screen_slack)
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
        self.n_centers = 0
        self.evaluations = 0
        self.screened = 0
        self.workers = WORKERS

    def add_centers(self, centers: NDArray[np.float64]) -> None:
        """Append (shifted, float64) centers; groups see them when needed."""
        stop = self.n_centers + len(centers)
        self.centers[self.n_centers : stop] = centers
        self.center_norms[self.n_centers : stop] = row_norms(centers)
        self.n_centers = stop

    def remove(self, position: int) -> None:
        """Take the row at partition ``position`` out of the running."""
        self.nearest[position] = -1.0

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
        pending = np.arange(self.applied[group], n_centers)
        per_chunk = max(1, CHUNK_ELEMENTS // max(1, stop - start))
        evaluations = screened = 0
        for first in range(0, len(pending), per_chunk):
            counts = self._apply(group, pending[first : first + per_chunk])
            evaluations += counts[0]
            screened += counts[1]
        self.applied[group] = n_centers
        self.bound[group] = self.nearest[start:stop].max()
        return evaluations, screened

    def _prefixes(self, group: int, centers: NDArray[np.int64]) -> NDArray[np.int64]:
        # How many of the group's rows (farthest from m first) each center
        # might bring closer: rows with d(x, m) >= d(c, m) - sqrt(bound).
        start, stop = self.partition.starts[group : group + 2]
        middle = self.partition.centers[group]
        to_middle = self.center_norms[centers] - 2.0 * (self.centers[centers] @ middle)
        to_middle += middle @ middle
        low = np.sqrt(np.maximum(to_middle - 2.0 * self.slack, 0.0))
        threshold = low - np.sqrt(self.bound[group] + 2.0 * self.slack)
        reach = self.partition.reach[start:stop]
        # reach is non-increasing: count the rows with reach >= threshold.
        return np.searchsorted(-reach, -threshold, side="right")

    def _apply(self, group: int, centers: NDArray[np.int64]) -> tuple[int, int]:
        start = int(self.partition.starts[group])
        prefixes = self._prefixes(group, centers)
        centers, prefixes = centers[prefixes > 0], prefixes[prefixes > 0]
        if not len(centers):
            return 0, 0
        rows = slice(start, start + int(prefixes.max()))
        screen_centers = self.centers[centers].astype(self.screen.dtype)
        approx = self.screen[rows] @ screen_centers.T
        approx *= -2.0
        approx += self.screen_norms[rows, None]
        approx += row_norms(screen_centers.astype(np.float64))[None, :]
        # A pair can set the row's new nearest distance only if its screened
        # distance is within 2 * margin of the lowest upper bound on it.
        margin = 2.0 * (self.slack + self.screen_slack)
        ceiling = np.minimum(self.nearest[rows], approx.min(axis=1) + margin)
        row_hits, center_hits = np.nonzero(approx <= (ceiling + margin)[:, None])
        self._exact(start + row_hits, centers[center_hits])
        return len(row_hits), approx.size

    def _exact(self, positions: NDArray[np.int64], centers: NDArray[np.int64]) -> None:
        # Exact distances for the (position, center) pairs; keep the minima.
        per_chunk = max(1, CHUNK_ELEMENTS // max(1, self.centers.shape[1]))
        for first in range(0, len(positions), per_chunk):
            where = positions[first : first + per_chunk]
            which = centers[first : first + per_chunk]
            rows = shifted(self.embeddings[self.partition.order[where]], self.shift)
            distances = paired_squared_distances(
                rows,
                self.sorted_norms[where],
                self.centers[which],
                self.center_norms[which],
            )
            np.minimum.at(self.nearest, where, distances)


def kcenter_greedy(
    embeddings: NDArray,
    batch_size: int,
    labeled_embeddings: NDArray | None = None,
    check: Callable[[], None] = never_cancelled,
) -> Ranking:
    """Greedy k-center (core-set) selection.

    Each step picks the unselected pool sample farthest from its nearest
    center: i* = argmax_i min_{c in C} ||x_i - c||, then adds x_i* to C. C
    starts as the labeled embeddings. The score of a pick is that distance
    (Euclidean) at the moment it was picked, so scores do not increase.

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
        Checked, finite pool embeddings.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    labeled_embeddings : ndarray of shape (n_labeled, n_features), optional
        The initial centers.
    check : callable, optional
        Runs before each pick and may raise to stop the work.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in pick order and their scores.

    Notes
    -----
    Tie-break: among equal distances, the lower pool position. A selected
    sample is never picked again, even when duplicates leave every remaining
    distance at 0.

    With no labeled set, the first pick is the pool sample nearest the pool
    mean (ties to the lower position), and its score is its distance to that
    mean; the greedy steps follow from there.

    Distances: every vector is shifted by the pool mean (distances do not
    change), then ||x||^2 - 2 x.c + ||c||^2 in float64, clipped at 0, with
    the dot product of each pair summed on its own
    (``paired_squared_distances``); two vectors closer than about 1e-7
    times their norm about the mean may be seen at distance 0.

    The picks and scores are, to the bit, those of the plain greedy that
    computes this distance from the new center to every pool sample at
    every pick: a distance is skipped or screened only where a bound,
    with margins for rounding, proves it cannot lower a sample's nearest
    distance (see ``LazyCover``). How much is skipped depends on the data:
    on clustered embeddings most groups are skipped once every cluster
    holds a center; on isotropic noise in many dimensions little is, but
    the pending centers of a group are still screened together, by one
    matrix product. Worst case O((n_labeled + batch_size) * n_pool *
    n_features) operations, as the plain greedy, plus the partition, about
    O(n_pool * n_features * 64). Memory beyond the input: a copy of the
    pool in float32 (float64 outside float32's range), the centers in
    float64, a few vectors of n_pool and 32 MiB blocks. BLAS threads the
    screening products; the rest runs on one core.

    References
    ----------
    Sener & Savarese, "Active Learning for Convolutional Neural Networks: A
    Core-Set Approach", ICLR 2018.
    """
    return kcenter_greedy_counted(embeddings, batch_size, labeled_embeddings, check)[0]


def kcenter_greedy_counted(
    embeddings: NDArray,
    batch_size: int,
    labeled_embeddings: NDArray | None = None,
    check: Callable[[], None] = never_cancelled,
) -> tuple[Ranking, int, int]:
    """Run ``kcenter_greedy``; also return how many sample-to-center
    distances it computed exactly (float64) and how many it screened (the
    plain greedy computes n_pool per pick)."""
    shift = pool_shift(embeddings)
    labeled = None
    magnitude = 0.0
    if labeled_embeddings is not None:
        labeled = shifted(labeled_embeddings, shift)
        magnitude = float(row_norms(labeled).max(initial=0.0))
    n_labeled = 0 if labeled is None else len(labeled)
    cover = LazyCover(embeddings, shift, n_labeled + batch_size, magnitude, check)
    order = cover.partition.order

    picks = np.empty(batch_size, dtype=np.int64)
    scores = np.empty(batch_size)
    start = 0
    if labeled is not None:
        cover.add_centers(labeled)
    else:
        # The pool mean is the origin: the first pick is the smallest norm.
        smallest = np.flatnonzero(cover.norms == cover.norms.min())
        picks[0] = int(smallest.min())
        scores[0] = np.sqrt(cover.norms[picks[0]])
        position = int(np.flatnonzero(order == picks[0])[0])
        cover.add_centers(shifted(embeddings[picks[0] : picks[0] + 1], shift))
        cover.remove(position)
        start = 1

    with one_blas_thread(), ThreadPoolExecutor(
        WORKERS, thread_name_prefix="alquery-kcenter"
    ) as executor:
        for step in range(start, batch_size):
            check()
            position, distance = cover.farthest(executor)
            pick = int(order[position])
            picks[step] = pick
            scores[step] = np.sqrt(distance)
            cover.add_centers(shifted(embeddings[pick : pick + 1], shift))
            cover.remove(position)
    ranking = Ranking(ranked_indices=picks, scores=scores)
    return ranking, cover.evaluations, cover.screened


register(
    Strategy(
        family="diversity",
        method="kcenter",
        description=(
            "Greedy k-center: repeatedly pick the pool sample farthest (Euclidean) "
            "from its nearest center, starting from labeled.embeddings; score = "
            "that distance when picked; ties to the lower pool position."
        ),
        required_inputs=("pool_embeddings",),
        higher_first=True,
        pick=lambda query: kcenter_greedy(
            query.pool_embeddings,
            query.batch_size,
            query.labeled_embeddings,
            check=query.check_cancelled,
        ),
    )
)
