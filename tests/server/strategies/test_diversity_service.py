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
