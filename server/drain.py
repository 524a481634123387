"""Refuse new query calls with UNAVAILABLE while a stopping server drains.

gRPC's own graceful stop lets running calls finish, but a call that has
reached the server and not yet been handed to a handler when the stop
begins is dropped, and its client sees CANCELLED: it cannot tell a call the
server never ran from one it ran and abandoned. So ``RunningServer.stop``
first drains: ``DrainInterceptor.start`` makes every new query-service
call end at once with UNAVAILABLE (the status that tells a client to retry
elsewhere), running calls finish, and only then is gRPC stopped. Health
checks and reflection are still answered (health says NOT_SERVING).

Notes
-----
A call that reaches the server after the drain, in the moment gRPC stops,
can still end CANCELLED without having run. ``quiet_seconds`` narrows that
window: once no call runs, the drain goes on until no query call has
arrived for that long, for at most ``linger_seconds``, so clients told to
go elsewhere have gone. Clients that keep sending here anyway can still
meet that window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from alquery.server.interceptors import QUERY_SERVICE, refusing_handler

logger = logging.getLogger("alquery.server.drain")

DETAILS = "the server is shutting down; send the call to another server"


class DrainInterceptor(grpc.ServerInterceptor):
    """Pass calls through until ``start``; then refuse query calls."""

    def __init__(self) -> None:
        self._draining = threading.Event()
        self._lock = threading.Lock()
        self._last_arrival = time.monotonic()

    def start(self) -> None:
        """Refuse every query call that arrives from now on."""
        self._draining.set()

    def quiet_for(self) -> float:
        """Seconds since the last query call arrived."""
        with self._lock:
            return time.monotonic() - self._last_arrival

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        service = handler_call_details.method.lstrip("/").rpartition("/")[0]
        if handler is None or service != QUERY_SERVICE:
            return handler
        with self._lock:
            self._last_arrival = time.monotonic()
        if not self._draining.is_set():
            return handler
        return _refusing(handler)


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that ends UNAVAILABLE."""

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAVAILABLE, DETAILS)

    return refusing_handler(handler, refuse)


def drain(
    interceptor: DrainInterceptor,
    in_flight: Callable[[], int],
    grace_seconds: float,
    quiet_seconds: float = 0.5,
    linger_seconds: float = 2.0,
) -> float:
    """Refuse new query calls and wait for the running ones to finish.

    Parameters
    ----------
    interceptor : DrainInterceptor
        The server's drain interceptor; started here.
    in_flight : callable
        How many calls run now.
    grace_seconds : float
        The most this may take.
    quiet_seconds, linger_seconds : float, default=0.5, 2.0
        Once no call runs, wait until no query call has arrived for
        ``quiet_seconds``, for at most ``linger_seconds``.

    Returns
    -------
    float
        The seconds of the grace period left.
    """
    deadline = time.monotonic() + grace_seconds
    interceptor.start()
    while in_flight() and time.monotonic() < deadline:
        time.sleep(0.01)
    linger_end = min(deadline, time.monotonic() + linger_seconds)
    while time.monotonic() < linger_end:
        if in_flight() == 0 and interceptor.quiet_for() >= quiet_seconds:
            break
        time.sleep(0.01)
    left = max(0.0, deadline - time.monotonic())
    logger.debug("drained grace_left_seconds=%.2f", left)
    return left
