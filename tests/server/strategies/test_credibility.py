import numpy as np
import pytest

from alquery.server.selection import top_k
from alquery.server.strategies.credibility import (
    class_errors,
    class_weakness,
    validation_knn,
)
from alquery.server.strategies.credibility_clusters import (
    allocate_seats,
    weak_clusters,
)
from alquery.v1 import query_pb2

# Validation samples on a line at 0, 1, 10, 11 with labels 0, 0, 1, 1.
VALIDATION_EMBEDDINGS = np.array([[0.0], [1.0], [10.0], [11.0]])
VALIDATION_LABELS = np.array([0, 0, 1, 1])
VALIDATION_PROBABILITIES = np.array([[0.9, 0.1], [0.8, 0.2], [0.5, 0.5], [0.2, 0.8]])
# Their losses -ln p_y: 0.105361, 0.223144, 0.693147, 0.223144.


def scores_for(pool, n_neighbors):
    return validation_knn(
        np.array(pool),
        VALIDATION_EMBEDDINGS,
        VALIDATION_PROBABILITIES,
        VALIDATION_LABELS,
        n_neighbors,
    )


def test_mean_loss_of_the_nearest_validation_samples():
    # 0.4 -> neighbours 0, 1; 10.6 -> 3, 2; 5.4 -> 1 (4.4 away), 2 (4.6 away).
    scores = scores_for([[0.4], [10.6], [5.4]], n_neighbors=2)
    low = (0.105361 + 0.223144) / 2
    high = (0.223144 + 0.693147) / 2
    np.testing.assert_allclose(scores, [low, high, high], atol=1e-6)
    # Pool samples 1 and 2 tie exactly; the lower position ranks first.
    ranking = top_k(scores, 3, higher_first=True)
    assert ranking.ranked_indices.tolist() == [1, 2, 0]


def test_equidistant_neighbours_go_to_the_lower_validation_position():
    # 0.5 is equally far from validation samples 0 and 1; k=1 takes sample 0.
    np.testing.assert_allclose(scores_for([[0.5]], 1), [0.105361], atol=1e-6)


@pytest.mark.parametrize("n_neighbors", [1, 2, 3, 4])
def test_matches_a_brute_force_neighbour_search(n_neighbors):
    rng = np.random.default_rng(n_neighbors)
    pool = rng.normal(size=(50, 1)) * 6 + 5
    distances = np.abs(pool - VALIDATION_EMBEDDINGS.T)
    losses = -np.log([0.9, 0.8, 0.5, 0.8])
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :n_neighbors]
    np.testing.assert_allclose(
        scores_for(pool, n_neighbors), losses[nearest].mean(axis=1), rtol=1e-12
    )


# weak_clusters and class_weakness ------------------------------------------

CREDIBILITY = query_pb2.CredibilityStrategy

# Three well-separated groups on a line, at 0, 10 and 20; any k-means start
# with k=3 finds them. Validation losses -ln p_y: group 0: 0.105361 twice,
# group 10: 0.693147 twice, group 20: 1.609438 (label 0, p = 0.2).
GROUPS_VALIDATION_EMBEDDINGS = np.array([[0.0], [0.1], [10.0], [10.1], [20.0]])
GROUPS_VALIDATION_LABELS = np.array([0, 0, 1, 1, 0])
GROUPS_VALIDATION_PROBABILITIES = np.array(
    [[0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.5, 0.5], [0.2, 0.8]]
)
GROUPS_POOL_EMBEDDINGS = np.array([[0.05], [0.2], [10.05], [10.2], [20.1], [20.2]])
GROUPS_POOL_PROBABILITIES = np.array(
    [[0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1], [0.5, 0.5], [0.6, 0.4]]
)


def groups_weak_clusters(
    batch_size,
    weakness=CREDIBILITY.WEAKNESS_LOSS,
    seed=0,
    validation_embeddings=GROUPS_VALIDATION_EMBEDDINGS,
):
    return weak_clusters(
        GROUPS_POOL_PROBABILITIES,
        GROUPS_POOL_EMBEDDINGS,
        GROUPS_VALIDATION_PROBABILITIES,
        GROUPS_VALIDATION_LABELS,
        validation_embeddings,
        batch_size,
        3,
        weakness,
        np.random.default_rng(seed),
    )


@pytest.mark.parametrize(
    ("weights", "capacity", "batch_size", "expected"),
    [
        # Quotas 3 * (0.5, 0.25, 0.25) = 1.5, 0.75, 0.75: floors 1, 0, 0;
        # the two seats left go to the fractions 0.75 and 0.75.
        ([0.5, 0.25, 0.25], [9, 9, 9], 3, [1, 1, 1]),
        # Equal weights, quotas 4/3 each: the one seat left goes to the
        # lowest group index among equal fractions and weights.
        ([1.0, 1.0, 1.0], [5, 5, 5], 4, [2, 1, 1]),
        # Quotas 1.5 (w=3) and 0.5 (w=1) have equal fractions: the larger
        # weight takes the seat left over.
        ([3.0, 1.0], [5, 5], 2, [2, 0]),
        # Group 0 is capped at 1; its other quota 2 is shared again with
        # group 1 alone. Weight 0 gets nothing.
        ([3.0, 1.0, 0.0], [1, 5, 5], 4, [1, 3, 0]),
        # Positive-weight groups hold fewer than the batch: all they hold.
        ([1.0, 0.0], [2, 5], 4, [2, 0]),
    ],
)
def test_allocate_seats_by_largest_remainder(weights, capacity, batch_size, expected):
    seats = allocate_seats(np.array(weights), np.array(capacity), batch_size)
    assert seats.tolist() == expected


def test_weak_clusters_shares_the_batch_by_cluster_loss():
    # Weakness 1.609438 (group 20), 0.693147 (10), 0.105361 (0); sum 2.407946.
    # Quotas for 3 seats: 2.005, 0.864, 0.131 -> floors 2, 0, 0; the seat
    # left goes to group 10 (fraction 0.864). Within group 20, pool 4
    # (entropy ln 2) before pool 5; within group 10, pool 2 (p = 0.8) before
    # pool 3 (p = 0.9).
    ranking = groups_weak_clusters(3)
    assert ranking.ranked_indices.tolist() == [4, 5, 2]
    np.testing.assert_allclose(
        ranking.scores, [1.609438, 1.609438, 0.693147], atol=1e-6
    )
    np.testing.assert_allclose(
        ranking.extras["entropy"], [np.log(2), 0.673012, 0.500402], atol=1e-6
    )
    clusters = ranking.extras["cluster"]
    assert clusters[0] == clusters[1] != clusters[2]


def test_weak_clusters_error_rate_and_entropy_ties():
    # Error rates: group 0: 0, group 10: 1 (argmax class 0 on ties, label
    # 1), group 20: 1. Quotas for 2 seats: 1 and 1. Group 10 and group 20
    # tie on weakness; the pick order within the batch follows the lower
    # k-means cluster number, so only the set is fixed. Group 0 gets none.
    ranking = groups_weak_clusters(2, CREDIBILITY.WEAKNESS_ERROR_RATE)
    assert sorted(ranking.ranked_indices.tolist()) == [2, 4]
    assert ranking.scores.tolist() == [1.0, 1.0]


def test_weak_clusters_fills_from_zero_weakness_clusters_by_entropy():
    # Error rates 1, 1, 0 as above; 5 seats but groups 10 and 20 hold only
    # 4 pool samples: the fifth is the most uncertain of group 0 (pool 0,
    # entropy of (0.6, 0.4)), with score 0.
    ranking = groups_weak_clusters(5, CREDIBILITY.WEAKNESS_ERROR_RATE)
    assert sorted(ranking.ranked_indices[:4].tolist()) == [2, 3, 4, 5]
    assert ranking.ranked_indices[4] == 0
    assert ranking.scores.tolist() == [1, 1, 1, 1, 0]


def test_weak_clusters_gives_a_cluster_without_validation_the_mean_weakness():
    # Move the validation sample at 20 to 0.15: group 20 has no validation
    # samples. Losses 0.105361 x2, 0.693147 x2, 1.609438 (now in group 0):
    # group 0 = 0.606720, group 10 = 0.693147, group 20 = overall mean
    # 3.206453 / 5 = 0.641291, above group 0's. Quotas for 2 seats (sum
    # 1.941158): 0.625, 0.714, 0.661 -> floors 0; the two largest fractions
    # go to group 10 (pool 2: higher entropy than pool 3) and group 20
    # (pool 4, entropy ln 2).
    moved = GROUPS_VALIDATION_EMBEDDINGS.copy()
    moved[4] = 0.15
    ranking = groups_weak_clusters(2, validation_embeddings=moved)
    assert ranking.ranked_indices.tolist() == [2, 4]
    np.testing.assert_allclose(ranking.scores, [0.693147, 0.641291], atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weak_clusters_is_reproducible_and_distinct(seed):
    rng = np.random.default_rng(seed)
    pool_embeddings = rng.normal(size=(40, 3))
    pool = rng.dirichlet(np.ones(3), size=40)
    validation_embeddings = rng.normal(size=(15, 3))
    validation = rng.dirichlet(np.ones(3), size=15)
    labels = rng.integers(0, 3, size=15)

    def run():
        return weak_clusters(
            pool,
            pool_embeddings,
            validation,
            labels,
            validation_embeddings,
            12,
            5,
            CREDIBILITY.WEAKNESS_LOSS,
            np.random.default_rng(seed),
        )

    first, second = run(), run()
    assert first.ranked_indices.tolist() == second.ranked_indices.tolist()
    assert len(set(first.ranked_indices.tolist())) == 12
    assert np.all(np.diff(first.scores) <= 0)


# Validation: predicted (argmax) 0, 0, 1, 1, 0 against labels 0, 1, 1, 1, 2.
# Class 0: predicted 3 times, 2 wrong -> 1 - precision = 2/3; labelled once,
# right -> 1 - recall = 0. Class 1: predicted twice, right -> 0; labelled 3
# times, 1 wrong -> 1/3. Class 2: never predicted -> missing; labelled once,
# wrong -> 1. Class 3: never predicted nor labelled -> missing in both.
WEAK_VALIDATION = np.array(
    [
        [0.7, 0.1, 0.1, 0.1],
        [0.4, 0.3, 0.2, 0.1],
        [0.1, 0.7, 0.1, 0.1],
        [0.2, 0.5, 0.2, 0.1],
        [0.5, 0.1, 0.3, 0.1],
    ]
)
WEAK_LABELS = np.array([0, 1, 1, 1, 2])


@pytest.mark.parametrize(
    ("class_error", "missing", "expected"),
    [
        (CREDIBILITY.CLASS_ERROR_ONE_MINUS_PRECISION, 1.0, [2 / 3, 0.0, 1.0, 1.0]),
        (CREDIBILITY.CLASS_ERROR_ONE_MINUS_PRECISION, 0.25, [2 / 3, 0, 0.25, 0.25]),
        (CREDIBILITY.CLASS_ERROR_ONE_MINUS_RECALL, 1.0, [0.0, 1 / 3, 1.0, 1.0]),
        (CREDIBILITY.CLASS_ERROR_ONE_MINUS_RECALL, 0.5, [0.0, 1 / 3, 1.0, 0.5]),
    ],
)
def test_class_errors(class_error, missing, expected):
    np.testing.assert_allclose(
        class_errors(WEAK_VALIDATION, WEAK_LABELS, class_error, missing), expected
    )


def test_class_weakness_ranks_weak_classes_then_entropy():
    # Pool predicted classes 1, 0, 0, 3, 1, 0. 1 - precision: class 3 is
    # missing (1.0), class 0 is 2/3, class 1 is 0. Among class 0, pools 1
    # and 5 tie on entropy (same row) -> lower position 1 first; pool 2 is
    # more certain. Class 1: pool 4 (0.4, 0.6) is less certain than pool 0.
    pool = np.array(
        [
            [0.1, 0.9, 0.0, 0.0],
            [0.5, 0.3, 0.2, 0.0],
            [0.9, 0.1, 0.0, 0.0],
            [0.1, 0.1, 0.1, 0.7],
            [0.4, 0.6, 0.0, 0.0],
            [0.5, 0.3, 0.2, 0.0],
        ]
    )
    ranking = class_weakness(
        pool,
        WEAK_VALIDATION,
        WEAK_LABELS,
        6,
        CREDIBILITY.CLASS_ERROR_ONE_MINUS_PRECISION,
        1.0,
    )
    assert ranking.ranked_indices.tolist() == [3, 1, 5, 2, 4, 0]
    np.testing.assert_allclose(ranking.scores, [1, 2 / 3, 2 / 3, 2 / 3, 0, 0])
    assert ranking.extras["entropy"][1] == ranking.extras["entropy"][2]


def test_class_weakness_averages_passes():
    # Two passes (0.8, 0.2) and (0.0, 1.0) average to (0.4, 0.6): class 1.
    pool = np.array([[[0.8, 0.2], [0.0, 1.0]], [[0.9, 0.1], [0.9, 0.1]]])
    validation = np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8]])
    # Class 1 predicted twice, once wrong -> 0.5; class 0 once, right -> 0.
    ranking = class_weakness(
        pool,
        validation,
        np.array([0, 1, 0]),
        2,
        CREDIBILITY.CLASS_ERROR_ONE_MINUS_PRECISION,
        1.0,
    )
    assert ranking.ranked_indices.tolist() == [0, 1]
    assert ranking.scores.tolist() == [0.5, 0.0]
