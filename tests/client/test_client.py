"""The numpy-friendly Python client against a real server."""

import grpc
import numpy as np
import pytest

from alquery.client import AlqueryClient, AlqueryError, strategy_names
from alquery.client.client import build_request
from alquery.client.results import rank_result
from alquery.server import app
from alquery.v1 import query_pb2


def test_rank_returns_numpy_arrays(client):
    result = client.rank(
        "uncertainty.entropy", 2, probabilities=np.array([[0.5, 0.5], [0.9, 0.1]])
    )
    assert result.indices.dtype == np.int64 and result.indices.tolist() == [0, 1]
    assert result.scores.dtype == np.float64
    np.testing.assert_allclose(result.scores[0], np.log(2))
    assert result.strategy == "uncertainty.entropy"


def test_scores_can_be_left_out(client):
    result = client.rank(
        "uncertainty.margin", 1, probabilities=[[0.5, 0.5]], return_scores=False
    )
    assert result.indices.tolist() == [0] and result.scores is None


def test_params_accept_numbers_and_strings(client):
    common = dict(
        embeddings=[[0.4], [9.0], [5.4]],
        validation_logits=[[2.0, 0.0], [1.0, 0.0], [0.0, 0.0]],
        validation_labels=[0, 0, 1],
        validation_embeddings=[[0.0], [1.0], [10.0]],
    )
    as_int = client.rank(
        "credibility.validation_knn", 3, params={"n_neighbors": 1}, **common
    )
    as_text = client.rank(
        "credibility.validation_knn", 3, params={"n_neighbors": "1"}, **common
    )
    assert as_int.indices.tolist() == as_text.indices.tolist() == [1, 2, 0]


def test_probabilities_and_logits_together_are_refused(client):
    with pytest.raises(AlqueryError, match="pool: give probabilities or logits"):
        client.rank(
            "uncertainty.margin", 1, probabilities=[[0.5, 0.5]], logits=[[0, 0]]
        )


def test_bad_param_value_is_refused_naming_it(client):
    with pytest.raises(AlqueryError, match="params: n_neighbors='many'"):
        client.rank(
            "credibility.validation_knn",
            1,
            embeddings=[[0.0]],
            params={"n_neighbors": "many"},
        )


def test_unknown_enum_name_is_refused_listing_the_valid_ones(client):
    with pytest.raises(AlqueryError, match="nonconformity='bogus'.*expected one of"):
        client.rank(
            "credibility.conformal",
            1,
            probabilities=[[0.5, 0.5]],
            params={"nonconformity": "bogus"},
        )


def test_strategy_names_come_from_the_proto():
    names = strategy_names()
    assert "uncertainty.least_confidence" in names
    assert not any(name.endswith("unspecified") for name in names)


@pytest.mark.parametrize(
    "name",
    ["uncertainty.unspecified", "uncertainty.nonsense", "nofamily.margin",
     "uncertainty", "uncertainty."],
)
def test_unknown_strategy_is_refused_before_sending(name):
    with pytest.raises(AlqueryError) as raised:
        build_request(name, 1, probabilities=[[0.5, 0.5]])
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details.startswith("strategy: unknown")
    assert "uncertainty.margin" in raised.value.details


def test_rank_result_decodes_every_repeated_field():
    response = query_pb2.RankResponse(
        ranked_indices=[4, 0, 2], scores=[0.5, 0.25, 0.125],
        strategy="credibility.conformal", warnings=["clamped"],
    )
    response.extras["confidence"].values.extend([0.9, 0.8, 0.7])
    result = rank_result(
        query_pb2.RankResponse.FromString(response.SerializeToString()),
        omit_scores=False,
    )
    assert result.indices.dtype == np.int64 and result.indices.tolist() == [4, 0, 2]
    assert result.scores.dtype == np.float64
    assert result.scores.tolist() == [0.5, 0.25, 0.125]
    assert result.extras["confidence"].tolist() == [0.9, 0.8, 0.7]
    assert result.warnings == ("clamped",)
    empty = rank_result(query_pb2.RankResponse(), omit_scores=True)
    assert empty.indices.shape == (0,) and empty.scores is None


def test_strategies_lists_the_servers_offer(client):
    listed = {item["name"]: item for item in client.strategies()}
    assert listed["uncertainty.margin"]["higher_first"] is False
    assert (
        listed["credibility.validation_knn"]["parameters"][0]["name"] == "n_neighbors"
    )


def test_too_large_request_explains_the_limit():
    running = app.start(app.ServerConfig(port=0, metrics_port=None, max_message_mib=1))
    try:
        # One message (Rank) whatever its size; streams have their own limit.
        with AlqueryClient(
            f"127.0.0.1:{running.port}", timeout=30, stream_threshold_bytes=1 << 62
        ) as client:
            with pytest.raises(AlqueryError) as raised:
                client.rank(
                    "uncertainty.margin", 1, probabilities=np.full((70_000, 2), 0.5)
                )
        assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-message-mib" in raised.value.details
    finally:
        running.stop(grace_seconds=1)


@pytest.mark.parametrize(
    "batch_size, seed, field",
    [
        (2.5, None, "batch_size"),
        ("3", None, "batch_size"),
        (2**63, None, "batch_size"),
        (1, -1, "seed"),
        (1, 2**64, "seed"),
    ],
)
def test_bad_scalars_are_refused_by_the_client(client, batch_size, seed, field):
    with pytest.raises(AlqueryError) as raised:
        client.rank(
            "uncertainty.margin", batch_size, probabilities=[[0.5, 0.5]], seed=seed
        )
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details.startswith(field)


def test_uint64_labels_beyond_int64_are_refused(client):
    with pytest.raises(
        AlqueryError, match="validation.labels: holds 9223372036854775808"
    ):
        client.rank(
            "credibility.validation_knn",
            1,
            embeddings=[[0.0]],
            validation_labels=np.array([2**63], dtype=np.uint64),
        )


def test_an_answer_over_the_message_limit_names_batch_size():
    running = app.start(app.ServerConfig(port=0, metrics_port=None, max_message_mib=1))
    try:
        probabilities = np.full((100_000, 2), 0.5, dtype=np.float32)  # 0.8 MB
        with AlqueryClient(f"127.0.0.1:{running.port}", timeout=60) as client:
            with pytest.raises(AlqueryError) as raised:
                client.rank("uncertainty.margin", 100_000, probabilities=probabilities)
            assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert raised.value.details.startswith("batch_size: the answer")
            # Without scores the same answer fits.
            result = client.rank(
                "uncertainty.margin",
                100_000,
                probabilities=probabilities,
                return_scores=False,
            )
            assert len(result.indices) == 100_000
    finally:
        running.stop(grace_seconds=1)


def test_unknown_selection_mode_is_refused_before_sending(client):
    with pytest.raises(AlqueryError, match="selection: unknown mode 'gumbel'"):
        client.rank(
            "uncertainty.margin", 1, probabilities=[[0.5, 0.5]], selection="gumbel"
        )


def test_a_bad_temperature_gets_the_servers_refusal(client):
    with pytest.raises(AlqueryError, match="temperature") as raised:
        client.rank(
            "uncertainty.margin",
            1,
            probabilities=[[0.5, 0.5]],
            selection="power",
            temperature=-1.0,
        )
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
