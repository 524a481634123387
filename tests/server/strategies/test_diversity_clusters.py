import numpy as np

from alquery.server.strategies.diversity_clusters import (
    kmeans_plusplus,
    kmeans_representatives,
)


class Draws:
    """A stand-in generator that hands out the given uniform draws in order."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self, size=None):
        if size is None:
            return self.values.pop(0)
        return np.array([self.values.pop(0) for _ in range(size)])


def test_kmeans_picks_the_sample_nearest_each_centroid():
    # Clusters {0, 1} (centroid 0.5) and {10, 11, 12} (centroid 11). Sample
    # 11 sits on its centroid (distance 0) and comes first; 0 and 1 tie at
    # 0.5 from theirs, and the lower position wins.
    pool = np.array([[0.0], [1.0], [10.0], [11.0], [12.0]])
    ranking = kmeans_representatives(pool, 2, seed=0)
    assert ranking.ranked_indices.tolist() == [3, 0]
    np.testing.assert_allclose(ranking.scores, [0.0, 0.5], atol=1e-12)


def test_kmeans_on_duplicates_returns_distinct_samples():
    pool = np.array([[1.0, 1.0]] * 4 + [[5.0, 5.0]] * 2)
    ranking = kmeans_representatives(pool, 5, seed=3)
    # Fewer distinct clusters than asked for: a warning for the response.
    assert "k-means found 2 distinct clusters for n_clusters=5" in ranking.warnings[0]
    assert len(set(ranking.ranked_indices.tolist())) == 5
    np.testing.assert_allclose(ranking.scores, 0.0, atol=1e-12)


def test_kmeans_is_reproducible_from_the_seed():
    pool = np.random.default_rng(0).normal(size=(60, 3))
    first = kmeans_representatives(pool, 6, seed=11)
    again = kmeans_representatives(pool, 6, seed=11)
    assert first.ranked_indices.tolist() == again.ranked_indices.tolist()


def test_kmeans_plusplus_without_labeled_set():
    # Pool 0, 1, 3. u=0.5 on the uniform cdf (1/3, 2/3, 1) picks x=1 (score
    # 1/3). D^2 = 1, 0, 4 (sum 5): u=0.1 targets 0.5, the first cumulative
    # sum reaching it is sample 0 (score 1/5). D^2 = 0, 0, 4: u=0.9 picks
    # sample 2 (score 4/4).
    pool = np.array([[0.0], [1.0], [3.0]])
    ranking = kmeans_plusplus(pool, 3, Draws(0.5, 0.1, 0.9))
    assert ranking.ranked_indices.tolist() == [1, 0, 2]
    np.testing.assert_allclose(ranking.scores, [1 / 3, 0.2, 1.0])


def test_kmeans_plusplus_starts_from_the_labeled_set():
    # Labeled 0; pool 0, 2, 4: D^2 = 0, 4, 16 (sum 20); u=0.1 targets 2 ->
    # sample 1 (score 4/20). D^2 = 0, 0, 4: u=0 cannot land on a D=0 sample
    # and picks sample 2 (score 1). Then every D is 0: the lowest unpicked
    # position, sample 0, with score 0.
    pool = np.array([[0.0], [2.0], [4.0]])
    ranking = kmeans_plusplus(pool, 3, Draws(0.1, 0.0), np.array([[0.0]]))
    assert ranking.ranked_indices.tolist() == [1, 2, 0]
    np.testing.assert_allclose(ranking.scores, [0.2, 1.0, 0.0])


def test_kmeans_plusplus_keeps_the_candidate_that_lowers_the_potential_most():
    # Labeled 0; pool 1, 2, 10: D^2 = 1, 4, 100 (cumulative 1, 5, 105).
    # Draws 0.001, 0.02 target 0.105 and 2.1: candidates x=1 and x=2. x=1
    # leaves 0 + 1 + 81 = 82, x=2 leaves 1 + 0 + 64 = 65: x=2 wins, 4/105.
    pool = np.array([[1.0], [2.0], [10.0]])
    ranking = kmeans_plusplus(
        pool, 1, Draws(0.001, 0.02), np.array([[0.0]]), n_local_trials=2
    )
    assert ranking.ranked_indices.tolist() == [1]
    np.testing.assert_allclose(ranking.scores, [4 / 105])


def test_kmeans_plusplus_is_reproducible_and_distinct():
    pool = np.random.default_rng(1).normal(size=(40, 2))
    first = kmeans_plusplus(pool, 40, np.random.default_rng(5))
    again = kmeans_plusplus(pool, 40, np.random.default_rng(5))
    assert first.ranked_indices.tolist() == again.ranked_indices.tolist()
    assert sorted(first.ranked_indices.tolist()) == list(range(40))
