import numpy as np
import pytest

from alquery.server.strategies.diversity_sampling import (
    coreset_probabilities,
    lightweight_coreset,
    random_batch,
)


def test_random_batch_ranks_by_the_generators_keys():
    keys = np.random.default_rng(5).random(6)
    ranking = random_batch(6, 3, np.random.default_rng(5))
    expected = np.argsort(-keys)[:3]
    assert ranking.ranked_indices.tolist() == expected.tolist()
    np.testing.assert_array_equal(ranking.scores, keys[expected])


def test_random_batch_is_reproducible_and_distinct():
    first = random_batch(50, 50, np.random.default_rng(9))
    again = random_batch(50, 50, np.random.default_rng(9))
    other = random_batch(50, 50, np.random.default_rng(10))
    assert first.ranked_indices.tolist() == again.ranked_indices.tolist()
    assert sorted(first.ranked_indices.tolist()) == list(range(50))
    assert first.ranked_indices.tolist() != other.ranked_indices.tolist()


def test_random_batch_first_pick_is_uniform():
    # 3000 draws over 5 samples: each count is about 600, sd about 22.
    counts = np.bincount(
        [random_batch(5, 1, np.random.default_rng(s)).ranked_indices[0]
         for s in range(3000)],
        minlength=5,
    )
    assert np.all(np.abs(counts - 600) < 100)


def test_coreset_probabilities_euclidean():
    # Pool 0, 1, 2, 5: mean 2, d^2 = 4, 1, 0, 9, sum 14;
    # q = 1/8 + d^2 / 28.
    q = coreset_probabilities(np.array([[0.0], [1.0], [2.0], [5.0]]))
    np.testing.assert_allclose(
        q, [1 / 8 + 4 / 28, 1 / 8 + 1 / 28, 1 / 8, 1 / 8 + 9 / 28], rtol=1e-12
    )


def test_coreset_probabilities_angular():
    # Mean (1, 1): (1, 0) and (0, 1) are 45 degrees off, d = 1/4; the others
    # are parallel, d = 0. d^2 sums to 1/8, so q = 1/8 + (1/16) / (1/4).
    pool = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 2.0]])
    q = coreset_probabilities(pool, angular=True)
    np.testing.assert_allclose(q, [3 / 8, 3 / 8, 1 / 8, 1 / 8], rtol=1e-12)


def test_coreset_probabilities_are_uniform_when_every_sample_is_the_mean():
    q = coreset_probabilities(np.ones((4, 3)))
    np.testing.assert_array_equal(q, np.full(4, 0.25))


def test_lightweight_coreset_is_gumbel_top_k_on_log_q():
    pool = np.array([[0.0], [1.0], [2.0], [5.0]])
    q = coreset_probabilities(pool)
    keys = np.log(q) + np.random.default_rng(3).gumbel(size=4)
    ranking = lightweight_coreset(pool, 3, np.random.default_rng(3))
    expected = np.argsort(-keys)[:3]
    assert ranking.ranked_indices.tolist() == expected.tolist()
    np.testing.assert_array_equal(ranking.scores, q[expected])


def test_lightweight_coreset_on_identical_samples_returns_distinct_picks():
    ranking = lightweight_coreset(np.ones((6, 2)), 6, np.random.default_rng(0))
    assert sorted(ranking.ranked_indices.tolist()) == list(range(6))
    np.testing.assert_array_equal(ranking.scores, np.full(6, 1 / 6))


def test_lightweight_coreset_first_pick_follows_q():
    # q = 0.268, 0.161, 0.125, 0.446; 4000 first picks: sd at most 32.
    pool = np.array([[0.0], [1.0], [2.0], [5.0]])
    picks = [
        lightweight_coreset(pool, 2, np.random.default_rng(s)).ranked_indices[0]
        for s in range(4000)
    ]
    counts = np.bincount(picks, minlength=4)
    expected = 4000 * coreset_probabilities(pool)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_lightweight_coreset_is_reproducible_from_the_seed():
    pool = np.random.default_rng(1).normal(size=(40, 3))
    first = lightweight_coreset(pool, 10, np.random.default_rng(4))
    again = lightweight_coreset(pool, 10, np.random.default_rng(4))
    assert first.ranked_indices.tolist() == again.ranked_indices.tolist()
    assert len(set(first.ranked_indices.tolist())) == 10


@pytest.mark.parametrize("angular", [False, True])
def test_coreset_probabilities_sum_to_one(angular):
    pool = np.random.default_rng(2).normal(size=(30, 4)) + 1.0
    assert coreset_probabilities(pool, angular).sum() == pytest.approx(1.0)
