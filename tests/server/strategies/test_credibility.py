import numpy as np
import pytest

from alquery.server.selection import top_k
from alquery.server.strategies.credibility import validation_knn

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
