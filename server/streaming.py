"""Assemble a ``RankStream`` call: a header, then raw chunks of its tensors.

Each streamed tensor goes into one buffer allocated once, from the shape
and dtype the header declares, after the declared total has been checked
against the server's limit. Chunks are copied into place in order; the
buffers then go to ``edge.build_query`` as they are (no further copy),
which checks them like the tensors of a plain ``Rank``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
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


class _Slot:
    """One streamed tensor's buffer and how many of its bytes have come."""

    def __init__(self, field: str, size: int) -> None:
        self.field = field
        # np.empty maps the pages lazily: memory is touched as chunks land.
        self.buffer = np.empty(size, dtype=np.uint8)
        self.filled = 0

    def write(self, data: bytes) -> None:
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
    messages: Iterator[query_pb2.RankStreamRequest],
    max_bytes: int,
    admit: Callable[[query_pb2.RankRequest], object] | None = None,
) -> tuple[query_pb2.RankRequest, dict[str, NDArray[np.uint8]]]:
    """Read a whole ``RankStream`` call into its request and tensor bytes.

    Returns the header's request and a map from each streamed field path to
    its bytes, read-only, ready for ``edge.build_query(payloads=...)``.
    ``admit(request)`` runs once the header's sizes are checked, before any
    buffer is allocated; it may raise to refuse the call (the memory
    guard).

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
    if first is None or first.WhichOneof("part") != "header":
        raise InvalidRequestError(
            "header: the first message of RankStream must be a header"
        )
    request = first.header.request
    slots = _allocate(
        request, list(first.header.streamed_fields), max_bytes, admit
    )
    for message in messages:
        if message.WhichOneof("part") != "chunk":
            raise InvalidRequestError(
                "header: only the first message of RankStream may be a header"
            )
        slot = slots.get(message.chunk.field)
        if slot is None:
            raise InvalidRequestError(
                f"chunk.field: {message.chunk.field[:100]!r} is not one of the "
                f"header's streamed_fields ({', '.join(slots) or 'none'})"
            )
        slot.write(message.chunk.data)
    return request, {field: slot.finish() for field, slot in slots.items()}


def _allocate(
    request: query_pb2.RankRequest,
    fields: list[str],
    max_bytes: int,
    admit: Callable[[query_pb2.RankRequest], object] | None,
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
    if admit is not None:
        admit(request)
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
