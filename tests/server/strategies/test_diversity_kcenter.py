"""The exact k-center greedy picks what the plain one-row-per-pick one does,
to the bit; the approximate mode is seeded and close in coverage."""

import numpy as np
import pytest
from alquery.server.strategies import (
    diversity_kcenter,
    kcenter_cover,
    kcenter_native,
    kcenter_partition,
    kcenter_stream,
    kcenter_update,
)
from alquery.server.strategies.diversity import nearest_center_distances
from alquery.server.strategies.diversity_kcenter import (
    kcenter_greedy,
    kcenter_greedy_counted,
    kcenter_projected,
)

from kcenter_reference import kcenter_greedy_reference


@pytest.fixture(autouse=True, params=["worker threads", "calling thread"])
def threading_path(request, monkeypatch):
    """Every test runs both ways: pools this small take the calling thread
    alone unless THREADED_VALUES is lowered to 0."""
    if request.param == "worker threads":
        monkeypatch.setattr(diversity_kcenter, "THREADED_VALUES", 0)
    return request.param


@pytest.fixture(autouse=True, params=["compiled rounds", "numpy rounds"])
def rounds(request, monkeypatch):
    """Every test runs both ways: with the compiled loops
    (``kcenter_native``) and without them, as where no C compiler built
    them; the reference follows, and both must give the same picks."""
    if request.param == "numpy rounds":
        monkeypatch.setattr(kcenter_native, "LIBRARY", None)
    elif kcenter_native.LIBRARY is None:
        pytest.skip("the compiled k-center loops were not built (no C compiler)")
    return request.param


def clustered(rng, n_pool, n_features, n_clusters=12, spread=0.3):
    means = rng.normal(scale=3.0, size=(n_clusters, n_features))
    members = rng.integers(n_clusters, size=n_pool)
    return means[members] + rng.normal(scale=spread, size=(n_pool, n_features))


def assert_same_ranking(pool, batch_size, labeled=None):
    fast = kcenter_greedy(pool, batch_size, labeled)
    plain = kcenter_greedy_reference(pool, batch_size, labeled)
    assert fast.ranked_indices.tolist() == plain.ranked_indices.tolist()
    # Same arithmetic for every distance: the scores agree to the bit.
    assert fast.scores.tolist() == plain.scores.tolist()


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
    # distance is 0, and the lower positions go first, as in the reference.
    rng = np.random.default_rng(7)
    pool = np.repeat(clustered(rng, 40, 8, n_clusters=4), 5, axis=0)
    rng.shuffle(pool)
    labeled = pool[:3] + 0.5 if with_labeled else None
    assert_same_ranking(pool, 200, labeled)
    tail = kcenter_greedy(pool, 200, labeled).ranked_indices[45:]
    assert tail.tolist() == sorted(tail.tolist())


def test_same_picks_when_every_sample_is_the_same():
    pool = np.ones((50, 3))
    ranking = kcenter_greedy(pool, 50)
    assert ranking.ranked_indices.tolist() == list(range(50))
    assert_same_ranking(pool, 50)


def test_same_picks_on_a_grid_full_of_exact_ties():
    # Integer grid points: many distances tie exactly, at every step.
    grid = np.stack(np.meshgrid(*[np.arange(6.0)] * 3), axis=-1).reshape(-1, 3)
    assert_same_ranking(grid, 150)
    assert_same_ranking(grid, 100, grid[:1] + 0.5)


@pytest.mark.parametrize("seed", range(2))
def test_same_picks_across_chunk_and_group_boundaries(monkeypatch, seed):
    # Tiny blocks, chunks, batches and groups: every chunked loop runs many
    # times, a batch of groups spans few rows, and a group holds a handful.
    monkeypatch.setattr(kcenter_stream, "CACHE_ELEMENTS", 5 * 24)
    monkeypatch.setattr(kcenter_stream, "PROJECTED_DIMS", 5)
    monkeypatch.setattr(kcenter_update, "UPDATE_ELEMENTS", 16 * 24)
    monkeypatch.setattr(kcenter_update, "BATCH_ROWS", 20)
    monkeypatch.setattr(kcenter_update, "SPLIT_PAIRS", 30)
    monkeypatch.setattr(kcenter_cover, "LEAF_SIZE", 7)
    monkeypatch.setattr(kcenter_partition, "CHUNK_ROWS", 13)
    rng = np.random.default_rng(20 + seed)
    pool = clustered(rng, 1_500, 24, n_clusters=9)
    assert_same_ranking(pool, 120)
    assert_same_ranking(pool, 120, clustered(rng, 40, 24, n_clusters=9))


@pytest.mark.parametrize("with_labeled", [False, True])
def test_same_picks_on_relu_features_like_a_hidden_layer(monkeypatch, with_labeled):
    # Non-negative, sparse rows in more dimensions than the projection that
    # groups them, as a network's hidden layer gives; small groups.
    monkeypatch.setattr(kcenter_cover, "LEAF_SIZE", 24)
    rng = np.random.default_rng(50)
    weights = rng.normal(size=(20, 96))
    pool = np.maximum(clustered(rng, 2_500, 20) @ weights, 0.0).astype(np.float32)
    labeled = pool[:40] + 0.25 if with_labeled else None
    assert_same_ranking(pool[40:], 150, labeled)


def test_same_picks_with_many_labeled_centers():
    rng = np.random.default_rng(30)
    pool = clustered(rng, 3_000, 20, n_clusters=30)
    assert_same_ranking(pool, 100, clustered(rng, 800, 20, n_clusters=30))


def test_same_picks_when_norms_leave_float32_range():
    # Squared norms near 1e40: the screening runs in float64.
    rng = np.random.default_rng(31)
    pool = clustered(rng, 600, 10) * 1e19
    assert_same_ranking(pool, 60)


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


def coverage(pool, picks):
    return float(np.sqrt(nearest_center_distances(pool, pool[picks]).max()))


def test_projection_is_seeded_and_close_in_coverage_radius():
    rng = np.random.default_rng(40)
    pool = clustered(rng, 3_000, 256, n_clusters=40, spread=1.0)
    exact = kcenter_greedy(pool, 100)
    first = kcenter_projected(pool, 100, None, 64, np.random.default_rng(5))
    again = kcenter_projected(pool, 100, None, 64, np.random.default_rng(5))
    assert first.ranked_indices.tolist() == again.ranked_indices.tolist()
    assert len(set(first.ranked_indices.tolist())) == 100
    # Greedy k-center is within twice the optimal radius; projected distances
    # are off by a few percent at 64 dimensions. Measured ratio here: ~1.05.
    radius = coverage(pool, first.ranked_indices)
    assert radius <= 1.25 * coverage(pool, exact.ranked_indices)


def test_projection_to_the_full_width_is_the_exact_greedy():
    rng = np.random.default_rng(41)
    pool = clustered(rng, 500, 8)
    labeled = clustered(rng, 5, 8)
    projected = kcenter_projected(pool, 40, labeled, 8, np.random.default_rng(0))
    exact = kcenter_greedy(pool, 40, labeled)
    assert projected.ranked_indices.tolist() == exact.ranked_indices.tolist()


@pytest.mark.parametrize("n_pool", [1, 2, 5, 40])
def test_same_picks_on_tiny_pools_in_many_dimensions(n_pool):
    # Fewer rows than the principal basis has columns.
    rng = np.random.default_rng(60 + n_pool)
    pool = rng.normal(size=(n_pool, 64)).astype(np.float32)
    assert_same_ranking(pool, n_pool)
    assert_same_ranking(pool, n_pool, rng.normal(size=(3, 64)))


def hidden_layer(rng, n_pool, n_features=96):
    # Non-negative, sparse rows of low intrinsic dimension, as a network's
    # hidden layer gives.
    weights = rng.normal(size=(20, n_features))
    return np.maximum(clustered(rng, n_pool, 20) @ weights, 0.0).astype(np.float32)


@pytest.mark.parametrize(
    ("offset", "dtype", "as_sent"),
    [(0.0, np.float32, True), (1e3, np.float32, False), (0.0, np.float64, False)],
)
def test_a_float32_pool_near_the_origin_is_screened_as_sent(offset, dtype, as_sent):
    # Far from the origin, the rows as sent would widen the rounding bound
    # of the screening: a shifted copy is screened instead. Same picks.
    rng = np.random.default_rng(61)
    pool = (hidden_layer(rng, 1_500) + np.float32(offset)).astype(dtype)
    shift = kcenter_cover.pool_shift(pool)
    cover = kcenter_cover.LazyCover(pool, shift, 10, None, lambda: None)
    assert cover.raw_screen is as_sent
    assert (cover.screen is pool) is as_sent
    assert_same_ranking(pool, 120)
    assert_same_ranking(pool[50:], 120, pool[:50] + 0.25)


def test_the_projection_bound_leaves_fewer_pairs_to_screen(monkeypatch):
    rng = np.random.default_rng(62)
    pool = hidden_layer(rng, 3_000, n_features=128)
    with_bound = kcenter_greedy_counted(pool, 200)
    monkeypatch.setattr(kcenter_stream, "PROJECTED_DIMS", 128)
    without = kcenter_greedy_counted(pool, 200)
    assert with_bound[0].ranked_indices.tolist() == without[0].ranked_indices.tolist()
    assert with_bound[0].scores.tolist() == without[0].scores.tolist()
    assert with_bound[2] < 0.5 * without[2]


@pytest.mark.parametrize("with_labeled", [False, True])
def test_one_group_rounds_pick_what_the_general_round_picks(
    monkeypatch, threading_path, rounds, with_labeled
):
    if rounds == "compiled rounds":
        pytest.skip("the numpy rounds' own paths")
    # One-group rounds take a path of their own (slices, on the calling
    # thread); with BATCH_ROWS = 1, only groups of one row still do, and
    # the rest take the general path. Both match the reference.
    monkeypatch.setattr(kcenter_cover, "LEAF_SIZE", 24)
    rng = np.random.default_rng(63)
    pool = hidden_layer(rng, 800)
    labeled = pool[:20] + 0.25 if with_labeled else None
    calls = {"one group": 0, "general": 0}

    def counted(name, function):
        def run(*args):
            calls[name] += 1
            return function(*args)

        return run

    monkeypatch.setattr(
        kcenter_update,
        "_update_group",
        counted("one group", kcenter_update._update_group),
    )
    monkeypatch.setattr(
        kcenter_update, "_apply", counted("general", kcenter_update._apply)
    )
    assert_same_ranking(pool[20:], 100, labeled)
    assert calls["one group"] > calls["general"]
    calls.update({"one group": 0, "general": 0})
    monkeypatch.setattr(kcenter_update, "BATCH_ROWS", 1)
    assert_same_ranking(pool[20:], 100, labeled)
    assert calls["general"] > calls["one group"]


@pytest.mark.parametrize("with_labeled", [False, True])
def test_compiled_rounds_split_over_workers_pick_what_the_reference_picks(
    monkeypatch, threading_path, rounds, with_labeled
):
    # Rounds of several groups and groups split by rows over the workers:
    # with LEAF_SIZE 24 and SPLIT_PAIRS 1, every round with threads splits.
    if rounds == "numpy rounds":
        pytest.skip("the compiled rounds' own paths")
    monkeypatch.setattr(kcenter_cover, "LEAF_SIZE", 24)
    monkeypatch.setattr(kcenter_update, "SPLIT_PAIRS", 1)
    calls = {"update": 0, "pick_rounds": 0}

    def counted(name):
        method = getattr(kcenter_native.NativeRounds, name)

        def run(self, *args):
            calls[name] += 1
            return method(self, *args)

        monkeypatch.setattr(kcenter_native.NativeRounds, name, run)

    counted("update")
    counted("pick_rounds")
    rng = np.random.default_rng(64)
    pool = hidden_layer(rng, 800)
    labeled = pool[:20] + 0.25 if with_labeled else None
    assert_same_ranking(pool[20:], 100, labeled)
    # Each pick's rounds start in the compiled loops; with threads, every
    # round comes back to be split into pieces, one update each.
    assert calls["pick_rounds"] >= 99
    if threading_path == "worker threads":
        assert calls["update"] > 100
    else:
        assert calls["update"] == 0


@pytest.mark.parametrize("layout", ["fortran", "strided"])
def test_a_pool_not_in_row_order_gets_the_same_picks(layout):
    # The compiled rounds read rows in place only from a C-ordered pool;
    # any other layout takes the numpy rounds, with rows gathered.
    rng = np.random.default_rng(65)
    pool = hidden_layer(rng, 1_200).astype(np.float32)
    if layout == "fortran":
        other = np.asfortranarray(pool)
    else:
        other = np.repeat(pool, 2, axis=1)[:, ::2]
    assert not other.flags.c_contiguous
    assert_same_ranking(other, 80)
    fast = kcenter_greedy(other, 80)
    same = kcenter_greedy(pool, 80)
    assert fast.ranked_indices.tolist() == same.ranked_indices.tolist()
    assert fast.scores.tolist() == same.scores.tolist()


def test_rounds_with_many_pending_centers_screen_with_blas(monkeypatch, rounds):
    # A large labeled set reaches each group as one round of thousands of
    # pending centers: BLAS products screen those faster than the compiled
    # round's pair-by-pair dots, so they take the numpy round either way;
    # the rounds of later picks (one pending center) stay compiled.
    calls = {"numpy": 0}

    def counted(kind, function):
        def wrapper(*args, **kwargs):
            calls[kind] += 1
            return function(*args, **kwargs)

        return wrapper

    for name in ("_update_rows", "_update_group"):
        function = counted("numpy", getattr(kcenter_update, name))
        monkeypatch.setattr(kcenter_update, name, function)
    rng = np.random.default_rng(34)
    pool = rng.normal(size=(1500, 24))
    labeled = rng.normal(size=(3000, 24))
    assert_same_ranking(pool, 30, labeled)
    assert calls["numpy"] > 0
