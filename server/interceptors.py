"""One interceptor for every RPC: metrics, and the one log line per request.

Handlers fill in the ``CallRecord`` of the current call (strategy, pool size,
batch size); the interceptor writes the line once the status is known.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from alquery.server.metrics import Metrics

logger = logging.getLogger("alquery.server.requests")

QUERY_SERVICE = "alquery.v1.QueryService"


@dataclasses.dataclass
class CallRecord:
    """What a handler knows about the call it serves, for the log line."""

    strategy: str = ""
    n_pool: int | None = None
    batch_size: int | None = None
    reject_reason: str = ""
    """Why the call was refused, when a finer reason than its code is
    known (e.g. "token_wrong"); the rejected-requests metric uses it."""


REJECTED_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
"""Codes that mean "refused because of the request", counted by
``alquery_rejected_requests_total`` with the code's name as reason unless
the refusing code gave a finer one."""


_current: contextvars.ContextVar[CallRecord] = contextvars.ContextVar("call")


def current_call() -> CallRecord:
    """Return the record of the call being served (a fresh one outside calls)."""
    try:
        return _current.get()
    except LookupError:
        return CallRecord()


class _MethodMetrics:
    """One method's labelled metric series, looked up once, not per call.

    ``Metric.labels`` takes a lock and checks its arguments on every call;
    the series of a method never change, so the interceptor keeps them here.
    """

    def __init__(self, metrics: Metrics, labels: tuple[str, str, str]) -> None:
        self.metrics = metrics
        self.labels = labels
        self.started = metrics.started.labels(*labels)
        self.handling_seconds = metrics.handling_seconds.labels(*labels)
        self.received = metrics.received.labels(*labels)
        self.sent = metrics.sent.labels(*labels)
        self.request_bytes = metrics.request_bytes.labels(*labels[1:])
        self.response_bytes = metrics.response_bytes.labels(*labels[1:])
        self._handled: dict[grpc.StatusCode, Any] = {}

    def handled(self, code: grpc.StatusCode) -> Any:
        """The ``grpc_server_handled_total`` series of ``code``."""
        series = self._handled.get(code)
        if series is None:
            series = self.metrics.handled.labels(*self.labels, code.name)
            self._handled[code] = series
        return series


class _Call:
    """Book-keeping for one RPC from start to status."""

    def __init__(self, series: _MethodMetrics) -> None:
        self.series = series
        self.metrics = series.metrics
        self.labels = series.labels
        self.record = CallRecord()
        self.start = time.perf_counter()
        series.started.inc()
        logger.debug("request started method=%s", self.labels[2])

    def finish(self, context: grpc.ServicerContext, error: bool) -> None:
        code = context.code()
        if not context.is_active() and code in (None, grpc.StatusCode.CANCELLED):
            # The client cancelled, or its deadline passed: whatever the
            # handler returned was never delivered.
            remaining = context.time_remaining()
            expired = remaining is not None and remaining <= 0
            code = (
                grpc.StatusCode.DEADLINE_EXCEEDED
                if expired
                else grpc.StatusCode.CANCELLED
            )
        if code is None:
            code = grpc.StatusCode.UNKNOWN if error else grpc.StatusCode.OK
        seconds = time.perf_counter() - self.start
        self.series.handled(code).inc()
        self.series.handling_seconds.observe(seconds)
        if code in REJECTED_CODES:
            reason = self.record.reject_reason or code.name.lower()
            self.metrics.rejected.labels(reason).inc()
        _, service, method = self.labels
        level = logging.INFO if service == QUERY_SERVICE else logging.DEBUG
        if not logger.isEnabledFor(level):
            return
        # JSON keeps each field's type: null where the text line shows "-".
        fields = {
            "method": method,
            "strategy": self.record.strategy or None,
            "n_pool": self.record.n_pool,
            "batch_size": self.record.batch_size,
            "status": code.name,
            "duration_ms": round(seconds * 1000.0, 1),
        }
        logger.log(
            level,
            "request method=%s strategy=%s n_pool=%s batch_size=%s status=%s "
            "duration_ms=%.1f",
            *("-" if value is None else value for value in fields.values()),
            extra={"fields": fields},
        )

    def observe_size(self, series: Any, message: Any) -> None:
        """Record the serialized size of a request or response message."""
        if isinstance(message, bytes):
            size = len(message)
        else:
            size = message.ByteSize()
        series.observe(size)


class ObservingInterceptor(grpc.ServerInterceptor):
    """Counts, times and logs every RPC the server handles."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._in_flight = 0
        # By method path: the handler last wrapped and its wrapper. Only
        # methods the server has get in (unknown ones have no handler), so
        # it stays as small as the services.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, Any]] = {}
        self._series: dict[tuple[str, str, str], _MethodMetrics] = {}

    @property
    def in_flight(self) -> int:
        """How many RPC handlers are running now."""
        with self._lock:
            return self._in_flight

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
        self._metrics.in_flight.inc()

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
        self._metrics.in_flight.dec()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        path = handler_call_details.method
        cached = self._wrapped.get(path)
        # The same handler object comes back for every call of a method,
        # unless a later interceptor replaced it (a refused token).
        if cached is not None and cached[0] is handler:
            return cached[1]
        service, _, method = path.lstrip("/").rpartition("/")
        streams = (handler.request_streaming, handler.response_streaming)
        labels = (_GRPC_TYPES[streams], service, method)
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = _MethodMetrics(self._metrics, labels)
        wrapped = _wrap(handler, lambda: _Call(series), self)
        self._wrapped[path] = (handler, wrapped)
        return wrapped


_GRPC_TYPES = {
    (False, False): "unary",
    (True, False): "client_stream",
    (False, True): "server_stream",
    (True, True): "bidi_stream",
}


def _wrap(
    handler: grpc.RpcMethodHandler,
    begin: Callable[[], _Call],
    counter: ObservingInterceptor,
) -> Any:
    if handler.request_streaming and handler.response_streaming:
        behavior, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        behavior, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        behavior, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
    else:
        behavior, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler

    def counted(requests: Iterator[Any], call: _Call) -> Iterator[Any]:
        for request in requests:
            call.series.received.inc()
            call.observe_size(call.series.request_bytes, request)
            yield request

    def run(request: Any, context: grpc.ServicerContext) -> Any:
        call = begin()
        if handler.request_streaming:
            request = counted(request, call)
        else:
            call.series.received.inc()
            call.observe_size(call.series.request_bytes, request)
        token = _current.set(call.record)
        counter._enter()
        try:
            try:
                result = behavior(request, context)
            except BaseException:
                call.finish(context, error=True)
                raise
            if handler.response_streaming:
                return _streamed(result, call, context)
            call.series.sent.inc()
            call.observe_size(call.series.response_bytes, result)
            call.finish(context, error=False)
            return result
        finally:
            # Only once the call is counted and logged is it no longer in
            # flight, so a drained server has recorded everything.
            counter._leave()
            _current.reset(token)

    return factory(
        run,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _streamed(
    responses: Iterator[Any], call: _Call, context: grpc.ServicerContext
) -> Iterator[Any]:
    error = True
    try:
        for response in responses:
            call.series.sent.inc()
            call.observe_size(call.series.response_bytes, response)
            yield response
        error = False
    finally:
        call.finish(context, error=error)


def refusing_handler(
    handler: grpc.RpcMethodHandler, refuse: Callable[[Any, grpc.ServicerContext], Any]
) -> grpc.RpcMethodHandler:
    """A handler of the same kind (unary or streaming, each way) and the
    same (de)serializers as ``handler`` whose behaviour is ``refuse``; an
    interceptor returns it to end a call before the servicer runs."""
    if handler.request_streaming and handler.response_streaming:
        factory = grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        factory = grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        factory = grpc.unary_stream_rpc_method_handler
    else:
        factory = grpc.unary_unary_rpc_method_handler
    return factory(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
