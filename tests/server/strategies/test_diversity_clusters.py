import numpy as np
import pytest

from alquery.server.strategies.clustering_tools import (
    nearest_distinct_by_distance as nearest_distinct,
)
from alquery.server.strategies.diversity_clusters import (
    TYPICALITY_EPSILON,
    kmeans_plusplus,
    kmeans_representatives,
    typicality,
    typiclust,
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


def test_nearest_distinct_gives_a_shared_sample_to_one_center_only():
    # Centers 1 and 3 are both 1 away from sample 0 (x=2): center 0 (lower
    # index) keeps it; center 1 takes the nearest unused, x=10 at 7 (x=-5 is
    # 8 away).
    pool, centers = np.array([[2.0], [10.0], [-5.0]]), np.array([[1.0], [3.0]])
    ranking = nearest_distinct(pool, centers)
    assert ranking.ranked_indices.tolist() == [0, 1]
    np.testing.assert_allclose(ranking.scores, [1.0, 7.0])


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


def test_typicality_by_hand():
    # Members 0, 1, 3. k=1: nearest others 1, 1, 2. k=2: means 2, 1.5, 2.5.
    members = np.array([[0.0], [1.0], [3.0]])
    eps = TYPICALITY_EPSILON
    np.testing.assert_allclose(
        typicality(members, 1), [1 / (1 + eps), 1 / (1 + eps), 1 / (2 + eps)]
    )
    np.testing.assert_allclose(typicality(members, 5), [1 / 2, 1 / 1.5, 1 / 2.5])
    assert typicality(np.array([[4.0]]), 3).tolist() == [0.0]


def test_typiclust_by_hand():
    # 1 labeled + batch 2 = 3 clusters: A = {0, 1, 3} (positions 0-2),
    # B = {100, 101} (3-4) and C = {200, 201, 202, 203} (5-8) with the
    # labeled 201.5, so C is covered. A is visited first (largest
    # uncovered); k=1 typicality is 1, 1, 1/2: positions 0 and 1 tie, 0
    # wins. Then B: both 1, position 3 wins.
    pool = np.array(
        [[0.0], [1.0], [3.0], [100.0], [101.0], [200.0], [201.0], [202.0], [203.0]]
    )
    ranking = typiclust(
        pool, 2, seed=0, labeled_embeddings=np.array([[201.5]]), n_neighbors=1
    )
    assert ranking.ranked_indices.tolist() == [0, 3]
    np.testing.assert_allclose(ranking.scores, [1.0, 1.0])


def test_typiclust_visits_covered_clusters_once_the_others_are_used():
    # Four copies of one point and the labeled copy: k-means finds one
    # cluster (a warning for the response) and the batch of 3 comes from it,
    # lowest positions first (all at distance 0: typicality 1e12).
    pool = np.array([[2.0, 2.0]] * 4)
    ranking = typiclust(pool, 3, seed=0, labeled_embeddings=np.array([[2.0, 2.0]]))
    assert "k-means found 1 distinct clusters for n_clusters=4" in ranking.warnings[0]
    assert ranking.ranked_indices.tolist() == [0, 1, 2]
    np.testing.assert_allclose(ranking.scores, 1 / TYPICALITY_EPSILON)


def test_typiclust_without_labeled_set_is_reproducible_and_distinct():
    pool = np.random.default_rng(2).normal(size=(50, 3))
    first = typiclust(pool, 10, seed=4)
    again = typiclust(pool, 10, seed=4)
    assert first.ranked_indices.tolist() == again.ranked_indices.tolist()
    assert len(set(first.ranked_indices.tolist())) == 10


def test_typiclust_on_duplicates_still_returns_distinct_samples():
    pool = np.array([[1.0, 1.0]] * 5 + [[4.0, 4.0]] * 3)
    ranking = typiclust(pool, 6, seed=0, labeled_embeddings=np.array([[1.0, 1.0]]))
    assert len(set(ranking.ranked_indices.tolist())) == 6
    assert "k-means found 2 distinct clusters for n_clusters=7" in ranking.warnings[0]
