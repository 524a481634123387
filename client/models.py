"""Send ONNX models to the server: inline, by hash, or in streamed chunks.

The server keeps models in a bounded cache keyed by SHA-256. The client
sends a model's bytes once, then refers to it by hash; when the server
answers NOT_FOUND (it evicted the model or restarted), ``AlqueryClient``
sends the bytes again and retries, so callers never see the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import grpc
import numpy as np

from alquery.client.errors import AlqueryError
from alquery.v1 import query_pb2

CHUNK_BYTES = 4 << 20
"""Models up to this size travel inside the request; larger ones are
uploaded first with the streaming ``UploadModel``, in chunks of this size."""

_KINDS = {
    None: query_pb2.OUTPUT_KIND_UNSPECIFIED,
    "probabilities": query_pb2.OUTPUT_KIND_PROBABILITIES,
    "logits": query_pb2.OUTPUT_KIND_LOGITS,
}


@dataclasses.dataclass(frozen=True)
class OnnxModel:
    """An ONNX model and how the server should bind it.

    Parameters
    ----------
    source : str, os.PathLike or bytes
        A path to a .onnx file, or the model's bytes.
    input_name : str, default=""
        The input to feed; default the model's only input.
    output_name : str, default=""
        The output holding probabilities or logits; default the only
        candidate.
    output_kind : {"probabilities", "logits"} or None, default=None
        What that output holds; None lets the server detect it.
    embeddings_output : str, default=""
        An output to use as the embeddings of every set (e.g. for BADGE).
    mc_passes : int or None, default=None
        Monte-Carlo dropout passes (the model's Dropout nodes must be in
        training mode); None means 1.
    """

    source: str | os.PathLike | bytes
    input_name: str = ""
    output_name: str = ""
    output_kind: str | None = None
    embeddings_output: str = ""
    mc_passes: int | None = None

    def data(self) -> bytes:
        """The model's bytes (read from the file when ``source`` is a path)."""
        if isinstance(self.source, (bytes, bytearray, memoryview)):
            return bytes(self.source)
        try:
            return pathlib.Path(self.source).read_bytes()
        except OSError as error:
            raise AlqueryError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"model: cannot read {str(self.source)!r} ({error.strerror})",
            ) from None

    def message(
        self, *, data: bytes | None = None, sha256: str = ""
    ) -> query_pb2.Model:
        """The wire ``Model``, carrying ``data`` or referring to ``sha256``."""
        if self.output_kind not in _KINDS:
            raise AlqueryError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"model.output_kind: got {self.output_kind!r}; expected "
                "'probabilities', 'logits' or None (detect)",
            )
        message = query_pb2.Model(
            input_name=self.input_name,
            output_name=self.output_name,
            output_kind=_KINDS[self.output_kind],
            embeddings_output=self.embeddings_output,
        )
        if self.mc_passes is not None:
            message.mc_passes = self.mc_passes
        if data is not None:
            message.onnx = data
        else:
            message.sha256 = sha256
        return message


_SOURCES = (str, os.PathLike, bytes, bytearray, memoryview)
_NAMES = ("input_name", "output_name", "embeddings_output")


def as_models(model: Any) -> list[OnnxModel]:
    """Accept one model (path, bytes or ``OnnxModel``) or a sequence of them.

    Raises
    ------
    AlqueryError
        INVALID_ARGUMENT naming the argument or ``OnnxModel`` field of the
        wrong type, before anything is read or sent.
    """
    if model is None:
        return []
    if isinstance(model, (*_SOURCES, OnnxModel)):
        items = [model]
    elif isinstance(model, Iterable):
        items = list(model)
    else:
        items = [model]
    models = [m if isinstance(m, OnnxModel) else OnnxModel(m) for m in items]
    for onnx_model in models:
        _check_fields(onnx_model)
    return models


def _refuse(field: str, value: Any, expected: str) -> None:
    raise AlqueryError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{field}: got {value!r} of type {type(value).__name__}; "
        f"expected {expected}",
    )


def _check_fields(model: OnnxModel) -> None:
    if not isinstance(model.source, _SOURCES):
        _refuse("model", model.source, "a path, bytes or OnnxModel, or a list")
    for name in _NAMES:
        # None leaves the field unset, as protobuf reads it.
        if not isinstance(getattr(model, name), (str, type(None))):
            _refuse(f"model.{name}", getattr(model, name), "a str or None")
    passes = model.mc_passes
    in_range = isinstance(passes, (int, np.integer)) and -(2**63) <= passes < 2**63
    if passes is not None and (isinstance(passes, bool) or not in_range):
        _refuse("model.mc_passes", passes, "an integer (the server takes 1 to 256)")


def chunks(data: bytes, sha256: str) -> Iterator[query_pb2.UploadModelRequest]:
    """Split ``data`` into ``UploadModelRequest`` chunks; the first states the hash."""
    for start in range(0, max(len(data), 1), CHUNK_BYTES):
        yield query_pb2.UploadModelRequest(
            chunk=data[start:start + CHUNK_BYTES], sha256=sha256 if not start else ""
        )


class ModelSender:
    """Remembers which models this client has sent, and sends the rest.

    ``upload`` is a callable taking a chunk iterator and returning the
    server's ``UploadModelResponse``.
    """

    def __init__(self, upload: Any) -> None:
        self._upload = upload
        self._sent: set[str] = set()
        self._lock = threading.Lock()

    def inference(
        self, models: Sequence[OnnxModel], score_validation: bool, *, resend: bool
    ) -> tuple[query_pb2.Inference, list[str]]:
        """Build the request's ``Inference``; return it and the models' hashes.

        A model this client has already sent goes by hash, unless
        ``resend``; otherwise a small one goes inline and a large one is
        uploaded first.
        """
        inference = query_pb2.Inference(score_validation=score_validation)
        hashes = []
        for model in models:
            data = model.data()
            sha256 = hashlib.sha256(data).hexdigest()
            hashes.append(sha256)
            with self._lock:
                known = sha256 in self._sent and not resend
            if known:
                inference.models.append(model.message(sha256=sha256))
            elif len(data) <= CHUNK_BYTES:
                inference.models.append(model.message(data=data))
            else:
                self.upload(data, sha256)
                inference.models.append(model.message(sha256=sha256))
        return inference, hashes

    def upload(self, data: bytes, sha256: str) -> str:
        """Stream ``data`` to the server; return the hash it answers."""
        response = self._upload(chunks(data, sha256))
        self.mark_sent([response.sha256])
        return response.sha256

    def mark_sent(self, hashes: Sequence[str]) -> None:
        """Note that the server now holds these models."""
        with self._lock:
            self._sent.update(hashes)
