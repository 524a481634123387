"""The credibility strategies over a real loopback connection."""

import grpc
import numpy as np
import pytest

from alquery.v1 import query_pb2
from conftest import tensor

C = query_pb2.CredibilityStrategy
I64 = query_pb2.D_TYPE_INT64

# Pool of 6 and validation of 5 on a line, in three groups at 0, 10, 20
# (the same data as test_credibility.py's weak_clusters tests); labeled set
# of 4 at 0, 1 (class 0) and 10, 11 (class 1).
POOL_PROBABILITIES = [
    [0.6, 0.4],
    [0.7, 0.3],
    [0.8, 0.2],
    [0.9, 0.1],
    [0.5, 0.5],
    [0.6, 0.4],
]
POOL_EMBEDDINGS = [[0.05], [0.2], [10.05], [10.2], [20.1], [20.2]]
VALIDATION_PROBABILITIES = [[0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.5, 0.5], [0.2, 0.8]]
VALIDATION_LABELS = [0, 0, 1, 1, 0]
VALIDATION_EMBEDDINGS = [[0.0], [0.1], [10.0], [10.1], [20.0]]
LABELED_EMBEDDINGS = [[0.0], [1.0], [10.0], [11.0]]
LABELED_LABELS = [0, 0, 1, 1]


def request(method, batch_size=3, labels=VALIDATION_LABELS, **params):
    return query_pb2.RankRequest(
        pool=query_pb2.Pool(
            probabilities=tensor(POOL_PROBABILITIES),
            embeddings=tensor(POOL_EMBEDDINGS),
        ),
        labeled=query_pb2.LabeledSet(
            embeddings=tensor(LABELED_EMBEDDINGS),
            labels=tensor(LABELED_LABELS, I64),
        ),
        validation=query_pb2.ValidationSet(
            probabilities=tensor(VALIDATION_PROBABILITIES),
            labels=tensor(labels, I64),
            embeddings=tensor(VALIDATION_EMBEDDINGS),
        ),
        credibility=C(method=method, **params),
        batch_size=batch_size,
    )


def test_weak_clusters_over_the_wire(stub):
    # See test_credibility.py: quotas 2.005, 0.864, 0.131 for 3 seats.
    response = stub.Rank(request(C.METHOD_WEAK_CLUSTERS, n_clusters=3))
    assert list(response.ranked_indices) == [4, 5, 2]
    np.testing.assert_allclose(
        response.scores, [1.609438, 1.609438, 0.693147], atol=1e-6
    )
    assert sorted(response.extras) == ["cluster", "entropy"]
    assert len(response.extras["entropy"].values) == 3


def test_class_weakness_over_the_wire(stub):
    # Validation predictions 0, 0, 0, 0, 1 (argmax, ties to class 0) against
    # labels 0, 0, 1, 1, 0: class 0 predicted 4 times, 2 wrong -> 0.5;
    # class 1 predicted once, wrong -> 1.0. Every pool sample is predicted
    # class 0 except pool 4 (a tie, also class 0): all score 0.5, ordered by
    # entropy: 4, then 0 and 5 (tied, lower first), then 1.
    response = stub.Rank(request(C.METHOD_CLASS_WEAKNESS, batch_size=4))
    assert list(response.ranked_indices) == [4, 0, 5, 1]
    assert list(response.scores) == [0.5] * 4


def test_conformal_over_the_wire(stub):
    # Mondrian: class 0 calibrates on 1 - p_y = {0.1, 0.1, 0.8}, class 1 on
    # {0.5, 0.5}. Pool 0 (0.6, 0.4): p_0 = (1 + 1) / 4, p_1 = (0 + 1) / 3;
    # pools 1, 2, 5 likewise 0.5 and 1/3. Pool 3 (0.9, 0.1): p_0 = 4/4.
    # Pool 4 (0.5, 0.5): p_0 = 2/4, p_1 = (2 + 1) / 3.
    response = stub.Rank(
        request(C.METHOD_CONFORMAL, batch_size=6, class_conditional=True)
    )
    assert list(response.ranked_indices) == [0, 1, 2, 5, 3, 4]
    np.testing.assert_allclose(response.scores, [0.5, 0.5, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(
        response.extras["confidence"].values, [2 / 3] * 5 + [0.5]
    )


def test_trust_score_over_the_wire(stub):
    # Every pool sample is predicted class 0 (pool 4 ties, lowest class).
    # 10.05: 0.05 / 9.05; 10.2: 0.2 / 9.2; 20.1: 9.1 / 19.1; the others
    # are far above 1.
    response = stub.Rank(request(C.METHOD_TRUST_SCORE))
    assert list(response.ranked_indices) == [2, 3, 4]
    np.testing.assert_allclose(
        response.scores, [0.05 / 9.05, 0.2 / 9.2, 9.1 / 19.1], rtol=1e-9
    )


def test_gradient_alignment_over_the_wire(stub):
    # G_val = sum_j (p_j - e_y_j) h_j = (-0.01 + 5 + 5.05 - 16) (1, -1)
    # = (-5.96, 5.96). Every pool sample is predicted class 0, so
    # p - e_0 = (-p_1, p_1) and score = 11.92 * p_1 * h.
    response = stub.Rank(request(C.METHOD_GRADIENT_ALIGNMENT))
    assert list(response.ranked_indices) == [4, 5, 2]
    np.testing.assert_allclose(
        response.scores,
        [11.92 * 0.5 * 20.1, 11.92 * 0.4 * 20.2, 11.92 * 0.2 * 10.05],
        rtol=1e-9,
    )


def test_randomized_conformal_is_reproducible_from_the_seed(stub):
    def ranked(seed):
        built = request(
            C.METHOD_CONFORMAL,
            batch_size=6,
            nonconformity=C.NONCONFORMITY_APS_RANDOMIZED,
        )
        built.seed = seed
        response = stub.Rank(built)
        return list(response.ranked_indices), list(response.scores)

    assert ranked(3) == ranked(3)
    assert len(set(ranked(3)[0])) == 6


def test_trust_score_needs_two_labeled_classes(stub):
    one_class = request(C.METHOD_TRUST_SCORE)
    one_class.labeled.labels.CopyFrom(tensor([1, 1, 1, 1], I64))
    with pytest.raises(grpc.RpcError) as raised:
        stub.Rank(one_class)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "labeled.labels: holds only class 1" in raised.value.details()


def test_trust_score_needs_labeled_labels(stub):
    unlabeled = request(C.METHOD_TRUST_SCORE)
    unlabeled.labeled.ClearField("labels")
    with pytest.raises(grpc.RpcError) as raised:
        stub.Rank(unlabeled)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "labeled.labels: missing" in raised.value.details()


def _without_validation_labels(method):
    built = request(method)
    built.validation.ClearField("labels")
    return built


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(
            lambda method: _without_validation_labels(method),
            "validation.labels: missing",
            id="labels missing",
        ),
        pytest.param(
            lambda method: request(method, labels=[0, 0, 2, 1, 0]),
            "validation.labels: row 2 holds class 2",
            id="label out of range",
        ),
    ],
)
@pytest.mark.parametrize(
    "method",
    [
        C.METHOD_WEAK_CLUSTERS,
        C.METHOD_CLASS_WEAKNESS,
        C.METHOD_CONFORMAL,
        C.METHOD_GRADIENT_ALIGNMENT,
    ],
)
def test_bad_validation_set_gets_invalid_argument(stub, method, build, expected):
    with pytest.raises(grpc.RpcError) as raised:
        stub.Rank(build(method))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in raised.value.details()


@pytest.mark.parametrize(
    ("method", "params", "expected"),
    [
        (C.METHOD_WEAK_CLUSTERS, {"n_clusters": 0}, "credibility.n_clusters: got 0"),
        (
            C.METHOD_WEAK_CLUSTERS,
            {"n_clusters": 12},
            "n_validation + n_pool = 11",
        ),
        (C.METHOD_WEAK_CLUSTERS, {"weakness": 7}, "credibility.weakness: unknown"),
        (
            C.METHOD_CLASS_WEAKNESS,
            {"class_error": 9},
            "credibility.class_error: unknown value 9",
        ),
        (
            C.METHOD_CLASS_WEAKNESS,
            {"missing_class_weakness": 1.5},
            "credibility.missing_class_weakness: got 1.5",
        ),
        (
            C.METHOD_CONFORMAL,
            {"nonconformity": 8},
            "credibility.nonconformity: unknown value 8",
        ),
        (
            C.METHOD_TRUST_SCORE,
            {"density_alpha": 1.0},
            "credibility.density_alpha: got 1.0",
        ),
        (
            C.METHOD_TRUST_SCORE,
            {"density_alpha": -0.1},
            "credibility.density_alpha: got -0.1",
        ),
        (
            C.METHOD_TRUST_SCORE,
            {"density_alpha": 0.5, "n_neighbors": 0},
            "credibility.n_neighbors: got 0",
        ),
    ],
)
def test_bad_parameter_gets_invalid_argument(stub, method, params, expected):
    with pytest.raises(grpc.RpcError) as raised:
        stub.Rank(request(method, **params))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in raised.value.details()

    # The server keeps serving.
    assert len(stub.Rank(request(method)).ranked_indices) == 3
