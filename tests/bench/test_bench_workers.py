"""bench/workers.py: clients spread evenly, and rates over overlapping clients."""

import os
import pathlib
import socket
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))

from workers import _split, connections, summarise  # noqa: E402


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [(16, 4, [4, 4, 4, 4]), (16, 3, [6, 5, 5]), (2, 4, [1, 1, 0, 0])],
)
def test_clients_are_spread_as_evenly_as_can_be(total, parts, expected):
    assert _split(total, parts) == expected
    assert sum(_split(total, parts)) == total


def test_rate_counts_every_call_over_the_span_all_clients_cover():
    # Two clients: 0 to 2 s and 1 to 4 s; 8 calls over 4 s is 2 per second.
    results = [(0.0, 2.0, [1.0, 2.0, 3.0, 4.0]), (1.0, 4.0, [5.0, 6.0, 7.0, 8.0])]
    rate, p50, p99 = summarise(results)
    assert rate == 2.0
    assert p50 == 4.5
    assert 7.9 < p99 <= 8.0


def test_connections_counts_the_accepted_sockets_of_a_listening_process():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    accepted = [listener.accept()[0] for _ in clients]
    try:
        assert connections([os.getpid()], port) == [3]
        # A process that does not listen on the port is left out.
        assert connections([os.getppid()], port) == []
    finally:
        for sock in [*accepted, *clients, listener]:
            sock.close()
