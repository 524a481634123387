"""Retry calls that fail with UNAVAILABLE, with exponential backoff.

UNAVAILABLE means the server could not be reached or is restarting; every
alquery RPC is stateless, so sending it again is safe. Other statuses are
final and never retried. The call's deadline covers all its attempts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import numbers
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from alquery.client.errors import AlqueryError

logger = logging.getLogger("alquery.client.retry")

Response = TypeVar("Response")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, to resend a call that got UNAVAILABLE.

    Attempt k (k >= 2) waits ``min(max_backoff, initial_backoff *
    multiplier ** (k - 2))`` seconds, times a random factor in [0.5, 1) so
    that many clients do not retry in step.

    Parameters
    ----------
    max_attempts : int, default=5
        Attempts in all, the first included; 1 turns retries off.
    initial_backoff : float, default=0.2
        Seconds before the second attempt.
    max_backoff : float, default=5.0
        The longest wait between two attempts, in seconds.
    multiplier : float, default=2.0
        How much longer each wait is than the one before.

    Notes
    -----
    A waiting period that would end after the call's deadline is not waited:
    the call fails at once with its last UNAVAILABLE. gRPC's channel waits
    about 1 s (then longer) before it reconnects to a server that refused a
    connection, so attempts inside that window fail fast; the defaults span
    about 3 s, enough for two reconnection tries.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts={self.max_attempts}; must be at least 1")
        if not (self.initial_backoff >= 0 and self.max_backoff >= 0):
            raise ValueError("initial_backoff and max_backoff must be at least 0")
        if not self.multiplier >= 1:
            raise ValueError(f"multiplier={self.multiplier}; must be at least 1")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 for the first retry), jittered."""
        delay = self.initial_backoff * self.multiplier ** (attempt - 2)
        return min(self.max_backoff, delay) * random.uniform(0.5, 1.0)


NO_RETRY = RetryPolicy(max_attempts=1)


def checked_policy(retry: Any) -> RetryPolicy:
    """``retry`` itself, when it is a ``RetryPolicy``.

    Anything else would be read only on the first UNAVAILABLE, the moment
    the server is down, and fail there.

    Raises
    ------
    TypeError
        For anything but a ``RetryPolicy``.
    """
    if not isinstance(retry, RetryPolicy):
        raise TypeError(
            f"retry: got {retry!r}; expected a RetryPolicy "
            "(RetryPolicy(max_attempts=1) turns retries off)"
        )
    return retry


def checked_timeout(timeout: Any) -> float | None:
    """``timeout`` as a float number of seconds, or None (no deadline).

    gRPC takes inf and nan, and a numpy scalar, as a deadline already past,
    so the call ends DEADLINE_EXCEEDED before it is sent; 0 or less would
    race the clock. They are refused here instead.

    Raises
    ------
    AlqueryError
        INVALID_ARGUMENT naming ``timeout`` for anything but None or a
        finite real number above 0.
    """
    if timeout is None:
        return None
    if isinstance(timeout, numbers.Real) and not isinstance(timeout, bool):
        seconds = float(timeout)
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    raise AlqueryError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"timeout: got {timeout!r}; expected a finite number of seconds above "
        "0 (None waits without a deadline)",
    )


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _next_wait(
    error: grpc.RpcError, policy: RetryPolicy, attempt: int, deadline: float | None
) -> float | None:
    """Seconds to wait before the next attempt, or None to give up."""
    if error.code() != grpc.StatusCode.UNAVAILABLE or attempt >= policy.max_attempts:
        return None
    wait = policy.backoff(attempt + 1)
    remaining = _remaining(deadline)
    if remaining is not None and wait >= remaining:
        return None
    logger.info(
        "attempt %d of %d got UNAVAILABLE; retrying in %.2f s",
        attempt, policy.max_attempts, wait,
    )
    return wait


def call_with_retry(
    method: Callable[..., Response],
    request: Any,
    *,
    timeout: float | None,
    policy: RetryPolicy,
) -> Response:
    """Call ``method(request, timeout=...)``, retrying UNAVAILABLE.

    Parameters
    ----------
    method : callable
        A unary-unary stub method.
    request : protobuf message
        The request, sent unchanged on every attempt.
    timeout : float or None
        The deadline in seconds for all attempts together; None waits
        forever.
    policy : RetryPolicy
        How many attempts, and how long between them.

    Raises
    ------
    grpc.RpcError
        The last attempt's error, when it is not UNAVAILABLE, when the
        attempts are used up, or when the deadline leaves no time to wait.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    attempt = 1
    while True:
        try:
            return method(request, timeout=_remaining(deadline))
        except grpc.RpcError as error:
            wait = _next_wait(error, policy, attempt, deadline)
            if wait is None:
                raise
        time.sleep(wait)
        attempt += 1


async def call_with_retry_async(
    method: Callable[..., Awaitable[Response]],
    request: Any,
    *,
    timeout: float | None,
    policy: RetryPolicy,
) -> Response:
    """The ``grpc.aio`` form of ``call_with_retry``; same parameters."""
    deadline = None if timeout is None else time.monotonic() + timeout
    attempt = 1
    while True:
        try:
            return await method(request, timeout=_remaining(deadline))
        except grpc.RpcError as error:
            wait = _next_wait(error, policy, attempt, deadline)
            if wait is None:
                raise
        await asyncio.sleep(wait)
        attempt += 1
