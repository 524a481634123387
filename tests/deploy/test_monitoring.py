"""The Grafana dashboard and the Prometheus files in deploy/: their structure,
``promtool`` checks when Prometheus is installed, and that every metric they
query is one the server exports."""

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from alquery.v1 import query_pb2
from conftest import tensor

DEPLOY = Path(__file__).parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "alquery.json"
RULES = DEPLOY / "prometheus" / "rules.yml"
CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
METRIC = re.compile(r"\b(?:grpc_server|alquery)_[a-z_]+\b")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus)"
)


def margin_request(batch_size):
    return query_pb2.RankRequest(
        pool=query_pb2.Pool(probabilities=tensor([[0.6, 0.4], [0.9, 0.1]])),
        uncertainty=query_pb2.UncertaintyStrategy(
            method=query_pb2.UncertaintyStrategy.METHOD_MARGIN
        ),
        batch_size=batch_size,
    )


def exported_names(server):
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        sample.name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def dashboard():
    return json.loads(DASHBOARD.read_text())


def dashboard_queries():
    return [t["expr"] for panel in dashboard()["panels"] for t in panel["targets"]]


def rule_queries():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_dashboard_panels_are_complete_and_laid_out_without_overlap():
    board = dashboard()
    assert board["uid"] == "alquery-overview" and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    ids, cells = set(), set()
    for panel in board["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        assert panel["type"] == "timeseries" and panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panel {panel['title']!r} overlaps"
                cells.add((x, y))


def test_dashboard_covers_what_an_operator_watches():
    titles = " | ".join(p["title"] for p in dashboard()["panels"]).lower()
    for topic in ("request rate", "errors by code", "latency", "strategy compute",
                  "pool size", "payload", "rejected", "in-flight", "model cache"):
        assert topic in titles
    queries = " ".join(dashboard_queries())
    assert "histogram_quantile(0.99" in queries
    assert "by (grpc_code)" in queries and "by (strategy" in queries


def test_every_queried_metric_is_exported_by_the_server(server, stub):
    stub.Rank(margin_request(1))
    with pytest.raises(grpc.RpcError):
        stub.Rank(margin_request(0))  # rejected: INVALID_ARGUMENT
    exported = exported_names(server)
    queries = dashboard_queries() + rule_queries()
    queried = {name for query in queries for name in METRIC.findall(query)}
    assert queried, "no metric found in the queries"
    assert queried - exported == set()


def test_rules_alert_on_error_rate_and_latency():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    expected = {"AlqueryServerErrors", "AlqueryRankLatencyHigh", "AlqueryDown"}
    assert expected <= set(rules)
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


@needs_promtool
def test_promtool_accepts_the_rules_and_the_scrape_config():
    for command in (["check", "rules", str(RULES)], ["check", "config", str(CONFIG)]):
        done = subprocess.run(
            [PROMTOOL, *command], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout + done.stderr


@needs_promtool
def test_promtool_refuses_a_broken_rule(tmp_path):
    broken = tmp_path / "rules.yml"
    broken.write_text(RULES.read_text().replace("sum by (job)", "sum by job", 1))
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(broken)], capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode != 0
