"""The bounded k-center greedy picks what the plain one-row-per-pick one does."""

import numpy as np
import pytest
from alquery.server.strategies.diversity_kcenter import (
    kcenter_greedy,
    kcenter_greedy_counted,
)

from kcenter_reference import kcenter_greedy_reference


def clustered(rng, n_pool, n_features, n_clusters=12, spread=0.3):
    means = rng.normal(scale=3.0, size=(n_clusters, n_features))
    members = rng.integers(n_clusters, size=n_pool)
    return means[members] + rng.normal(scale=spread, size=(n_pool, n_features))


def assert_same_ranking(pool, batch_size, labeled=None):
    fast = kcenter_greedy(pool, batch_size, labeled)
    plain = kcenter_greedy_reference(pool, batch_size, labeled)
    assert fast.ranked_indices.tolist() == plain.ranked_indices.tolist()
    np.testing.assert_allclose(fast.scores, plain.scores, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_labeled", [False, True])
def test_same_picks_as_the_plain_greedy_on_clustered_data(seed, with_labeled):
    rng = np.random.default_rng(seed)
    pool = clustered(rng, 2_000, 16).astype(np.float32)
    labeled = clustered(rng, 30, 16) if with_labeled else None
    assert_same_ranking(pool, 150, labeled)


@pytest.mark.parametrize("seed", range(3))
def test_same_picks_on_isotropic_noise(seed):
    rng = np.random.default_rng(100 + seed)
    assert_same_ranking(rng.normal(size=(800, 64)), 60, rng.normal(size=(5, 64)))


@pytest.mark.parametrize("with_labeled", [False, True])
def test_same_picks_with_duplicates_down_to_all_ties(with_labeled):
    # 40 distinct points, each five times: after 40 picks every remaining
    # distance is 0 and the lower positions go first.
    rng = np.random.default_rng(7)
    pool = np.repeat(clustered(rng, 40, 8, n_clusters=4), 5, axis=0)
    rng.shuffle(pool)
    labeled = pool[:3] + 0.5 if with_labeled else None
    fast = kcenter_greedy(pool, 200, labeled)
    plain = kcenter_greedy_reference(pool, 200, labeled)
    # The 40 distinct points come first, in the plain greedy's order. After
    # them every distance is 0 up to rounding, and the order among the copies
    # left follows that rounding in both versions.
    _, group = np.unique(pool, axis=0, return_inverse=True)
    group = group.ravel()
    assert group[fast.ranked_indices[:40]].tolist() == (
        group[plain.ranked_indices[:40]].tolist()
    )
    np.testing.assert_allclose(fast.scores, plain.scores, rtol=1e-12, atol=1e-6)
    # Among copies of one point, the lower position always goes first: our
    # distances to copies are equal to the bit (the plain greedy's BLAS
    # rounding can tell copies apart).
    for g in range(40):
        members = fast.ranked_indices[group[fast.ranked_indices] == g].tolist()
        assert members == sorted(members)


def test_labeled_centers_equal_to_pool_samples():
    rng = np.random.default_rng(8)
    pool = clustered(rng, 500, 6)
    assert_same_ranking(pool, 100, pool[::50].copy())


def test_far_fewer_distances_than_the_plain_greedy_on_clusters():
    rng = np.random.default_rng(9)
    pool = clustered(rng, 5_000, 32, n_clusters=50, spread=0.2)
    _, exact, screened = kcenter_greedy_counted(pool, 300)
    assert screened < 0.25 * 300 * len(pool)
    assert exact < screened


def test_check_runs_before_each_pick_and_can_stop_the_work():
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("cancelled")

    pool = np.random.default_rng(10).normal(size=(100, 4))
    with pytest.raises(RuntimeError, match="cancelled"):
        kcenter_greedy(pool, 50, check=check)
    assert len(calls) == 5
