"""The assembled server: health, reflection, metrics, limits, logs and shutdown."""

import logging
import re
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from prometheus_client.parser import text_string_to_metric_families

from alquery.client.local import LocalServer
from alquery.server import app
from alquery.v1 import query_pb2, query_pb2_grpc
from conftest import tensor

U = query_pb2.UncertaintyStrategy


def margin_request(batch_size):
    return query_pb2.RankRequest(
        pool=query_pb2.Pool(probabilities=tensor([[0.6, 0.4], [0.9, 0.1]])),
        uncertainty=U(method=U.METHOD_MARGIN),
        batch_size=batch_size,
    )


def test_health_reports_serving_for_the_server_and_the_service(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "alquery.v1.QueryService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_query_service_and_describes_rank(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {"alquery.v1.QueryService", "grpc.health.v1.Health"} <= services
    method = database.FindFileContainingSymbol("alquery.v1.QueryService")
    assert method.package == "alquery.v1"


def scrape(server):
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return samples


def handled(samples, code):
    labels = (
        ("grpc_code", code),
        ("grpc_method", "Rank"),
        ("grpc_service", "alquery.v1.QueryService"),
        ("grpc_type", "unary"),
    )
    return samples.get(("grpc_server_handled_total", labels), 0.0)


def test_metrics_endpoint_counts_calls_by_code(server, stub):
    before = scrape(server)
    for _ in range(3):
        stub.Rank(margin_request(1))
    for _ in range(2):
        with pytest.raises(grpc.RpcError):
            stub.Rank(margin_request(0))
    after = scrape(server)

    assert handled(after, "OK") - handled(before, "OK") == 3
    assert handled(after, "INVALID_ARGUMENT") - handled(before, "INVALID_ARGUMENT") == 2
    started = (
        "grpc_server_started_total",
        (
            ("grpc_method", "Rank"),
            ("grpc_service", "alquery.v1.QueryService"),
            ("grpc_type", "unary"),
        ),
    )
    assert after[started] - before.get(started, 0) == 5
    pool_count = ("alquery_pool_size_count", (("strategy", "uncertainty.margin"),))
    assert after[pool_count] - before.get(pool_count, 0) == 3
    seconds = ("alquery_strategy_seconds_count", (("strategy", "uncertainty.margin"),))
    assert after[seconds] - before.get(seconds, 0) == 3
    assert any(name == "grpc_server_handling_seconds_bucket" for name, _ in after)


def messages(samples, name, service, method):
    labels = (
        ("grpc_method", method),
        ("grpc_service", service),
        ("grpc_type", "unary"),
    )
    return samples.get((name, labels), 0.0)


def test_each_method_counts_in_its_own_series(server, stub, channel):
    # The interceptor looks each method's series up once; calls of one
    # method must never land in another's.
    calls = {
        ("alquery.v1.QueryService", "Rank"): 3,
        ("alquery.v1.QueryService", "ListStrategies"): 2,
        ("grpc.health.v1.Health", "Check"): 1,
    }
    health = health_pb2_grpc.HealthStub(channel)
    before = scrape(server)
    for _ in range(3):
        stub.Rank(margin_request(1))
    for _ in range(2):
        stub.ListStrategies(query_pb2.ListStrategiesRequest())
    health.Check(health_pb2.HealthCheckRequest())
    after = scrape(server)

    for (service, method), count in calls.items():
        for name in (
            "grpc_server_started_total",
            "grpc_server_msg_received_total",
            "grpc_server_msg_sent_total",
            "alquery_request_bytes_count",
        ):
            if name == "alquery_request_bytes_count":
                key = (name, (("grpc_method", method), ("grpc_service", service)))
                delta = after[key] - before.get(key, 0.0)
            else:
                delta = messages(after, name, service, method) - messages(
                    before, name, service, method
                )
            assert delta == count, (name, method)


def test_health_calls_log_only_at_debug(channel, caplog):
    health = health_pb2_grpc.HealthStub(channel)
    name = "alquery.server.requests"
    with caplog.at_level(logging.INFO, logger=name):
        health.Check(health_pb2.HealthCheckRequest())
    assert not [r for r in caplog.records if r.name == name]
    with caplog.at_level(logging.DEBUG, logger=name):
        health.Check(health_pb2.HealthCheckRequest())
    lines = [r.getMessage() for r in caplog.records if r.name == name]
    assert any("method=Check" in line and "status=OK" in line for line in lines)


def test_one_info_line_per_request_with_fixed_fields(stub, caplog):
    with caplog.at_level(logging.INFO, logger="alquery.server.requests"):
        stub.Rank(margin_request(1))
        with pytest.raises(grpc.RpcError):
            stub.Rank(margin_request(-5))
    lines = [
        r.getMessage() for r in caplog.records if r.name == "alquery.server.requests"
    ]
    assert len(lines) == 2
    pattern = (
        r"request method=Rank strategy=uncertainty\.margin n_pool=(\S+) "
        r"batch_size=(\S+) status=(\w+) duration_ms=\d+\.\d"
    )
    first, second = (re.fullmatch(pattern, line) for line in lines)
    assert first.groups() == ("2", "1", "OK")
    assert second.groups() == ("-", "-", "INVALID_ARGUMENT")


def test_message_over_the_limit_gets_resource_exhausted_and_server_goes_on():
    running = app.start(app.ServerConfig(port=0, metrics_port=None, max_message_mib=1))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            big = np.full((70_000, 2), 0.5)  # 1.1 MiB of float64
            request = query_pb2.RankRequest(
                pool=query_pb2.Pool(probabilities=tensor(big)),
                uncertainty=U(method=U.METHOD_MARGIN),
                batch_size=1,
            )
            with pytest.raises(grpc.RpcError) as raised:
                stub.Rank(request)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "larger than max" in raised.value.details()
            assert list(stub.Rank(margin_request(1)).ranked_indices) == [0]
    finally:
        running.stop(grace_seconds=1)


def wait_for_log(server, text, count, timeout=60.0):
    """Wait until ``text`` appears ``count`` times in the server's log."""
    deadline = time.monotonic() + timeout
    while "".join(server.log).count(text) < count:
        assert time.monotonic() < deadline, f"never saw {text!r} x{count}"
        time.sleep(0.02)


def test_sigterm_finishes_the_request_in_flight_and_exits_cleanly():
    # A grace period far above the request's run time even on a loaded machine.
    server = LocalServer(["--grace-seconds", "120", "--log-level", "DEBUG"]).start()
    try:
        channel = grpc.insecure_channel(server.target)
        stub = query_pb2_grpc.QueryServiceStub(channel)
        stub.Rank(margin_request(1), timeout=30)  # the server is up

        # A k-center request that takes about a second on a quiet machine (and
        # ten times that on a loaded one); the signal comes once it started.
        # (If k-center gets much faster, grow this request to keep it running.)
        rng = np.random.default_rng(0)
        embeddings = rng.normal(size=(100_000, 64)).astype(np.float32)
        slow = query_pb2.RankRequest(
            pool=query_pb2.Pool(
                embeddings=tensor(embeddings, query_pb2.D_TYPE_FLOAT32)
            ),
            diversity=query_pb2.DiversityStrategy(
                method=query_pb2.DiversityStrategy.METHOD_KCENTER
            ),
            batch_size=300,
        )
        outcome = {}

        def call():
            outcome["response"] = stub.Rank(slow, timeout=150)

        thread = threading.Thread(target=call)
        thread.start()
        wait_for_log(server, "request started method=Rank", 2)
        server.terminate()
        thread.join(150)
        assert len(outcome["response"].ranked_indices) == 300
        assert server.stop() == 0
        channel.close()
    finally:
        server.stop()
    log = "".join(server.log)
    # The slow request was still running when the signal arrived: its log
    # line comes after the shutdown began.
    assert re.search(r"shutting down.*batch_size=300 status=OK.*stopped", log, re.S)


def test_a_deadline_stops_a_long_request_and_frees_the_server(server, stub):
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(100_000, 64)).astype(np.float32)
    slow = query_pb2.RankRequest(
        pool=query_pb2.Pool(embeddings=tensor(embeddings, query_pb2.D_TYPE_FLOAT32)),
        diversity=query_pb2.DiversityStrategy(
            method=query_pb2.DiversityStrategy.METHOD_KCENTER
        ),
        batch_size=20_000,  # about a minute of work if nothing stopped it
    )
    before = scrape(server)
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        stub.Rank(slow, timeout=1.5)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    # The handler notices between picks and gives its thread back.
    while server.interceptor.in_flight and time.monotonic() - start < 20:
        time.sleep(0.05)
    assert server.interceptor.in_flight == 0
    assert time.monotonic() - start < 20
    assert list(stub.Rank(margin_request(1), timeout=5).ranked_indices) == [0]

    after = scrape(server)
    codes = {
        code: handled(after, code) - handled(before, code)
        for code in ("OK", "CANCELLED", "DEADLINE_EXCEEDED", "UNKNOWN", "INTERNAL")
    }
    # The client's deadline fires a moment before the server's copy of it,
    # so the server may see the call cancelled rather than expired.
    assert codes["CANCELLED"] + codes["DEADLINE_EXCEEDED"] == 1
    assert codes["OK"] == 1 and codes["UNKNOWN"] == 0 and codes["INTERNAL"] == 0


def test_sigterm_cancels_what_outlives_the_grace_period_and_exits():
    server = LocalServer(["--grace-seconds", "1", "--log-level", "DEBUG"]).start()
    try:
        channel = grpc.insecure_channel(server.target)
        stub = query_pb2_grpc.QueryServiceStub(channel)
        rng = np.random.default_rng(2)
        embeddings = rng.normal(size=(100_000, 64)).astype(np.float32)
        endless = query_pb2.RankRequest(
            pool=query_pb2.Pool(
                embeddings=tensor(embeddings, query_pb2.D_TYPE_FLOAT32)
            ),
            diversity=query_pb2.DiversityStrategy(
                method=query_pb2.DiversityStrategy.METHOD_KCENTER
            ),
            batch_size=50_000,  # minutes of work
        )
        outcome = {}

        def call():
            try:
                stub.Rank(endless, timeout=120)
            except grpc.RpcError as error:
                outcome["code"] = error.code()

        thread = threading.Thread(target=call)
        thread.start()
        wait_for_log(server, "request started method=Rank", 1)
        start = time.monotonic()
        server.terminate()
        assert server.process.wait(timeout=30) == 0
        assert time.monotonic() - start < 15
        thread.join(30)
        assert outcome["code"] in (
            grpc.StatusCode.CANCELLED,
            grpc.StatusCode.UNAVAILABLE,
        )
        channel.close()
    finally:
        server.stop()
    log = "".join(server.log)
    assert "batch_size=50000 status=CANCELLED" in log
    assert "stopped" in log


def test_a_taken_metrics_port_is_refused_naming_the_flag(server):
    # Without --workers the message was a bare "[Errno 98] Address already in
    # use", naming neither the flag nor the port.
    port = server.metrics_port
    result = subprocess.run(
        [sys.executable, "-m", "alquery.client.cli", "serve", "--port", "0",
         "--metrics-port", str(port)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in (
        result.stderr
    )
