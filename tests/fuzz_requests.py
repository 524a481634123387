"""Hypothesis strategies for random and adversarial alquery requests.

Shared by the bounded CI campaign (tests/test_fuzz.py) and the long one
(bench/fuzz_campaign.py). Each RPC gets a strategy that draws a well-formed
request and breaks up to a few of its fields: unknown dtype and enum
numbers, wrong byte lengths, negative and huge shapes and sizes, NaN and
infinities, models that are not ONNX or are broken inside, streams out of
order, and raw bytes that are not a message at all.
"""

from __future__ import annotations

import functools
import hashlib

import grpc
import numpy as np
import onnx
from hypothesis import strategies as st

from alquery.v1 import query_pb2
from onnx_models import mlp

SERVICE = "/alquery.v1.QueryService/"
DOCUMENTED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
    }
)
"""Every answer a request may get; NOT_FOUND only names an unknown model
hash. UNKNOWN and INTERNAL never."""

INT64 = st.one_of(
    st.integers(-3, 8),
    st.sampled_from([2**31, 2**62, 2**63 - 1, -(2**63)]),
)
FLOATS = st.one_of(
    st.floats(0, 1),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, 1.0, float("nan"), float("inf"), -1.0]),
)
FIELDS = (
    ("pool", "probabilities"),
    ("pool", "logits"),
    ("pool", "embeddings"),
    ("labeled", "embeddings"),
    ("labeled", "labels"),
    ("validation", "probabilities"),
    ("validation", "logits"),
    ("validation", "labels"),
    ("validation", "embeddings"),
)
METHODS = {
    "uncertainty": st.sampled_from([1, 2, 3]),
    "diversity": st.just(1),
    "credibility": st.just(1),
    "hybrid": st.sampled_from([0, 1, 5]),
}
"""Method numbers per family: valid ones, and hybrid's 0 (unspecified)."""
STREAMABLE = tuple(f"{group}.{name}" for group, name in FIELDS) + (
    "target.probabilities",
    "target.logits",
)


def dense(array: np.ndarray) -> query_pb2.Tensor:
    """The wire tensor of a float32, float64 or int64 array."""
    dtype = {
        np.dtype(np.float32): query_pb2.D_TYPE_FLOAT32,
        np.dtype(np.float64): query_pb2.D_TYPE_FLOAT64,
    }.get(array.dtype, query_pb2.D_TYPE_INT64)
    if dtype == query_pb2.D_TYPE_INT64:
        array = array.astype(np.int64)
    return query_pb2.Tensor(dtype=dtype, shape=array.shape, data=array.tobytes())


@st.composite
def tensors(draw):
    """A tensor that is well-formed, nearly so, or nonsense."""
    dtype = draw(st.one_of(st.integers(0, 4), st.integers(-5, 100)))
    if draw(st.booleans()):
        shape = draw(st.lists(INT64, max_size=5))
        data = draw(st.binary(max_size=128))
        return query_pb2.Tensor(dtype=dtype, shape=shape, data=data)
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    count = int(np.prod(shape))
    if dtype in (query_pb2.D_TYPE_INT32, query_pb2.D_TYPE_INT64):
        values = draw(st.lists(st.integers(-3, 5), min_size=count, max_size=count))
        array = np.asarray(values, dtype="<i4" if dtype == 3 else "<i8")
    else:
        values = draw(st.lists(FLOATS, min_size=count, max_size=count))
        array = np.asarray(values, dtype="<f4" if dtype == 1 else "<f8")
    data = array.tobytes()
    cut = draw(st.integers(-2, 2))
    if cut > 0:
        data = data[:-cut]
    elif cut < 0:
        data = data + b"\0" * -cut
    return query_pb2.Tensor(dtype=dtype, shape=shape, data=data)


@st.composite
def valid_requests(draw, families=("uncertainty", "diversity", "credibility")):
    """A request that every rule accepts, for a random strategy."""
    n_pool, n_classes = draw(st.integers(1, 6)), draw(st.integers(2, 4))
    n_features, n_validation = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    float_type = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def probabilities(n):
        return rng.dirichlet(np.ones(n_classes), size=n).astype(float_type)

    def embeddings(n):
        return rng.normal(size=(n, n_features)).astype(float_type)

    request = query_pb2.RankRequest(batch_size=draw(st.integers(1, 8)))
    request.pool.probabilities.CopyFrom(dense(probabilities(n_pool)))
    request.pool.embeddings.CopyFrom(dense(embeddings(n_pool)))
    if draw(st.booleans()):
        request.labeled.embeddings.CopyFrom(dense(embeddings(2)))
    request.validation.probabilities.CopyFrom(dense(probabilities(n_validation)))
    request.validation.labels.CopyFrom(
        dense(rng.integers(0, n_classes, size=n_validation))
    )
    request.validation.embeddings.CopyFrom(dense(embeddings(n_validation)))
    family = draw(st.sampled_from(families))
    getattr(request, family).method = draw(METHODS[family])
    return request


@st.composite
def rank_requests(draw):
    """A valid request with up to three fields broken at random."""
    request = draw(valid_requests())
    for _ in range(draw(st.integers(0, 3))):
        mutation = draw(
            st.sampled_from(["tensor", "clear", "batch", "strategy", "seed", "k"])
        )
        if mutation == "tensor":
            group, name = draw(st.sampled_from(FIELDS))
            getattr(getattr(request, group), name).CopyFrom(draw(tensors()))
        elif mutation == "clear":
            group, name = draw(st.sampled_from(FIELDS))
            getattr(request, group).ClearField(name)
        elif mutation == "batch":
            request.batch_size = draw(INT64)
        elif mutation == "strategy":
            _break_strategy(draw, request)
        elif mutation == "seed":
            request.seed = draw(st.integers(0, 2**64 - 1))
        else:
            request.credibility.n_neighbors = draw(INT64)
    request.omit_scores = draw(st.booleans())
    return request


def _break_strategy(draw, request: query_pb2.RankRequest) -> None:
    families = [None, "uncertainty", "diversity", "credibility", "hybrid"]
    family = draw(st.sampled_from(families))
    if family is None:
        request.ClearField("strategy")
        return
    message = getattr(request, family)
    message.SetInParent()  # chosen even when every field is left at 0
    message.method = draw(st.one_of(METHODS[family], st.integers(-2, 6)))


@functools.lru_cache(maxsize=None)
def model_bytes(n_features: int, n_classes: int) -> bytes:
    """A valid two-layer perceptron reading ``n_features`` columns."""
    return mlp(n_features, 4, n_classes)


OP_TYPES = ("Gemm", "Relu", "MatMul", "Add", "Softmax", "Reshape", "Nope", "")


@st.composite
def broken_models(draw):
    """ONNX bytes that are random, cut short, bit-flipped or broken inside."""
    data = model_bytes(draw(st.integers(1, 3)), draw(st.integers(2, 4)))
    kind = draw(st.sampled_from(["random", "cut", "flip", "graph", "valid"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    if kind == "cut":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flip":
        flipped = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            flipped[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(flipped)
    if kind == "graph":
        return _break_graph(draw, data)
    return data


def _break_graph(draw, data: bytes) -> bytes:
    """Parse a valid model and break one thing the parser cannot see."""
    model = onnx.ModelProto.FromString(data)
    graph = model.graph
    change = draw(
        st.sampled_from(["op", "dims", "dtype", "opset", "input", "ir", "dim"])
    )
    if change == "op":
        node = graph.node[draw(st.integers(0, len(graph.node) - 1))]
        node.op_type = draw(st.sampled_from(OP_TYPES))
    elif change == "dims":
        weight = graph.initializer[draw(st.integers(0, len(graph.initializer) - 1))]
        weight.dims[0] = draw(st.sampled_from([0, 1, 7, 2**31, -1]))
    elif change == "dtype":
        weight = graph.initializer[draw(st.integers(0, len(graph.initializer) - 1))]
        weight.data_type = draw(st.integers(0, 20))
    elif change == "opset":
        model.opset_import[0].version = draw(st.sampled_from([0, 1, 6, 99, -1]))
    elif change == "input":
        node = graph.node[draw(st.integers(0, len(graph.node) - 1))]
        node.input[0] = draw(st.sampled_from(["x", "hidden", "logits", "ghost"]))
    elif change == "ir":
        model.ir_version = draw(st.sampled_from([0, 1, 3, 99]))
    else:
        shape = graph.input[0].type.tensor_type.shape
        shape.dim[-1].dim_value = draw(st.sampled_from([0, 1, 5, 2**40]))
    return model.SerializeToString()


@st.composite
def model_specs(draw):
    """A ``Model`` naming its source by bytes or by a hash, with any binding."""
    spec = query_pb2.Model()
    if draw(st.booleans()):
        spec.onnx = draw(broken_models())
    else:
        data = model_bytes(draw(st.integers(1, 3)), draw(st.integers(2, 4)))
        spec.sha256 = draw(
            st.one_of(
                st.just(hashlib.sha256(data).hexdigest()),
                st.text(alphabet="0123456789abcdefXYZ ", max_size=70),
            )
        )
    names = st.sampled_from(["", "x", "logits", "hidden", "w1", "\0", "é" * 40])
    spec.input_name = draw(names)
    spec.output_name = draw(names)
    spec.embeddings_output = draw(names)
    spec.output_kind = draw(st.integers(-1, 5))
    if draw(st.booleans()):
        spec.mc_passes = draw(INT64)
    return spec


@st.composite
def inference_requests(draw):
    """A request whose predictions come from models run on the embeddings."""
    request = draw(valid_requests(families=("uncertainty", "hybrid", "diversity")))
    n_classes = request.pool.probabilities.shape[1]
    request.pool.ClearField("probabilities")
    n_features = request.pool.embeddings.shape[1]
    models = []
    for _ in range(draw(st.sampled_from([1, 1, 2, 3, 0]))):
        if draw(st.booleans()):
            valid = query_pb2.Model(
                onnx=model_bytes(n_features, n_classes), output_name="logits"
            )
            if draw(st.booleans()):
                valid.embeddings_output = "hidden"
            models.append(valid)
        else:
            models.append(draw(model_specs()))
    request.inference.models.extend(models)
    request.inference.score_validation = draw(st.booleans())
    if request.inference.score_validation:
        request.validation.ClearField("probabilities")
    if draw(st.booleans()):
        group, name = draw(st.sampled_from(FIELDS))
        getattr(getattr(request, group), name).CopyFrom(draw(tensors()))
    return request


@st.composite
def describe_requests(draw):
    """A ``DescribeModelRequest`` with any model spec, or none."""
    if draw(st.integers(0, 9)) == 0:
        return query_pb2.DescribeModelRequest()
    return query_pb2.DescribeModelRequest(model=draw(model_specs()))


@st.composite
def upload_streams(draw):
    """The chunks of an ``UploadModel`` call: any model, cut anywhere, with
    no hash, the right one or a wrong one on any chunk."""
    data = draw(broken_models())
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    messages = [query_pb2.UploadModelRequest(chunk=piece) for piece in pieces]
    if messages and draw(st.booleans()):
        right = hashlib.sha256(data).hexdigest()
        stated = draw(st.sampled_from([right, right.upper(), "0" * 64, "zz"]))
        messages[draw(st.integers(0, len(messages) - 1))].sha256 = stated
    return messages


@st.composite
def rank_streams(draw):
    """The messages of a ``RankStream`` call: a header with fields moved to
    chunks, then the chunks, with parts dropped, doubled, reordered, cut or
    renamed at random."""
    request = draw(st.one_of(valid_requests(), rank_requests()))
    fields = draw(
        st.lists(st.sampled_from(STREAMABLE), max_size=3, unique=True)
    )
    header = query_pb2.RankStreamHeader(streamed_fields=fields)
    chunks = []
    for field in fields:
        group, _, name = field.partition(".")
        parent = getattr(request, group)
        tensor = getattr(parent, name)
        data = tensor.data
        if draw(st.integers(0, 4)) > 0:
            tensor.data = b""
        if draw(st.integers(0, 9)) == 0:
            # Declares far more bytes than the server takes per stream.
            huge = draw(st.sampled_from([[2**20, 2**20], [2**31, 4], [1, 2**40]]))
            tensor.ClearField("shape")
            tensor.shape.extend(huge)
        step = draw(st.integers(1, 64))
        for start in range(0, max(len(data), 1), step):
            piece = data[start : start + step]
            chunks.append(query_pb2.TensorChunk(field=field, data=piece))
    header.request.CopyFrom(request)
    messages = [query_pb2.RankStreamRequest(header=header)]
    messages += [query_pb2.RankStreamRequest(chunk=chunk) for chunk in chunks]
    for _ in range(draw(st.integers(0, 2))):
        _break_stream(draw, messages)
    return messages


def _break_stream(draw, messages: list[query_pb2.RankStreamRequest]) -> None:
    change = draw(st.sampled_from(["drop", "double", "swap", "rename", "extra"]))
    if not messages:
        return
    at = draw(st.integers(0, len(messages) - 1))
    if change == "drop":
        del messages[at]
    elif change == "double":
        messages.insert(at, messages[at])
    elif change == "swap":
        other = draw(st.integers(0, len(messages) - 1))
        messages[at], messages[other] = messages[other], messages[at]
    elif change == "rename":
        name = draw(st.sampled_from([*STREAMABLE, "", "pool", "x" * 300]))
        messages.append(
            query_pb2.RankStreamRequest(chunk=query_pb2.TensorChunk(field=name))
        )
    else:
        data = draw(st.binary(min_size=1, max_size=64))
        field = draw(st.sampled_from(STREAMABLE))
        chunk = query_pb2.TensorChunk(field=field, data=data)
        messages.insert(at, query_pb2.RankStreamRequest(chunk=chunk))


METHOD_NAMES = ("Rank", "ListStrategies", "UploadModel", "DescribeModel", "RankStream")
STREAMING_METHODS = frozenset({"UploadModel", "RankStream"})


def raw_method(channel: grpc.Channel, method: str):
    """A callable sending raw bytes to ``method`` (a list of them for a
    client-streaming method), answering raw bytes."""
    kind = channel.stream_unary if method in STREAMING_METHODS else channel.unary_unary
    return kind(
        SERVICE + method,
        request_serializer=lambda data: data,
        response_deserializer=lambda data: data,
    )


@st.composite
def raw_calls(draw):
    """A method and bytes that may not parse as its request: random, or a
    real request cut short, grown or bit-flipped."""
    method = draw(st.sampled_from(METHOD_NAMES))
    source = draw(st.sampled_from(["random", "cut", "grow", "flip"]))
    if source == "random":
        body = draw(st.binary(max_size=256))
    else:
        body = draw(valid_requests()).SerializeToString()
        if method == "DescribeModel":
            body = query_pb2.DescribeModelRequest(
                model=query_pb2.Model(onnx=model_bytes(2, 3))
            ).SerializeToString()
        body = _damage(draw, source, body)
    if method in STREAMING_METHODS:
        return method, [body] * draw(st.integers(0, 3))
    return method, body


def _damage(draw, source: str, body: bytes) -> bytes:
    if source == "cut":
        return body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    if source == "grow":
        return body + draw(st.binary(min_size=1, max_size=64))
    flipped = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(flipped) - 1))
        flipped[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(flipped)


def status_of(call, request, timeout: float = 30.0) -> grpc.StatusCode:
    """The status code ``call(request)`` ends with."""
    try:
        call(request, timeout=timeout)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK
