"""The field fault cases (tests/cases/*.json), each run against a real server.

Each case names a strategy with a descriptive method name; ``ALIASES`` maps it
to ours. A case whose strategy this server does not offer yet checks its input
rule with a stand-in from ``STAND_INS``, and switches to its own strategy by
itself once the proto has it.
"""

import json
import pathlib

import grpc
import numpy as np
import pytest

from alquery.client import AlqueryError
from alquery.v1 import query_pb2
from conftest import tensor

CASES = sorted(pathlib.Path(__file__).parent.joinpath("cases").glob("case-*.json"))
ALIASES = {
    "diversity.kcenter_greedy": "diversity.kcenter",
    "diversity.ranked_batch": "hybrid.ranked_batch",
}
STAND_INS = {
    "diversity.kmeans": "diversity.kcenter",  # issue 3 adds k-means
    "hybrid.ranked_batch": "diversity.kcenter",  # issue 3 adds ranked batch
}
ROLES = {
    "probabilities": "probabilities",
    "logits": "logits",
    "embeddings": "embeddings",
    "labelled_embeddings": "labeled_embeddings",
}
SPECIAL = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def load(path):
    return json.loads(path.read_text())


def load_case(stem):
    return load(pathlib.Path(__file__).parent / "cases" / f"{stem}.json")


def our_strategy(client, name):
    """Our name for the case's strategy, or its stand-in while the server
    does not offer it yet."""
    ours = ALIASES.get(name, name)
    offered = {item["name"] for item in client.strategies()}
    return ours if ours in offered else STAND_INS[ours]


def decode_values(values):
    if isinstance(values, list):
        return [decode_values(v) for v in values]
    return SPECIAL.get(values, values) if isinstance(values, str) else values


def inputs_of(case, dtype=None):
    inputs = {}
    for role, values in case["inputs"].items():
        if role not in ROLES:
            continue
        values = decode_values(values)
        if role == "probabilities" and case["inputs"].get("input_type") == "LOGITS":
            role = "logits"
        inputs[ROLES[role]] = np.asarray(values, dtype=dtype) if dtype else values
    return inputs


def rank(client, case, dtype=None):
    return client.rank(
        our_strategy(client, case["strategy"]),
        case["batch_size"],
        **inputs_of(case, dtype),
    )


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_case(client, path):
    case = load(path)
    expected = case["expected"]
    if "error" in expected:
        with pytest.raises(AlqueryError) as raised:
            rank(client, case)
        assert raised.value.code.name == expected["error"]
        for words in expected["message_must_mention"]:
            assert words in raised.value.details
    else:
        result = rank(client, case)
        assert result.indices.tolist() == expected["indices"]
        if "scores" in expected:
            # The case lists scores by pool position; ours follow the ranking.
            by_position = np.asarray(expected["scores"])
            np.testing.assert_allclose(
                result.scores, by_position[result.indices], atol=1e-4
            )

    # Whatever the case did, the server answers the next valid request.
    again = client.rank("uncertainty.margin", 1, probabilities=[[0.6, 0.4], [0.5, 0.5]])
    assert again.indices.tolist() == [1]


def test_case_03_clamped_batch_carries_a_warning(client):
    result = rank(client, load_case("case-03"))
    assert result.warnings and "n_pool=3" in result.warnings[0]


def test_case_04_negative_batch_size_is_refused_too(client):
    case = load_case("case-04")
    case["batch_size"] = -1
    with pytest.raises(AlqueryError) as raised:
        rank(client, case)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch_size" in raised.value.details


def test_case_06_float32_softmax_rows_are_accepted(client):
    thirds = np.full((1, 3), 0.33333334, dtype=np.float32)
    assert client.rank(
        "uncertainty.entropy", 1, probabilities=thirds
    ).indices.tolist() == [0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_case_09_is_identical_every_time_in_either_precision(client, dtype):
    case = load_case("case-09")
    answers = {tuple(rank(client, case, dtype).indices) for _ in range(20)}
    assert answers == {tuple(case["expected"]["indices"])}


def test_case_10_unknown_strategy_name_is_refused_naming_strategy(client):
    with pytest.raises(AlqueryError) as raised:
        client.rank("uncertainty.entrophy", 1, probabilities=[[0.5, 0.5]])
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "strategy" in raised.value.details
    assert "uncertainty.entropy" in raised.value.details  # the valid names


def test_case_10_flat_values_that_do_not_fill_the_shape_are_refused(stub):
    # Six values declared as three rows of four classes.
    flat = tensor([0.5, 0.5, 1.0, 0.2, 0.3, 0.5], shape=[3, 4])
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(probabilities=flat),
        uncertainty=query_pb2.UncertaintyStrategy(
            method=query_pb2.UncertaintyStrategy.METHOD_MARGIN
        ),
        batch_size=1,
    )
    with pytest.raises(grpc.RpcError) as raised:
        stub.Rank(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pool.probabilities.data" in raised.value.details()
