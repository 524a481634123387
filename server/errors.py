"""Our exception types, and the one place that maps them to gRPC status codes.

Strategies and the request edge raise these; the servicer turns them into a
status with ``status_for``. Anything else that escapes is a bug: it becomes
``INTERNAL`` with a generic message, and its traceback goes to the log.
"""

from __future__ import annotations

import grpc


class AlqueryError(Exception):
    """Base of every error the server reports to a client on purpose.

    The message is sent to the client as the status details, so it names the
    field, what was wrong and what was expected.
    """


class InvalidRequestError(AlqueryError):
    """The request parsed but breaks a rule: shape, dtype, range, missing input."""


class TooLargeError(AlqueryError):
    """The request is within the message limit but exceeds a size limit."""


class MemoryBudgetError(TooLargeError):
    """A request's estimated working memory does not fit the server's budget,
    alone (``reason`` "memory_budget") or next to the requests running now
    until its deadline ("memory_wait")."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnknownModelError(AlqueryError):
    """A request names a model by a SHA-256 the server does not hold."""


class SharedMemoryDisabledError(AlqueryError):
    """A request references shared memory, but the server was started
    without ``--shared-memory-dir``, or its directory can no longer be used
    (removed, or opened to other users, since the server started)."""


class CancelledError(AlqueryError):
    """The client cancelled, its deadline passed, or the server is stopping;
    a strategy noticed between chunks and stopped early."""


_STATUS_BY_ERROR: dict[type[AlqueryError], grpc.StatusCode] = {
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    TooLargeError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    CancelledError: grpc.StatusCode.CANCELLED,
    UnknownModelError: grpc.StatusCode.NOT_FOUND,
    SharedMemoryDisabledError: grpc.StatusCode.FAILED_PRECONDITION,
}

INTERNAL_MESSAGE = "internal error; the server log has the details"


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """Return the status code and details to send for ``error``."""
    for error_type, code in _STATUS_BY_ERROR.items():
        if isinstance(error, error_type):
            return code, str(error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
