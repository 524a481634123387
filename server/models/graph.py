"""Read an ONNX graph (inputs, outputs, types, shapes) and rewrite it.

Two rewrites prepare a model for onnxruntime: ``unzip_map`` replaces a
ZipMap that feeds a graph output by the probability tensor it reads, so
results come back as one array in the model's class order instead of a
Python dict per sample; ``seed_dropout`` gives each training-mode Dropout
node a seed, so Monte-Carlo passes are reproducible.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import onnx

logger = logging.getLogger("alquery.server.models.graph")

FLOAT_INPUTS = {
    onnx.TensorProto.FLOAT: np.dtype(np.float32),
    onnx.TensorProto.DOUBLE: np.dtype(np.float64),
}
"""Input element types alquery can feed, and the numpy dtype fed."""


@dataclasses.dataclass(frozen=True)
class Value:
    """A graph input or output: name, ONNX type string, and shape.

    ``shape`` holds one (size, name) pair per axis, size 0 for a dynamic
    axis; it is None when the type is not a tensor or its rank is unknown.
    """

    name: str
    type: str
    shape: tuple[tuple[int, str], ...] | None
    elem_type: int = 0

    @property
    def is_float_tensor(self) -> bool:
        """True for a tensor of float, double or float16 elements."""
        return self.type in ("tensor(float)", "tensor(double)", "tensor(float16)")

    @property
    def is_probability_map(self) -> bool:
        """True for a sequence of maps from class label to a float."""
        return self.type.startswith("seq(map(") and "float" in self.type


def type_string(type_proto: onnx.TypeProto) -> str:
    """Spell an ONNX type the way onnxruntime does, e.g. "tensor(float)"."""
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        return f"tensor({_elem_name(type_proto.tensor_type.elem_type)})"
    if kind == "sequence_type":
        return f"seq({type_string(type_proto.sequence_type.elem_type)})"
    if kind == "map_type":
        key = _elem_name(type_proto.map_type.key_type)
        return f"map({key},{type_string(type_proto.map_type.value_type)})"
    if kind == "optional_type":
        return f"optional({type_string(type_proto.optional_type.elem_type)})"
    return "unknown"


def _elem_name(elem_type: int) -> str:
    # A number this onnx release has no name for (a newer type, or none at
    # all) is spelled "unknown", as an unknown kind is: no check accepts it.
    if elem_type not in onnx.TensorProto.DataType.values():
        return "unknown"
    return onnx.TensorProto.DataType.Name(elem_type).lower()


def _value(info: onnx.ValueInfoProto) -> Value:
    shape = None
    tensor = info.type.tensor_type
    if info.type.HasField("tensor_type") and tensor.HasField("shape"):
        shape = tuple((d.dim_value, d.dim_param) for d in tensor.shape.dim)
    return Value(info.name, type_string(info.type), shape, tensor.elem_type)


def inputs(model: onnx.ModelProto) -> list[Value]:
    """The graph inputs a caller feeds (initializers listed as inputs left out)."""
    stored = {init.name for init in model.graph.initializer}
    return [_value(i) for i in model.graph.input if i.name not in stored]


def outputs(model: onnx.ModelProto) -> list[Value]:
    """The graph outputs, in declaration order."""
    return [_value(o) for o in model.graph.output]


def opsets(model: onnx.ModelProto) -> list[str]:
    """The imported operator sets as "domain:version"."""
    return [f"{o.domain}:{o.version}" for o in model.opset_import]


def _constant_true(model: onnx.ModelProto, name: str) -> bool:
    for init in model.graph.initializer:
        if init.name == name:
            return bool(np.all(onnx.numpy_helper.to_array(init)))
    for node in model.graph.node:
        if node.op_type == "Constant" and name in node.output:
            for attribute in node.attribute:
                if attribute.name == "value":
                    return bool(np.all(onnx.numpy_helper.to_array(attribute.t)))
    return False


def training_dropout_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The main graph's Dropout nodes whose training_mode is a constant true."""
    return [
        node
        for node in model.graph.node
        if node.op_type == "Dropout"
        and node.domain in ("", "ai.onnx")
        and len(node.input) >= 3
        and node.input[2]
        and _constant_true(model, node.input[2])
    ]


def seed_dropout(model: onnx.ModelProto, seeds: list[int]) -> bytes:
    """Return ``model`` serialized with its training-mode Dropout seeds set.

    ``seeds`` holds one value per node of ``training_dropout_nodes``, in
    graph order. onnxruntime builds a node's random generator from its
    ``seed`` attribute when the session is created, so a fresh session
    draws the same masks run after run.
    """
    seeded = onnx.ModelProto()
    seeded.CopyFrom(model)
    for node, seed in zip(training_dropout_nodes(seeded), seeds, strict=True):
        kept = [a for a in node.attribute if a.name != "seed"]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.append(onnx.helper.make_attribute("seed", int(seed)))
    return seeded.SerializeToString()


def unzip_map(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Replace each ZipMap feeding a graph output by an Identity, in place.

    The output keeps its name and becomes the float tensor of shape
    (n_samples, n_classes) that the ZipMap read; its columns are in the
    order of the ZipMap's class labels. Returns those labels (as strings)
    by output name. A ZipMap whose output also feeds another node is left
    alone.
    """
    consumed = {name for node in model.graph.node for name in node.input}
    declared = {o.name: o for o in model.graph.output}
    labels = {}
    for node in model.graph.node:
        name = node.output[0] if node.output else ""
        if node.op_type != "ZipMap" or name not in declared or name in consumed:
            continue
        labels[name] = _class_labels(node)
        source = node.input[0]
        node.Clear()
        node.CopyFrom(onnx.helper.make_node("Identity", [source], [name]))
        declared[name].type.CopyFrom(
            onnx.helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, None)
        )
    if labels and not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("", 13))
    return labels


def _class_labels(node: onnx.NodeProto) -> list[str]:
    for attribute in node.attribute:
        if attribute.name == "classlabels_int64s":
            return [str(v) for v in attribute.ints]
        if attribute.name == "classlabels_strings":
            return [v.decode() for v in attribute.strings]
    return []


def row_bytes(model: onnx.ModelProto) -> int | None:
    """Estimate the bytes one sample occupies across the graph's tensors.

    Sums, over the inputs, outputs and every intermediate tensor that shape
    inference finds, the size of one row (all axes but the first, which
    must be dynamic, the rest fixed). None when nothing could be measured.
    Used to bound a chunk's memory; initializers are not counted.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, ValueError) as error:
        logger.debug("shape inference failed (%s); chunks use the default", error)
        inferred = model
    graph = inferred.graph
    total = 0
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor = info.type.tensor_type
        if not info.type.HasField("tensor_type") or not tensor.HasField("shape"):
            continue
        dims = tensor.shape.dim
        if not dims or dims[0].dim_value or not all(d.dim_value for d in dims[1:]):
            continue
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
        except (KeyError, TypeError):
            continue
        total += math.prod(d.dim_value for d in dims[1:]) * itemsize
    return total or None
