import numpy as np

from alquery.server.strategies.diversity_typiclust import (
    TYPICALITY_EPSILON,
    typicality,
    typiclust,
)


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
