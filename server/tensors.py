"""Decode wire tensors into read-only numpy arrays, checking every rule first.

Nothing here calls numpy on data it has not checked: the byte length is
compared with the shape using Python integers before ``np.frombuffer`` runs,
so no malformed tensor can make numpy raise.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from alquery.server.errors import InvalidRequestError
from alquery.server.parts import map_parts, row_parts
from alquery.v1 import query_pb2

FLOAT_DTYPES = {
    query_pb2.D_TYPE_FLOAT32: np.dtype("<f4"),
    query_pb2.D_TYPE_FLOAT64: np.dtype("<f8"),
}
Payload = bytes | memoryview | NDArray[np.uint8]
"""Raw tensor bytes that did not come inside the message."""

INT_DTYPES = {
    query_pb2.D_TYPE_INT32: np.dtype("<i4"),
    query_pb2.D_TYPE_INT64: np.dtype("<i8"),
}


def _dtype_names(dtypes: dict[int, np.dtype]) -> str:
    return " or ".join(query_pb2.DType.Name(code) for code in dtypes)


def decode(
    tensor: query_pb2.Tensor,
    field: str,
    *,
    ndims: tuple[int, ...],
    integer: bool = False,
    data: Payload | None = None,
    finite: bool = True,
) -> NDArray:
    """Return ``tensor`` as a read-only array that shares the message's bytes.

    Parameters
    ----------
    tensor : Tensor
        The wire tensor.
    field : str
        Its path in the request, e.g. ``"pool.embeddings"``, used in messages.
    ndims : tuple of int
        The numbers of axes accepted.
    integer : bool, default=False
        Whether the tensor holds integer labels rather than floats.
    data : buffer, optional
        The tensor's bytes when they did not come in ``tensor.data`` (a
        streamed tensor, see ``streaming``); read-only, shared, not copied.
    finite : bool, default=True
        Whether to check that float values are finite now; False leaves it
        to the caller (``check_finite``), for bytes still arriving.

    Raises
    ------
    InvalidRequestError
        On an unknown or wrong dtype, a wrong number of axes, an axis below 1,
        a byte length that does not match the shape, or (floats) a value that
        is NaN or infinite.
    """
    allowed = INT_DTYPES if integer else FLOAT_DTYPES
    dtype = allowed.get(tensor.dtype)
    if dtype is None:
        shown = (
            query_pb2.DType.Name(tensor.dtype)
            if tensor.dtype in query_pb2.DType.values()
            else f"unknown value {tensor.dtype}"
        )
        raise InvalidRequestError(
            f"{field}.dtype: {shown} is not accepted here; "
            f"expected {_dtype_names(allowed)}"
        )

    shape = tuple(tensor.shape)
    if len(shape) not in ndims:
        expected = " or ".join(str(n) for n in ndims)
        raise InvalidRequestError(
            f"{field}.shape: {list(shape)[:8]} has {len(shape)} axes; "
            f"expected {expected}"
        )
    for axis, size in enumerate(shape):
        if size < 1:
            raise InvalidRequestError(
                f"{field}.shape: axis {axis} has size {size}; "
                "every axis must be at least 1"
            )

    expected_bytes = math.prod(shape) * dtype.itemsize
    # Each read of a bytes field copies it: read it once.
    if data is None:
        if tensor.HasField("shared_memory"):
            # Rank reads references into ``data`` (server.shared_memory).
            raise InvalidRequestError(
                f"{field}.shared_memory: only Rank reads shared memory; "
                "send this tensor's bytes in data or chunks"
            )
        data = tensor.data
    if memoryview(data).nbytes != expected_bytes:
        raise InvalidRequestError(
            f"{field}.data: has {memoryview(data).nbytes} bytes, but shape "
            f"{list(shape)} with dtype {query_pb2.DType.Name(tensor.dtype)} "
            f"needs {expected_bytes}"
        )

    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if finite and not integer:
        check_finite(array, field)
    return array


def check_finite(
    array: NDArray, field: str, first_row: int = 0, chunk_bytes: int = 2 * 2**20
) -> None:
    """Check that every value of ``array`` is finite.

    ``first_row`` is the row of ``field`` that ``array`` starts at, for a
    check made block by block; messages name rows of the whole tensor.

    Raises
    ------
    InvalidRequestError
        Naming the first row that holds NaN or an infinite value.
    """
    if len(array) == 0:
        return
    rows = max(1, chunk_bytes // max(1, array[0].nbytes))
    if len(array) <= rows:
        # One chunk (small requests): its sum, without the split.
        with np.errstate(over="ignore", invalid="ignore"):
            whole = array.sum()
        if not math.isfinite(whole):
            _check_by_masks(array, first_row, rows, field)
        return

    def total(start: int, stop: int) -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            return array[start:stop].sum()

    # A finite sum means finite values, without a mask the size of the
    # array; the sums of contiguous row ranges run on the compute threads.
    # An overflowing sum of finite values falls through to the masks,
    # chunk by chunk, so a mask never grows past a chunk.
    sums = map_parts(total, row_parts(len(array), rows))
    if not all(math.isfinite(value) for value in sums):
        _check_by_masks(array, first_row, rows, field)


def _check_by_masks(array: NDArray, first_row: int, rows: int, field: str) -> None:
    # A sum was not finite: raise for the first row holding NaN or an
    # infinite value, a chunk's mask at a time (finite values whose sum
    # overflowed pass).
    for start in range(0, len(array), rows):
        block = array[start : start + rows]
        finite = np.isfinite(block)
        if finite.all():
            continue
        bad = int(np.argmin(finite.reshape(len(block), -1).all(axis=1)))
        row = block[bad].ravel()
        bad_value = row[~np.isfinite(row)][0]
        kind = "NaN" if np.isnan(bad_value) else "an infinite value"
        raise InvalidRequestError(
            f"{field}: row {first_row + start + bad} contains {kind}; every "
            "value must be finite"
        )
