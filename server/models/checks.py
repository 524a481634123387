"""Refuse unsafe or malformed ONNX models before onnxruntime sees them.

onnxruntime trusts the model it loads: a tensor stored as external data
makes it open a file named by the model, relative to the server's working
directory, and a node in an unregistered operator domain asks for custom
code. Both are refused here, from the parsed ``ModelProto``, before any
``InferenceSession`` exists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import onnx
from google.protobuf.message import DecodeError

from alquery.server.errors import InvalidRequestError, TooLargeError

logger = logging.getLogger("alquery.server.models.checks")

ALLOWED_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
"""Operator domains a model may use: standard ONNX and ONNX-ML (ZipMap,
tree ensembles, ...). onnxruntime's own contrib domains are refused too:
some of their operators read files (EPContext)."""


def parse_model(data: bytes, field: str, max_bytes: int) -> onnx.ModelProto:
    """Check ``data`` and return it parsed as a ``ModelProto``.

    Parameters
    ----------
    data : bytes
        A serialized ONNX model.
    field : str
        The request field that carried it, for messages.
    max_bytes : int
        The largest model accepted.

    Raises
    ------
    TooLargeError
        When ``data`` is larger than ``max_bytes``.
    InvalidRequestError
        When it does not parse, has no graph, references external data,
        uses an operator domain outside ``ALLOWED_DOMAINS``, or fails the
        ONNX checker.
    """
    if len(data) > max_bytes:
        raise TooLargeError(
            f"{field}: the model has {len(data)} bytes, over the server's "
            f"limit of {max_bytes} (--max-model-mib)"
        )
    if not data:
        raise InvalidRequestError(f"{field}: empty; expected an ONNX model")
    try:
        model = onnx.ModelProto.FromString(data)
    except DecodeError as error:
        raise InvalidRequestError(
            f"{field}: not an ONNX model ({error})"
        ) from None
    if not model.HasField("graph") or not model.graph.output:
        raise InvalidRequestError(f"{field}: the model has no graph outputs")

    _check_external_data(model, field)
    _check_domains(model, field)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0][:300]
        raise InvalidRequestError(
            f"{field}: not a valid ONNX model ({first_line})"
        ) from None
    return model


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """Yield ``graph`` and every subgraph (If, Loop, Scan bodies) in it."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graphs(subgraph)


def _nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    for graph in _graphs(model.graph):
        yield from graph.node
    for function in model.functions:
        yield from function.node


def _tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Yield every tensor a model stores: initializers and attribute values."""
    for graph in _graphs(model.graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
    for node in _nodes(model):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values
                yield attribute.sparse_tensor.indices


def _check_external_data(model: onnx.ModelProto, field: str) -> None:
    for tensor in _tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            location = next(
                (e.value for e in tensor.external_data if e.key == "location"), "?"
            )
            raise InvalidRequestError(
                f"{field}: tensor {tensor.name!r} references external data "
                f"({location[:80]!r}); the server reads no files, so embed "
                "every tensor in the model (onnx.save_model with "
                "save_as_external_data=False)"
            )


def _check_domains(model: onnx.ModelProto, field: str) -> None:
    local = {(f.domain, f.name) for f in model.functions}
    for node in _nodes(model):
        if node.domain in ALLOWED_DOMAINS or (node.domain, node.op_type) in local:
            continue
        raise InvalidRequestError(
            f"{field}: node {node.name or node.op_type!r} uses operator "
            f"{node.op_type!r} from domain {node.domain!r}; only the domains "
            + ", ".join(repr(d) for d in ALLOWED_DOMAINS)
            + " are allowed (no custom operators)"
        )
    for function in model.functions:
        if function.domain in ALLOWED_DOMAINS:
            raise InvalidRequestError(
                f"{field}: local function {function.name!r} redefines an "
                f"operator of the standard domain {function.domain!r}"
            )
