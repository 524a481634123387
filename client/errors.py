"""The one error type the Python client raises."""

from __future__ import annotations

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
