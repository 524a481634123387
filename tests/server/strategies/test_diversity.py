import numpy as np

from alquery.server.strategies.diversity import squared_distances
from alquery.server.strategies.diversity_kcenter import kcenter_greedy


def test_kcenter_starts_from_the_labeled_set():
    # Labeled (0,0); pool x = 0, 5, 1, 10 on a line. The farthest is 10
    # (distance 10); after it, 5 is 5 from both (0,0) and (10,0).
    pool = np.array([[0.0, 0.0], [5.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    ranking = kcenter_greedy(pool, 3, np.array([[0.0, 0.0]]))
    assert ranking.ranked_indices.tolist() == [3, 1, 2]
    np.testing.assert_allclose(ranking.scores, [10.0, 5.0, 1.0])


def test_kcenter_without_labeled_set_starts_nearest_the_mean():
    # Mean is 3.75: the first pick is x=4 (0.25 away); then 10 (6 from 4),
    # then 0 (4 from 4), then 1 (1 from 0).
    pool = np.array([[0.0], [1.0], [4.0], [10.0]])
    ranking = kcenter_greedy(pool, 4)
    assert ranking.ranked_indices.tolist() == [2, 3, 0, 1]
    np.testing.assert_allclose(ranking.scores, [0.25, 6.0, 4.0, 1.0])


def test_kcenter_never_repeats_a_sample_when_duplicates_cover_the_pool():
    pool = np.array([[3.0, 3.0], [7.0, 7.0]] * 3)
    ranking = kcenter_greedy(pool, 6, np.array([[0.0, 0.0]]))
    assert sorted(ranking.ranked_indices.tolist()) == list(range(6))
    # Once both points are centers, the rest tie at 0: lower positions first.
    assert ranking.ranked_indices.tolist() == [1, 0, 2, 3, 4, 5]


def test_squared_distances_match_the_direct_formula():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    direct = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_allclose(squared_distances(a, b), direct, rtol=1e-10)
