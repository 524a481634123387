"""Unsafe or malformed models are refused before onnxruntime sees them."""

import onnx
import pytest
from onnx import TensorProto, helper

from alquery.server.errors import InvalidRequestError, TooLargeError
from alquery.server.models.checks import parse_model
from onnx_models import custom_domain_model, external_data_model, mlp

LIMIT = 1 << 20


def test_a_sound_model_parses():
    model = parse_model(mlp(4, 3, 2), "m", LIMIT)
    assert [o.name for o in model.graph.output] == ["logits", "hidden"]


def test_external_data_is_refused_naming_the_file():
    with pytest.raises(InvalidRequestError, match=r"^m: tensor 'w' references "
                       r"external data \('weights.bin'\)"):
        parse_model(external_data_model(), "m", LIMIT)


def test_external_data_inside_a_constant_node_is_refused():
    value = TensorProto(name="c", data_type=TensorProto.FLOAT, dims=[1])
    value.data_location = TensorProto.EXTERNAL
    entry = value.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c"], value=value),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])],
    )
    data = helper.make_model(graph).SerializeToString()
    with pytest.raises(InvalidRequestError, match="external data .'/etc/passwd'"):
        parse_model(data, "m", LIMIT)


@pytest.mark.parametrize("domain", ["com.example.custom", "com.microsoft"])
def test_operator_domains_outside_onnx_are_refused(domain):
    with pytest.raises(InvalidRequestError, match=f"from domain '{domain}'"):
        parse_model(custom_domain_model(domain), "m", LIMIT)


def test_a_model_over_the_size_limit_is_too_large():
    data = mlp(4, 3, 2)
    with pytest.raises(TooLargeError, match=rf"^m: the model has {len(data)} bytes"):
        parse_model(data, "m", len(data) - 1)


@pytest.mark.parametrize("data", [b"", b"\xff\xff\xff not a model"])
def test_bytes_that_are_not_a_model_are_refused(data):
    with pytest.raises(InvalidRequestError, match="^m: "):
        parse_model(data, "m", LIMIT)


def test_a_graph_that_fails_the_onnx_checker_is_refused():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["missing"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])],
    )
    data = helper.make_model(graph).SerializeToString()
    with pytest.raises(InvalidRequestError, match="^m: not a valid ONNX model"):
        parse_model(data, "m", LIMIT)
    assert isinstance(onnx.ModelProto.FromString(data), onnx.ModelProto)
