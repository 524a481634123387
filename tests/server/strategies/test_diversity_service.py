"""The diversity strategies over the wire, through a real server."""

import grpc
import numpy as np
import pytest

from alquery.client import AlqueryError

POOL = np.array([[0.0], [1.0], [2.0], [5.0]])


def test_random_returns_a_seeded_batch_of_distinct_positions(client):
    probabilities = np.full((30, 2), 0.5)
    first = client.rank("diversity.random", 10, probabilities=probabilities, seed=7)
    again = client.rank("diversity.random", 10, probabilities=probabilities, seed=7)
    assert first.strategy == "diversity.random"
    assert first.indices.tolist() == again.indices.tolist()
    assert len(set(first.indices.tolist())) == 10
    assert np.all(np.diff(first.scores) <= 0)


def test_random_without_a_pool_names_the_inputs_it_takes(client):
    with pytest.raises(AlqueryError) as caught:
        client.rank("diversity.random", 2, labeled_embeddings=POOL)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "pool.embeddings" in caught.value.details


def test_lightweight_coreset_scores_are_q(client):
    # Pool 0, 1, 2, 5: q = 1/8 + d^2 / 28 with d^2 = 4, 1, 0, 9.
    q = np.array([1 / 8 + 4 / 28, 1 / 8 + 1 / 28, 1 / 8, 1 / 8 + 9 / 28])
    result = client.rank("diversity.lightweight_coreset", 4, embeddings=POOL, seed=1)
    assert sorted(result.indices.tolist()) == [0, 1, 2, 3]
    np.testing.assert_allclose(result.scores, q[result.indices], rtol=1e-12)


def test_lightweight_coreset_refuses_angles_to_a_zero_vector(client):
    with pytest.raises(AlqueryError) as caught:
        client.rank(
            "diversity.lightweight_coreset",
            2,
            embeddings=[[1.0, 0.0], [0.0, 0.0]],
            params={"angular_distance": True},
        )
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "diversity.angular_distance" in caught.value.details
    assert "row 1" in caught.value.details
    # The server keeps serving.
    client.rank("diversity.lightweight_coreset", 1, embeddings=POOL)


def test_lightweight_coreset_refuses_angles_to_a_zero_mean(client):
    with pytest.raises(AlqueryError) as caught:
        client.rank(
            "diversity.lightweight_coreset",
            1,
            embeddings=[[1.0, 0.0], [-1.0, 0.0]],
            params={"angular_distance": True},
        )
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "diversity.angular_distance" in caught.value.details
    assert "pool mean" in caught.value.details


def test_kmeans_answers_the_sample_nearest_each_centroid(client):
    # Centroids 0.5 and 11: sample 3 (x=11) at 0, then sample 0 at 0.5.
    pool = [[0.0], [1.0], [10.0], [11.0], [12.0]]
    result = client.rank("diversity.kmeans", 2, embeddings=pool)
    assert result.strategy == "diversity.kmeans"
    assert result.indices.tolist() == [3, 0]
    np.testing.assert_allclose(result.scores, [0.0, 0.5], atol=1e-12)


def test_kmeans_plusplus_starts_from_the_labeled_set(client):
    pool = np.random.default_rng(0).normal(size=(30, 2))
    labeled = pool[:3] + 1e-3
    first = client.rank(
        "diversity.kmeans_plusplus", 5, embeddings=pool,
        labeled_embeddings=labeled, seed=4, params={"n_local_trials": 2},
    )
    again = client.rank(
        "diversity.kmeans_plusplus", 5, embeddings=pool,
        labeled_embeddings=labeled, seed=4, params={"n_local_trials": 2},
    )
    assert first.indices.tolist() == again.indices.tolist()
    assert len(set(first.indices.tolist())) == 5
    assert np.all((first.scores > 0) & (first.scores <= 1))


def test_typiclust_picks_from_uncovered_clusters(client):
    pool = [[0.0], [1.0], [3.0], [100.0], [101.0], [200.0], [201.0], [202.0]]
    result = client.rank(
        "diversity.typiclust", 2, embeddings=pool,
        labeled_embeddings=[[201.5]], params={"typicality_neighbors": 1},
    )
    assert result.indices.tolist() == [0, 3]
    np.testing.assert_allclose(result.scores, [1.0, 1.0])


@pytest.mark.parametrize(
    "strategy, params, field",
    [
        ("diversity.kmeans_plusplus", {"n_local_trials": 0}, "n_local_trials"),
        ("diversity.kmeans_plusplus", {"n_local_trials": 5}, "n_local_trials"),
        ("diversity.typiclust", {"typicality_neighbors": 0}, "typicality_neighbors"),
    ],
)
def test_bad_cluster_parameters_are_invalid_arguments(client, strategy, params, field):
    with pytest.raises(AlqueryError) as caught:
        client.rank(strategy, 1, embeddings=POOL, params=params)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"diversity.{field}: got" in caught.value.details
    client.rank(strategy, 1, embeddings=POOL)


def test_probcover_covers_the_pool_greedily(client):
    pool = [[0.0], [1.0], [2.0], [10.0], [11.0]]
    result = client.rank(
        "diversity.probcover", 3, embeddings=pool, params={"radius": 1.5}
    )
    assert result.strategy == "diversity.probcover"
    assert result.indices.tolist() == [1, 3, 0]
    np.testing.assert_array_equal(result.scores, [3, 2, 0])


@pytest.mark.parametrize("params", [{}, {"radius": 0.0}, {"radius": float("inf")}])
def test_probcover_needs_a_positive_radius(client, params):
    with pytest.raises(AlqueryError) as caught:
        client.rank("diversity.probcover", 1, embeddings=POOL, params=params)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "diversity.radius" in caught.value.details


def test_kmeans_on_duplicates_warns_the_client_after_the_edge(client):
    # Two distinct embeddings, batch_size 6 > n_pool 4: the edge clamps the
    # batch to 4 and warns first; k-means then finds 2 clusters of 4.
    pool = np.array([[1.0], [1.0], [1.0], [5.0]])
    result = client.rank("diversity.kmeans", 6, embeddings=pool, seed=0)
    assert sorted(result.indices.tolist()) == [0, 1, 2, 3]
    assert len(result.warnings) == 2
    assert "batch_size=6 exceeds the pool size n_pool=4" in result.warnings[0]
    assert "k-means found 2 distinct clusters for n_clusters=4" in result.warnings[1]


def test_kcenter_projection_is_seeded_over_the_wire(client):
    pool = np.random.default_rng(3).normal(size=(200, 16))
    params = {"kcenter_projection": 4}
    first = client.rank("diversity.kcenter", 10, embeddings=pool, params=params, seed=2)
    again = client.rank("diversity.kcenter", 10, embeddings=pool, params=params, seed=2)
    assert first.indices.tolist() == again.indices.tolist()
    assert len(set(first.indices.tolist())) == 10


def test_kcenter_projection_below_one_is_an_invalid_argument(client):
    with pytest.raises(AlqueryError) as caught:
        client.rank(
            "diversity.kcenter", 2, embeddings=POOL, params={"kcenter_projection": 0}
        )
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "diversity.kcenter_projection" in caught.value.details
    # The server keeps serving.
    # Pool 0, 1, 2, 5 (mean 2): the sample at the mean, then the farthest.
    ranked = client.rank("diversity.kcenter", 2, embeddings=POOL)
    assert ranked.indices.tolist() == [2, 3]
