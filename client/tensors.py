"""Turn numpy arrays (or nested lists) into wire tensors, and back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from alquery.client.errors import AlqueryError
from alquery.client.frames import from_pandas
from alquery.v1 import query_pb2

_WIRE_DTYPES = {
    np.dtype("<f4"): query_pb2.D_TYPE_FLOAT32,
    np.dtype("<f8"): query_pb2.D_TYPE_FLOAT64,
    np.dtype("<i4"): query_pb2.D_TYPE_INT32,
    np.dtype("<i8"): query_pb2.D_TYPE_INT64,
}
_NUMPY_DTYPES = {code: dtype for dtype, code in _WIRE_DTYPES.items()}


def _invalid(message: str) -> AlqueryError:
    return AlqueryError(grpc.StatusCode.INVALID_ARGUMENT, message)


def as_array(values: Any, field: str, *, integer: bool = False) -> NDArray:
    """Return ``values`` as a little-endian, C-ordered array ready to send.

    Floats keep float32 when they are float32 and become float64 otherwise;
    integer labels become int64. A pandas DataFrame or Series is taken as
    its array (``frames.from_pandas``). Nested lists with rows of unequal
    length are refused with a message naming the first row that differs.

    Raises
    ------
    AlqueryError
        INVALID_ARGUMENT for ragged rows or non-numeric values.
    """
    values = from_pandas(values, field)
    if not isinstance(values, np.ndarray):
        _check_rectangular(values, field)
    try:
        array = np.asarray(values)
    except ValueError as error:
        raise _invalid(f"{field}: not a rectangular array ({error})") from None
    if integer:
        if array.dtype.kind not in "iu":
            raise _invalid(f"{field}: dtype {array.dtype} is not an integer type")
        if (
            array.dtype.kind == "u"
            and array.size
            and array.max() > np.iinfo(np.int64).max
        ):
            raise _invalid(
                f"{field}: holds {array.max()}, beyond the int64 range of labels"
            )
        return np.ascontiguousarray(array, dtype="<i8")
    if array.dtype.kind not in "fiub":
        raise _invalid(f"{field}: dtype {array.dtype} is not numeric")
    dtype = "<f4" if array.dtype == np.float32 else "<f8"
    return np.ascontiguousarray(array, dtype=dtype)


def _is_row(value: Any) -> bool:
    return hasattr(value, "__len__") and not isinstance(value, (str, bytes))


def _check_rectangular(values: Any, field: str, prefix: str = "") -> None:
    if not isinstance(values, Sequence) or not _is_row(values) or not values:
        return
    lengths = [len(row) if _is_row(row) else None for row in values]
    for position, length in enumerate(lengths):
        if length != lengths[0]:
            shown = "a scalar" if length is None else f"{length} values"
            first = "a scalar" if lengths[0] is None else f"{lengths[0]} values"
            raise _invalid(
                f"{field}: row {prefix}{position} has {shown} but row {prefix}0 "
                f"has {first}; every row must have the same length"
            )
    for position, row in enumerate(values):
        _check_rectangular(row, field, prefix=f"{prefix}{position}.")


def fill_tensor(
    message: query_pb2.Tensor,
    values: Any,
    field: str,
    *,
    integer: bool = False,
    deferred: dict[str, NDArray] | None = None,
) -> None:
    """Encode ``values`` into ``message`` in place (one copy fewer than
    ``CopyFrom(to_tensor(...))``, which matters for large pools).

    With ``deferred``, only the dtype and shape are set and the array is
    kept in ``deferred[field]``, its bytes to be sent later (streaming).
    """
    array = as_array(values, field, integer=integer)
    message.dtype = _WIRE_DTYPES[array.dtype]
    message.shape[:] = array.shape
    if deferred is not None:
        deferred[field] = array
    else:
        message.data = array.tobytes()


def to_tensor(values: Any, field: str, *, integer: bool = False) -> query_pb2.Tensor:
    """Encode ``values`` as a wire tensor (see ``as_array``)."""
    array = as_array(values, field, integer=integer)
    return query_pb2.Tensor(
        dtype=_WIRE_DTYPES[array.dtype], shape=array.shape, data=array.tobytes()
    )


def from_tensor(tensor: query_pb2.Tensor) -> NDArray:
    """Decode a well-formed wire tensor into a read-only array (no checks)."""
    dtype = _NUMPY_DTYPES[tensor.dtype]
    return np.frombuffer(tensor.data, dtype=dtype).reshape(tuple(tensor.shape))
