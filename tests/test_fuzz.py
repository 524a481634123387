"""Property-based fuzzing of the Rank RPC over a real loopback connection.

Requests are filled with random and adversarial field values: unknown dtype
and enum numbers, wrong byte lengths, negative and huge shapes and sizes,
NaN and infinities, and raw bytes that are not a message at all. Every answer
must be OK or a documented error status, never UNKNOWN or INTERNAL, and the
server must stay healthy.
"""

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alquery.v1 import query_pb2

DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
INT64 = st.one_of(
    st.integers(-3, 8),
    st.sampled_from([2**31, 2**62, 2**63 - 1, -(2**63)]),
)
FLOATS = st.one_of(
    st.floats(0, 1),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, 1.0, float("nan"), float("inf"), -1.0]),
)
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


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


def maybe(strategy):
    return st.one_of(st.none(), strategy)


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
    "hybrid": st.just(0),
}


def dense(array):
    dtype = (
        query_pb2.D_TYPE_FLOAT32
        if array.dtype == np.float32
        else (
            query_pb2.D_TYPE_FLOAT64
            if array.dtype == np.float64
            else query_pb2.D_TYPE_INT64
        )
    )
    return query_pb2.Tensor(dtype=dtype, shape=array.shape, data=array.tobytes())


@st.composite
def valid_requests(draw):
    """A request that every rule accepts, for a random strategy."""
    n_pool, n_classes = draw(st.integers(1, 6)), draw(st.integers(2, 4))
    n_features, n_validation = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    float_type = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)

    def probabilities(n):
        values = rng.dirichlet(np.ones(n_classes), size=n)
        return values.astype(float_type)

    request = query_pb2.RankRequest(batch_size=draw(st.integers(1, 8)))
    request.pool.probabilities.CopyFrom(dense(probabilities(n_pool)))
    request.pool.embeddings.CopyFrom(
        dense(rng.normal(size=(n_pool, n_features)).astype(float_type))
    )
    if draw(st.booleans()):
        request.labeled.embeddings.CopyFrom(
            dense(rng.normal(size=(2, n_features)).astype(float_type))
        )
    request.validation.probabilities.CopyFrom(dense(probabilities(n_validation)))
    request.validation.labels.CopyFrom(
        dense(rng.integers(0, n_classes, size=n_validation))
    )
    request.validation.embeddings.CopyFrom(
        dense(rng.normal(size=(n_validation, n_features)).astype(float_type))
    )
    family = draw(st.sampled_from(["uncertainty", "diversity", "credibility"]))
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
            family = draw(
                st.sampled_from(
                    [None, "uncertainty", "diversity", "credibility", "hybrid"]
                )
            )
            if family is None:
                request.ClearField("strategy")
                continue
            message = getattr(request, family)
            message.SetInParent()  # chosen even when every field is left at 0
            message.method = draw(st.one_of(METHODS[family], st.integers(-2, 6)))
        elif mutation == "seed":
            request.seed = draw(st.integers(0, 2**64 - 1))
        else:
            request.credibility.n_neighbors = draw(INT64)
    request.omit_scores = draw(st.booleans())
    return request


def assert_healthy(channel):
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def status_of(call, request):
    try:
        call(request, timeout=30)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@SETTINGS
@given(request=rank_requests())
def test_random_requests_get_a_documented_status(stub, channel, request):
    assert status_of(stub.Rank, request) in DOCUMENTED
    assert_healthy(channel)


@SETTINGS
@given(raw=st.binary(max_size=256))
def test_raw_bytes_get_a_documented_status(channel, raw):
    rank = channel.unary_unary(
        "/alquery.v1.QueryService/Rank",
        request_serializer=lambda data: data,
        response_deserializer=lambda data: data,
    )
    assert status_of(rank, raw) in DOCUMENTED
    assert_healthy(channel)
