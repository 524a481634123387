"""Property-based fuzzing of every RPC over a real loopback connection.

Requests come from tests/fuzz_requests.py: random and adversarial field
values, broken and malformed ONNX models, RankStream and UploadModel calls
with their messages dropped, doubled, reordered or renamed, and raw bytes
that do not parse as the method's request. Every answer must be OK or a
documented error status, never UNKNOWN or INTERNAL, and the server must go
on answering a valid request correctly. bench/fuzz_campaign.py runs the
same strategies for longer.
"""

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_requests as fuzz
from alquery.v1 import query_pb2

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEWER = settings(SETTINGS, max_examples=120)
U = query_pb2.UncertaintyStrategy


def assert_healthy(channel):
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def assert_answers_correctly(stub):
    """The next valid request gets the right answer, not just any answer."""
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(probabilities=fuzz.dense(probabilities)),
        uncertainty=U(method=U.METHOD_MARGIN),
        batch_size=2,
    )
    assert list(stub.Rank(request, timeout=30).ranked_indices) == [0, 2]


@SETTINGS
@given(request=fuzz.rank_requests())
def test_random_requests_get_a_documented_status(stub, channel, request):
    assert fuzz.status_of(stub.Rank, request) in fuzz.DOCUMENTED
    assert_healthy(channel)


@FEWER
@given(request=fuzz.inference_requests())
def test_requests_with_broken_models_get_a_documented_status(stub, request):
    assert fuzz.status_of(stub.Rank, request) in fuzz.DOCUMENTED
    assert_answers_correctly(stub)


@FEWER
@given(request=fuzz.describe_requests())
def test_describe_model_gets_a_documented_status(stub, request):
    assert fuzz.status_of(stub.DescribeModel, request) in fuzz.DOCUMENTED
    assert_answers_correctly(stub)


@FEWER
@given(messages=fuzz.upload_streams())
def test_upload_model_streams_get_a_documented_status(stub, messages):
    assert fuzz.status_of(stub.UploadModel, iter(messages)) in fuzz.DOCUMENTED
    assert_answers_correctly(stub)


@SETTINGS
@given(messages=fuzz.rank_streams())
def test_rank_streams_get_a_documented_status(stub, messages):
    assert fuzz.status_of(stub.RankStream, iter(messages)) in fuzz.DOCUMENTED
    assert_answers_correctly(stub)


@SETTINGS
@given(raw=st.binary(max_size=256))
def test_raw_bytes_get_a_documented_status(channel, raw):
    rank = fuzz.raw_method(channel, "Rank")
    assert fuzz.status_of(rank, raw) in fuzz.DOCUMENTED
    assert_healthy(channel)


@SETTINGS
@given(call=fuzz.raw_calls())
def test_truncated_and_damaged_messages_of_every_method(stub, channel, call):
    method, body = call
    sent = iter(body) if method in fuzz.STREAMING_METHODS else body
    assert fuzz.status_of(fuzz.raw_method(channel, method), sent) in fuzz.DOCUMENTED
    assert_answers_correctly(stub)
