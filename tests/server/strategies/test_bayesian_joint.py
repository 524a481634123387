import numpy as np
import pytest

from alquery.server import edge
from alquery.server.errors import InvalidRequestError
from alquery.server.ranking import rank
from alquery.server.selection import top_k
from alquery.server.strategies import bayesian_joint
from alquery.server.strategies.bayesian import bald
from alquery.server.strategies.bayesian_joint import _Configurations, batchbald, epig
from alquery.v1 import query_pb2
from conftest import tensor

A = [[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]]
C = [[0.8, 0.2], [0.2, 0.8], [0.8, 0.2], [0.2, 0.8]]
D = [[0.5, 0.5]] * 4
POOL = np.array([A, A, C, D])


def test_batchbald_prefers_the_sample_that_adds_new_information():
    # Step 1: BALD(A) = ln 2 - H(0.9, 0.1) = 0.368064 = BALD(B); A is the
    #   lower position. BALD(C) = ln 2 - H(0.8, 0.2) = 0.192745.
    # Step 2: A and C are independent, so C adds its whole BALD, 0.192745.
    #   A with B: p(0,0) = p(1,1) = 0.41, p(0,1) = p(1,0) = 0.09,
    #   H = 1.164541, minus 2 * 0.325083 gives 0.514375: a gain of 0.146311.
    # Step 3: B's gain is still 0.146311; D's is 0.
    ranking = batchbald(POOL, 4, 1000, np.random.default_rng(0))
    assert ranking.ranked_indices.tolist() == [0, 2, 1, 3]
    np.testing.assert_allclose(
        ranking.scores, [0.368064, 0.192745, 0.146311, 0.0], atol=1e-6
    )
    # Top-k BALD would take the redundant copy second.
    assert top_k(bald(POOL), 2, higher_first=True).ranked_indices.tolist() == [0, 1]


def test_batchbald_drawn_configurations_estimate_the_exact_entropy():
    rng = np.random.default_rng(3)
    pool = rng.dirichlet(np.ones(3), size=(20, 4))
    picked = pool[[0, 1, 2]]
    exact = _Configurations.empty(4)
    for k in range(1, 4):
        exact = exact.extended(picked[:k], 27, rng)
    assert len(exact.weights) == 27  # 3^3, all enumerated
    drawn = _Configurations.sampled(picked, 20000, np.random.default_rng(1))
    np.testing.assert_allclose(
        drawn.joint_entropies(pool), exact.joint_entropies(pool), atol=5e-3
    )


def test_batchbald_draws_are_reproducible_and_picks_distinct():
    rng = np.random.default_rng(11)
    pool = rng.dirichlet(np.ones(3), size=(30, 5))
    # 3^k passes 7 configurations at the second pick, so draws start there.
    first = batchbald(pool, 30, 7, np.random.default_rng(42))
    again = batchbald(pool, 30, 7, np.random.default_rng(42))
    other = batchbald(pool, 30, 7, np.random.default_rng(43))
    np.testing.assert_array_equal(first.ranked_indices, again.ranked_indices)
    np.testing.assert_array_equal(first.scores, again.scores)
    assert sorted(first.ranked_indices.tolist()) == list(range(30))
    assert not np.array_equal(first.scores, other.scores)


def test_batchbald_chunks_give_the_same_answer(monkeypatch):
    rng = np.random.default_rng(5)
    pool = rng.dirichlet(np.ones(4), size=(40, 3))
    whole = batchbald(pool, 5, 100, np.random.default_rng(0))
    monkeypatch.setattr(bayesian_joint, "CHUNK_ELEMENTS", 50)
    chunked = batchbald(pool, 5, 100, np.random.default_rng(0))
    np.testing.assert_array_equal(whole.ranked_indices, chunked.ranked_indices)
    np.testing.assert_allclose(whole.scores, chunked.scores, rtol=1e-12)


# A target that tells the two passes apart, and one that is a coin flip.
TELLING = [[1.0, 0.0], [0.0, 1.0]]
COIN = [[0.5, 0.5], [0.5, 0.5]]
EPIG_POOL = np.array(
    [
        [[0.8, 0.2], [0.8, 0.2]],
        [[0.9, 0.1], [0.1, 0.9]],
        [[0.1, 0.9], [0.9, 0.1]],
    ]
)


def test_epig_against_targets_by_hand():
    # y_TELLING reveals the pass, so I(y_i; y_TELLING) = BALD_i: 0, 0.368064,
    # 0.368064. I(y_i; y_COIN) = 0. EPIG is the mean over the two targets.
    target = np.array([TELLING, COIN])
    scores = epig(EPIG_POOL, target, 100, np.random.default_rng(0))
    np.testing.assert_allclose(scores, [0.0, 0.184032, 0.184032], atol=1e-6)
    assert scores.min() >= 0.0
    # Samples 1 and 2 tie; the lower pool position ranks first.
    assert top_k(scores, 3, higher_first=True).ranked_indices.tolist() == [1, 2, 0]


def brute_force_epig(pool, target):
    def mutual_information(a, b):
        joint = a.T @ b / len(a)
        outer = np.outer(a.mean(axis=0), b.mean(axis=0))
        return (joint * np.log(joint / outer)).sum()

    return np.array([np.mean([mutual_information(x, t) for t in target]) for x in pool])


def test_epig_uses_the_pool_as_target_when_none_is_sent(monkeypatch):
    rng = np.random.default_rng(9)
    pool = rng.dirichlet(np.ones(3), size=(25, 4))
    expected = brute_force_epig(pool, pool)
    np.testing.assert_allclose(epig(pool, None, 100, rng), expected, rtol=1e-9)
    monkeypatch.setattr(bayesian_joint, "CHUNK_ELEMENTS", 40)
    np.testing.assert_allclose(epig(pool, None, 100, rng), expected, rtol=1e-9)


def test_epig_subsamples_a_large_target_set_from_the_seed():
    rng = np.random.default_rng(4)
    pool = rng.dirichlet(np.ones(3), size=(10, 4))
    target = rng.dirichlet(np.ones(3), size=(30, 4))
    rows = np.sort(np.random.default_rng(8).choice(30, size=5, replace=False))
    scores = epig(pool, target, 5, np.random.default_rng(8))
    np.testing.assert_allclose(scores, brute_force_epig(pool, target[rows]), rtol=1e-9)
    again = epig(pool, target, 5, np.random.default_rng(8))
    other = epig(pool, target, 5, np.random.default_rng(9))
    np.testing.assert_array_equal(scores, again)
    assert not np.allclose(scores, other)


def build(method, passes=2, **fields):
    probabilities = np.full((4, passes, 2), 0.5)
    return edge.build_query(
        query_pb2.RankRequest(
            pool=query_pb2.Pool(probabilities=tensor(probabilities)),
            uncertainty=query_pb2.UncertaintyStrategy(method=method, **fields),
            batch_size=2,
        )
    )


U = query_pb2.UncertaintyStrategy


@pytest.mark.parametrize(
    "method, fields, message",
    [
        (U.METHOD_BATCHBALD, {"n_configurations": 0}, "n_configurations: got 0"),
        (
            U.METHOD_BATCHBALD,
            {"n_configurations": 2_097_153},
            "between 1 and 4194304 // n_passes = 2097152",
        ),
        (U.METHOD_EPIG, {"max_target_samples": 0}, "max_target_samples: got 0"),
        (U.METHOD_EPIG, {"max_target_samples": -5}, "it must be at least 1"),
    ],
)
def test_bad_parameters_name_the_field(method, fields, message):
    with pytest.raises(InvalidRequestError, match=message):
        build(method, **fields)


def test_parameter_defaults():
    assert build(U.METHOD_BATCHBALD).params == {"n_configurations": 1000}
    assert build(U.METHOD_EPIG).params == {"max_target_samples": 100}
    assert build(U.METHOD_BATCHBALD, n_configurations=2_097_152).params == {
        "n_configurations": 2_097_152
    }


def test_epig_warns_about_a_subsampled_target_only():
    # build() sends 4 pool samples and no target: the pool is the target.
    assert rank(build(U.METHOD_EPIG, max_target_samples=4)).warnings == ()
    warnings = rank(build(U.METHOD_EPIG, max_target_samples=3)).warnings
    assert warnings == (
        "uncertainty.max_target_samples=3: EPIG averaged over a seeded random "
        "subset of 3 of the 4 samples in the pool (as target)",
    )
