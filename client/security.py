"""Client-side transport security: the channel to open and the token to send.

A CA file switches the channel to TLS; a certificate and key add the client
certificate that a server with ``--tls-client-ca`` asks for. The bearer
token travels as ``authorization: Bearer <token>`` metadata on every call.
It is sent over plaintext too when no CA is given (for a TLS-terminating
proxy on the same host); anywhere else, use TLS.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

TOKEN_ENV = "ALQUERY_AUTH_TOKEN"


@dataclasses.dataclass(frozen=True)
class ChannelSecurity:
    """What the client needs to reach a secured server.

    Attributes
    ----------
    ca_file : path or None
        PEM CA certificates that sign the server's certificate; given, the
        channel uses TLS.
    cert_file, key_file : path or None
        The client's PEM certificate and key, for mutual TLS; both or
        neither, and only with ``ca_file``.
    token : str or None
        The bearer token. Not shown in the repr.
    """

    ca_file: str | os.PathLike[str] | None = None
    cert_file: str | os.PathLike[str] | None = None
    key_file: str | os.PathLike[str] | None = None
    token: str | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file: give both or neither")
        if self.cert_file is not None and self.ca_file is None:
            raise ValueError("cert_file: a client certificate needs ca_file (TLS)")

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata carrying the token (empty without one)."""
        if self.token is None:
            return ()
        return (("authorization", f"Bearer {self.token}"),)

    def open_channel(
        self, target: str, options: Sequence[tuple[str, Any]] = ()
    ) -> grpc.Channel:
        """Open a TLS channel when ``ca_file`` is set, else a plaintext one.

        Raises
        ------
        OSError
            When a PEM file cannot be read.
        """
        if self.ca_file is None:
            return grpc.insecure_channel(target, options=list(options))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca_file).read_bytes(),
            private_key=_maybe_read(self.key_file),
            certificate_chain=_maybe_read(self.cert_file),
        )
        return grpc.secure_channel(target, credentials, options=list(options))


def _maybe_read(path: str | os.PathLike[str] | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


def read_token(path: str | os.PathLike[str] | None) -> str | None:
    """Return the token in file ``path``, else ``$ALQUERY_AUTH_TOKEN``, else None.

    Surrounding white space (a trailing newline) is dropped.

    Raises
    ------
    OSError
        When the file cannot be read.
    ValueError
        When the token is empty.
    """
    if path is not None:
        token, source = Path(path).read_text(encoding="utf-8").strip(), str(path)
    elif os.environ.get(TOKEN_ENV):
        token, source = os.environ[TOKEN_ENV].strip(), TOKEN_ENV
    else:
        return None
    if not token:
        raise ValueError(f"{source}: the token is empty")
    return token
