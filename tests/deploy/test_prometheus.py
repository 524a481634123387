"""End to end with a real Prometheus: it scrapes a real alquery server on
loopback with the repo's scrape config and rules, and its query API shows the
rates and histograms with the expected labels. Skips without the binary
(Debian package ``prometheus``, which .ci/run installs)."""

import json
import math
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import grpc
import numpy as np
import pytest
import yaml

from alquery.client import AlqueryClient, AlqueryError, ChannelSecurity
from alquery.server import app
from test_monitoring import CONFIG, RULES, dashboard_queries, rule_queries

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (Debian package prometheus)"
)
SCRAPE_SECONDS = 1
TOKEN = "e2e-token-0123456789"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def query(base, expression):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def wait_for(base, expression, condition, timeout=30.0):
    """Poll ``expression`` until ``condition(result)`` holds; return the result."""
    deadline = time.monotonic() + timeout
    while True:
        result = query(base, expression)
        if condition(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


@pytest.fixture(scope="module")
def alquery_server():
    running = app.start(app.ServerConfig(port=0, metrics_port=0, auth_token=TOKEN))
    yield running
    running.stop(grace_seconds=1)


@pytest.fixture(scope="module")
def prometheus(alquery_server, tmp_path_factory):
    """Prometheus on 127.0.0.1, configured from deploy/prometheus/ with the
    target and intervals swapped for the test's."""
    folder = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load(CONFIG.read_text())
    config["global"].update(
        scrape_interval=f"{SCRAPE_SECONDS}s", evaluation_interval=f"{SCRAPE_SECONDS}s"
    )
    (job,) = config["scrape_configs"]
    job["static_configs"] = [
        {"targets": [f"127.0.0.1:{alquery_server.metrics_port}"]}
    ]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(RULES, folder / config["rule_files"][0])

    port = free_port()
    process = subprocess.Popen(
        [
            PROMETHEUS, f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL, stderr=(folder / "log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "log").read_text()
                    pytest.fail("prometheus did not start:\n" + log)
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def traffic(alquery_server, prometheus):
    """Three seconds of calls: good ones of two strategies, bad input, a
    missing token, between two scrapes. Returns how many of each were sent."""
    up = wait_for(prometheus, 'up{job="alquery"}', lambda result: bool(result))
    assert [r["value"][1] for r in up] == ["1"], up
    target = f"127.0.0.1:{alquery_server.port}"
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), size=500)
    embeddings = rng.normal(size=(500, 8))
    sent = {"margin": 0, "kcenter": 0, "invalid": 0, "unauthenticated": 0}
    with AlqueryClient(
        target, timeout=10, security=ChannelSecurity(token=TOKEN)
    ) as client, AlqueryClient(target, timeout=10) as anonymous:
        # The first call warms the server up (seconds: imports); the loop
        # then runs for three scrape intervals.
        end = None
        while end is None or time.monotonic() < end:
            client.rank("uncertainty.margin", 5, probabilities=probabilities)
            client.rank("diversity.kcenter", 5, embeddings=embeddings)
            sent["margin"] += 1
            sent["kcenter"] += 1
            with pytest.raises(AlqueryError):
                client.rank("uncertainty.margin", 0, probabilities=probabilities)
            sent["invalid"] += 1
            with pytest.raises(AlqueryError) as raised:
                anonymous.rank("uncertainty.margin", 1, probabilities=probabilities)
            assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
            sent["unauthenticated"] += 1
            end = end or time.monotonic() + 3 * SCRAPE_SECONDS
            time.sleep(0.05)

    # Wait for a scrape that has seen every call.
    total = sum(sent.values())
    wait_for(
        prometheus,
        f'sum(grpc_server_handled_total{{grpc_method="Rank"}}) == {total}',
        lambda result: bool(result),
    )
    return sent


RANK = 'grpc_service="alquery.v1.QueryService",grpc_method="Rank",grpc_type="unary"'


def test_handled_counts_arrive_by_code_with_grpc_labels(prometheus, traffic):
    ok = traffic["margin"] + traffic["kcenter"]
    expected = {
        "OK": ok,
        "INVALID_ARGUMENT": traffic["invalid"],
        "UNAUTHENTICATED": traffic["unauthenticated"],
    }

    def complete(result):
        counts = {r["metric"]["grpc_code"]: float(r["value"][1]) for r in result}
        return all(counts.get(code) == n for code, n in expected.items())

    result = wait_for(prometheus, f"grpc_server_handled_total{{{RANK}}}", complete)
    assert complete(result), result
    for series in result:
        assert series["metric"]["job"] == "alquery"
        assert set(series["metric"]) == {
            "__name__", "job", "instance", "grpc_type", "grpc_service",
            "grpc_method", "grpc_code",
        }


def test_rates_and_latency_quantiles_are_computed(prometheus, traffic):
    rate = wait_for(
        prometheus,
        f"sum by (grpc_code) (rate(grpc_server_handled_total{{{RANK}}}[30s]))",
        lambda result: len(result) == 3,
    )
    assert {r["metric"]["grpc_code"] for r in rate} == {
        "OK", "INVALID_ARGUMENT", "UNAUTHENTICATED"
    }
    assert all(float(r["value"][1]) > 0 for r in rate), rate

    p99 = query(
        prometheus,
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(grpc_server_handling_seconds_bucket{{{RANK}}}[30s])))",
    )
    assert len(p99) == 1 and 0 < float(p99[0]["value"][1]) < 10


def test_strategy_pool_and_payload_histograms_carry_their_labels(prometheus, traffic):
    counts = query(prometheus, "alquery_strategy_seconds_count")
    by_strategy = {r["metric"]["strategy"]: float(r["value"][1]) for r in counts}
    assert by_strategy == {
        "uncertainty.margin": traffic["margin"],
        "diversity.kcenter": traffic["kcenter"],
    }
    buckets = query(
        prometheus, 'alquery_pool_size_bucket{strategy="diversity.kcenter"}'
    )
    # Every request had 500 samples: none fits a bucket below 500.
    for bucket in buckets:
        upper = float(bucket["metric"]["le"])
        expected = traffic["kcenter"] if upper >= 500 else 0
        assert float(bucket["value"][1]) == expected, bucket

    request_bytes = query(
        prometheus,
        "histogram_quantile(0.5, sum by (le) (rate(alquery_request_bytes_bucket"
        '{grpc_method="Rank"}[30s])))',
    )
    # 500 x 3 or 500 x 8 float64 values: between 8 KiB and 64 KiB.
    assert 4096 <= float(request_bytes[0]["value"][1]) <= 65536


def test_rejections_and_in_flight_arrive(prometheus, traffic):
    rejected = query(prometheus, "alquery_rejected_requests_total")
    by_reason = {r["metric"]["reason"]: float(r["value"][1]) for r in rejected}
    assert by_reason == {
        "invalid_argument": traffic["invalid"],
        "token_missing": traffic["unauthenticated"],
    }
    in_flight = query(prometheus, "alquery_in_flight_requests")
    assert [float(r["value"][1]) for r in in_flight] == [0.0]


def test_dashboard_and_rule_queries_run_without_error(prometheus, traffic):
    for expression in dashboard_queries():
        concrete = expression.replace("$__rate_interval", "30s").replace("$job", ".*")
        result = query(prometheus, concrete)
        assert result, f"no data for dashboard query {concrete}"
        values = [float(r["value"][1]) for r in result]
        assert not all(math.isnan(v) for v in values), concrete
    for expression in rule_queries():
        query(prometheus, expression)  # raises on a query Prometheus refuses

    url = f"{prometheus}/api/v1/rules"
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(url, timeout=10) as response:
            groups = json.load(response)["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if all(rule["health"] == "ok" for rule in rules) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(rules) == len(rule_queries())
    assert all(rule["health"] == "ok" for rule in rules), rules
