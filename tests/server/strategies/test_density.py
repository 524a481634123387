import numpy as np
import pytest

from alquery.server.selection import top_k
from alquery.server.strategies import density
from alquery.server.strategies.density import (
    density_weighted,
    information_density,
    mean_over_pool,
)

# Three samples on a line at 0, 1 and 3 (one feature).
LINE = np.array([[0.0], [1.0], [3.0]])


def test_euclidean_density_by_hand():
    # 1 / (1 + d): sample 0 sees d = 0, 1, 3 -> (1 + 1/2 + 1/4) / 3;
    # sample 1 sees 1, 0, 2 -> (1/2 + 1 + 1/3) / 3; sample 2 sees 3, 2, 0.
    expected = [
        (1 + 1 / 2 + 1 / 4) / 3,
        (1 / 2 + 1 + 1 / 3) / 3,
        (1 / 4 + 1 / 3 + 1) / 3,
    ]
    scores = information_density(LINE, "euclidean")
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    # 1.8333/3 > 1.75/3 > 1.5833/3.
    assert top_k(scores, 3, higher_first=True).ranked_indices.tolist() == [1, 0, 2]


def test_cosine_density_by_hand():
    # Unit vectors e1, e2 and (e1 + e2) / sqrt 2: cosines 0, 1/sqrt 2 between
    # them, 1 to themselves.
    x = np.array([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    r = 1 / np.sqrt(2)
    expected = [(1 + 0 + r) / 3, (0 + 1 + r) / 3, (r + r + 1) / 3]
    scores = information_density(x)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    # Samples 0 and 1 tie exactly; the lower position ranks first.
    assert top_k(scores, 3, higher_first=True).ranked_indices.tolist() == [2, 0, 1]


def test_a_zero_vector_has_cosine_density_zero():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    # Sample 1 sees cosines 0, 1, 1.
    np.testing.assert_allclose(information_density(x), [0.0, 2 / 3, 2 / 3])


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
def test_matches_brute_force_with_small_chunks(monkeypatch, similarity):
    monkeypatch.setattr(density, "CHUNK_ELEMENTS", 7)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(23, 4))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    distances = np.linalg.norm(x[:, None] - x[None], axis=-1)
    similarities = {
        "cosine": unit @ unit.T,
        "euclidean": 1.0 / (1.0 + distances),
    }[similarity]
    np.testing.assert_allclose(
        information_density(x, similarity), similarities.mean(axis=1), rtol=1e-10
    )


def test_mean_over_pool_counts_each_sample_at_distance_zero():
    # Mean distance of 0, 1, 3 to the line: (0+1+3)/3, (1+0+2)/3, (3+2+0)/3.
    np.testing.assert_allclose(
        mean_over_pool(LINE, lambda d: d), [4 / 3, 1.0, 5 / 3], rtol=1e-12
    )


def test_density_weighted_by_hand():
    probabilities = np.array([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1]])
    # Entropy ln 2, ln 2, h = -(0.9 ln 0.9 + 0.1 ln 0.1) = 0.325083.
    h = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    d = information_density(LINE, "euclidean")
    scores = density_weighted(probabilities, LINE, "entropy", "euclidean", 2.0)
    np.testing.assert_allclose(
        scores, [np.log(2) * d[0] ** 2, np.log(2) * d[1] ** 2, h * d[2] ** 2]
    )
    # ln 2 * 0.5833^2 = 0.2359 < ln 2 * 0.6111^2 = 0.2589; 0.325 * 0.5278^2
    # = 0.0906: sample 1 first, then 0, then 2.
    assert top_k(scores, 3, higher_first=True).ranked_indices.tolist() == [1, 0, 2]


def test_density_weighted_with_beta_zero_is_plain_uncertainty():
    probabilities = np.array([[0.6, 0.4], [0.7, 0.3], [0.5, 0.5]])
    scores = density_weighted(probabilities, LINE, "margin", "cosine", 0.0)
    np.testing.assert_allclose(scores, [0.8, 0.6, 1.0])


def test_negative_mean_cosine_is_clipped_to_zero():
    # Cosines: 0 with 1 is 1, with 2 is -1 -> sample 0's mean is (1+1-1)/3.
    # Sample 2 sees -1, -1, 1 -> -1/3, clipped to 0.
    x = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    probabilities = np.full((3, 2), 0.5)
    scores = density_weighted(probabilities, x, "least_confidence")
    np.testing.assert_allclose(scores, [0.5 / 3, 0.5 / 3, 0.0])
