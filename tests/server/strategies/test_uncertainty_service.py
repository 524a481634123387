"""The passes-based uncertainty strategies over a real loopback connection."""

import grpc
import numpy as np
import pytest

from alquery.v1 import query_pb2
from conftest import tensor

U = query_pb2.UncertaintyStrategy

# The hand-computed inputs of test_committee.py / test_bayesian.py.
PASSES = [
    [[0.8, 0.2], [0.6, 0.4]],
    [[0.9, 0.1], [0.1, 0.9]],
    [[1.0, 0.0], [0.5, 0.5]],
]
A = [[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]]
C = [[0.8, 0.2], [0.2, 0.8], [0.8, 0.2], [0.2, 0.8]]
D = [[0.5, 0.5]] * 4


def request(method, probabilities=PASSES, batch_size=3, target=None, **fields):
    return query_pb2.RankRequest(
        pool=query_pb2.Pool(probabilities=tensor(probabilities)),
        uncertainty=U(method=method, **fields),
        batch_size=batch_size,
        target=query_pb2.TargetSet(probabilities=tensor(target))
        if target is not None
        else None,
    )


@pytest.mark.parametrize(
    "method, indices, scores",
    [
        (U.METHOD_BALD, [1, 2, 0], [0.368064, 0.215762, 0.024157]),
        (U.METHOD_VARIATION_RATIOS, [1, 0, 2], [0.5, 0.0, 0.0]),
        (U.METHOD_MEAN_STD, [1, 2, 0], [0.4, 0.25, 0.1]),
        (U.METHOD_VOTE_ENTROPY, [1, 0, 2], [np.log(2), 0.0, 0.0]),
        (U.METHOD_CONSENSUS_ENTROPY, [1, 0, 2], [np.log(2), 0.610864, 0.562335]),
        (U.METHOD_KL_MEAN, [1, 2, 0], [0.368064, 0.215762, 0.024157]),
        (U.METHOD_KL_MAX, [1, 2, 0], [0.368064, 0.287682, 0.025732]),
    ],
)
def test_pass_strategies_rank_as_computed_by_hand(stub, method, indices, scores):
    response = stub.Rank(request(method))
    assert list(response.ranked_indices) == indices
    np.testing.assert_allclose(response.scores, scores, atol=1e-6)
    assert response.strategy == "uncertainty." + U.Method.Name(method)[7:].lower()


def test_ratio_of_confidence(stub):
    # 0.2/0.7, 0.35/0.4, 0.5/0.5, 0/1.
    probabilities = [[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0], [1, 0, 0]]
    response = stub.Rank(request(U.METHOD_RATIO_OF_CONFIDENCE, probabilities, 4))
    assert list(response.ranked_indices) == [2, 1, 0, 3]
    np.testing.assert_allclose(response.scores, [1.0, 0.875, 2 / 7, 0.0])


def test_batchbald_picks_the_independent_sample_second(stub):
    response = stub.Rank(request(U.METHOD_BATCHBALD, [A, A, C, D], 3))
    assert list(response.ranked_indices) == [0, 2, 1]
    np.testing.assert_allclose(
        response.scores, [0.368064, 0.192745, 0.146311], atol=1e-6
    )


def test_batchbald_draws_are_reproducible_from_the_seed(stub):
    rng = np.random.default_rng(1)
    pool = rng.dirichlet(np.ones(3), size=(20, 4))
    message = request(U.METHOD_BATCHBALD, pool, 8, n_configurations=5)
    message.seed = 17
    first, again = stub.Rank(message), stub.Rank(message)
    assert list(first.ranked_indices) == list(again.ranked_indices)
    assert list(first.scores) == list(again.scores)
    assert len(set(first.ranked_indices)) == 8


def test_epig_against_a_sent_target(stub):
    pool = [[[0.8, 0.2], [0.8, 0.2]], [[0.9, 0.1], [0.1, 0.9]]]
    target = [[[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]]
    response = stub.Rank(request(U.METHOD_EPIG, pool, 2, target=target))
    assert list(response.ranked_indices) == [1, 0]
    np.testing.assert_allclose(response.scores, [0.184032, 0.0], atol=1e-6)


def test_epig_without_a_target_uses_the_pool(stub):
    response = stub.Rank(request(U.METHOD_EPIG, max_target_samples=2))
    assert sorted(response.ranked_indices) == [0, 1, 2]
    assert min(response.scores) >= 0.0


def test_epig_warns_when_it_subsamples_the_target(stub):
    # The pool of 3 is the target, capped at 2 samples: a warning says so.
    response = stub.Rank(request(U.METHOD_EPIG, max_target_samples=2))
    assert list(response.warnings) == [
        "uncertainty.max_target_samples=2: EPIG averaged over a seeded random "
        "subset of 2 of the 3 samples in the pool (as target)"
    ]
    assert list(stub.Rank(request(U.METHOD_EPIG)).warnings) == []


def test_list_strategies_shows_the_new_parameters(stub):
    response = stub.ListStrategies(query_pb2.ListStrategiesRequest())
    by_name = {info.name: info for info in response.strategies}
    assert [p.name for p in by_name["uncertainty.batchbald"].parameters] == [
        "n_configurations"
    ]
    assert [p.default for p in by_name["uncertainty.epig"].parameters] == ["100"]
    for name in ("bald", "kl_max", "ratio_of_confidence", "mean_std"):
        assert by_name["uncertainty." + name].higher_first


BAD_REQUESTS = {
    "bald with one pass": (
        lambda: request(U.METHOD_BALD, [[0.7, 0.3], [0.5, 0.5]]),
        "needs at least 2 passes",
    ),
    "vote entropy with one pass": (
        lambda: request(U.METHOD_VOTE_ENTROPY, [[[0.7, 0.3]], [[0.5, 0.5]]]),
        "needs at least 2 passes",
    ),
    "n_configurations zero": (
        lambda: request(U.METHOD_BATCHBALD, n_configurations=0),
        "uncertainty.n_configurations: got 0",
    ),
    "n_configurations too large": (
        lambda: request(U.METHOD_BATCHBALD, n_configurations=1 << 40),
        "uncertainty.n_configurations",
    ),
    "max_target_samples zero": (
        lambda: request(U.METHOD_EPIG, max_target_samples=0),
        "uncertainty.max_target_samples: got 0",
    ),
    "target with other passes": (
        lambda: request(U.METHOD_EPIG, target=[[[0.5, 0.5]] * 3]),
        "the target needs the same passes as the pool",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_invalid_argument_naming_the_field(stub, case):
    build, expected = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as raised:
        stub.Rank(build())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in raised.value.details()

    # The server keeps serving.
    assert list(stub.Rank(request(U.METHOD_BALD, batch_size=1)).ranked_indices) == [1]
