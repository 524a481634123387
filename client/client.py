"""A numpy-friendly Python client for the alquery query service."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Callable, Mapping
from typing import Any

import grpc
import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from numpy.typing import NDArray

from alquery.client import streaming
from alquery.client.errors import AlqueryError, from_rpc_error
from alquery.client.models import ModelSender, OnnxModel, as_models
from alquery.client.results import RankResult, rank_result, strategy_dicts
from alquery.client.retry import (
    RetryPolicy,
    call_with_retry,
    checked_policy,
    checked_timeout,
)
from alquery.client.security import ChannelSecurity
from alquery.client.shared_memory import SharedMemory
from alquery.client.tensors import fill_tensor
from alquery.v1 import query_pb2, query_pb2_grpc

FAMILIES = {
    "uncertainty": query_pb2.UncertaintyStrategy,
    "diversity": query_pb2.DiversityStrategy,
    "credibility": query_pb2.CredibilityStrategy,
    "hybrid": query_pb2.HybridStrategy,
}
MAX_RECEIVE_BYTES = 512 << 20
_SERVICE = query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name


def strategy_names() -> list[str]:
    """Every "family.method" the proto defines, sorted.

    A server may offer fewer; ``AlqueryClient.strategies`` says which it does.
    """
    names = []
    for family, message in FAMILIES.items():
        for enum_name, number in message.Method.items():
            if number:
                method = enum_name.removeprefix("METHOD_").lower()
                names.append(f"{family}.{method}")
    return sorted(names)


def build_request(
    strategy: str,
    batch_size: int,
    *,
    probabilities: Any = None,
    logits: Any = None,
    embeddings: Any = None,
    labeled_embeddings: Any = None,
    labeled_labels: Any = None,
    validation_probabilities: Any = None,
    validation_logits: Any = None,
    validation_labels: Any = None,
    validation_embeddings: Any = None,
    params: Mapping[str, Any] | None = None,
    seed: int | None = None,
    return_scores: bool = True,
    selection: str | None = None,
    temperature: float | None = None,
    deferred: dict[str, NDArray] | None = None,
) -> query_pb2.RankRequest:
    """Build a ``RankRequest`` from numpy arrays; see ``AlqueryClient.rank``.

    With ``deferred``, tensors get their dtype and shape but no data; their
    arrays go into ``deferred`` by field path (see ``streaming``).
    """
    request = query_pb2.RankRequest(omit_scores=not return_scores)
    _set_scalar(request, "batch_size", batch_size, "an integer from -2**63 to 2**63-1")
    if seed is not None:
        _set_scalar(request, "seed", seed, "an integer from 0 to 2**64-1")
    _set_strategy(request, strategy, params or {})
    _set_selection(request, selection, temperature)

    _set_predictions(request.pool, "pool", probabilities, logits, deferred)
    _set_predictions(
        request.validation,
        "validation",
        validation_probabilities,
        validation_logits,
        deferred,
    )
    tensors = {
        ("pool", "embeddings"): (embeddings, False),
        ("labeled", "embeddings"): (labeled_embeddings, False),
        ("labeled", "labels"): (labeled_labels, True),
        ("validation", "labels"): (validation_labels, True),
        ("validation", "embeddings"): (validation_embeddings, False),
    }
    for (group, name), (values, integer) in tensors.items():
        if values is not None:
            target = getattr(getattr(request, group), name)
            fill_tensor(
                target, values, f"{group}.{name}", integer=integer, deferred=deferred
            )
    return request


def _check_threshold(threshold: Any) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)):
        raise TypeError(
            f"stream_threshold_bytes: got {threshold!r}; expected an integer"
        )
    if threshold < 0:
        raise ValueError(
            f"stream_threshold_bytes: got {threshold}; expected 0 or more"
        )


def _set_scalar(message: Any, field: str, value: Any, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise AlqueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{field}: got {value!r} of type {type(value).__name__}; "
            f"expected {expected}",
        )
    try:
        setattr(message, field, int(value))
    except ValueError:
        raise AlqueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{field}: got {value}; expected {expected}",
        ) from None


def _set_selection(
    request: query_pb2.RankRequest, mode: str | None, temperature: float | None
) -> None:
    modes = query_pb2.Selection.Mode
    if mode is not None:
        enum_name = "MODE_" + str(mode).upper()
        if enum_name not in modes.keys() or enum_name == "MODE_UNSPECIFIED":
            raise AlqueryError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"selection: unknown mode {mode!r}; valid modes: "
                + ", ".join(selection_modes()),
            )
        request.selection.mode = modes.Value(enum_name)
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(
            temperature, (int, float, np.integer, np.floating)
        ):
            raise AlqueryError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"temperature: got {temperature!r}; expected a number above 0",
            )
        request.selection.temperature = float(temperature)


def selection_modes() -> list[str]:
    """The selection modes ``rank`` takes: "top_k", "power", "softmax", ..."""
    return [
        name.removeprefix("MODE_").lower()
        for name, number in query_pb2.Selection.Mode.items()
        if number
    ]


def _set_predictions(
    message: Any,
    group: str,
    probabilities: Any,
    logits: Any,
    deferred: dict[str, NDArray] | None = None,
) -> None:
    if probabilities is not None and logits is not None:
        raise AlqueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{group}: give probabilities or logits, not both",
        )
    for name, values in (("probabilities", probabilities), ("logits", logits)):
        if values is not None:
            fill_tensor(
                getattr(message, name), values, f"{group}.{name}", deferred=deferred
            )


def _set_strategy(
    request: query_pb2.RankRequest, strategy: str, params: Mapping[str, Any]
) -> None:
    family, _, method = strategy.partition(".")
    message = FAMILIES.get(family)
    number = 0
    if message is not None and method:
        # Value() is a dict look-up; ``in Method.keys()`` builds a list.
        try:
            number = message.Method.Value("METHOD_" + method.upper())
        except ValueError:
            pass
    if not number:
        raise AlqueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"strategy: unknown {strategy!r}; valid strategies: "
            + ", ".join(strategy_names()),
        )
    chosen = getattr(request, family)
    chosen.method = number
    for key, value in params.items():
        _set_param(chosen, family, key, value)


def _set_param(message: Any, family: str, key: str, value: Any) -> None:
    fields = message.DESCRIPTOR.fields_by_name
    known = sorted(name for name in fields if name != "method")
    if key not in known:
        raise AlqueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"params: {key!r} is not a {family} parameter; known: "
            + (", ".join(known) or "none"),
        )
    field = fields[key]
    try:
        setattr(message, key, _parse(value, field))
    except (TypeError, ValueError) as error:
        raise AlqueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"params: {key}={value!r} is not a valid {_type_name(field)} ({error})",
        ) from None


def _type_name(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return "enum value"
    if field.cpp_type in (
        FieldDescriptor.CPPTYPE_FLOAT,
        FieldDescriptor.CPPTYPE_DOUBLE,
    ):
        return "number"
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return "boolean"
    return "integer"


def _parse(value: Any, field: FieldDescriptor) -> Any:
    if not isinstance(value, str):
        return value
    kind = _type_name(field)
    if kind == "number":
        return float(value)
    if kind == "boolean":
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError("expected true or false")
        return value.lower() in ("true", "1")
    if kind == "enum value":
        names = field.enum_type.values_by_name
        if value.upper() not in names:
            raise ValueError("expected one of " + ", ".join(sorted(names)))
        return names[value.upper()].number
    return int(value)


class AlqueryClient:
    """Talk to an alquery server at ``target`` ("host:port").

    Parameters
    ----------
    target : str
        The server address, e.g. "127.0.0.1:50051".
    timeout : float or None, default=300
        Deadline in seconds for each call, retries included; None waits
        forever. ``rank`` and ``strategies`` take their own ``timeout`` too.
    retry : RetryPolicy, default=RetryPolicy()
        How a call that gets UNAVAILABLE is retried: up to 5 attempts with
        exponential backoff by default; ``RetryPolicy(max_attempts=1)``
        turns retries off.
    security : ChannelSecurity or None, default=None
        TLS files and bearer token for a secured server; None talks
        plaintext without a token.
    stream_threshold_bytes : int, default=1 MiB
        ``rank`` sends a request whose tensors hold more bytes than this by
        ``RankStream``, in ~4 MiB chunks: faster from about 1 MiB on, and
        needed beyond the server's --max-message-mib and protobuf's 2 GiB.
        A streamed call is retried as a unary one is, its chunks sent again.
    shared_memory_dir : str or path, optional
        For a server on this host started with ``--shared-memory-dir`` on
        the same directory: ``rank`` passes each tensor above 64 KiB through
        shared memory by ``Rank``, instead of sending its bytes;
        ``shared_array`` makes arrays that need no copy at all (see
        ``client.shared_memory`` and the README, "Shared memory").
    shared_memory_sealed : bool or None, default=None
        With ``shared_memory_dir``: hand tensors over as sealed memory files
        through a Unix socket there, which the server reads in place (True),
        or as files in the directory, which it copies (False); None: sealed
        where the platform can (Linux).

    Examples
    --------
    >>> client = AlqueryClient("127.0.0.1:50051")  # doctest: +SKIP
    >>> result = client.rank("uncertainty.margin", 10, probabilities=p)  # +SKIP
    >>> result.indices  # doctest: +SKIP
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = 300.0,
        retry: RetryPolicy = RetryPolicy(),
        security: ChannelSecurity | None = None,
        stream_threshold_bytes: int = streaming.DEFAULT_THRESHOLD_BYTES,
        shared_memory_dir: str | os.PathLike[str] | None = None,
        shared_memory_sealed: bool | None = None,
    ) -> None:
        timeout = checked_timeout(timeout)
        retry = checked_policy(retry)
        if security is not None and not isinstance(security, ChannelSecurity):
            raise TypeError(
                f"security: got {security!r}; expected a ChannelSecurity or None"
            )
        _check_threshold(stream_threshold_bytes)
        security = security or ChannelSecurity()
        self._shared_memory = (
            None
            if shared_memory_dir is None
            else SharedMemory(shared_memory_dir, sealed=shared_memory_sealed)
        )
        self._stream_threshold = stream_threshold_bytes
        self._channel = security.open_channel(
            target, options=[("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
        )
        self._metadata = security.metadata()
        self._stub = query_pb2_grpc.QueryServiceStub(self._channel)
        # RankStream's chunks come serialized (streaming.encoded_messages).
        self._rank_stream_call = self._channel.stream_unary(
            f"/{_SERVICE}/RankStream",
            request_serializer=None,
            response_deserializer=query_pb2.RankStreamResponse.FromString,
        )
        self._timeout = timeout
        self._retry = retry
        self._models = ModelSender(self._upload)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> AlqueryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def rank(
        self,
        strategy: str,
        batch_size: int,
        *,
        timeout: float | None = None,
        progress: streaming.Progress | None = None,
        **inputs: Any,
    ) -> RankResult:
        """Rank the pool with ``strategy`` and return the best ``batch_size``.

        Parameters
        ----------
        strategy : str
            "family.method", e.g. "uncertainty.entropy" or "diversity.kcenter".
        batch_size : int
            How many pool samples to return; at least 1.
        **inputs
            Arrays (numpy or nested lists): ``probabilities`` or ``logits`` of
            shape (n_pool, n_classes) or (n_pool, n_passes, n_classes);
            ``embeddings`` (n_pool, n_features); ``labeled_embeddings``,
            ``labeled_labels``; ``validation_probabilities`` or
            ``validation_logits``, ``validation_labels``,
            ``validation_embeddings``. And ``params`` (a mapping of strategy
            parameters), ``seed``, ``return_scores`` (default True),
            ``selection`` ("top_k", the default, or a sampling mode:
            "power", "softmax", "rank"; see the README) and its
            ``temperature`` (default 1, above 0; the server checks it). A
            pandas DataFrame of numeric columns, or a Series of vectors,
            is taken as its array. ``model``: an ONNX model (a path, bytes
            or ``OnnxModel``), or a list of them for a committee, run by the
            server on the embeddings instead of sending probabilities or
            logits; with ``score_validation=True`` it also scores the
            validation set.
        timeout : float or None, default=None
            Deadline in seconds for this call, retries included; None uses
            the client's ``timeout``.
        progress : callable, optional
            Called as ``progress(bytes_sent, bytes_total)`` after each chunk
            when the request is streamed (see ``stream_threshold_bytes``).

        Raises
        ------
        AlqueryError
            With the server's status, or INVALID_ARGUMENT for input the client
            refuses before sending (unknown strategy, ragged rows).
        """
        timeout = checked_timeout(timeout)
        models = as_models(inputs.pop("model", None))
        score_validation = bool(inputs.pop("score_validation", False))
        if score_validation and not models:
            raise AlqueryError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "score_validation: set without a model; it runs the models "
                "on the validation embeddings",
            )
        deferred: dict[str, NDArray] = {}
        request = build_request(strategy, batch_size, deferred=deferred, **inputs)
        placing = (
            contextlib.nullcontext(False)
            if self._shared_memory is None
            else self._shared_memory.place(request, deferred)
        )
        # Files placed in shared memory are removed when the call has ended.
        with placing as placed:
            large = streaming.payload_bytes(deferred) > self._stream_threshold
            if large and not placed:

                def send() -> query_pb2.RankResponse:
                    return self._rank_stream(request, deferred, progress, timeout)

            else:
                streaming.attach(request, deferred)

                def send() -> query_pb2.RankResponse:
                    return self._call(self._stub.Rank, request, timeout)

            if models:
                response = self._rank_with_models(
                    request, models, score_validation, send
                )
            else:
                response = send()
        return rank_result(response, omit_scores=request.omit_scores)

    def shared_array(
        self, shape: int | tuple[int, ...], dtype: Any = np.float32
    ) -> contextlib.AbstractContextManager[NDArray]:
        """A context manager yielding a zeroed array in a shared-memory file.

        Fill it in place and pass it to ``rank``: it is referenced, never
        copied; its file goes when the ``with`` block ends. See
        ``SharedMemory.shared_array``.

        Raises
        ------
        ValueError
            When the client has no ``shared_memory_dir``, or on a dtype
            other than float32, float64, int32 or int64.
        """
        if self._shared_memory is None:
            raise ValueError(
                "shared_array: the client has no shared_memory_dir; create it "
                "with AlqueryClient(..., shared_memory_dir=DIR)"
            )
        return self._shared_memory.shared_array(shape, dtype)

    def _rank_with_models(
        self,
        request: query_pb2.RankRequest,
        models: list[OnnxModel],
        score_validation: bool,
        send: Callable[[], query_pb2.RankResponse],
    ) -> query_pb2.RankResponse:
        # Models already sent go by hash; a NOT_FOUND means the server no
        # longer holds one, so send the bytes again, once.
        for resend in (False, True):
            inference, hashes = self._models.inference(
                models, score_validation, resend=resend
            )
            request.inference.CopyFrom(inference)
            try:
                response = send()
            except AlqueryError as error:
                if error.code != grpc.StatusCode.NOT_FOUND or resend:
                    raise
                continue
            self._models.mark_sent(hashes)
            return response

    def _rank_stream(
        self,
        request: query_pb2.RankRequest,
        deferred: dict[str, NDArray],
        progress: streaming.Progress | None,
        timeout: float | None,
    ) -> query_pb2.RankResponse:
        # Each attempt streams the chunks anew from the arrays, so a call
        # that gets UNAVAILABLE is retried like a unary one.
        def attempt(
            request: query_pb2.RankRequest, timeout: float | None
        ) -> query_pb2.RankResponse:
            return streaming.rank_stream(
                self._rank_stream_call, request, deferred, progress,
                timeout=timeout, metadata=self._metadata,
            )

        try:
            return call_with_retry(
                attempt,
                request,
                timeout=self._timeout if timeout is None else timeout,
                policy=self._retry,
            )
        except grpc.RpcError as error:
            raise AlqueryError(error.code(), error.details() or "") from None

    def upload_model(self, model: Any) -> str:
        """Stream a model (path, bytes or ``OnnxModel``) to the server in chunks.

        Returns its SHA-256, which later requests may send instead of the
        bytes (``rank`` does that by itself).
        """
        (onnx_model,) = as_models(model)
        data = onnx_model.data()
        return self._models.upload(data, hashlib.sha256(data).hexdigest())

    def describe_model(self, model: Any) -> dict[str, Any]:
        """Describe a model: its inputs, outputs, and the binding the server uses.

        ``model`` is a path, bytes or ``OnnxModel`` (whose binding fields are
        resolved). Returns a dict with ``sha256``, ``size_bytes``,
        ``inputs`` and ``outputs`` (name, type, shape with None for dynamic
        axes), ``input_name``, ``output_name``, ``embeddings_output``,
        ``output_kind``, ``fixed_batch_size``, ``class_labels``,
        ``training_dropout_nodes``, ``opsets`` and ``binding_error``.
        """
        (onnx_model,) = as_models(model)
        request = query_pb2.DescribeModelRequest(
            model=onnx_model.message(data=onnx_model.data())
        )
        response = self._call(self._stub.DescribeModel, request)
        self._models.mark_sent([response.sha256])

        def values(infos: Any) -> list[dict[str, Any]]:
            return [
                {
                    "name": info.name,
                    "type": info.type,
                    "shape": [d.size or d.name or None for d in info.shape],
                }
                for info in infos
            ]

        kind = query_pb2.OutputKind.Name(response.output_kind)
        return {
            "sha256": response.sha256,
            "size_bytes": response.size_bytes,
            "inputs": values(response.inputs),
            "outputs": values(response.outputs),
            "input_name": response.input_name,
            "output_name": response.output_name,
            "embeddings_output": response.embeddings_output,
            "output_kind": kind.removeprefix("OUTPUT_KIND_").lower(),
            "fixed_batch_size": response.fixed_batch_size,
            "class_labels": list(response.class_labels),
            "training_dropout_nodes": response.training_dropout_nodes,
            "opsets": list(response.opsets),
            "binding_error": response.binding_error,
        }

    def strategies(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """Return the server's strategies as dicts (name, parameters, ...).

        ``timeout`` overrides the client's deadline for this call.
        """
        timeout = checked_timeout(timeout)
        request = query_pb2.ListStrategiesRequest()
        return strategy_dicts(self._call(self._stub.ListStrategies, request, timeout))

    def _upload(self, chunks: Any) -> Any:
        # A client-streaming call consumes its chunks, so it is not retried.
        try:
            return self._stub.UploadModel(
                chunks, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise AlqueryError(error.code(), error.details() or "") from None

    def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return call_with_retry(
                functools.partial(method, metadata=self._metadata),
                request,
                timeout=self._timeout if timeout is None else timeout,
                policy=self._retry,
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error, request) from None
