"""A RankStream the client cancels midway is counted as CANCELLED, not as a
server error or a malformed request."""

import threading
import time

import pytest

from test_app import scrape
from test_streaming import chunk, header


def handled_stream(samples, code):
    labels = (
        ("grpc_code", code),
        ("grpc_method", "RankStream"),
        ("grpc_service", "alquery.v1.QueryService"),
        ("grpc_type", "client_stream"),
    )
    return samples.get(("grpc_server_handled_total", labels), 0.0)


def test_a_stream_cancelled_midway_counts_as_cancelled(server, stub):
    release = threading.Event()

    def messages():
        yield header()
        yield chunk(bytes(8))
        release.wait(10)  # hold the stream open until the client cancels

    before = scrape(server)
    call = stub.RankStream.future(messages(), timeout=30)
    time.sleep(0.5)
    call.cancel()
    start = time.monotonic()
    while server.interceptor.in_flight and time.monotonic() - start < 20:
        time.sleep(0.05)
    # Only now may the generator end: ending it earlier could half-close the
    # stream before the cancel goes out, and the server would rightly see a
    # short tensor.
    release.set()
    after = scrape(server)
    codes = {
        code: handled_stream(after, code) - handled_stream(before, code)
        for code in ("CANCELLED", "INTERNAL", "INVALID_ARGUMENT", "UNKNOWN")
    }
    assert codes == pytest.approx(
        {"CANCELLED": 1, "INTERNAL": 0, "INVALID_ARGUMENT": 0, "UNKNOWN": 0}
    )
