import numpy as np
import pytest

from alquery.server.strategies.hybrid_clustering import clue, cluster_margin, two_step


def entropy(p):
    return -sum(q * np.log(q) for q in p)


# Group A at 0, 1, 2 and group B at 10, 11 (one feature).
GROUPS = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
CLUE_PROBABILITIES = np.array(
    [[0.5, 0.5], [0.9, 0.1], [0.9, 0.1], [0.8, 0.2], [0.99, 0.01]]
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clue_by_hand(seed):
    # Weights: A ln 2, h(0.9), h(0.9); B h(0.8), h(0.99).
    # A's weighted centroid: (0 * ln 2 + 1 * h9 + 2 * h9) / (ln 2 + 2 h9)
    #   = 0.975 / 1.343 = 0.726 -> nearest sample 1.
    # B's: (10 h8 + 11 h99) / (h8 + h99) = 10.10 -> nearest sample 3.
    # A carries more uncertainty (1.343 > 0.556), so it picks first.
    ranking = clue(CLUE_PROBABILITIES, GROUPS, 2, seed)
    assert ranking.ranked_indices.tolist() == [1, 3]
    h9, h8, h99 = entropy([0.9, 0.1]), entropy([0.8, 0.2]), entropy([0.99, 0.01])
    np.testing.assert_allclose(ranking.scores, [np.log(2) + 2 * h9, h8 + h99])


def test_clue_weights_decide_the_nearest_sample():
    # With least confidence A's weights are 0.5, 0.1, 0.1: centroid
    # (0.1 + 0.2) / 0.7 = 0.43 -> sample 0.
    ranking = clue(CLUE_PROBABILITIES, GROUPS, 2, 0, "least_confidence")
    assert ranking.ranked_indices.tolist() == [0, 3]


def test_clue_is_reproducible_and_distinct():
    rng = np.random.default_rng(4)
    probabilities = rng.dirichlet(np.ones(3), size=80)
    embeddings = rng.normal(size=(80, 4))
    first = clue(probabilities, embeddings, 10, 123)
    assert len(set(first.ranked_indices.tolist())) == 10
    np.testing.assert_array_equal(
        first.ranked_indices, clue(probabilities, embeddings, 10, 123).ranked_indices
    )
    assert np.all(np.diff(first.scores) <= 0)


def test_two_step_only_picks_candidates():
    # Margins 0, 0.8, 0.8, 0.6, 0.98: with factor 1 and batch 2 the
    # candidates are the two most uncertain, samples 0 and 3 (1 - margin
    # 1.0 and 0.4); clustering two samples into two clusters keeps both,
    # the heavier first.
    ranking = two_step(CLUE_PROBABILITIES, GROUPS, 2, 0, prefilter_factor=1)
    assert ranking.ranked_indices.tolist() == [0, 3]
    np.testing.assert_allclose(ranking.scores, [1.0, 0.4])


def test_two_step_clusters_the_candidates():
    # Factor 2 keeps 4 candidates: 0, 3 and the tie 1, 2 (0.2 each) ->
    # the candidates are 0, 3, 1, 2 (ties to the lower position) and 4 is
    # out. A's weights 1.0, 0.2, 0.2: centroid 0.6/1.4 = 0.43 -> sample 0;
    # B has only sample 3.
    ranking = two_step(CLUE_PROBABILITIES, GROUPS, 2, 0, prefilter_factor=2)
    assert ranking.ranked_indices.tolist() == [0, 3]
    np.testing.assert_allclose(ranking.scores, [1.4, 0.4])


# Cluster A at 0, 0.1, 0.2, 0.3 and cluster B at 10, 10.1.
MARGIN_POOL = np.array([[0.0], [0.1], [0.2], [0.3], [10.0], [10.1]])
MARGINS = np.array([0.1, 0.2, 0.3, 0.9, 0.15, 0.5])
MARGIN_PROBABILITIES = np.stack([(1 + MARGINS) / 2, (1 - MARGINS) / 2], axis=1)


def test_cluster_margin_by_hand():
    # Factor 1: candidates 0 (0.1), 4 (0.15), 1 (0.2). A holds 0, 1; B holds
    # 4. The smaller cluster B goes first: round 0 takes 4, then 0; round 1
    # takes 1.
    ranking = cluster_margin(MARGIN_PROBABILITIES, MARGIN_POOL, 3, 0, 1, 2)
    assert ranking.ranked_indices.tolist() == [4, 0, 1]
    np.testing.assert_allclose(ranking.scores, [0.15, 0.1, 0.2])
    # Factor 2: all six are candidates; B (2) before A (4): 4, 0, then 5.
    ranking = cluster_margin(MARGIN_PROBABILITIES, MARGIN_POOL, 3, 0, 2, 2)
    assert ranking.ranked_indices.tolist() == [4, 0, 5]


def test_cluster_margin_equal_sizes_go_by_the_smallest_margin():
    # Candidates 0 (0.1) and 4 (0.15): one per cluster; A's margin is
    # smaller, so A goes first.
    ranking = cluster_margin(MARGIN_PROBABILITIES, MARGIN_POOL, 2, 0, 1, 2)
    assert ranking.ranked_indices.tolist() == [0, 4]


def test_cluster_margin_default_clusters_is_batch_size():
    rng = np.random.default_rng(9)
    probabilities = rng.dirichlet(np.ones(3), size=60)
    embeddings = rng.normal(size=(60, 3))
    ranking = cluster_margin(probabilities, embeddings, 5, 7)
    assert len(set(ranking.ranked_indices.tolist())) == 5
    same = cluster_margin(probabilities, embeddings, 5, 7, 10, 5)
    np.testing.assert_array_equal(ranking.ranked_indices, same.ranked_indices)
