"""Diversity strategies: pick a batch spread over the embedding space."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from alquery.server.registry import Ranking, Strategy, register
from numpy.typing import NDArray

CHUNK_ELEMENTS = 1 << 22
"""Distance blocks hold at most this many float64 values (32 MiB)."""

BLOCK_ROWS = 256
"""k-center reads a block of this many pool rows in place, rather than
gathering its candidates, when over a third of them are candidates."""


def squared_norms(rows: NDArray) -> NDArray[np.float64]:
    """Return ||r||^2 for every row, float64."""
    rows = np.asarray(rows, dtype=np.float64)
    return np.einsum("ij,ij->i", rows, rows)


def squared_distances(
    rows: NDArray, centers: NDArray, row_norms: NDArray | None = None
) -> NDArray[np.float64]:
    """Return ||r - c||^2 for every pair, shape (n_rows, n_centers), float64.

    Computed as ||r||^2 - 2 r.c + ||c||^2 and clipped below at 0, which the
    rounding of the expansion can cross for (near-)identical vectors.
    ``row_norms`` may carry ``squared_norms(rows)`` when the caller has it.
    """
    rows = np.asarray(rows, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    if row_norms is None:
        row_norms = squared_norms(rows)
    out = rows @ centers.T
    out *= -2.0
    out += row_norms[:, None]
    out += squared_norms(centers)[None, :]
    np.maximum(out, 0.0, out=out)
    return out


def never_cancelled() -> None:
    """The default cancellation check of long loops: nothing stops them."""


def nearest_center_distances(
    embeddings: NDArray,
    centers: NDArray,
    check: Callable[[], None] = never_cancelled,
) -> NDArray[np.float64]:
    """Return min_c ||x_i - c||^2 for every row, computed in bounded chunks.

    ``check`` runs before each chunk and may raise to stop the work (see
    ``edge.Query.check_cancelled``).
    """
    chunk = max(1, CHUNK_ELEMENTS // max(1, len(embeddings)))
    norms = squared_norms(embeddings)
    nearest = np.full(len(embeddings), np.inf)
    for start in range(0, len(centers), chunk):
        check()
        block = squared_distances(embeddings, centers[start : start + chunk], norms)
        np.minimum(nearest, block.min(axis=1), out=nearest)
    return nearest


SCREEN_MAGNITUDES = (1e-20, 1e30)
"""k-center screens candidates in float32 only when the largest squared
norm lies between these."""


def _positions(
    rows: slice | NDArray[np.int64], keep: NDArray[np.bool_]
) -> NDArray[np.int64]:
    """Return the pool positions of ``rows`` where ``keep`` holds."""
    if isinstance(rows, slice):
        return rows.start + np.flatnonzero(keep)
    return rows[keep]


class NearestCenters:
    """Each pool sample's squared distance to its nearest center, and which.

    Adding a center c evaluates ||x - c||^2 only for the samples x that it
    might bring closer. By the triangle inequality, when x's current center
    a has ||c - a|| >= 2 ||x - a||, then ||x - c|| >= ||x - a||: c cannot
    win, and x is skipped. The test leaves a margin for the rounding of the
    float64 expansion (``slack``), so a skipped sample is one whose computed
    distance could not have dropped either. The samples left are screened
    with a float32 copy (half the memory traffic, with its own rounding
    bound ``slack32``); only those whose distance might drop are computed
    exactly, in float64.

    Parameters
    ----------
    x : ndarray of shape (n_pool, n_features), float64
        The (shifted) pool.
    capacity : int
        How many centers will be added at most.
    magnitude : float
        The largest squared norm of any pool row or center; sets ``slack``.
    """

    def __init__(self, x: NDArray[np.float64], capacity: int, magnitude: float):
        self.x = x
        self.norms = squared_norms(x)
        self.nearest = np.full(len(x), np.inf)
        self.owner = np.zeros(len(x), dtype=np.int64)
        self.centers = np.empty((capacity, x.shape[1]))
        self.n_centers = 0
        self.evaluations = 0
        # A bound on the absolute error of one computed squared distance:
        # each of the three terms is off by at most about n_features * eps
        # times the largest squared norm; doubled for safety.
        eps = np.finfo(np.float64).eps
        magnitude = max(magnitude, float(self.norms.max(initial=0.0)))
        self.slack = 8.0 * (x.shape[1] + 2) * eps * magnitude
        self.reach = np.empty(len(x))
        self._update_reach(slice(None))
        self._start_screening(magnitude)

    def _start_screening(self, magnitude: float) -> None:
        # A float32 copy screens the candidates at half the memory traffic:
        # its distance, computed by BLAS in float32, is within slack32 of
        # the exact one (rounding of the values to float32, then of the
        # n_features-term sums; doubled for safety). Outside the range where
        # float32 squares neither overflow nor lose precision to underflow,
        # there is no screening.
        self.x32: NDArray[np.float32] | None = None
        self.screened = 0
        if not SCREEN_MAGNITUDES[0] < magnitude < SCREEN_MAGNITUDES[1]:
            return
        self.x32 = self.x.astype(np.float32)
        self.norms32 = np.einsum("ij,ij->i", self.x32, self.x32)
        unit = float(np.finfo(np.float32).eps) / 2.0
        self.slack32 = 8.0 * (self.x.shape[1] + 6) * unit * magnitude

    def _screen(
        self, center: NDArray[np.float64], rows: slice | NDArray[np.int64]
    ) -> slice | NDArray[np.int64]:
        # The rows whose exact distance to ``center`` might drop below (or
        # tie) their nearest distance; the others certainly keep it.
        self.screened += len(self.norms[rows])
        if self.x32 is None:
            return rows
        center32 = center.astype(np.float32)
        approx = self.x32[rows] @ center32
        approx *= -2.0
        approx += self.norms32[rows]
        approx += center32 @ center32
        bound = self.nearest[rows] + (2.0 * self.slack + self.slack32)
        return _positions(rows, approx < bound)

    def _update_reach(self, rows: slice | NDArray[np.int64]) -> None:
        # reach = (2 sqrt(nearest + slack) + 2 sqrt(slack))^2: a center whose
        # squared distance to x's center, less slack, reaches it, cannot win.
        nearest = np.maximum(self.nearest[rows], 0.0)
        root = 2.0 * np.sqrt(nearest + self.slack) + 2.0 * np.sqrt(self.slack)
        self.reach[rows] = root * root

    def _row_groups(
        self, candidates: NDArray[np.int64]
    ) -> Iterator[slice | NDArray[np.int64]]:
        # Blocks of BLOCK_ROWS rows where most rows are candidates are read
        # in place (a view, every row evaluated: the bounds guarantee the
        # others keep their distance); the scattered candidates elsewhere
        # are gathered, CHUNK_ELEMENTS at a time.
        n_pool = len(self.x)
        rows_per_chunk = max(1, CHUNK_ELEMENTS // max(1, self.x.shape[1]))
        per_block = np.bincount(candidates // BLOCK_ROWS, minlength=1)
        dense = per_block > BLOCK_ROWS // 3
        # Runs of consecutive dense blocks, each read as one slice (one BLAS
        # call: on a busy machine, many small threaded calls cost more).
        edges = np.diff(np.concatenate(([0], dense.view(np.int8), [0])))
        for first, last in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            yield slice(int(first) * BLOCK_ROWS, min(int(last) * BLOCK_ROWS, n_pool))
        scattered = candidates[~dense[candidates // BLOCK_ROWS]]
        for start in range(0, len(scattered), rows_per_chunk):
            yield scattered[start : start + rows_per_chunk]

    def _distances_to(
        self, center: NDArray[np.float64], rows: slice | NDArray[np.int64]
    ) -> NDArray[np.float64]:
        # The expansion of ``squared_distances``, but with the dot products
        # by einsum: one row's result does not depend on which other rows
        # are in the call (BLAS gemv's does), so duplicates tie exactly.
        out = np.einsum("ij,j->i", self.x[rows], center)
        out *= -2.0
        out += self.norms[rows]
        out += center @ center
        np.maximum(out, 0.0, out=out)
        return out

    def add_initial(
        self, centers: NDArray[np.float64], check: Callable[[], None]
    ) -> None:
        """Start from ``centers`` (the labeled set): every distance counts.

        Blocks of whole distance columns, as ``nearest_center_distances``
        computes them, so the nearest distances are the same numbers.
        """
        n_pool = len(self.x)
        rows = np.arange(n_pool)
        chunk = max(1, CHUNK_ELEMENTS // max(1, n_pool))
        for start in range(0, len(centers), chunk):
            check()
            block = squared_distances(
                self.x, centers[start : start + chunk], self.norms
            )
            self.evaluations += block.size
            best = block.argmin(axis=1)
            closest = block[rows, best]
            closer = closest < self.nearest
            self.nearest[closer] = closest[closer]
            self.owner[closer] = best[closer] + start
        self.centers[: len(centers)] = centers
        self.n_centers = len(centers)
        self._update_reach(slice(None))

    def add_pool_sample(self, pick: int) -> None:
        """Make pool sample ``pick`` a center, then take it out of the running.

        Its nearest distance becomes -1, below every distance, for good.
        """
        center = self.x[pick : pick + 1]
        index = self.n_centers
        if index:
            between = squared_distances(self.centers[:index], center)[:, 0]
            reachable = np.maximum(between - self.slack, 0.0)
            candidates = np.flatnonzero(self.reach > reachable[self.owner])
        else:
            candidates = np.arange(len(self.x))
        self.centers[index] = center[0]
        self.n_centers += 1
        for group in self._row_groups(candidates):
            for rows in self._chunks(self._screen(center[0], group)):
                self._move_closer(center[0], index, rows)
        self.nearest[pick] = -1.0

    def _chunks(
        self, rows: slice | NDArray[np.int64]
    ) -> Iterator[slice | NDArray[np.int64]]:
        # Gathered rows come CHUNK_ELEMENTS at a time; a slice is a view.
        if isinstance(rows, slice):
            yield rows
            return
        per_chunk = max(1, CHUNK_ELEMENTS // max(1, self.x.shape[1]))
        for start in range(0, len(rows), per_chunk):
            yield rows[start : start + per_chunk]

    def _move_closer(
        self,
        center: NDArray[np.float64],
        index: int,
        rows: slice | NDArray[np.int64],
    ) -> None:
        # Hand ``rows`` whose exact distance drops to center ``index``.
        distances = self._distances_to(center, rows)
        self.evaluations += len(distances)
        closer = distances < self.nearest[rows]
        moved = _positions(rows, closer)
        self.nearest[moved] = distances[closer]
        self.owner[moved] = index
        self._update_reach(moved)


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
    Tie-break: among equal distances, the lower pool position (``argmax``
    returns the first maximum). A selected sample is never picked again, even
    when duplicates leave every remaining distance at 0.

    With no labeled set, the first pick is the pool sample nearest the pool
    mean (ties to the lower position), and its score is its distance to that
    mean; the greedy steps follow from there.

    Distances use the expansion ||x||^2 - 2 x.c + ||c||^2 in float64, clipped
    at 0, after every vector is shifted by the pool mean (distances do not
    change); two vectors closer than about 1e-7 times their norm about that
    mean may be seen at distance 0.

    The picks are those of the plain greedy that computes a full distance
    row per pick, but a new center's distances are computed only for the
    samples it might bring closer (see ``NearestCenters``): on clustered
    embeddings most samples are skipped after the first few dozen picks. A
    distance computed over a subset of rows may differ from the full row's
    in the last bit (BLAS sums in a different order), so a pick can differ
    from the plain greedy's only between samples whose distances tie to
    within rounding. Worst case (no sample ever skipped, e.g. isotropic
    noise in many dimensions) the cost is the plain greedy's,
    O(batch_size * n_pool * n_features), plus O(n_labeled * n_pool *
    n_features) for the labeled set and O(batch_size * (n_labeled +
    batch_size) * n_features) between centers. Memory beyond the input: the
    shifted float64 copy and a float32 one (1.5 times the pool in float64),
    the centers, a few vectors of n_pool and a 32 MiB block. BLAS threads
    the float32 screening; the exact distances (einsum) and the bookkeeping
    run on one core.

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
    distances it computed exactly (float64) and how many it screened in
    float32 (the plain greedy computes n_pool per pick)."""
    # Distances do not change under a shift. Centring on the pool mean keeps
    # the expansion's rounding relative to the spread, not to the offset.
    x = np.asarray(embeddings, dtype=np.float64)
    shift = x.mean(axis=0)
    x = x - shift
    labeled = None
    magnitude = 0.0
    if labeled_embeddings is not None:
        labeled = np.asarray(labeled_embeddings, dtype=np.float64) - shift
        magnitude = float(squared_norms(labeled).max(initial=0.0))
    n_labeled = 0 if labeled is None else len(labeled)
    cover = NearestCenters(x, n_labeled + batch_size, magnitude)

    picks = np.empty(batch_size, dtype=np.int64)
    scores = np.empty(batch_size)
    if labeled is not None:
        cover.add_initial(labeled, check)
        start = 0
    else:
        # The pool mean is now the origin.
        picks[0] = int(np.argmin(cover.norms))
        scores[0] = np.sqrt(cover.norms[picks[0]])
        cover.add_pool_sample(int(picks[0]))
        start = 1

    for step in range(start, batch_size):
        check()
        pick = int(np.argmax(cover.nearest))
        picks[step] = pick
        scores[step] = np.sqrt(cover.nearest[pick])
        cover.add_pool_sample(pick)
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
