import numpy as np
import pytest

from alquery.server.selection import top_k


@pytest.mark.parametrize(
    "scores, batch_size, higher_first, expected",
    [
        ([0.1, 0.4, 0.5, 0.4, 0.2], 5, True, [2, 1, 3, 4, 0]),
        ([0.1, 0.4, 0.5, 0.4, 0.2], 2, True, [2, 1]),
        ([0.1, 0.4, 0.5, 0.4, 0.2], 2, False, [0, 4]),
        # The cut falls inside a tie: the lower positions win it.
        ([0.3, 0.9, 0.9, 0.9, 0.1], 2, True, [1, 2]),
        ([0.3, 0.9, 0.9, 0.9, 0.1], 3, False, [4, 0, 1]),
        ([0.0, -0.0, 0.0], 2, True, [0, 1]),
        ([7.0], 1, False, [0]),
    ],
)
def test_top_k_orders_best_first_with_lower_position_on_ties(
    scores, batch_size, higher_first, expected
):
    ranking = top_k(np.array(scores), batch_size, higher_first=higher_first)
    assert ranking.ranked_indices.tolist() == expected
    assert ranking.scores.tolist() == [scores[i] for i in expected]


def test_top_k_agrees_with_a_full_stable_sort_on_many_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=1000).astype(float)
    for batch_size in (1, 7, 200, 999, 1000):
        for higher_first in (True, False):
            keys = -scores if higher_first else scores
            expected = np.argsort(keys, kind="stable")[:batch_size]
            got = top_k(scores, batch_size, higher_first=higher_first)
            np.testing.assert_array_equal(got.ranked_indices, expected)
