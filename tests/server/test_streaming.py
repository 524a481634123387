"""RankStream: a pool sent in chunks gets Rank's answer; bad streams get
INVALID_ARGUMENT (or RESOURCE_EXHAUSTED) naming the field."""

import grpc
import numpy as np
import pytest

from alquery.client import AlqueryClient
from alquery.client import streaming as client_streaming
from alquery.client.client import build_request
from alquery.server import streaming as server_streaming
from alquery.v1 import query_pb2

F32, I64 = query_pb2.D_TYPE_FLOAT32, query_pb2.D_TYPE_INT64


@pytest.fixture(scope="module")
def streaming_client(target):
    # Every request goes by RankStream.
    with AlqueryClient(target, timeout=60, stream_threshold_bytes=0) as client:
        yield client


def inputs(seed=0, n_pool=300, n_classes=4, n_features=6):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_pool, n_classes))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {
        "probabilities": probabilities,
        "embeddings": rng.normal(size=(n_pool, n_features)).astype(np.float32),
        "labeled_embeddings": rng.normal(size=(5, n_features)),
        "labeled_labels": rng.integers(n_classes, size=5),
        "validation_probabilities": probabilities[:40],
        "validation_labels": rng.integers(n_classes, size=40),
        "validation_embeddings": rng.normal(size=(40, n_features)),
    }


@pytest.mark.parametrize(
    "strategy",
    [
        "uncertainty.entropy",
        "uncertainty.margin",
        "diversity.kcenter",
        "diversity.kmeans",
        "credibility.validation_knn",
        "hybrid.badge",
    ],
)
def test_streamed_and_unary_answers_are_equal(client, streaming_client, strategy):
    unary = client.rank(strategy, 12, **inputs())
    progress = []
    streamed = streaming_client.rank(
        strategy, 12, progress=lambda *sent: progress.append(sent), **inputs()
    )
    assert streamed.indices.tolist() == unary.indices.tolist()
    np.testing.assert_array_equal(streamed.scores, unary.scores)
    assert streamed.warnings == unary.warnings
    # It really went by the stream: progress ends at the whole payload.
    assert progress and progress[-1][0] == progress[-1][1] > 0


def test_small_chunks_across_several_tensors_give_the_same_answer(client, stub):
    values = inputs(1, n_pool=2_000)
    deferred = {}
    request = build_request("diversity.kcenter", 20, deferred=deferred, **values)
    messages = client_streaming.messages(request, deferred, chunk_bytes=1000)
    response = stub.RankStream(messages).response
    unary = client.rank("diversity.kcenter", 20, **values)
    assert list(response.ranked_indices) == unary.indices.tolist()


def header(request=None, fields=("pool.embeddings",), **embeddings):
    if request is None:
        spec = {"dtype": F32, "shape": [4, 2], **embeddings}
        request = query_pb2.RankRequest(
            pool=query_pb2.Pool(embeddings=query_pb2.Tensor(**spec)),
            diversity=query_pb2.DiversityStrategy(
                method=query_pb2.DiversityStrategy.METHOD_KCENTER
            ),
            batch_size=2,
        )
    return query_pb2.RankStreamRequest(
        header=query_pb2.RankStreamHeader(request=request, streamed_fields=fields)
    )


def chunk(data, field="pool.embeddings"):
    return query_pb2.RankStreamRequest(
        chunk=query_pb2.TensorChunk(field=field, data=data)
    )


GOOD = np.arange(8, dtype="<f4").tobytes()
NAN = np.array([0, 1, np.nan, 3, 4, 5, 6, 7], dtype="<f4").tobytes()
UNSET = query_pb2.RankRequest(
    pool=query_pb2.Pool(embeddings=query_pb2.Tensor(dtype=F32, shape=[4, 2])),
    diversity=query_pb2.DiversityStrategy(
        method=query_pb2.DiversityStrategy.METHOD_KCENTER
    ),
    batch_size=2,
)

MALFORMED = {
    "empty stream": ([], "header:"),
    "chunk first": ([chunk(GOOD)], "header:"),
    "second header": ([header(), chunk(GOOD), header()], "header:"),
    "not streamable": ([header(fields=("pool.foo",))], "header.streamed_fields:"),
    "named twice": (
        [header(fields=("pool.embeddings", "pool.embeddings"))],
        "header.streamed_fields: 'pool.embeddings' is named twice",
    ),
    "not set": (
        [header(UNSET, fields=("pool.embeddings", "pool.probabilities"))],
        "pool.probabilities: named in header.streamed_fields but not set",
    ),
    "data in header": ([header(data=GOOD), chunk(GOOD)], "pool.embeddings.data:"),
    # The reference was ignored and the chunks ranked, where Rank refuses it
    # (FAILED_PRECONDITION here, no --shared-memory-dir) and a tensor not
    # streamed gets this same message.
    "shared memory in header": (
        [
            header(shared_memory=query_pb2.SharedMemoryRef(socket="s")),
            chunk(GOOD),
        ],
        "pool.embeddings.shared_memory: only Rank reads shared memory",
    ),
    "unknown dtype": ([header(dtype=9), chunk(GOOD)], "pool.embeddings.dtype:"),
    "empty axis": ([header(shape=[4, 0])], "pool.embeddings.shape:"),
    "four axes": ([header(shape=[1, 2, 2, 2])], "pool.embeddings.shape:"),
    "no part": (
        [header(), query_pb2.RankStreamRequest(), chunk(GOOD)],
        "part: a message after the header sets neither header nor chunk",
    ),
    "unnamed chunk": ([header(), chunk(GOOD, "labeled.embeddings")], "chunk.field:"),
    "overflow": ([header(), chunk(GOOD), chunk(b"x")], "pool.embeddings.data:"),
    "short": ([header(), chunk(GOOD[:-4])], "pool.embeddings.data:"),
    "no chunks": ([header()], "pool.embeddings.data: the stream ended after 0"),
    "labels dtype for embeddings": (
        [header(dtype=I64, shape=[2, 2]), chunk(GOOD)],
        "pool.embeddings.dtype: D_TYPE_INT64 is not accepted",
    ),
    "NaN": ([header(), chunk(NAN)], "pool.embeddings: row 1 contains NaN"),
    "wrong axes for embeddings": (
        [header(shape=[8]), chunk(GOOD)],
        "pool.embeddings.shape: [8] has 1 axes",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_streams_get_invalid_argument_naming_the_field(stub, case):
    messages, expected = MALFORMED[case]
    with pytest.raises(grpc.RpcError) as raised:
        stub.RankStream(iter(messages))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in raised.value.details()
    # The server keeps serving.
    answer = stub.RankStream(iter([header(), chunk(GOOD)])).response
    assert len(answer.ranked_indices) == 2


def test_a_declared_total_over_the_limit_is_refused_before_allocating(stub):
    # 2**40 float32 values (4 TiB): refused from the header alone.
    with pytest.raises(grpc.RpcError) as raised:
        stub.RankStream(iter([header(shape=[1 << 20, 1 << 20])]))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "header.streamed_fields:" in raised.value.details()
    assert "--max-stream-mib" in raised.value.details()


def test_requests_under_the_threshold_go_by_rank(client):
    progress = []
    client.rank("diversity.kcenter", 3, progress=lambda *s: progress.append(s),
                **inputs())
    assert progress == []


def test_a_message_that_does_not_parse_gets_invalid_argument(channel, stub):
    raw = channel.stream_unary(
        "/alquery.v1.QueryService/RankStream",
        request_serializer=lambda message: message,
        response_deserializer=lambda message: message,
    )
    with pytest.raises(grpc.RpcError) as raised:
        raw(iter([header().SerializeToString(), b"\xff\xff\xff"]), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid alquery.v1.RankStreamRequest" in raised.value.details()


@pytest.mark.parametrize("n_bytes", [1, 127, 128, 16_383, 16_384, 3 << 20])
@pytest.mark.parametrize("field", ["pool.embeddings", "x" * 200])
def test_parse_reads_a_serialized_chunk_as_a_view(n_bytes, field):
    data = np.random.default_rng(n_bytes).bytes(n_bytes)
    raw = chunk(data, field).SerializeToString()
    parsed = server_streaming.parse(raw)
    assert isinstance(parsed, server_streaming.RawChunk)
    assert parsed.field == field
    assert parsed.data.obj is raw and parsed.data.tobytes() == data


def _field(number, payload):
    # A length-delimited field: tag, length (one byte here), payload.
    return bytes([number << 3 | 2, len(payload)]) + payload


OTHER_LAYOUTS = {
    # Protobuf accepts these; the fast reader leaves them to protobuf.
    "data before field": _field(
        2, _field(2, GOOD) + _field(1, b"pool.embeddings")
    ),
    "an unknown field after": _field(
        2, _field(1, b"pool.embeddings") + _field(2, GOOD)
    ) + b"\x78\x01",
    "the field twice, last wins": _field(
        2, _field(1, b"labeled.labels") + _field(1, b"pool.embeddings")
        + _field(2, GOOD)
    ),
}


@pytest.mark.parametrize("layout", OTHER_LAYOUTS)
def test_chunks_in_other_layouts_are_parsed_by_protobuf(channel, layout):
    raw = OTHER_LAYOUTS[layout]
    parsed = server_streaming.parse(raw)
    assert isinstance(parsed, query_pb2.RankStreamRequest)
    assert parsed.chunk.field == "pool.embeddings" and parsed.chunk.data == GOOD
    # Over the wire they give the answer of the usual layout.
    call = channel.stream_unary(
        "/alquery.v1.QueryService/RankStream",
        request_serializer=lambda message: message,
        response_deserializer=query_pb2.RankStreamResponse.FromString,
    )
    usual = call(iter([header().SerializeToString(), chunk(GOOD).SerializeToString()]))
    other = call(iter([header().SerializeToString(), raw]))
    assert other.response == usual.response
