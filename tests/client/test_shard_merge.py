"""Shard bounds, the top-k merge and the covering radius, on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest

from alquery.client.results import RankResult
from alquery.client.shard_merge import covering_radius, merge_top_k, shard_bounds


@pytest.mark.parametrize(
    "n_pool, n_shards, expected",
    [
        (10, 3, [(0, 4), (4, 7), (7, 10)]),
        (6, 2, [(0, 3), (3, 6)]),
        (2, 5, [(0, 1), (1, 2)]),
        (1, 1, [(0, 1)]),
        (0, 3, []),
    ],
)
def test_shards_are_contiguous_and_never_empty(n_pool, n_shards, expected):
    assert shard_bounds(n_pool, n_shards) == expected


def answer(indices, scores, **extras):
    return RankResult(
        indices=np.array(indices),
        scores=np.array(scores, dtype=float),
        strategy="uncertainty.margin",
        extras={k: np.array(v, dtype=float) for k, v in extras.items()},
    )


def test_merge_sorts_by_score_and_breaks_ties_to_the_lower_pool_position():
    # Shard 0 holds pool rows 0-4, shard 1 rows 5-9. Lowest first.
    merged = merge_top_k(
        [
            answer([3, 1, 0], [0.1, 0.2, 0.2], c=[1, 2, 3]),
            answer([0, 4, 2], [0.1, 0.1, 0.2], c=[4, 5, 6]),
        ],
        [0, 5],
        4,
        higher_first=False,
    )
    assert merged.indices.tolist() == [3, 5, 9, 0]
    assert merged.scores.tolist() == [0.1, 0.1, 0.1, 0.2]
    assert merged.extras["c"].tolist() == [1, 4, 5, 3]


def test_merge_takes_the_highest_first_when_asked():
    merged = merge_top_k(
        [answer([1], [0.5]), answer([0], [0.5]), answer([2], [0.9])],
        [0, 2, 4],
        2,
        higher_first=True,
    )
    assert merged.indices.tolist() == [6, 1]


def test_covering_radius_is_the_largest_distance_to_a_nearest_center():
    pool = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0], [6.0, 8.0]])
    # Centers: pool row 0 and the labeled sample (10, 1).
    assert covering_radius(pool, [0], [[10.0, 1.0]]) == pytest.approx(
        np.hypot(4.0, 7.0)
    )
    assert covering_radius(pool, [0, 2, 3]) == pytest.approx(5.0)
