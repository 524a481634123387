"""Models on streamed pools (RankStream): Rank's answers, run while chunks
arrive; bad input gets the status and field Rank gives."""

import threading

import grpc
import numpy as np
import pytest
from onnx import TensorProto

from alquery.client import AlqueryClient, OnnxModel
from alquery.client import streaming as client_streaming
from alquery.client.client import build_request
from alquery.v1 import query_pb2
from onnx_models import mlp, torch_network

RNG = np.random.default_rng(11)
POOL = RNG.normal(size=(203, 6)).astype(np.float32)
LABELED = RNG.normal(size=(7, 6)).astype(np.float32)
VALIDATION = RNG.normal(size=(31, 6))
VALIDATION_LABELS = RNG.integers(3, size=31)


@pytest.fixture(scope="module")
def streaming_client(target):
    # Every request goes by RankStream, models included.
    with AlqueryClient(target, timeout=60, stream_threshold_bytes=0) as client:
        yield client


def assert_same(streamed, unary):
    assert streamed.indices.tolist() == unary.indices.tolist()
    np.testing.assert_array_equal(streamed.scores, unary.scores)
    assert streamed.warnings == unary.warnings


CASES = {
    "one model": (
        "uncertainty.entropy", OnnxModel(mlp(6, 8, 3), output_name="logits"), {}
    ),
    "float64 model on float32 rows": (
        "uncertainty.margin",
        OnnxModel(mlp(6, 8, 3, dtype=TensorProto.DOUBLE), output_name="logits"),
        {},
    ),
    "committee": (
        "uncertainty.vote_entropy",
        [OnnxModel(mlp(6, 8, 3, seed=s), output_name="logits") for s in range(3)],
        {},
    ),
    "embeddings output": (
        "hybrid.badge",
        OnnxModel(mlp(6, 8, 3), output_name="logits", embeddings_output="hidden"),
        {"labeled_embeddings": LABELED},
    ),
    "monte-carlo dropout": (
        "uncertainty.bald",
        OnnxModel(torch_network(dropout=True), output_name="logits", mc_passes=5),
        {"seed": 3},
    ),
    "fixed batch": (
        "uncertainty.entropy",
        OnnxModel(torch_network(fixed_batch=4), output_name="logits"),
        {},
    ),
    "validation scored": (
        "credibility.validation_knn",
        OnnxModel(mlp(6, 8, 3), output_name="logits"),
        {
            "score_validation": True,
            "validation_embeddings": VALIDATION,
            "validation_labels": VALIDATION_LABELS,
        },
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_streamed_pool_with_a_model_gets_ranks_answer(
    client, streaming_client, case
):
    strategy, model, extra = CASES[case]
    unary = client.rank(strategy, 9, model=model, embeddings=POOL, **extra)
    progress = []
    streamed = streaming_client.rank(
        strategy, 9, model=model, embeddings=POOL,
        progress=lambda *sent: progress.append(sent), **extra,
    )
    assert_same(streamed, unary)
    assert progress and progress[-1][0] == progress[-1][1] > 0


def stream_request(model: bytes, pool=POOL, strategy="uncertainty.entropy"):
    deferred = {}
    request = build_request(strategy, 5, embeddings=pool, deferred=deferred)
    request.inference.models.add(onnx=model, output_name="logits")
    return request, deferred


@pytest.mark.parametrize("chunk_bytes", [24, 100, 1000])
def test_rows_split_across_chunks_run_as_they_arrive(client, stub, chunk_bytes):
    # A fixed batch of 4 rows runs in many small steps, each waiting for
    # rows that chunks of a few rows bring.
    model = torch_network(fixed_batch=4)
    request, deferred = stream_request(model)
    messages = client_streaming.messages(request, deferred, chunk_bytes=chunk_bytes)
    streamed = stub.RankStream(messages, timeout=60).response
    unary = client.rank(
        "uncertainty.entropy", 5, embeddings=POOL,
        model=OnnxModel(model, output_name="logits"),
    )
    assert list(streamed.ranked_indices) == unary.indices.tolist()
    np.testing.assert_array_equal(streamed.scores, unary.scores)


def test_a_row_that_is_not_finite_is_named_as_rank_names_it(client, stub):
    pool = POOL.copy()
    pool[150, 2] = np.nan
    request, deferred = stream_request(mlp(6, 8, 3), pool)
    with pytest.raises(grpc.RpcError) as raised:
        stub.RankStream(client_streaming.messages(request, deferred, chunk_bytes=96))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == (
        "pool.embeddings: row 150 contains NaN; every value must be finite"
    )
    # The server keeps serving.
    request, deferred = stream_request(mlp(6, 8, 3))
    answer = stub.RankStream(client_streaming.messages(request, deferred))
    assert len(answer.response.ranked_indices) == 5


def test_an_unknown_hash_ends_the_stream_with_not_found(stub):
    request, deferred = stream_request(b"")
    request.inference.models[0].sha256 = "ab" * 32
    more = threading.Event()

    def messages():
        yield from client_streaming.messages(request, deferred, chunk_bytes=96)
        # Never reached: the server answers from the header, mid-stream.
        more.wait(30)

    with pytest.raises(grpc.RpcError) as raised:
        stub.RankStream(messages(), timeout=60)
    more.set()
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "inference.models[0].sha256:" in raised.value.details()


def test_a_deadline_mid_stream_ends_the_model_run(stub):
    request, deferred = stream_request(torch_network(fixed_batch=4))
    release = threading.Event()

    def messages():
        encoded = client_streaming.messages(request, deferred, chunk_bytes=96)
        yield next(encoded)
        yield next(encoded)
        release.wait(30)  # the rest never comes before the deadline

    with pytest.raises(grpc.RpcError) as raised:
        stub.RankStream(messages(), timeout=1)
    release.set()
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    request, deferred = stream_request(mlp(6, 8, 3))
    answer = stub.RankStream(client_streaming.messages(request, deferred))
    assert len(answer.response.ranked_indices) == 5
