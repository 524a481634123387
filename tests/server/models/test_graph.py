"""Spelling ONNX types the way onnxruntime does (``server.models.graph``)."""

import onnx
import pytest

from alquery.server.models.graph import type_string


def tensor_type(elem_type):
    proto = onnx.TypeProto()
    proto.tensor_type.elem_type = elem_type
    return proto


@pytest.mark.parametrize(
    "elem_type, spelled",
    [(onnx.TensorProto.FLOAT, "tensor(float)"),
     (onnx.TensorProto.INT64, "tensor(int64)"),
     (max(onnx.TensorProto.DataType.values()) + 1, "tensor(unknown)"),
     (10_000, "tensor(unknown)")],
)
def test_tensor_types_are_spelled_and_unnamed_numbers_are_unknown(
    elem_type, spelled
):
    assert type_string(tensor_type(elem_type)) == spelled
