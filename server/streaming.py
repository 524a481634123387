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
import threading
from collections.abc import Callable, Iterator

import numpy as np
from google.protobuf.message import DecodeError
from numpy.typing import NDArray

from alquery.server.errors import InvalidRequestError, TooLargeError
from alquery.server.tensors import FLOAT_DTYPES, INT_DTYPES, check_finite
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


class Slot:
    """One streamed tensor's buffer and how many of its bytes have come."""

    def __init__(self, field: str, size: int) -> None:
        self.field = field
        # np.empty maps the pages lazily: memory is touched as chunks land.
        self.buffer = np.empty(size, dtype=np.uint8)
        self.filled = 0

    @classmethod
    def holding(cls, field: str, data: NDArray[np.uint8]) -> Slot:
        """A slot already filled with ``data``, kept as it is (no copy)."""
        slot = cls(field, 0)
        slot.buffer, slot.filled = data, len(data)
        return slot

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


class StreamEndedError(Exception):
    """The stream failed before the bytes a reader waits for arrived."""


class Arrivals:
    """Tensors whose bytes one thread writes while other threads read them.

    One ``Slot`` per tensor. The writing thread calls ``_landed`` after
    each write and ``_fail`` when it stops early; ``wait`` and
    ``rows_ready`` let a reader (the model runner in a worker thread) use a
    prefix as soon as it has landed. ``Assembly`` fills the slots from a
    ``RankStream`` call, ``shared_memory.SharedMemoryReads`` from files.
    """

    request: query_pb2.RankRequest
    """The call's request, whose tensors these are."""

    def __init__(self, slots: dict[str, Slot]) -> None:
        self._slots = slots
        self._arrived = threading.Condition()
        self._failed = False

    def read(
        self, after_chunk: Callable[[], None] | None = None
    ) -> dict[str, NDArray[np.uint8]]:
        """Fill every buffer; return each field's bytes, read-only.

        ``after_chunk`` runs after each write; an error it raises ends the
        filling (a model run that failed ends the call early).
        """
        raise NotImplementedError

    @property
    def fields(self) -> tuple[str, ...]:
        """The field paths of the tensors, in the order they are filled."""
        return tuple(self._slots)

    def buffer(self, field: str) -> NDArray[np.uint8]:
        """The buffer of ``field``, filled as its bytes land."""
        return self._slots[field].buffer

    def _landed(self) -> None:
        # Wake the readers: more bytes have been written.
        with self._arrived:
            self._arrived.notify_all()

    def _fail(self) -> None:
        # Wake the readers for good: no more bytes will come.
        with self._arrived:
            self._failed = True
            self._arrived.notify_all()

    def wait(self, field: str, n_bytes: int) -> None:
        """Block until the first ``n_bytes`` of ``field`` have arrived.

        Raises
        ------
        StreamEndedError
            When the writing fails first.
        """
        slot = self._slots[field]
        with self._arrived:
            self._arrived.wait_for(
                lambda: slot.filled >= n_bytes or self._failed
            )
            if slot.filled < n_bytes:
                raise StreamEndedError(field)

    def rows_ready(self, field: str, rows: NDArray) -> Callable[[int], None]:
        """Return ``ready(n)``: block until rows 0 to n - 1 of ``rows`` (the
        decoded view of ``field``'s buffer) have arrived, and check that
        they are finite. Call it from one thread, with growing ``n``.

        ``ready`` raises ``StreamEndedError`` when the writing fails first,
        and ``InvalidRequestError`` naming the first row that holds NaN or
        an infinite value (the message ``tensors.decode`` gives).
        """
        row_bytes = rows.nbytes // len(rows)
        checked = 0

        def ready(n_rows: int) -> None:
            nonlocal checked
            if n_rows <= checked:
                return
            self.wait(field, n_rows * row_bytes)
            check_finite(rows[checked:n_rows], field, checked)
            checked = n_rows

        return ready


class Assembly(Arrivals):
    """A ``RankStream`` call being read: its header, then its chunks.

    Creating it reads the header and allocates a buffer per streamed
    tensor; ``read`` fills them, and other threads may meanwhile use the
    bytes that have arrived (see ``Arrivals``). ``admit(request)`` runs
    once the header's sizes are checked, before any buffer is allocated;
    it may raise to refuse the call (the memory guard).

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

    def __init__(
        self,
        messages: Iterator[query_pb2.RankStreamRequest | RawChunk],
        max_bytes: int,
        admit: Callable[[query_pb2.RankRequest], object] | None = None,
    ) -> None:
        first = next(messages, None)
        if (
            first is None
            or isinstance(first, RawChunk)
            or first.WhichOneof("part") != "header"
        ):
            raise InvalidRequestError(
                "header: the first message of RankStream must be a header"
            )
        self.request = first.header.request
        self._messages = messages
        super().__init__(
            _allocate(
                self.request, list(first.header.streamed_fields), max_bytes, admit
            )
        )

    def read(
        self, after_chunk: Callable[[], None] | None = None
    ) -> dict[str, NDArray[np.uint8]]:
        """Read every chunk; return each field's bytes, read-only.

        ``after_chunk`` runs after each chunk has been written; an error it
        raises ends the reading (a worker's failure ends the call early).
        """
        try:
            for message in self._messages:
                chunk = _as_chunk(message)
                slot = self._slots.get(chunk.field)
                if slot is None:
                    raise InvalidRequestError(
                        f"chunk.field: {chunk.field[:100]!r} is not one of "
                        f"the header's streamed_fields "
                        f"({', '.join(self._slots) or 'none'})"
                    )
                slot.write(chunk.data)
                self._landed()
                if after_chunk is not None:
                    after_chunk()
            return {field: slot.finish() for field, slot in self._slots.items()}
        except BaseException:
            self._fail()
            raise


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
    request: query_pb2.RankRequest,
    fields: list[str],
    max_bytes: int,
    admit: Callable[[query_pb2.RankRequest], object] | None,
) -> dict[str, Slot]:
    sizes: dict[str, int] = {}
    for field in fields:
        if field in sizes:
            raise InvalidRequestError(
                f"header.streamed_fields: {field!r} is named twice"
            )
        sizes[field] = _declared_bytes(request, field)
    total = sum(sizes.values())
    if total > max_bytes:
        raise TooLargeError(
            f"header.streamed_fields: the streamed tensors declare {total} "
            f"bytes, over the server's limit of {max_bytes} (--max-stream-mib)"
        )
    if admit is not None:
        admit(request)
    return {field: Slot(field, size) for field, size in sizes.items()}


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
    if tensor.HasField("shared_memory"):
        # As for a tensor not streamed: the chunks would be read and the
        # reference silently dropped.
        raise InvalidRequestError(
            f"{field}.shared_memory: only Rank reads shared memory; a "
            "streamed tensor's bytes come in chunks"
        )
    return tensor_bytes(tensor, field)


def tensor_bytes(tensor: query_pb2.Tensor, field: str) -> int:
    """The byte count that ``tensor``'s dtype and shape declare.

    Raises
    ------
    InvalidRequestError
        Naming ``field``: an unknown dtype, or a shape without 1 to 3 axes
        each at least 1.
    """
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
