"""Text and JSON-lines log formats of ``alquery serve``."""

import json

import pytest

from alquery.client import AlqueryClient, AlqueryError
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


def test_json_fields_keep_their_type_when_a_request_is_refused():
    # n_pool and batch_size were the string "-" in JSON when unknown, an
    # integer otherwise: a log pipeline's field mapping took one or the other.
    with LocalServer(["--log-format", "json"]) as server:
        with AlqueryClient(server.target, timeout=30) as client:
            with pytest.raises(AlqueryError):
                client.rank("uncertainty.margin", 0, probabilities=[[0.6, 0.4]])
    entries = [json.loads(line) for line in server.log if line.startswith("{")]
    request = next(e for e in entries if e["message"].startswith("request "))
    assert request["status"] == "INVALID_ARGUMENT"
    assert request["n_pool"] is None and request["batch_size"] is None
    assert request["strategy"] == "uncertainty.margin"
    # The text of the message is the text format's line, "-" and all.
    assert "n_pool=- batch_size=- status=INVALID_ARGUMENT" in request["message"]


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="log_format"):
        logs.configure("INFO", "xml")
