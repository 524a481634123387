"""Transport security and the bearer-token check of ``alquery serve``.

TLS is gRPC's own: ``server_credentials`` reads the PEM files once at start.
With a client CA the server asks every client for a certificate signed by
it (mutual TLS) and the handshake fails without one, so such a client only
sees UNAVAILABLE. The bearer token is checked per call by
``TokenInterceptor``: a call without ``authorization: Bearer <token>``
metadata, or with another token, ends UNAUTHENTICATED before any handler
runs. The token is compared in constant time and never logged.

A call that carries ``authorization`` more than once is refused too, even
when one of the values is right: taking any of several would let a client
try several tokens per call, and proxies differ on which copy of a repeated
header they pass on, so the server and a proxy could check different ones.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import grpc

from alquery.server.interceptors import current_call, refusing_handler

logger = logging.getLogger("alquery.server.security")

TOKEN_ENV = "ALQUERY_AUTH_TOKEN"
"""Environment variable holding the token itself, when no file is given."""

HEALTH_SERVICE = "grpc.health.v1.Health"
OPEN_SERVICES = frozenset({HEALTH_SERVICE})
"""Services answered without a token: probes (a kubelet's gRPC probe, a
load balancer's check) cannot send one. Reflection needs the token."""


class SecurityConfigError(ValueError):
    """A TLS file or the token cannot be used; the message names which."""


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """PEM files of the server's certificate, its key and an optional client CA.

    Attributes
    ----------
    cert : path
        The server certificate chain.
    key : path
        Its private key, unencrypted.
    client_ca : path or None
        CA certificates that sign client certificates; set it to require
        mutual TLS.
    """

    cert: Path
    key: Path
    client_ca: Path | None = None


def _read(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise SecurityConfigError(f"{what} {path}: cannot read ({error.strerror})")
    if b"-----BEGIN " not in data:
        raise SecurityConfigError(f"{what} {path}: not a PEM file")
    return data


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Build gRPC server credentials from ``files``.

    Raises
    ------
    SecurityConfigError
        When a file cannot be read or holds no PEM block.
    """
    cert = _read(files.cert, "--tls-cert")
    key = _read(files.key, "--tls-key")
    client_ca = None
    if files.client_ca is not None:
        client_ca = _read(files.client_ca, "--tls-client-ca")
    return grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def load_token(path: str | os.PathLike[str] | None) -> str | None:
    """Return the token from the file ``path``, else from ``ALQUERY_AUTH_TOKEN``.

    Surrounding white space (a trailing newline) is dropped. None means no
    token is configured (no file, and the variable unset): every call is
    let through.

    Raises
    ------
    SecurityConfigError
        When the file cannot be read, or the token is empty or holds
        characters that cannot travel in gRPC metadata.
    """
    if path is not None:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise SecurityConfigError(
                f"--auth-token-file {path}: cannot read ({error})"
            ) from None
        source = f"--auth-token-file {path}"
    elif TOKEN_ENV in os.environ:
        # Set but empty (a secret that resolved to nothing) fails below
        # rather than starting a server open to every call.
        token, source = os.environ[TOKEN_ENV].strip(), TOKEN_ENV
    else:
        return None
    if not token:
        raise SecurityConfigError(f"{source}: the token is empty")
    if not all(0x21 <= ord(char) <= 0x7E for char in token):
        raise SecurityConfigError(
            f"{source}: the token must be printable ASCII without spaces"
        )
    return token


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuse calls that lack ``authorization: Bearer <token>``.

    Parameters
    ----------
    token : str
        The expected token.
    open_services : collection of str, default=OPEN_SERVICES
        Full service names answered without a token.
    """

    def __init__(
        self, token: str, open_services: Collection[str] = OPEN_SERVICES
    ) -> None:
        self._expected = token.encode("ascii")
        self._open = frozenset(open_services)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        service = handler_call_details.method.lstrip("/").rpartition("/")[0]
        if handler is None or service in self._open:
            return handler
        reason = self._refusal(handler_call_details.invocation_metadata or ())
        if reason is None:
            return handler
        return _refusing(handler, reason)

    def _refusal(self, metadata: Any) -> str | None:
        """Return why the call is refused ("token_missing", "token_wrong",
        "token_repeated")."""
        values = [value for key, value in metadata if key == "authorization"]
        if not values:
            return "token_missing"
        if len(values) > 1:
            return "token_repeated"
        scheme, _, presented = str(values[0]).partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return "token_missing"
        # compare_digest on bytes takes time independent of where they differ.
        if hmac.compare_digest(presented.strip().encode("utf-8"), self._expected):
            return None
        return "token_wrong"


_REFUSAL_DETAILS = {
    "token_missing": (
        "authorization: no bearer token; send metadata "
        "'authorization: Bearer <token>' (alquery --token-file)"
    ),
    "token_wrong": "authorization: the bearer token is not accepted",
    "token_repeated": (
        "authorization: sent more than once; send exactly one "
        "'authorization: Bearer <token>'"
    ),
}


def _refusing(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that ends UNAUTHENTICATED."""

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        current_call().reject_reason = reason
        context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSAL_DETAILS[reason])

    return refusing_handler(handler, refuse)
