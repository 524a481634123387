import grpc
import numpy as np
import pytest

from alquery.client import AlqueryError
from alquery.client.tensors import from_tensor, to_tensor
from alquery.v1 import query_pb2


@pytest.mark.parametrize(
    "values, dtype",
    [
        (np.arange(6, dtype=np.float32).reshape(2, 3), query_pb2.D_TYPE_FLOAT32),
        (np.arange(6, dtype=np.float64).reshape(3, 2), query_pb2.D_TYPE_FLOAT64),
        ([[1, 2], [3, 4]], query_pb2.D_TYPE_FLOAT64),
        (np.arange(6, dtype=">f8").reshape(3, 2), query_pb2.D_TYPE_FLOAT64),
        (np.asfortranarray(np.arange(6.0).reshape(2, 3)), query_pb2.D_TYPE_FLOAT64),
    ],
)
def test_round_trip_keeps_values_and_shape(values, dtype):
    tensor = to_tensor(values, "x")
    assert tensor.dtype == dtype
    np.testing.assert_array_equal(from_tensor(tensor), np.asarray(values))


def test_labels_become_int64():
    tensor = to_tensor(np.array([0, 2, 1], dtype=np.int32), "y", integer=True)
    assert tensor.dtype == query_pb2.D_TYPE_INT64
    assert from_tensor(tensor).tolist() == [0, 2, 1]


@pytest.mark.parametrize(
    "values, message",
    [
        ([[0.5, 0.5], [1.0], [0.2, 0.3, 0.5]], "p: row 1 has 1 values but row 0 has 2"),
        ([[[1, 2], [3]], [[1, 2], [3, 4]]], "p: row 0.1 has 1 values"),
        ([[1.0, 2.0], 3.0], "p: row 1 has a scalar"),
        (np.array(["a", "b"]), "p: dtype <U1 is not numeric"),
    ],
)
def test_refusals_name_the_field_and_row(values, message):
    with pytest.raises(AlqueryError) as raised:
        to_tensor(values, "p")
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details


def test_float_labels_are_refused():
    with pytest.raises(AlqueryError, match="y: dtype float64 is not an integer"):
        to_tensor([0.0, 1.0], "y", integer=True)
