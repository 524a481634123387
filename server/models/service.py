"""The model RPCs: ``UploadModel`` (chunks in, hash out) and ``DescribeModel``."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from alquery.server.errors import AlqueryError, InvalidRequestError, TooLargeError
from alquery.server.models.cache import LoadedModel, ModelCache, sha256_of
from alquery.server.models.graph import Value
from alquery.server.models.inference import load_member
from alquery.v1 import query_pb2

logger = logging.getLogger("alquery.server.models.service")


def upload(
    chunks: Iterable[query_pb2.UploadModelRequest], cache: ModelCache
) -> query_pb2.UploadModelResponse:
    """Join the chunks, check and load the model, and answer its hash.

    Raises
    ------
    TooLargeError
        As soon as the chunks pass the server's model size limit.
    InvalidRequestError
        When the stated hash differs from the received bytes, or the model
        fails the checks.
    """
    received, size, stated = [], 0, ""
    for message in chunks:
        size += len(message.chunk)
        if size > cache.max_model_bytes:
            raise TooLargeError(
                f"chunk: the upload passed {cache.max_model_bytes} bytes, the "
                "server's model size limit (--max-model-mib)"
            )
        received.append(message.chunk)
        stated = message.sha256 or stated
    data = b"".join(received)
    actual = sha256_of(data)
    if stated and stated.lower() != actual:
        raise InvalidRequestError(
            f"sha256: the client stated {stated[:64]!r} but the {size} bytes "
            f"received hash to {actual!r}; resend the model"
        )
    cache.add(data, "chunk")
    return query_pb2.UploadModelResponse(sha256=actual, size_bytes=size)


def describe(
    request: query_pb2.DescribeModelRequest, cache: ModelCache
) -> query_pb2.DescribeModelResponse:
    """Describe the model of ``request`` and the binding alquery would use.

    Errors in the model itself (it does not load, or an unknown hash)
    raise; an ambiguous binding is answered in ``binding_error``.
    """
    spec = request.model
    loaded = _load(spec, cache)
    response = query_pb2.DescribeModelResponse(
        sha256=loaded.sha256,
        size_bytes=loaded.size_bytes,
        inputs=[_value(v) for v in loaded.inputs],
        outputs=[_value(v) for v in loaded.outputs],
        training_dropout_nodes=loaded.dropout_nodes,
        opsets=loaded.opsets,
    )
    try:
        member = load_member(spec, cache, "model")
    except AlqueryError as error:
        response.binding_error = str(error)
        return response
    chosen = member.binding
    response.input_name = chosen.input_name
    response.output_name = chosen.output_name
    response.embeddings_output = chosen.embeddings_output
    response.output_kind = chosen.output_kind
    response.fixed_batch_size = chosen.fixed_batch_size
    response.class_labels.extend(loaded.class_labels.get(chosen.output_name, []))
    return response


def _load(spec: query_pb2.Model, cache: ModelCache) -> LoadedModel:
    source = spec.WhichOneof("source")
    if source == "onnx":
        return cache.add(spec.onnx, "model.onnx")
    if source == "sha256":
        return cache.get(spec.sha256, "model.sha256")
    raise InvalidRequestError("model: no model; set `onnx` (the bytes) or `sha256`")


def _value(value: Value) -> query_pb2.ValueInfo:
    shape = [
        query_pb2.Dimension(size=size, name=name) for size, name in value.shape or ()
    ]
    return query_pb2.ValueInfo(name=value.name, type=value.type, shape=shape)
