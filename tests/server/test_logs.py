"""Text and JSON-lines log formats of ``alquery serve``."""

import json

import pytest

from alquery.client import AlqueryClient
from alquery.client.local import LocalServer
from alquery.server import logs


def test_json_lines_carry_the_request_fields():
    with LocalServer(["--log-format", "json"]) as server:
        with AlqueryClient(server.target, timeout=30) as client:
            client.rank("uncertainty.margin", 1, probabilities=[[0.6, 0.4]])
    entries = [json.loads(line) for line in server.log if line.startswith("{")]
    assert len(entries) == len([line for line in server.log if line.strip()])
    request = next(e for e in entries if e["message"].startswith("request "))
    assert request["logger"] == "alquery.server.requests"
    assert request["level"] == "INFO" and request["time"].endswith("Z")
    assert {k: request[k] for k in ("method", "strategy", "n_pool", "status")} == {
        "method": "Rank", "strategy": "uncertainty.margin", "n_pool": 1,
        "status": "OK",
    }
    assert isinstance(request["duration_ms"], float)


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="log_format"):
        logs.configure("INFO", "xml")
