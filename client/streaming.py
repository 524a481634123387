"""Send large pools to ``RankStream``: a header, then raw chunks of ~4 MiB.

``build_request`` can leave the data of large tensors out of the request
(``deferred``); this module either puts it back (small requests go by
``Rank``) or streams it after a header that names the tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alquery.v1 import query_pb2

CHUNK_BYTES = 4 << 20
"""Bytes of tensor data per streamed message."""

DEFAULT_THRESHOLD_BYTES = 256 << 20
"""Requests whose tensors hold more bytes than this go by ``RankStream``."""

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


def rank_stream(
    call: Any,
    request: query_pb2.RankRequest,
    deferred: Mapping[str, NDArray],
    progress: Progress | None,
    **options: Any,
) -> query_pb2.RankResponse:
    """Call ``RankStream`` (``call`` is the stub method) with ``options``."""
    return call(messages(request, deferred, progress), **options).response
