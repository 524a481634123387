"""Assemble a ``RankStream`` call: a header, then raw chunks of its tensors.

Each streamed tensor goes into one buffer allocated once, from the shape
and dtype the header declares, after the declared total has been checked
against the server's limit. Chunks are copied into place in order; the
buffers then go to ``edge.build_query`` as they are (no further copy),
which checks them like the tensors of a plain ``Rank``.

Chunks are read straight from their wire bytes (``parse``) when they are
laid out as protobuf writes them, so a chunk's data is copied once, into
its buffer, instead of three times through a parsed message.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
from google.protobuf.message import DecodeError
from numpy.typing import NDArray

from alquery.server.errors import InvalidRequestError, TooLargeError
from alquery.server.tensors import FLOAT_DTYPES, INT_DTYPES
from alquery.v1 import query_pb2

ITEMSIZES = {
    code: dtype.itemsize for code, dtype in {**FLOAT_DTYPES, **INT_DTYPES}.items()
}

STREAMABLE = (
    "pool.probabilities",
    "pool.logits",
    "pool.embeddings",
    "labeled.embeddings",
    "labeled.labels",
    "validation.probabilities",
    "validation.logits",
    "validation.labels",
    "validation.embeddings",
    "target.probabilities",
    "target.logits",
)
"""The tensor paths a header may name in ``streamed_fields``."""


@dataclasses.dataclass(frozen=True)
class RawChunk:
    """A ``TensorChunk`` read from its wire bytes: its field and a view of
    its data (no copy)."""

    field: str
    data: memoryview


def parse(raw: bytes) -> query_pb2.RankStreamRequest | RawChunk:
    """Read one ``RankStreamRequest`` from its wire bytes.

    A chunk laid out as protobuf serializes it (the ``chunk`` field alone,
    holding ``field`` then ``data``) comes back as a ``RawChunk`` that views
    ``raw``; any other message is parsed by protobuf.

    Raises
    ------
    InvalidRequestError
        When the bytes are not a ``RankStreamRequest``.
    """
    chunk = _read_chunk(raw)
    if chunk is not None:
        return chunk
    try:
        return query_pb2.RankStreamRequest.FromString(raw)
    except DecodeError as error:
        raise InvalidRequestError(
            "request: not a valid alquery.v1.RankStreamRequest message "
            f"({error})"
        ) from None


def _read_varint(raw: bytes, at: int) -> tuple[int, int]:
    """Return the varint at ``at`` and the position after it, or (-1, at)
    when there is none (too long, or cut off)."""
    value = 0
    for shift in range(0, 64, 7):
        if at >= len(raw):
            return -1, at
        byte = raw[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
    return -1, at


def _read_chunk(raw: bytes) -> RawChunk | None:
    """The chunk in ``raw`` when laid out as 0x12 len (0x0a len field)
    (0x12 len data) and nothing else; None for any other layout."""
    if not raw or raw[0] != 0x12:
        return None
    size, at = _read_varint(raw, 1)
    if size != len(raw) - at or at >= len(raw) or raw[at] != 0x0A:
        return None
    name_size, at = _read_varint(raw, at + 1)
    if name_size < 0 or at + name_size >= len(raw) or raw[at + name_size] != 0x12:
        return None
    try:
        field = raw[at : at + name_size].decode()
    except UnicodeDecodeError:
        return None
    data_size, at = _read_varint(raw, at + name_size + 1)
    if data_size != len(raw) - at:
        return None
    return RawChunk(field, memoryview(raw)[at:])


class _Slot:
    """One streamed tensor's buffer and how many of its bytes have come."""

    def __init__(self, field: str, size: int) -> None:
        self.field = field
        # np.empty maps the pages lazily: memory is touched as chunks land.
        self.buffer = np.empty(size, dtype=np.uint8)
        self.filled = 0

    def write(self, data: bytes | memoryview) -> None:
        end = self.filled + len(data)
        if end > len(self.buffer):
            raise InvalidRequestError(
                f"{self.field}.data: chunks bring more than the {len(self.buffer)} "
                "bytes the header's shape and dtype declare"
            )
        self.buffer[self.filled : end] = np.frombuffer(data, dtype=np.uint8)
        self.filled = end

    def finish(self) -> NDArray[np.uint8]:
        if self.filled != len(self.buffer):
            raise InvalidRequestError(
                f"{self.field}.data: the stream ended after {self.filled} of the "
                f"{len(self.buffer)} bytes the header's shape and dtype declare"
            )
        self.buffer.flags.writeable = False
        return self.buffer


def assemble(
    messages: Iterator[query_pb2.RankStreamRequest | RawChunk], max_bytes: int
) -> tuple[query_pb2.RankRequest, dict[str, NDArray[np.uint8]]]:
    """Read a whole ``RankStream`` call into its request and tensor bytes.

    Returns the header's request and a map from each streamed field path to
    its bytes, read-only, ready for ``edge.build_query(payloads=...)``.

    Raises
    ------
    InvalidRequestError
        No header first, a second header, a field that is not streamable,
        not present in the request, carries data of its own or is named
        twice, a bad dtype or shape, a chunk for a field the header did not
        name, chunks beyond a tensor's size, or a tensor left short.
    TooLargeError
        The header declares more bytes than ``max_bytes`` (checked before
        anything is allocated).
    """
    first = next(messages, None)
    if (
        first is None
        or isinstance(first, RawChunk)
        or first.WhichOneof("part") != "header"
    ):
        raise InvalidRequestError(
            "header: the first message of RankStream must be a header"
        )
    request = first.header.request
    slots = _allocate(request, list(first.header.streamed_fields), max_bytes)
    for message in messages:
        chunk = _as_chunk(message)
        slot = slots.get(chunk.field)
        if slot is None:
            raise InvalidRequestError(
                f"chunk.field: {chunk.field[:100]!r} is not one of the "
                f"header's streamed_fields ({', '.join(slots) or 'none'})"
            )
        slot.write(chunk.data)
    return request, {field: slot.finish() for field, slot in slots.items()}


def _as_chunk(message: query_pb2.RankStreamRequest | RawChunk) -> RawChunk:
    if isinstance(message, RawChunk):
        return message
    part = message.WhichOneof("part")
    if part == "header":
        raise InvalidRequestError(
            "header: only the first message of RankStream may be a header"
        )
    if part is None:
        raise InvalidRequestError(
            "part: a message after the header sets neither header nor "
            "chunk; every later message must carry a chunk"
        )
    # Each read of a bytes field copies it: read it once.
    return RawChunk(message.chunk.field, memoryview(message.chunk.data))


def _allocate(
    request: query_pb2.RankRequest, fields: list[str], max_bytes: int
) -> dict[str, _Slot]:
    sizes: dict[str, int] = {}
    for field in fields:
        if field in sizes:
            raise InvalidRequestError(
                f"header.streamed_fields: {field!r} is named twice"
            )
        sizes[field] = _declared_bytes(request, field)
    if fields and request.HasField("inference"):
        raise InvalidRequestError(
            "inference: models cannot run on streamed tensors yet; send the "
            "request with Rank, or send the model's outputs instead"
        )
    total = sum(sizes.values())
    if total > max_bytes:
        raise TooLargeError(
            f"header.streamed_fields: the streamed tensors declare {total} "
            f"bytes, over the server's limit of {max_bytes} (--max-stream-mib)"
        )
    return {field: _Slot(field, size) for field, size in sizes.items()}


def _declared_bytes(request: query_pb2.RankRequest, field: str) -> int:
    if field not in STREAMABLE:
        raise InvalidRequestError(
            f"header.streamed_fields: {field[:100]!r} is not a tensor that can "
            f"be streamed; expected one of {', '.join(STREAMABLE)}"
        )
    group, _, name = field.partition(".")
    parent = getattr(request, group)
    present = (
        parent.WhichOneof("predictions") == name
        if name in ("probabilities", "logits")
        else parent.HasField(name)
    )
    if not present:
        raise InvalidRequestError(
            f"{field}: named in header.streamed_fields but not set in the "
            "header's request; set its dtype and shape"
        )
    tensor = getattr(parent, name)
    if tensor.data:
        raise InvalidRequestError(
            f"{field}.data: a streamed tensor carries no data in the header; "
            "its bytes come in chunks"
        )
    itemsize = ITEMSIZES.get(tensor.dtype)
    if itemsize is None:
        raise InvalidRequestError(
            f"{field}.dtype: {tensor.dtype} is not a known dtype; expected "
            "D_TYPE_FLOAT32, D_TYPE_FLOAT64, D_TYPE_INT32 or D_TYPE_INT64"
        )
    shape = list(tensor.shape)
    if not shape or len(shape) > 3 or min(shape) < 1:
        raise InvalidRequestError(
            f"{field}.shape: {shape[:8]} must have 1 to 3 axes, each at least 1"
        )
    return math.prod(shape) * itemsize
