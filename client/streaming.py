"""Send large pools to ``RankStream``: a header, then raw chunks of ~4 MiB.

``build_request`` can leave the data of large tensors out of the request
(``deferred``); this module either puts it back (small requests go by
``Rank``) or streams it after a header that names the tensors.

The chunks are written in protobuf's wire format here (``encoded_messages``)
rather than built as messages: a message would copy each chunk's bytes
three times (slice, field, serialization); the encoding copies them once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alquery.v1 import query_pb2

CHUNK_BYTES = 4 << 20
"""Bytes of tensor data per streamed message."""

DEFAULT_THRESHOLD_BYTES = 1 << 20
"""Requests whose tensors hold more bytes than this go by ``RankStream``:
from about 1 MiB on, the stream is the faster way on loopback (see
bench/stream_threshold.py and its section of bench/RESULTS.md)."""

Progress = Callable[[int, int], None]
"""Told (bytes sent, bytes to send) after each chunk."""


def tensor_at(request: query_pb2.RankRequest, field: str) -> query_pb2.Tensor:
    """Return the tensor at ``field``, e.g. "pool.embeddings"."""
    group, _, name = field.partition(".")
    return getattr(getattr(request, group), name)


def payload_bytes(deferred: Mapping[str, NDArray]) -> int:
    """Return how many bytes of tensor data ``deferred`` holds."""
    return sum(array.nbytes for array in deferred.values())


def attach(request: query_pb2.RankRequest, deferred: Mapping[str, NDArray]) -> None:
    """Put each deferred tensor's bytes back into ``request``."""
    for field, array in deferred.items():
        tensor_at(request, field).data = array.tobytes()


def messages(
    request: query_pb2.RankRequest,
    deferred: Mapping[str, NDArray],
    progress: Progress | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[query_pb2.RankStreamRequest]:
    """Yield the header, then every deferred tensor's bytes in chunks."""
    header = query_pb2.RankStreamHeader(
        request=request, streamed_fields=list(deferred)
    )
    yield query_pb2.RankStreamRequest(header=header)
    total, sent = payload_bytes(deferred), 0
    for field, array in deferred.items():
        view = memoryview(np.ascontiguousarray(array)).cast("B")
        for start in range(0, len(view), chunk_bytes):
            piece = view[start : start + chunk_bytes]
            chunk = query_pb2.TensorChunk(field=field, data=bytes(piece))
            yield query_pb2.RankStreamRequest(chunk=chunk)
            sent += len(piece)
            if progress is not None:
                progress(sent, total)


def encoded_messages(
    request: query_pb2.RankRequest,
    deferred: Mapping[str, NDArray],
    progress: Progress | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[bytes]:
    """Yield the messages of ``messages``, each already serialized.

    A chunk is a ``RankStreamRequest`` whose ``chunk`` holds ``field`` and
    ``data``; its encoding is that of protobuf (tags, lengths as varints),
    so the server may parse it like any message.
    """
    header = query_pb2.RankStreamHeader(
        request=request, streamed_fields=list(deferred)
    )
    yield query_pb2.RankStreamRequest(header=header).SerializeToString()
    total, sent = payload_bytes(deferred), 0
    for field, array in deferred.items():
        view = memoryview(np.ascontiguousarray(array)).cast("B")
        name = field.encode()
        for start in range(0, len(view), chunk_bytes):
            piece = view[start : start + chunk_bytes]
            yield b"".join((_chunk_prefix(name, len(piece)), piece))
            sent += len(piece)
            if progress is not None:
                progress(sent, total)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Tags (field number << 3 | 2, length-delimited) of the fields written.
_TAG_CHUNK = b"\x12"  # RankStreamRequest.chunk = 2
_TAG_FIELD = b"\x0a"  # TensorChunk.field = 1
_TAG_DATA = b"\x12"  # TensorChunk.data = 2


def _chunk_prefix(name: bytes, n_bytes: int) -> bytes:
    """The bytes of a chunk message that come before its data."""
    inner = _TAG_FIELD + _varint(len(name)) + name + _TAG_DATA + _varint(n_bytes)
    return _TAG_CHUNK + _varint(len(inner) + n_bytes) + inner


def rank_stream(
    call: Any,
    request: query_pb2.RankRequest,
    deferred: Mapping[str, NDArray],
    progress: Progress | None,
    **options: Any,
) -> query_pb2.RankResponse:
    """Call ``RankStream`` with ``options``; ``call`` takes serialized
    messages (a ``stream_unary`` method without a request serializer)."""
    return call(encoded_messages(request, deferred, progress), **options).response
