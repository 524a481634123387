"""A server stopping under concurrent load: accepted calls = answered calls.

tests/server/test_app.py covers one request through SIGTERM; here many
clients keep sending while the server drains (server/drain.py), using the
accounting of bench/shutdown.py at a small scale.
"""

import pathlib
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alquery.server import app, drain
from alquery.v1 import query_pb2, query_pb2_grpc
from conftest import tensor

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))

import shutdown  # noqa: E402  (bench/)
import traffic  # noqa: E402  (bench/)

U = query_pb2.UncertaintyStrategy


def test_sigterm_under_load_answers_every_accepted_call():
    result = shutdown.sigterm_under_load(
        traffic.Mix(n_pool=300), clients=8, after=40
    )
    assert result.exit_code == 0
    assert result.accepted >= 40
    assert sum(result.answered.values()) == result.accepted
    assert result.answered["OK"] == result.finished["OK"] == result.accepted
    assert result.started == sum(result.finished.values())
    # Each client stops after its first UNAVAILABLE, most often the drain's.
    assert result.refused >= result.finished["UNAVAILABLE"] >= 1
    assert result.holds


def test_a_draining_server_refuses_query_calls_and_answers_health():
    running = app.start(app.ServerConfig(port=0, metrics_port=None, threads=2))
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        request = query_pb2.RankRequest(
            pool=query_pb2.Pool(probabilities=tensor([[0.6, 0.4], [0.9, 0.1]])),
            uncertainty=U(method=U.METHOD_MARGIN),
            batch_size=1,
        )
        stub = query_pb2_grpc.QueryServiceStub(channel)
        assert list(stub.Rank(request, timeout=30).ranked_indices) == [0]
        running._drain.start()
        with pytest.raises(grpc.RpcError) as raised:
            stub.Rank(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert raised.value.details() == drain.DETAILS
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()
        running.stop(grace_seconds=1)


def test_drain_returns_the_grace_left_once_idle():
    interceptor = drain.DrainInterceptor()
    left = drain.drain(interceptor, lambda: 0, grace_seconds=600, quiet_seconds=0)
    assert 500 < left <= 600  # returned at once, not at the end of the grace


def test_drain_waits_for_running_calls_up_to_the_grace_period():
    interceptor = drain.DrainInterceptor()
    left = drain.drain(interceptor, lambda: 1, grace_seconds=0.3)
    assert left == 0.0
