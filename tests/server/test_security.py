"""TLS, mutual TLS and the bearer token, on real servers with certificates the
tests make; a refused client gets UNAVAILABLE or UNAUTHENTICATED, health
checks stay open, and no secret reaches the logs."""

import io
import logging
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from alquery.client import AlqueryClient, AlqueryError, ChannelSecurity
from alquery.client.local import LocalServer
from alquery.server import app, security
from alquery.server.security import SecurityConfigError, TlsFiles
from conftest import tensor
from test_app import margin_request, scrape
from tls_material import make_tls_material

TOKEN = "s3cret-Token_0123456789abcdef"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def alquery_log():
    """Everything any alquery.* logger writes, at DEBUG, as text."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger("alquery")
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def started(**settings):
    return app.start(app.ServerConfig(port=0, metrics_port=0, **settings))


def rank_once(target, security=None):
    with AlqueryClient(target, timeout=10, security=security) as client:
        return client.rank("uncertainty.margin", 1, probabilities=[[0.6, 0.4]])


def refusal(target, security=None):
    with pytest.raises(AlqueryError) as raised:
        rank_once(target, security)
    return raised.value


@pytest.fixture(scope="module")
def tls_server(tls):
    running = started(tls=TlsFiles(tls.server_cert, tls.server_key))
    yield f"127.0.0.1:{running.port}"
    running.stop(grace_seconds=1)


def test_tls_client_trusting_the_ca_is_served(tls, tls_server):
    result = rank_once(tls_server, ChannelSecurity(ca_file=tls.ca))
    assert result.indices.tolist() == [0]


@pytest.mark.parametrize("client_ca", ["none", "other"])
def test_tls_server_refuses_plaintext_and_untrusting_clients(
    tls, tls_server, client_ca
):
    security = None if client_ca == "none" else ChannelSecurity(ca_file=tls.other_ca)
    assert refusal(tls_server, security).code == grpc.StatusCode.UNAVAILABLE
    # The refused handshake leaves the server serving.
    assert rank_once(tls_server, ChannelSecurity(ca_file=tls.ca)).indices.size == 1


@pytest.fixture(scope="module")
def mtls_server(tls):
    running = started(tls=TlsFiles(tls.server_cert, tls.server_key, tls.ca))
    yield f"127.0.0.1:{running.port}"
    running.stop(grace_seconds=1)


def test_mutual_tls_serves_a_client_with_a_certificate_from_the_ca(tls, mtls_server):
    security = ChannelSecurity(
        ca_file=tls.ca, cert_file=tls.client_cert, key_file=tls.client_key
    )
    assert rank_once(mtls_server, security).indices.tolist() == [0]


@pytest.mark.parametrize("certificate", ["none", "stranger"])
def test_mutual_tls_refuses_clients_without_a_trusted_certificate(
    tls, mtls_server, certificate
):
    files = {}
    if certificate == "stranger":
        files = {"cert_file": tls.stranger_cert, "key_file": tls.stranger_key}
    security = ChannelSecurity(ca_file=tls.ca, **files)
    assert refusal(mtls_server, security).code == grpc.StatusCode.UNAVAILABLE


@pytest.fixture(scope="module")
def token_server():
    running = started(auth_token=TOKEN)
    yield running
    running.stop(grace_seconds=1)


@pytest.mark.parametrize(
    "token, reason",
    [
        (None, "token_missing"),
        ("wrong-token", "token_wrong"),
        (TOKEN + "x", "token_wrong"),
    ],
)
def test_token_server_refuses_a_missing_or_wrong_token(
    token_server, alquery_log, token, reason
):
    target = f"127.0.0.1:{token_server.port}"
    before = scrape(token_server)
    error = refusal(target, ChannelSecurity(token=token))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.details.startswith("authorization:")
    assert TOKEN not in error.details

    key = ("alquery_rejected_requests_total", (("reason", reason),))
    assert scrape(token_server)[key] - before.get(key, 0) == 1
    assert "status=UNAUTHENTICATED" in alquery_log.getvalue()
    assert rank_once(target, ChannelSecurity(token=TOKEN)).indices.tolist() == [0]


def test_token_in_other_metadata_shapes_is_refused(token_server):
    channel = grpc.insecure_channel(f"127.0.0.1:{token_server.port}")
    stub = channel.unary_unary("/alquery.v1.QueryService/Rank")
    request = margin_request(1).SerializeToString()
    for metadata in ([("authorization", TOKEN)], [("authorization", "Basic " + TOKEN)]):
        with pytest.raises(grpc.RpcError) as raised:
            stub(request, metadata=metadata, timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()


@pytest.mark.parametrize("other", [TOKEN, "Bearer wrong-token", "Bearer " + TOKEN])
def test_a_repeated_authorization_header_is_refused_even_with_the_token(
    token_server, other
):
    before = scrape(token_server)
    channel = grpc.insecure_channel(f"127.0.0.1:{token_server.port}")
    stub = channel.unary_unary("/alquery.v1.QueryService/Rank")
    metadata = [("authorization", "Bearer " + TOKEN), ("authorization", other)]
    with pytest.raises(grpc.RpcError) as raised:
        stub(margin_request(1).SerializeToString(), metadata=metadata, timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "sent more than once" in raised.value.details()
    assert TOKEN not in raised.value.details()
    key = ("alquery_rejected_requests_total", (("reason", "token_repeated"),))
    assert scrape(token_server)[key] - before.get(key, 0) == 1
    channel.close()


def test_health_is_open_and_reflection_needs_the_token(token_server):
    with grpc.insecure_channel(f"127.0.0.1:{token_server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as raised:
            ProtoReflectionDescriptorDatabase(channel).get_services()
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_no_secret_in_the_logs_of_a_secured_server_run_by_the_cli(tls, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    flags = [
        "--log-level", "DEBUG", "--tls-cert", str(tls.server_cert),
        "--tls-key", str(tls.server_key), "--tls-client-ca", str(tls.ca),
        "--auth-token-file", str(token_file),
    ]
    with LocalServer(flags) as server:
        client_flags = [
            "--target", server.target, "--ca", str(tls.ca),
            "--cert", str(tls.client_cert), "--key", str(tls.client_key),
        ]
        cli = [sys.executable, "-m", "alquery.client.cli", "strategies"]
        good = subprocess.run(
            [*cli, *client_flags, "--token-file", str(token_file)],
            capture_output=True, text=True, timeout=60,
        )
        bad = subprocess.run(
            [*cli, *client_flags], capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin"},
        )
    assert good.returncode == 0, good.stderr
    assert "uncertainty.margin" in good.stdout
    assert bad.returncode == 1
    assert bad.stderr.startswith("UNAUTHENTICATED: authorization:")

    log = "".join(server.log)
    assert "transport=mtls auth=token" in log
    assert "status=UNAUTHENTICATED" in log
    private_key = tls.server_key.read_text().splitlines()[1]
    for secret in (TOKEN, private_key):
        assert secret not in log
        assert secret not in good.stderr + bad.stderr


def test_the_token_comes_from_the_environment_when_no_file_is_given(monkeypatch):
    monkeypatch.setenv("ALQUERY_AUTH_TOKEN", f" {TOKEN}\n")
    assert security.load_token(None) == TOKEN
    assert repr(app.ServerConfig(auth_token=TOKEN)).count(TOKEN) == 0
    assert TOKEN not in repr(ChannelSecurity(token=TOKEN))
    monkeypatch.delenv("ALQUERY_AUTH_TOKEN")
    assert security.load_token(None) is None


@pytest.mark.parametrize("value", ["", " \n"])
def test_a_set_but_empty_token_variable_is_refused(monkeypatch, value):
    # An empty ALQUERY_AUTH_TOKEN (a secret that resolved to nothing) used to
    # start the server with no token at all: every call let through.
    monkeypatch.setenv("ALQUERY_AUTH_TOKEN", value)
    with pytest.raises(SecurityConfigError, match="ALQUERY_AUTH_TOKEN: the token"):
        security.load_token(None)


@pytest.mark.parametrize(
    "content, match",
    [("", "the token is empty"), ("two words", "printable ASCII without spaces")],
)
def test_unusable_token_files_are_refused(tmp_path, content, match):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(SecurityConfigError, match=match):
        security.load_token(path)
    with pytest.raises(SecurityConfigError, match="cannot read"):
        security.load_token(tmp_path / "missing")


def test_tls_files_that_are_not_pem_are_refused(tls, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(SecurityConfigError, match=r"--tls-key .*junk.pem: not a PEM"):
        started(tls=TlsFiles(tls.server_cert, junk))
    with pytest.raises(SecurityConfigError, match="--tls-client-ca .*: cannot read"):
        started(tls=TlsFiles(tls.server_cert, tls.server_key, tmp_path / "none"))


def test_client_refuses_half_a_key_pair(tls):
    with pytest.raises(ValueError, match="cert_file and key_file"):
        ChannelSecurity(ca_file=tls.ca, cert_file=tls.client_cert)
    with pytest.raises(ValueError, match="needs ca_file"):
        ChannelSecurity(cert_file=tls.client_cert, key_file=tls.client_key)


def test_request_bytes_and_in_flight_are_exported(token_server):
    target = f"127.0.0.1:{token_server.port}"
    rank_once(target, ChannelSecurity(token=TOKEN))
    samples = scrape(token_server)
    labels = (("grpc_method", "Rank"), ("grpc_service", "alquery.v1.QueryService"))
    assert samples[("alquery_request_bytes_count", labels)] >= 1
    assert samples[("alquery_request_bytes_sum", labels)] >= len(
        tensor([[0.6, 0.4]]).data
    )
    assert samples[("alquery_response_bytes_count", labels)] >= 1
    assert samples[("alquery_in_flight_requests", ())] == 0


def test_health_port_answers_plaintext_probes_of_a_mutual_tls_server(tls):
    files = TlsFiles(tls.server_cert, tls.server_key, tls.ca)
    running = started(tls=files, health_port=0, auth_token=TOKEN)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = health.Check(
                health_pb2.HealthCheckRequest(service="alquery.v1.QueryService"),
                timeout=10,
            )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            # Only health lives there: the query service is not reachable.
            stub = channel.unary_unary("/alquery.v1.QueryService/Rank")
            with pytest.raises(grpc.RpcError) as raised:
                stub(margin_request(1).SerializeToString(), timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        running.health.enter_graceful_shutdown()
        with grpc.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        running.stop(grace_seconds=1)
