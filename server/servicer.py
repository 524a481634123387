"""The ``alquery.v1.QueryService`` RPCs: decode, rank, encode."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from alquery.server import (
    edge,
    footprints,
    registry,
    shared_memory,
    streaming,
)
from alquery.server.errors import (
    INTERNAL_MESSAGE,
    AlqueryError,
    CancelledError,
    InvalidRequestError,
    TooLargeError,
    status_for,
)
from alquery.server.interceptors import QUERY_SERVICE, CallRecord, current_call
from alquery.server.metrics import Metrics
from alquery.server.models import inference, service
from alquery.server.models.cache import ModelCache
from alquery.server.memory import (
    MIB,
    CallLimits,
    MemoryGuard,
    Reservation,
    default_budget_mib,
)
from alquery.server.models.streamed import StreamedInference
from alquery.server.ranking import rank
from alquery.server.tensors import Payload
from alquery.v1 import query_pb2, query_pb2_grpc

_RESPONSES = {
    "Rank": (query_pb2.RankRequest, query_pb2.RankResponse),
    "ListStrategies": (
        query_pb2.ListStrategiesRequest,
        query_pb2.ListStrategiesResponse,
    ),
    "DescribeModel": (
        query_pb2.DescribeModelRequest,
        query_pb2.DescribeModelResponse,
    ),
}


def add_to_server(servicer: "QueryServicer", server: grpc.Server) -> None:
    """Register ``servicer``'s RPCs, parsing each request inside the handler.

    The generated registration parses requests before the handler runs, and a
    message that does not parse then comes back as INTERNAL. Parsing here
    answers INVALID_ARGUMENT instead, naming the message type.
    """

    def parse(raw: bytes, request_type, context: grpc.ServicerContext):
        try:
            return request_type.FromString(raw)
        except DecodeError as error:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request: not a valid {request_type.DESCRIPTOR.full_name} "
                f"message ({error})",
            )

    def parsing(method, request_type):
        def handle(raw: bytes, context: grpc.ServicerContext):
            return method(parse(raw, request_type, context), context)

        return handle

    def parse_streamed(raw: bytes, request_type):
        # Inside a stream the handler is already running: raise our own
        # error, which it answers as INVALID_ARGUMENT (an abort here would
        # surface in the handler as an unexpected exception).
        try:
            return request_type.FromString(raw)
        except DecodeError as error:
            raise InvalidRequestError(
                f"request: not a valid {request_type.DESCRIPTOR.full_name} "
                f"message ({error})"
            ) from None

    def parsing_stream(method, request_type):
        def handle(raws, context: grpc.ServicerContext):
            return method((parse_streamed(r, request_type) for r in raws), context)

        return handle

    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            parsing(getattr(servicer, name), request_type),
            response_serializer=response_type.SerializeToString,
        )
        for name, (request_type, response_type) in _RESPONSES.items()
    }
    handlers["RankStream"] = grpc.stream_unary_rpc_method_handler(
        lambda raws, context: servicer.RankStream(
            (streaming.parse(raw) for raw in raws), context
        ),
        response_serializer=query_pb2.RankStreamResponse.SerializeToString,
    )
    handlers["UploadModel"] = grpc.stream_unary_rpc_method_handler(
        parsing_stream(servicer.UploadModel, query_pb2.UploadModelRequest),
        response_serializer=query_pb2.UploadModelResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(QUERY_SERVICE, handlers),)
    )

logger = logging.getLogger("alquery.server.servicer")

DEFAULT_MAX_STREAM_BYTES = 4096 << 20
"""The most tensor bytes one RankStream call may declare (--max-stream-mib)."""


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    """Serves ``Rank``, ``ListStrategies`` and the model RPCs."""

    def __init__(
        self,
        metrics: Metrics,
        max_response_bytes: int,
        models: ModelCache | None = None,
        max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES,
        memory: MemoryGuard | None = None,
        shared_memory_dir: shared_memory.SharedMemoryDir | None = None,
    ) -> None:
        self._metrics = metrics
        self._max_response_bytes = max_response_bytes
        self._max_stream_bytes = max_stream_bytes
        self._models = models or ModelCache(1 << 30, 256 << 20, threads=0)
        self._memory = memory or MemoryGuard(default_budget_mib() * MIB, metrics)
        self._shared_memory_dir = shared_memory_dir

    def Rank(
        self, request: query_pb2.RankRequest, context: grpc.ServicerContext
    ) -> query_pb2.RankResponse:
        record = current_call()
        record.strategy = edge.strategy_name(request)
        try:
            limits = _limits(context)
            with self._memory.reservation() as reservation:
                payloads, decoded = None, None
                if shared_memory.references(request):
                    _, payloads, decoded = self._read_stream(
                        lambda admit: shared_memory.SharedMemoryReads(
                            request, self._shared_memory_dir, admit,
                            in_place=inference.features_only_models_read(request),
                            time_remaining=limits.time_remaining,
                        ),
                        record, context, limits, reservation,
                    )
                response = self._rank(
                    request, record, limits, context.add_callback,
                    reservation, payloads, decoded,
                )
        except AlqueryError as error:
            code, details = status_for(error)
        except Exception:
            logger.exception("Rank failed on an unexpected error")
            code, details = grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
        else:
            return response
        context.abort(code, details)

    def RankStream(
        self,
        messages: Iterator[query_pb2.RankStreamRequest],
        context: grpc.ServicerContext,
    ) -> query_pb2.RankStreamResponse:
        record = current_call()

        def work() -> query_pb2.RankStreamResponse:
            limits = _limits(context)
            with self._memory.reservation() as reservation:
                request, payloads, decoded = self._read_stream(
                    lambda admit: streaming.Assembly(
                        messages, self._max_stream_bytes, admit
                    ),
                    record, context, limits, reservation,
                )
                response = self._rank(
                    request, record, limits, context.add_callback, reservation,
                    payloads, decoded,
                )
            return query_pb2.RankStreamResponse(response=response)

        return _answer(work, context)

    def _read_stream(
        self,
        open_assembly: Callable[
            [Callable[[query_pb2.RankRequest], None]], streaming.Arrivals
        ],
        record: CallRecord,
        context: grpc.ServicerContext,
        limits: CallLimits,
        reservation: Reservation,
    ) -> tuple[query_pb2.RankRequest, dict[str, Payload], dict[str, Any] | None]:
        """Read the stream; run its models (if any) while chunks arrive.

        ``open_assembly(admit)`` opens the call's assembly: a RankStream's
        (``streaming.Assembly``) or a Rank's shared-memory tensors
        (``shared_memory.SharedMemoryReads``). Returns the request, the
        tensors' bytes by field, and what the models gave (None without
        models). The header's estimate is reserved before any buffer
        exists, the models' before they run.
        """

        def admit(request: query_pb2.RankRequest) -> None:
            nbytes, describe = footprints.header_estimate(request)
            self._memory.admit(reservation, nbytes, describe, limits)

        job = None
        try:
            assembly = open_assembly(admit)
            record.strategy = edge.strategy_name(assembly.request)
            if assembly.request.HasField("inference"):
                self._admit_models(assembly.request, reservation, limits)
                job = StreamedInference(
                    assembly,
                    self._models,
                    limits.stop_requested,
                    context.add_callback,
                )
            payloads = assembly.read(job.raise_if_failed if job else None)
        except grpc.RpcError:
            # Reading the stream failed: the client cancelled or its
            # deadline passed mid-stream.
            _stop(job)
            raise CancelledError("the stream ended: the call was cancelled")
        except InvalidRequestError:
            _stop(job)
            if not context.is_active():
                # A stream cut short by a cancel or a deadline is not
                # the client's malformed input.
                raise CancelledError(
                    "the call was cancelled or its deadline passed"
                ) from None
            raise
        except BaseException:
            _stop(job)
            raise
        return assembly.request, payloads, None if job is None else job.result()

    def _rank(
        self,
        request: query_pb2.RankRequest,
        record: CallRecord,
        limits: CallLimits,
        on_stop: Callable[[Callable[[], None]], object],
        reservation: Reservation,
        payloads: Mapping[str, Payload] | None = None,
        decoded: Mapping[str, Any] | None = None,
    ) -> query_pb2.RankResponse:
        stop_requested = limits.stop_requested
        if decoded is None:
            if request.HasField("inference"):
                self._admit_models(request, reservation, limits)
            decoded = inference.apply(
                request, self._models, stop_requested=stop_requested,
                on_stop=on_stop,
            )
        query = edge.build_query(request, decoded, payloads, stop_requested)
        record.n_pool, record.batch_size = query.n_pool, query.batch_size
        self._admit(query, reservation, limits)

        start = time.perf_counter()
        ranking = rank(query)
        name = query.strategy.name
        seconds_series, pool_series = self._metrics.strategy_series(name)
        seconds_series.observe(time.perf_counter() - start)
        pool_series.observe(query.n_pool)

        response = query_pb2.RankResponse(
            ranked_indices=ranking.ranked_indices.tolist(),
            scores=[] if query.omit_scores else ranking.scores.tolist(),
            strategy=name,
            warnings=query.warnings + ranking.warnings,
        )
        if not query.omit_scores:
            for key, values in ranking.extras.items():
                response.extras[key].values.extend(values.tolist())
        size = response.ByteSize()
        if size > self._max_response_bytes:
            raise TooLargeError(
                f"batch_size: the answer for batch_size={query.batch_size} "
                f"takes {size} bytes, over the server's limit of "
                f"{self._max_response_bytes} (--max-message-mib); ask for a "
                "smaller batch or set omit_scores"
            )
        return response

    def ListStrategies(
        self, request: query_pb2.ListStrategiesRequest, context: grpc.ServicerContext
    ) -> query_pb2.ListStrategiesResponse:
        return query_pb2.ListStrategiesResponse(
            strategies=[_describe(s) for s in registry.all_strategies()]
        )

    def UploadModel(
        self,
        requests: Iterator[query_pb2.UploadModelRequest],
        context: grpc.ServicerContext,
    ) -> query_pb2.UploadModelResponse:
        return _answer(lambda: service.upload(requests, self._models), context)

    def DescribeModel(
        self, request: query_pb2.DescribeModelRequest, context: grpc.ServicerContext
    ) -> query_pb2.DescribeModelResponse:
        return _answer(lambda: service.describe(request, self._models), context)

    def _admit_models(
        self,
        request: query_pb2.RankRequest,
        reservation: Reservation,
        limits: CallLimits,
    ) -> None:
        """Reserve the runner's buffers and outputs before a model runs."""
        sizes = footprints.sizes_of_request(request)
        self._memory.admit(
            reservation,
            max(reservation.nbytes, footprints.inference_estimate(request)),
            lambda: f"the inference models on {sizes.describe()}",
            limits,
        )

    def _admit(
        self, query: edge.Query, reservation: Reservation, limits: CallLimits
    ) -> None:
        """Reserve the checked query's working memory before it computes."""
        name = query.strategy.name
        sizes = footprints.sizes_of_query(query)
        self._memory.admit(
            reservation,
            footprints.estimate(name, sizes, query.params),
            lambda: f"{name} on {sizes.describe()}",
            limits,
        )


def _limits(context: grpc.ServicerContext) -> CallLimits:
    return CallLimits(context.time_remaining, lambda: not context.is_active())


def _stop(job: StreamedInference | None) -> None:
    if job is not None:
        job.stop()


def _answer(work: Callable[[], Any], context: grpc.ServicerContext) -> Any:
    """Return ``work()``, or abort the call with the status for its error."""
    try:
        return work()
    except AlqueryError as error:
        code, details = status_for(error)
    except Exception:
        logger.exception("a call failed on an unexpected error")
        code, details = grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
    context.abort(code, details)


def _describe(strategy: registry.Strategy) -> query_pb2.StrategyInfo:
    return query_pb2.StrategyInfo(
        name=strategy.name,
        family=strategy.family,
        method=strategy.method,
        description=strategy.description,
        required_inputs=[edge.input_field(key) for key in strategy.required_inputs],
        parameters=[
            query_pb2.ParameterInfo(
                name=p.name, type=p.type, default=p.default, description=p.description
            )
            for p in strategy.parameters
        ],
        higher_first=strategy.higher_first,
        min_passes=strategy.min_passes,
    )
