"""The query service over a real loopback connection, through the generated stub."""

import math

import grpc
import numpy as np
import pytest

from alquery.v1 import query_pb2
from conftest import tensor

F32, F64, I32, I64 = (
    query_pb2.D_TYPE_FLOAT32,
    query_pb2.D_TYPE_FLOAT64,
    query_pb2.D_TYPE_INT32,
    query_pb2.D_TYPE_INT64,
)
U = query_pb2.UncertaintyStrategy
D = query_pb2.DiversityStrategy
C = query_pb2.CredibilityStrategy

PROBABILITIES = [[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]
EMBEDDINGS = [[0.0, 0.0], [5.0, 0.0], [1.0, 0.0], [10.0, 0.0]]


def uncertainty(method, batch_size=4, **pool):
    pool.setdefault("probabilities", tensor(PROBABILITIES))
    return query_pb2.RankRequest(
        pool=query_pb2.Pool(**pool),
        uncertainty=U(method=method),
        batch_size=batch_size,
    )


def kcenter(batch_size=2, **pool):
    pool.setdefault("embeddings", tensor(EMBEDDINGS))
    return query_pb2.RankRequest(
        pool=query_pb2.Pool(**pool),
        labeled=query_pb2.LabeledSet(embeddings=tensor([[0.0, 0.0]])),
        diversity=D(method=D.METHOD_KCENTER),
        batch_size=batch_size,
    )


def validation_knn(n_neighbors=None, **validation):
    validation.setdefault("probabilities", tensor([[0.9, 0.1], [0.8, 0.2], [0.5, 0.5]]))
    validation.setdefault("labels", tensor([0, 0, 1], I64))
    validation.setdefault("embeddings", tensor([[0.0], [1.0], [10.0]]))
    strategy = C(method=C.METHOD_VALIDATION_KNN)
    if n_neighbors is not None:
        strategy.n_neighbors = n_neighbors
    return query_pb2.RankRequest(
        pool=query_pb2.Pool(embeddings=tensor([[0.4], [9.0], [5.4]])),
        validation=query_pb2.ValidationSet(**validation),
        credibility=strategy,
        batch_size=3,
    )


@pytest.mark.parametrize(
    "method, indices, scores",
    [
        (U.METHOD_LEAST_CONFIDENCE, [1, 2, 0, 3], [0.6, 0.5, 0.3, 0.0]),
        (U.METHOD_MARGIN, [2, 1, 0, 3], [0.0, 0.05, 0.5, 1.0]),
        (U.METHOD_ENTROPY, [1, 0, 2, 3], [1.080528, 0.801819, math.log(2), 0.0]),
    ],
)
def test_uncertainty_ranks_match_hand_computed_answers(stub, method, indices, scores):
    response = stub.Rank(uncertainty(method))
    assert list(response.ranked_indices) == indices
    np.testing.assert_allclose(response.scores, scores, atol=1e-6)
    assert response.strategy.startswith("uncertainty.")


def test_logits_are_turned_into_probabilities(stub):
    # softmax([0, ln 3]) = [0.25, 0.75]; softmax([0, 0]) = [0.5, 0.5].
    logits = tensor([[0.0, math.log(3.0)], [0.0, 0.0], [50.0, 0.0]], F32)
    response = stub.Rank(
        query_pb2.RankRequest(
            pool=query_pb2.Pool(logits=logits),
            uncertainty=U(method=U.METHOD_LEAST_CONFIDENCE),
            batch_size=3,
        )
    )
    assert list(response.ranked_indices) == [1, 0, 2]
    np.testing.assert_allclose(response.scores[:2], [0.5, 0.25], rtol=1e-6)


def test_kcenter_answers_pool_positions_only(stub):
    response = stub.Rank(kcenter(batch_size=2))
    assert list(response.ranked_indices) == [3, 1]
    np.testing.assert_allclose(response.scores, [10.0, 5.0])
    assert response.strategy == "diversity.kcenter"


def test_validation_knn_ranks_by_nearby_validation_loss(stub):
    # Losses: 0.105361, 0.223144, 0.693147. k=2: 0.4 -> {0, 1}; 9.0 -> {2, 1};
    # 5.4 -> {1, 2} (4.4 and 4.6 away).
    response = stub.Rank(validation_knn(n_neighbors=2))
    assert list(response.ranked_indices) == [1, 2, 0]
    high, low = (0.223144 + 0.693147) / 2, (0.105361 + 0.223144) / 2
    np.testing.assert_allclose(response.scores, [high, high, low], atol=1e-6)


def test_batch_larger_than_pool_returns_all_ranked_with_a_warning(stub):
    response = stub.Rank(uncertainty(U.METHOD_MARGIN, batch_size=50))
    assert list(response.ranked_indices) == [2, 1, 0, 3]
    assert "batch_size=50 exceeds the pool size n_pool=4" in response.warnings[0]


def test_sampling_mode_is_reproducible_from_the_seed(stub):
    request = uncertainty(U.METHOD_ENTROPY, batch_size=3)
    request.selection.mode = query_pb2.Selection.MODE_SOFTMAX
    request.seed = 5
    first = list(stub.Rank(request).ranked_indices)
    assert first == list(stub.Rank(request).ranked_indices)
    assert len(set(first)) == 3


def test_omit_scores(stub):
    request = uncertainty(U.METHOD_ENTROPY, batch_size=2)
    request.omit_scores = True
    response = stub.Rank(request)
    assert list(response.ranked_indices) == [1, 0]
    assert list(response.scores) == []


def test_list_strategies_names_every_v0_strategy(stub):
    response = stub.ListStrategies(query_pb2.ListStrategiesRequest())
    by_name = {info.name: info for info in response.strategies}
    assert set(by_name) >= {
        "uncertainty.least_confidence",
        "uncertainty.margin",
        "uncertainty.entropy",
        "diversity.kcenter",
        "credibility.validation_knn",
    }
    assert [p.name for p in by_name["credibility.validation_knn"].parameters] == [
        "n_neighbors"
    ]
    assert not by_name["uncertainty.margin"].higher_first
    assert list(by_name["diversity.kcenter"].required_inputs) == ["pool.embeddings"]


def _nan_embeddings():
    return kcenter(embeddings=tensor([[0.0, 0.0], [np.nan, 1.0], [2, 2], [3, 3]]))


def _with(request, mutate):
    mutate(request)
    return request


BAD_REQUESTS = {
    "probabilities wrong dtype": (
        lambda: uncertainty(U.METHOD_ENTROPY, probabilities=tensor([[1, 0]], I32)),
        "pool.probabilities.dtype",
    ),
    "unknown dtype value": (
        lambda: uncertainty(
            U.METHOD_ENTROPY,
            probabilities=query_pb2.Tensor(dtype=99, shape=[1, 2], data=b"\0" * 16),
        ),
        "pool.probabilities.dtype: unknown value 99",
    ),
    "byte length does not fit the shape": (
        lambda: uncertainty(
            U.METHOD_ENTROPY, probabilities=tensor([[0.5, 0.5]], shape=[2, 2])
        ),
        "pool.probabilities.data: has 16 bytes",
    ),
    "one-axis probabilities": (
        lambda: uncertainty(U.METHOD_MARGIN, probabilities=tensor([0.5, 0.5])),
        "pool.probabilities.shape",
    ),
    "four-axis probabilities": (
        lambda: uncertainty(
            U.METHOD_MARGIN, probabilities=tensor([[[[0.5, 0.5]]]])
        ),
        "pool.probabilities.shape",
    ),
    "zero-size axis": (
        lambda: uncertainty(
            U.METHOD_MARGIN, probabilities=query_pb2.Tensor(dtype=F64, shape=[0, 2])
        ),
        "pool.probabilities.shape: axis 0 has size 0",
    ),
    "negative axis": (
        lambda: uncertainty(
            U.METHOD_MARGIN, probabilities=query_pb2.Tensor(dtype=F64, shape=[-3, 2])
        ),
        "pool.probabilities.shape: axis 0 has size -3",
    ),
    "huge shape": (
        lambda: uncertainty(
            U.METHOD_MARGIN,
            probabilities=query_pb2.Tensor(dtype=F64, shape=[2**62, 2**62], data=b"x"),
        ),
        "pool.probabilities.data",
    ),
    "one class": (
        lambda: uncertainty(U.METHOD_MARGIN, probabilities=tensor([[1.0], [1.0]])),
        "at least 2 classes",
    ),
    "row does not sum to 1": (
        lambda: uncertainty(U.METHOD_ENTROPY, probabilities=tensor([[0.5, 0.3, 0.1]])),
        "pool.probabilities: row 0 sums to 0.9",
    ),
    "negative probability": (
        lambda: uncertainty(U.METHOD_ENTROPY, probabilities=tensor([[1.2, -0.2]])),
        "pool.probabilities: row 0 holds 1.2 for class 0",
    ),
    "NaN probabilities": (
        lambda: uncertainty(
            U.METHOD_ENTROPY, probabilities=tensor([[0.5, 0.5], [np.nan, 1.0]])
        ),
        "pool.probabilities: row 1 contains NaN",
    ),
    "infinite logits": (
        lambda: query_pb2.RankRequest(
            pool=query_pb2.Pool(logits=tensor([[0.0, np.inf]], F32)),
            uncertainty=U(method=U.METHOD_ENTROPY),
            batch_size=1,
        ),
        "pool.logits: row 0 contains an infinite value",
    ),
    "NaN embeddings": (_nan_embeddings, "pool.embeddings: row 1 contains NaN"),
    "embeddings too large to square": (
        lambda: kcenter(embeddings=tensor([[0.0, 0.0], [1e160, 0.0], [2, 2], [3, 3]])),
        "pool.embeddings: row 1 holds a value beyond 1e+150",
    ),
    "rows differ between pool inputs": (
        lambda: uncertainty(U.METHOD_MARGIN, embeddings=tensor([[0.0], [1.0]])),
        "pool.probabilities has 4 rows but pool.embeddings has 2",
    ),
    "features differ between pool and labeled": (
        lambda: _with(
            kcenter(),
            lambda r: r.labeled.embeddings.CopyFrom(tensor([[0.0, 0.0, 0.0]])),
        ),
        "pool.embeddings has 2 features but labeled.embeddings has 3",
    ),
    "batch size zero": (
        lambda: uncertainty(U.METHOD_MARGIN, batch_size=0),
        "batch_size: got 0",
    ),
    "batch size negative": (
        lambda: kcenter(batch_size=-1),
        "batch_size: got -1",
    ),
    "no strategy": (
        lambda: query_pb2.RankRequest(
            pool=query_pb2.Pool(probabilities=tensor(PROBABILITIES)), batch_size=1
        ),
        "strategy: not set",
    ),
    "method unspecified": (
        lambda: uncertainty(U.METHOD_UNSPECIFIED),
        "uncertainty.method: METHOD_UNSPECIFIED",
    ),
    "unknown method number": (
        lambda: uncertainty(42),
        "uncertainty.method: unknown value 42",
    ),
    "hybrid method unspecified": (
        lambda: query_pb2.RankRequest(
            pool=query_pb2.Pool(probabilities=tensor(PROBABILITIES)),
            hybrid=query_pb2.HybridStrategy(),
            batch_size=1,
        ),
        "hybrid.method: METHOD_UNSPECIFIED",
    ),
    "uncertainty without predictions": (
        lambda: query_pb2.RankRequest(
            pool=query_pb2.Pool(embeddings=tensor(EMBEDDINGS)),
            uncertainty=U(method=U.METHOD_ENTROPY),
            batch_size=1,
        ),
        "pool.probabilities or pool.logits: missing",
    ),
    "kcenter without embeddings": (
        lambda: _with(kcenter(), lambda r: r.pool.ClearField("embeddings")),
        "pool: empty",
    ),
    "kcenter with only probabilities": (
        lambda: _with(
            kcenter(),
            lambda r: (
                r.pool.ClearField("embeddings"),
                r.pool.probabilities.CopyFrom(tensor(PROBABILITIES)),
            ),
        ),
        "pool.embeddings: missing",
    ),
    "validation labels missing": (
        lambda: _with(validation_knn(), lambda r: r.validation.ClearField("labels")),
        "validation.labels: missing",
    ),
    "validation labels out of range": (
        lambda: validation_knn(labels=tensor([0, 2, 1], I64)),
        "validation.labels: row 1 holds class 2",
    ),
    "validation labels negative": (
        lambda: validation_knn(labels=tensor([0, -1, 1], I32)),
        "validation.labels: row 1 holds class -1",
    ),
    "validation labels as floats": (
        lambda: validation_knn(labels=tensor([0.0, 1.0, 1.0])),
        "validation.labels.dtype",
    ),
    "validation rows disagree": (
        lambda: validation_knn(labels=tensor([0, 1], I64)),
        "validation.probabilities has 3 rows but validation.labels has 2",
    ),
    "unknown selection mode": (
        lambda: _with(
            uncertainty(U.METHOD_ENTROPY), lambda r: setattr(r.selection, "mode", 9)
        ),
        "selection.mode: unknown value 9",
    ),
    "zero temperature": (
        lambda: _with(
            uncertainty(U.METHOD_ENTROPY),
            lambda r: setattr(r.selection, "temperature", 0.0),
        ),
        "selection.temperature: got 0.0",
    ),
    "target classes disagree": (
        lambda: _with(
            uncertainty(U.METHOD_ENTROPY),
            lambda r: r.target.probabilities.CopyFrom(tensor([[0.5, 0.5]])),
        ),
        "pool.probabilities has 3 classes but target.probabilities has 2",
    ),
    "n_neighbors zero": (
        lambda: validation_knn(n_neighbors=0),
        "credibility.n_neighbors: got 0",
    ),
    "n_neighbors above the validation size": (
        lambda: validation_knn(n_neighbors=4),
        "n_validation=3",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_input_gets_invalid_argument_naming_the_field(stub, case):
    build, expected = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as raised:
        stub.Rank(build())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in raised.value.details()

    # The server keeps serving.
    response = stub.Rank(uncertainty(U.METHOD_MARGIN, batch_size=1))
    assert list(response.ranked_indices) == [2]
