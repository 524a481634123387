"""The one error type the Python client raises."""

from __future__ import annotations

from typing import Any

import grpc


class AlqueryError(Exception):
    """A status from the server, or a request the client refused to send.

    Attributes
    ----------
    code : grpc.StatusCode
        The gRPC status, e.g. ``INVALID_ARGUMENT``; the client uses the same
        codes for what it checks itself.
    details : str
        The message, naming the field and what was wrong.
    """

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def from_rpc_error(error: grpc.RpcError, request: Any) -> AlqueryError:
    """An ``AlqueryError`` for a failed call of ``request``.

    A request the server refused as too large gets its size and the two
    ways out added to the message.
    """
    details = error.details() or ""
    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and (
        "Received message larger than max" in details
        and details.startswith("SERVER")
    ):
        details += (
            f"; this request is {request.ByteSize()} bytes: send fewer "
            "samples, or start the server with a larger --max-message-mib"
        )
    return AlqueryError(error.code(), details)
