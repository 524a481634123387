"""Diversity by coverage: ProbCover's greedy cover of the pool with balls."""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np
from alquery.server.registry import Parameter, Ranking, Strategy, register
from alquery.server.strategies.diversity import (
    CHUNK_ELEMENTS,
    nearest_center_distances,
    never_cancelled,
    squared_distances,
    squared_norms,
)
from alquery.server.strategies.parameters import finite_float
from numpy.typing import NDArray


def _ball_counts(
    x: NDArray[np.float64],
    norms: NDArray[np.float64],
    uncovered: NDArray[np.bool_],
    squared_radius: float,
    check: Callable[[], None],
) -> NDArray[np.int64]:
    """For every row, how many ``uncovered`` rows lie within the radius."""
    chunk = max(1, CHUNK_ELEMENTS // len(x))
    counts = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), chunk):
        check()
        chunk_norms = norms[start : start + chunk]
        block = squared_distances(x[start : start + chunk], x, chunk_norms)
        rows = np.arange(len(block))
        block[rows, start + rows] = 0.0  # exact self-distance
        inside = block <= squared_radius
        counts[start : start + chunk] = np.count_nonzero(inside & uncovered, axis=1)
    return counts


def probcover(
    embeddings: NDArray,
    batch_size: int,
    radius: float,
    labeled_embeddings: NDArray | None = None,
    check: Callable[[], None] = never_cancelled,
) -> Ranking:
    """ProbCover: greedily cover the most uncovered pool samples with balls.

    A sample covers every pool sample within Euclidean distance ``radius``
    of it (itself included). Coverage starts from the labeled set: pool
    samples within ``radius`` of a labeled embedding are covered. Each step
    picks the unpicked pool sample whose ball holds the most uncovered pool
    samples and marks them covered. score = that count (how many samples the
    pick newly covers); it does not increase from pick to pick.

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
        Checked, finite pool embeddings.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    radius : float
        The ball radius delta, finite and above 0.
    labeled_embeddings : ndarray of shape (n_labeled, n_features), optional

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in pick order and their
        counts.

    Notes
    -----
    Tie-break: equal counts go to the lower pool position. Once every pool
    sample is covered, the remaining picks are the lowest unpicked
    positions, with score 0.

    No neighbour graph is stored. The first counts take one chunked pass
    over all pairs, O(n_pool^2 * n_features) time in 32 MiB blocks; after
    that, counts only fall as coverage grows, so a lazy greedy re-counts a
    candidate (O(n_pool * n_features)) only when it reaches the top of a
    heap with a stale count. Worst case O(batch_size * n_pool^2 *
    n_features) time when every candidate must be re-counted at every step;
    memory O(n_pool) beyond the input and one block, for any radius.

    ``radius`` has no default: a good one depends on the embedding's scale.
    The authors choose the largest delta whose balls stay 95 % pure with
    respect to k-means pseudo-labels; scikit-activeml's ``ProbCover`` does
    that over a list of deltas, stores the n x n distance matrix and breaks
    ties at random. With one delta and our tie-break it picks what we pick.

    References
    ----------
    Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering
    Lens", NeurIPS 2022.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    norms = squared_norms(x)
    squared_radius = radius * radius
    covered = np.zeros(len(x), dtype=bool)
    if labeled_embeddings is not None:
        covered = (
            nearest_center_distances(x, labeled_embeddings, check) <= squared_radius
        )

    def ball(sample: int) -> NDArray[np.bool_]:
        row = squared_distances(x, x[sample : sample + 1], norms)[:, 0]
        row[sample] = 0.0
        return row <= squared_radius

    # Heap entries: (-count, position, version); a count computed at the
    # current version of the coverage is exact, an older one an upper bound.
    version = 0
    counts = _ball_counts(x, norms, ~covered, squared_radius, check)
    heap = [(-int(c), i, version) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    picked = np.zeros(len(x), dtype=bool)
    picks = np.empty(batch_size, dtype=np.int64)
    scores = np.zeros(batch_size)
    for step in range(batch_size):
        check()
        if covered.all():
            rest = np.flatnonzero(~picked)[: batch_size - step]
            picks[step:] = rest
            break
        while True:
            negative_count, sample, seen = heapq.heappop(heap)
            if seen == version:
                break
            count = int(np.count_nonzero(ball(sample) & ~covered))
            heapq.heappush(heap, (-count, sample, version))
        picks[step], scores[step] = sample, -negative_count
        picked[sample] = True
        newly = ball(sample) & ~covered
        if newly.any():
            covered |= newly
            version += 1
    return Ranking(ranked_indices=picks, scores=scores)


register(
    Strategy(
        family="diversity",
        method="probcover",
        description=(
            "ProbCover (Yehuda et al. 2022): greedily pick the pool sample whose "
            "radius-ball holds the most pool samples not yet covered, starting "
            "from the labeled set's coverage; score = samples newly covered; "
            "ties to the lower pool position."
        ),
        required_inputs=("pool_embeddings",),
        higher_first=True,
        parameters=(
            Parameter(
                name="radius",
                type="double",
                default="required",
                description="Ball radius delta, Euclidean, above 0.",
                resolve=finite_float(
                    "diversity.radius",
                    above_zero=True,
                    required=(
                        "diversity.probcover needs the ball radius delta, a "
                        "finite number above 0 in embedding units"
                    ),
                ),
            ),
        ),
        pick=lambda query: probcover(
            query.pool_embeddings,
            query.batch_size,
            query.params["radius"],
            query.labeled_embeddings,
            check=query.check_cancelled,
        ),
    )
)
