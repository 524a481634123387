import warnings

import numpy as np
import pytest

from alquery.server.strategies import clustering_tools
from alquery.server.strategies.clustering_tools import (
    d2_sampling,
    fit_kmeans,
    nearest_distinct,
    nearest_distinct_by_distance,
)

LINE = np.array([[0.0], [1.0], [2.0], [10.0]])


def test_nearest_distinct_takes_the_next_nearest_when_taken():
    # Centers 0.9 and 1.2 both want sample 1; the second takes sample 2
    # (0.8 away) rather than 0 (1.2 away).
    picks = nearest_distinct(LINE, np.array([[0.9], [1.2], [9.0]]))
    assert picks.tolist() == [1, 2, 3]


def test_nearest_distinct_ties_go_to_the_lower_position():
    assert nearest_distinct(LINE, np.array([[0.5], [0.5]])).tolist() == [0, 1]


def test_nearest_distinct_in_small_chunks(monkeypatch):
    monkeypatch.setattr(clustering_tools, "CHUNK_ELEMENTS", 5)
    rng = np.random.default_rng(0)
    x, centers = rng.normal(size=(30, 2)), rng.normal(size=(12, 2))
    expected, taken = [], set()
    for center in centers:
        order = np.argsort(((x - center) ** 2).sum(axis=1), kind="stable")
        pick = next(int(i) for i in order if int(i) not in taken)
        expected.append(pick)
        taken.add(pick)
    assert nearest_distinct(x, centers).tolist() == expected


def squared_line_distances(j):
    return (LINE[:, 0] - LINE[j, 0]) ** 2


class FixedDraws:
    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


def test_d2_sampling_by_hand():
    # First pick 0: D^2 = 0, 1, 4, 100; CDF 0, 1/105, 5/105, 1. A draw of
    # 0.5 lands on sample 3. Then D^2 = 0, 1, 4, 0; CDF 0, 0.2, 1, 1: 0.1
    # lands on sample 1.
    picks, distances = d2_sampling(0, squared_line_distances, 3, FixedDraws(0.5, 0.1))
    assert picks.tolist() == [0, 3, 1]
    np.testing.assert_allclose(distances, [np.inf, 100.0, 1.0])


def test_d2_sampling_with_initial_centers():
    # An initial center at 1.5 (D^2 0.25 for samples 1 and 2, 2.25 for 0,
    # 72.25 for 3) caps the distances to the first pick.
    initial = (LINE[:, 0] - 1.5) ** 2
    picks, distances = d2_sampling(
        3, squared_line_distances, 2, FixedDraws(0.0), initial
    )
    assert picks.tolist() == [3, 0]
    np.testing.assert_allclose(distances, [72.25, 2.25])


@pytest.mark.parametrize("weights", [np.ones(4), np.zeros(4)])
def test_weighted_kmeans_finds_separated_groups(weights):
    clustering = fit_kmeans(LINE, 2, seed=0, sample_weight=weights)
    centers, labels = clustering.centers, clustering.labels
    assert labels[0] == labels[1] == labels[2] != labels[3]
    np.testing.assert_allclose(np.sort(centers[:, 0]), [1.0, 10.0])


def test_weighted_kmeans_moves_centroids_toward_heavy_samples():
    weights = np.array([3.0, 1.0, 0.0, 1.0])
    centers = fit_kmeans(LINE, 2, seed=0, sample_weight=weights).centers
    # (3 * 0 + 1 * 1 + 0 * 2) / 4 = 0.25.
    np.testing.assert_allclose(np.sort(centers[:, 0]), [0.25, 10.0])


def test_fit_kmeans_turns_too_few_clusters_into_a_response_warning():
    # Two distinct points for three clusters: scikit-learn's
    # ConvergenceWarning is caught and reworded; nothing reaches stderr.
    data = np.array([[0.0], [0.0], [5.0], [5.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clustering = fit_kmeans(data, 3, seed=0)
    assert clustering.warnings == (
        "k-means found 2 distinct clusters for n_clusters=3 (duplicate "
        "samples, or weights of 0); some centroids coincide, and the batch "
        "still holds distinct samples",
    )


def test_fit_kmeans_on_distinct_points_has_no_warning():
    assert fit_kmeans(LINE, 3, seed=0).warnings == ()


def test_nearest_distinct_by_distance_gives_a_shared_sample_to_one_center_only():
    # Centers 1 and 3 are both 1 away from sample 0 (x=2): center 0 (lower
    # index) keeps it; center 1 takes the nearest unused, x=10 at 7 (x=-5 is
    # 8 away).
    pool, centers = np.array([[2.0], [10.0], [-5.0]]), np.array([[1.0], [3.0]])
    ranking = nearest_distinct_by_distance(pool, centers)
    assert ranking.ranked_indices.tolist() == [0, 1]
    np.testing.assert_allclose(ranking.scores, [1.0, 7.0])
