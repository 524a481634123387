import numpy as np
import pytest

from alquery.server.selection import top_k
from alquery.server.strategies.hybrid import expected_gradient_length, ranked_batch

# Least confidence 0.5, 0.2, 0.0.
PROBABILITIES = np.array([[0.5, 0.5], [0.8, 0.2], [1.0, 0.0]])
POOL = np.array([[1.0], [2.0], [4.0]])


def test_ranked_batch_by_hand():
    # Labeled sample at 0; n_pool = 3, n_labeled = 1.
    # Step 0, alpha = 3/4: distances 1, 2, 4 -> 1 - 1/(1+d) = 1/2, 2/3, 4/5;
    #   scores 3/4 * (1/2, 2/3, 4/5) + 1/4 * (0.5, 0.2, 0) = 0.5, 0.55, 0.6.
    # Step 1, alpha = 2/4, centers {0, 4}: distances 1, 2 -> 1/2, 2/3;
    #   scores 0.5 * 0.5 + 0.5 * 0.5 = 0.5, 0.5 * 2/3 + 0.5 * 0.2 = 0.4333.
    # Step 2, alpha = 1/4, centers {0, 4, 1}: sample 1 at distance 1 ->
    #   1/4 * 1/2 + 3/4 * 0.2 = 0.275.
    ranking = ranked_batch(PROBABILITIES, POOL, 3, np.array([[0.0]]))
    assert ranking.ranked_indices.tolist() == [2, 0, 1]
    np.testing.assert_allclose(ranking.scores, [0.6, 0.5, 0.275])


def test_ranked_batch_tie_goes_to_the_lower_position():
    # Mirror images of each other around the labeled sample.
    ranking = ranked_batch(
        np.full((2, 2), 0.5), np.array([[1.0], [-1.0]]), 2, np.array([[0.0]])
    )
    assert ranking.ranked_indices.tolist() == [0, 1]


def test_ranked_batch_cold_start_takes_the_most_central_sample_first():
    # Mean distances from 1, 2, 4 to the pool: 4/3, 1, 5/3 -> sample 1 (score 1).
    # Then alpha = 2/3 with center {2}: distances 1, 2 -> 1/2, 2/3;
    #   2/3 * 1/2 + 1/3 * 0.5 = 0.5 and 2/3 * 2/3 + 0 = 0.4444.
    ranking = ranked_batch(PROBABILITIES, POOL, 3)
    assert ranking.ranked_indices.tolist() == [1, 0, 2]
    np.testing.assert_allclose(ranking.scores[:2], [1.0, 0.5])


def test_ranked_batch_picks_are_distinct_with_duplicates():
    ranking = ranked_batch(np.full((4, 2), 0.5), np.zeros((4, 3)), 4, np.zeros((1, 3)))
    assert sorted(ranking.ranked_indices.tolist()) == [0, 1, 2, 3]


def test_ranked_batch_uses_the_chosen_uncertainty():
    # Entropy ln 2 = 0.6931, 0.5004, 0 instead of least confidence.
    # Step 0: 3/4 * (1/2, 2/3, 4/5) + 1/4 * entropy = 0.5483, 0.6251, 0.6.
    ranking = ranked_batch(PROBABILITIES, POOL, 1, np.array([[0.0]]), "entropy")
    assert ranking.ranked_indices.tolist() == [1]


def test_egl_by_hand():
    # p = (0.5, 0.5): ||p - e_y|| = sqrt(0.5) for both y; ||h|| = 5.
    #   EGL = 5 * sqrt(0.5) = 3.535534; with the bias sqrt(26) * sqrt(0.5).
    # p = (1, 0) has zero gradient for y = 0 and weight 0 for y = 1.
    # p = (0.8, 0.2), h = (1, 0): ||p||^2 = 0.68; y=0: sqrt(0.68 - 1.6 + 1)
    #   = 0.282843, y=1: sqrt(0.68 - 0.4 + 1) = 1.131371;
    #   0.8 * 0.282843 + 0.2 * 1.131371 = 0.452548.
    probabilities = np.array([[0.5, 0.5], [1.0, 0.0], [0.8, 0.2], [0.5, 0.5]])
    embeddings = np.array([[3.0, 4.0], [3.0, 4.0], [1.0, 0.0], [4.0, 3.0]])
    scores = expected_gradient_length(probabilities, embeddings)
    np.testing.assert_allclose(scores, [3.535534, 0.0, 0.452548, 3.535534], atol=1e-6)
    # Samples 0 and 3 tie; the lower position ranks first.
    assert top_k(scores, 4, higher_first=True).ranked_indices.tolist() == [0, 3, 2, 1]
    with_bias = expected_gradient_length(probabilities, embeddings, include_bias=True)
    np.testing.assert_allclose(with_bias[0], np.sqrt(26 * 0.5))
    np.testing.assert_allclose(with_bias[2], 0.452548 * np.sqrt(2), atol=1e-6)


@pytest.mark.parametrize("include_bias", [False, True])
def test_egl_equals_the_norm_of_explicit_last_layer_gradients(include_bias):
    rng = np.random.default_rng(11)
    n_classes = 4
    probabilities = rng.dirichlet(np.ones(n_classes), size=30)
    embeddings = rng.normal(size=(30, 6))
    expected = []
    for p, h in zip(probabilities, embeddings):
        inputs = np.append(h, 1.0) if include_bias else h
        total = 0.0
        for y in range(n_classes):
            # d/dW of -ln softmax(W x)_y is (p - e_y) x^T.
            gradient = np.outer(p - np.eye(n_classes)[y], inputs)
            total += p[y] * np.linalg.norm(gradient)
        expected.append(total)
    np.testing.assert_allclose(
        expected_gradient_length(probabilities, embeddings, include_bias),
        expected,
        rtol=1e-12,
    )


def test_egl_averages_passes_first():
    passes = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    np.testing.assert_allclose(
        expected_gradient_length(passes, np.array([[3.0, 4.0]])), [5 * np.sqrt(0.5)]
    )
