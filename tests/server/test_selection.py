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


@pytest.mark.parametrize("n_distinct", [1, 2, 3, 50, 10_000])
@pytest.mark.parametrize("higher_first", [True, False])
def test_top_k_equals_a_full_stable_sort_whatever_the_ties(n_distinct, higher_first):
    # n_distinct=1 puts the whole pool in one tie; with few distinct values
    # every cut falls inside a long run of ties that argpartition splits
    # arbitrarily.
    rng = np.random.default_rng(n_distinct)
    scores = rng.integers(0, n_distinct, size=20_000).astype(float)
    scores[rng.random(len(scores)) < 0.1] *= -0.0  # -0.0 ties 0.0
    keys = -scores if higher_first else scores
    full = np.argsort(keys, kind="stable")
    for batch_size in (1, 2, 99, 4_321, 19_999, 20_000):
        got = top_k(scores, batch_size, higher_first=higher_first)
        np.testing.assert_array_equal(got.ranked_indices, full[:batch_size])
        np.testing.assert_array_equal(got.scores, scores[full[:batch_size]])



@pytest.mark.parametrize("higher_first", [True, False])
def test_ties_inside_the_batch_but_not_at_its_cut_go_to_the_lower_position(
    higher_first,
):
    # The batch's last key is held once, so no tie crosses the cut, but
    # keys inside the batch repeat: the picked are ordered by key, then
    # by position, as a full stable sort orders them.
    rng = np.random.default_rng(5)
    for _ in range(200):
        scores = rng.random(1000)
        scores[rng.integers(0, 1000, size=40)] = scores[rng.integers(0, 1000)]
        keys = -scores if higher_first else scores
        full = np.argsort(keys, kind="stable")
        for batch_size in (1, 10, 50):
            got = top_k(scores, batch_size, higher_first=higher_first)
            np.testing.assert_array_equal(got.ranked_indices, full[:batch_size])


from alquery.server.selection import sample  # noqa: E402
from alquery.v1 import query_pb2  # noqa: E402

MODES = (
    query_pb2.Selection.MODE_POWER,
    query_pb2.Selection.MODE_SOFTMAX,
    query_pb2.Selection.MODE_RANK,
)


def draw(scores, batch_size, mode, temperature=1.0, seed=0, higher_first=True):
    return sample(
        np.asarray(scores, dtype=float),
        batch_size,
        higher_first=higher_first,
        mode=mode,
        temperature=temperature,
        rng=np.random.default_rng(seed),
    )


@pytest.mark.parametrize("mode", MODES)
def test_sampling_is_without_replacement_and_reproducible(mode):
    scores = np.linspace(0.1, 1.0, 40)
    first = draw(scores, 25, mode, seed=7)
    assert len(set(first.ranked_indices.tolist())) == 25
    np.testing.assert_array_equal(
        first.ranked_indices, draw(scores, 25, mode, seed=7).ranked_indices
    )
    np.testing.assert_array_equal(first.scores, scores[first.ranked_indices])
    assert (
        first.ranked_indices.tolist()
        != draw(scores, 25, mode, seed=8).ranked_indices.tolist()
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("higher_first", [True, False])
def test_a_cold_temperature_gives_the_top_k_order(mode, higher_first):
    scores = np.array([0.3, 0.9, 0.5, 0.1, 0.7])
    expected = top_k(scores, 3, higher_first=higher_first).ranked_indices
    got = draw(scores, 3, mode, temperature=1e-4, higher_first=higher_first)
    np.testing.assert_array_equal(got.ranked_indices, expected)


@pytest.mark.parametrize(
    "mode, scores, expected_share",
    [
        # softmax: exp(ln 3) / (exp(0) + exp(ln 3)) = 3/4 for sample 1.
        (query_pb2.Selection.MODE_SOFTMAX, [0.0, np.log(3.0)], 0.75),
        # power: 3 / (1 + 3).
        (query_pb2.Selection.MODE_POWER, [1.0, 3.0], 0.75),
        # rank: sample 1 ranks first, 1^-1 / (1^-1 + 2^-1) = 2/3.
        (query_pb2.Selection.MODE_RANK, [0.2, 0.4], 2 / 3),
    ],
)
def test_single_draws_follow_the_mode_weights(mode, scores, expected_share):
    rng = np.random.default_rng(11)
    picks = [
        sample(
            np.array(scores), 1, higher_first=True, mode=mode, temperature=1.0, rng=rng
        ).ranked_indices[0]
        for _ in range(4000)
    ]
    assert np.mean(picks) == pytest.approx(expected_share, abs=0.025)


def test_power_mode_on_lower_first_scores_never_draws_the_worst_first():
    # Margin-like scores, lower first: the largest margin gets weight 0.
    margins = np.array([0.1, 0.2, 0.9])
    for seed in range(50):
        got = draw(
            margins, 2, query_pb2.Selection.MODE_POWER, seed=seed, higher_first=False
        )
        assert 2 not in got.ranked_indices.tolist()
