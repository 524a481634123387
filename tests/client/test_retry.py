"""Calls that get UNAVAILABLE are retried with backoff, within the deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from alquery.client import AlqueryClient, AlqueryError, AsyncAlqueryClient
from alquery.client.retry import RetryPolicy
from alquery.server import app

PROBABILITIES = [[0.6, 0.4], [0.9, 0.1]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


LATE = RetryPolicy(max_attempts=10, initial_backoff=0.2, max_backoff=1.0)
"""Retries long enough to reach a server that starts 0.5 s late."""


@contextlib.contextmanager
def late_server() -> Iterator[int]:
    """Yield a free port on which a server starts 0.5 s later; stop it after."""
    port = free_port()
    started = []
    timer = threading.Timer(
        0.5,
        lambda: started.append(
            app.start(app.ServerConfig(port=port, metrics_port=None, threads=2))
        ),
    )
    timer.start()
    try:
        yield port
    finally:
        timer.join()
        for server in started:
            server.stop(grace_seconds=0)


def retries(caplog) -> int:
    return sum("retrying" in r.getMessage() for r in caplog.records)


def test_a_server_that_starts_late_is_reached_by_retrying(caplog):
    caplog.set_level(logging.INFO, logger="alquery.client.retry")
    with late_server() as port:
        with AlqueryClient(f"127.0.0.1:{port}", timeout=30, retry=LATE) as client:
            result = client.rank("uncertainty.margin", 1, probabilities=PROBABILITIES)
    assert result.indices.tolist() == [0]
    assert retries(caplog) >= 1


def test_a_streamed_call_is_retried_with_its_chunks_sent_again(caplog):
    caplog.set_level(logging.INFO, logger="alquery.client.retry")
    progress = []
    with late_server() as port:
        with AlqueryClient(
            f"127.0.0.1:{port}", timeout=30, retry=LATE, stream_threshold_bytes=0
        ) as client:
            result = client.rank(
                "uncertainty.margin", 1, probabilities=PROBABILITIES,
                progress=lambda *sent: progress.append(sent),
            )
    assert result.indices.tolist() == [0]
    assert retries(caplog) >= 1
    assert progress[-1][0] == progress[-1][1] > 0


def test_without_retries_an_absent_server_fails_at_once(caplog):
    caplog.set_level(logging.INFO, logger="alquery.client.retry")
    target = f"127.0.0.1:{free_port()}"
    with AlqueryClient(target, retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(AlqueryError) as caught:
            client.rank("uncertainty.margin", 1, probabilities=PROBABILITIES)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert retries(caplog) == 0


def test_attempts_are_bounded_and_back_off(caplog):
    caplog.set_level(logging.INFO, logger="alquery.client.retry")
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.1, multiplier=2.0)
    target = f"127.0.0.1:{free_port()}"
    with AlqueryClient(target, retry=policy) as client:
        began = time.monotonic()
        with pytest.raises(AlqueryError, match="UNAVAILABLE"):
            client.strategies()
        elapsed = time.monotonic() - began
    assert retries(caplog) == 3
    # Waits of 0.1, 0.2 and 0.4 s, each jittered to at least half.
    assert elapsed >= 0.35


def test_no_wait_outlives_the_deadline(caplog):
    caplog.set_level(logging.INFO, logger="alquery.client.retry")
    policy = RetryPolicy(max_attempts=5, initial_backoff=5.0)
    target = f"127.0.0.1:{free_port()}"
    with AlqueryClient(target, timeout=1.0, retry=policy) as client:
        began = time.monotonic()
        with pytest.raises(AlqueryError, match="UNAVAILABLE"):
            client.rank("uncertainty.margin", 1, probabilities=PROBABILITIES, timeout=1)
        assert time.monotonic() - began < 1.0
    assert retries(caplog) == 0


def test_other_statuses_are_not_retried(client, caplog):
    caplog.set_level(logging.INFO, logger="alquery.client.retry")
    with pytest.raises(AlqueryError, match="INVALID_ARGUMENT"):
        client.rank("uncertainty.margin", 1, probabilities=[[0.5, 0.4]])
    assert retries(caplog) == 0


def test_a_per_call_deadline_overrides_the_clients(client):
    # 1 ms cannot rank anything: the call fails with DEADLINE_EXCEEDED.
    with pytest.raises(AlqueryError) as caught:
        client.rank(
            "diversity.kcenter", 50, embeddings=[[float(i)] * 64 for i in range(4000)],
            timeout=0.001,
        )
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    "attempt, low, high", [(2, 0.1, 0.2), (3, 0.2, 0.4), (9, 0.5, 1.0)]
)
def test_backoff_grows_and_is_capped(attempt, low, high):
    policy = RetryPolicy(initial_backoff=0.2, max_backoff=1.0, multiplier=2.0)
    for _ in range(50):
        assert low <= policy.backoff(attempt) < high


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"max_attempts": 0}, "max_attempts=0; must be at least 1"),
        ({"initial_backoff": -1}, "must be at least 0"),
        ({"multiplier": 0.5}, "multiplier=0.5; must be at least 1"),
    ],
)
def test_bad_policies_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**settings)


BAD_TIMEOUTS = [0, -1.0, float("nan"), float("inf"), "5", True]


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS)
def test_a_timeout_that_is_no_deadline_is_refused_naming_it(target, timeout):
    # inf and nan used to become a deadline already past (DEADLINE_EXCEEDED
    # before anything was sent), 0 a call that sometimes ran anyway.
    with pytest.raises(AlqueryError) as raised:
        AlqueryClient(target, timeout=timeout)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details.startswith(f"timeout: got {timeout!r}")
    with AlqueryClient(target) as client:
        for call in (
            lambda: client.rank("uncertainty.margin", 1, probabilities=PROBABILITIES,
                                timeout=timeout),
            lambda: client.strategies(timeout=timeout),
        ):
            with pytest.raises(AlqueryError) as raised:
                call()
            assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "None waits without a deadline" in raised.value.details


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS)
def test_the_asyncio_client_refuses_the_same_timeouts(target, timeout):
    async def rank() -> None:
        async with AsyncAlqueryClient(target) as client:
            await client.rank(
                "uncertainty.margin", 1, probabilities=PROBABILITIES, timeout=timeout
            )

    with pytest.raises(AlqueryError) as raised:
        AsyncAlqueryClient(target, timeout=timeout)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(AlqueryError) as raised:
        asyncio.run(rank())
    assert raised.value.details.startswith(f"timeout: got {timeout!r}")


@pytest.mark.parametrize("timeout", [None, 30, 2.5, np.float32(30)])
def test_a_finite_positive_timeout_or_none_is_taken(target, timeout):
    with AlqueryClient(target, timeout=timeout) as client:
        result = client.rank(
            "uncertainty.margin", 1, probabilities=PROBABILITIES, timeout=timeout
        )
    assert result.indices.tolist() == [0]


@pytest.mark.parametrize(
    "options, error, message",
    [
        # Taken, then an AttributeError on the first UNAVAILABLE: when the
        # server was down, the one case retries are for.
        ({"retry": None}, TypeError, "retry: got None; expected a RetryPolicy"),
        ({"retry": 3}, TypeError, "retry: got 3; expected a RetryPolicy"),
        ({"security": 5}, TypeError, "security: got 5; expected a ChannelSecurity"),
        ({"stream_threshold_bytes": "1"}, TypeError, "stream_threshold_bytes"),
        ({"stream_threshold_bytes": -1}, ValueError, "stream_threshold_bytes"),
    ],
)
def test_client_options_of_the_wrong_kind_are_refused_at_once(options, error, message):
    with pytest.raises(error, match=message):
        AlqueryClient("127.0.0.1:1", **options)


@pytest.mark.parametrize("retry", [None, 3])
def test_the_asyncio_client_refuses_a_retry_that_is_no_policy(retry):
    with pytest.raises(TypeError, match="retry: got"):
        AsyncAlqueryClient("127.0.0.1:1", retry=retry)
