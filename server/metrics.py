"""Prometheus metrics: the conventional gRPC server set, plus alquery's own.

The gRPC metric names and label names follow the widely used
go-grpc-prometheus and py-grpc-prometheus exporters. One difference: the
``grpc_code`` values are Python's status names (``INVALID_ARGUMENT``), where
go-grpc-prometheus writes ``InvalidArgument``; a dashboard that filters on
codes needs those values (``deploy/grafana/alquery.json`` uses ours).

- ``grpc_server_started_total{grpc_type, grpc_service, grpc_method}``
- ``grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}``
- ``grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}``
- ``grpc_server_msg_received_total`` and ``grpc_server_msg_sent_total``

alquery adds:

- ``alquery_pool_size{strategy}``: samples per ranked request;
- ``alquery_strategy_seconds{strategy}``: time inside the strategy;
- ``alquery_request_bytes`` and ``alquery_response_bytes``
  ``{grpc_service, grpc_method}``: serialized message sizes;
- ``alquery_in_flight_requests``: RPC handlers running now;
- ``alquery_rejected_requests_total{reason}``: calls refused because of
  the request (see ``REJECTED_CODES``), with the refusing code's reason;
- ``alquery_model_cache_lookups_total{result}``: ONNX model look-ups,
  ``hit`` or ``miss``; ``alquery_model_cache_evictions_total``;
  ``alquery_model_cache_bytes``: model bytes the cache holds now;
- ``alquery_memory_reserved_bytes``: working memory the running requests
  have reserved (``server.memory``); ``alquery_memory_waiting_requests``:
  requests waiting for some of it; ``alquery_memory_budget_bytes``: the
  budget they are admitted against. Refusals are counted by
  ``alquery_rejected_requests_total`` with reason ``memory_budget`` (over
  the budget alone) or ``memory_wait`` (no room before the deadline).

Labels are low-cardinality: strategy names come from the registry, method
names from the server's own services, reasons from a fixed set; never
anything a client chooses.

Notes
-----
One process, one registry, unless the server runs ``--workers``: then
prometheus_client's multiprocess mode is on (``PROMETHEUS_MULTIPROC_DIR``,
set by ``server.workers``), each worker writes its samples to memory-mapped
files in that directory, and the parent alone serves ``/metrics``, summing
them with ``MultiProcessCollector``. The gauge is ``livesum``: the sum over
the workers alive now. Multiprocess mode has no ``_created`` samples.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")

# Request sizes from 10 to 10 million samples, a bucket per half decade.
POOL_SIZE_BUCKETS = tuple(
    round(10 ** (exponent / 2)) for exponent in range(2, 15)
)
# Message sizes from 1 KiB to 1 GiB, a bucket per factor of 4.
BYTES_BUCKETS = tuple(float(1 << bits) for bits in range(10, 31, 2))
SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)


class Metrics:
    """The server's metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.started = Counter(
            "grpc_server_started_total",
            "RPCs started on the server.",
            _GRPC_LABELS,
            registry=registry,
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            (*_GRPC_LABELS, "grpc_code"),
            registry=registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status being known.",
            _GRPC_LABELS,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.received = Counter(
            "grpc_server_msg_received_total",
            "Messages received from clients.",
            _GRPC_LABELS,
            registry=registry,
        )
        self.sent = Counter(
            "grpc_server_msg_sent_total",
            "Messages sent to clients.",
            _GRPC_LABELS,
            registry=registry,
        )
        self.pool_size = Histogram(
            "alquery_pool_size",
            "Pool samples per ranked request.",
            ("strategy",),
            buckets=POOL_SIZE_BUCKETS,
            registry=registry,
        )
        self.strategy_seconds = Histogram(
            "alquery_strategy_seconds",
            "Time spent inside the strategy, selection included.",
            ("strategy",),
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.request_bytes = Histogram(
            "alquery_request_bytes",
            "Serialized size of each request message.",
            _GRPC_LABELS[1:],
            buckets=BYTES_BUCKETS,
            registry=registry,
        )
        self.response_bytes = Histogram(
            "alquery_response_bytes",
            "Serialized size of each response message.",
            _GRPC_LABELS[1:],
            buckets=BYTES_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "alquery_in_flight_requests",
            "RPC handlers running now.",
            registry=registry,
            # With --workers: the sum over the workers alive now.
            multiprocess_mode="livesum",
        )
        self.rejected = Counter(
            "alquery_rejected_requests_total",
            "Calls refused because of the request, by reason.",
            ("reason",),
            registry=registry,
        )
        self.cache_lookups = Counter(
            "alquery_model_cache_lookups_total",
            "ONNX model look-ups in the cache, by result (hit or miss).",
            ("result",),
            registry=registry,
        )
        self._strategy_series: dict[str, tuple[Any, Any]] = {}
        for result in ("hit", "miss"):
            # Exported at 0 from the start, so rates and alerts see them.
            self.cache_lookups.labels(result)
        self.cache_evictions = Counter(
            "alquery_model_cache_evictions_total",
            "ONNX models evicted from the cache to stay within its bytes.",
            registry=registry,
        )
        self.cache_bytes = Gauge(
            "alquery_model_cache_bytes",
            "Model bytes the cache holds now.",
            registry=registry,
            # With --workers: each worker has its own cache; their sum.
            multiprocess_mode="livesum",
        )
        self.memory_reserved = Gauge(
            "alquery_memory_reserved_bytes",
            "Working memory reserved by the requests running now.",
            registry=registry,
            # With --workers: each worker has its own ledger; their sum.
            multiprocess_mode="livesum",
        )
        self.memory_waiting = Gauge(
            "alquery_memory_waiting_requests",
            "Requests waiting for working memory to be released.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.memory_budget = Gauge(
            "alquery_memory_budget_bytes",
            "The working-memory budget requests are admitted against.",
            registry=registry,
            # With --workers: each worker has its share; their sum.
            multiprocess_mode="livesum",
        )


    def strategy_series(self, strategy: str) -> tuple[Any, Any]:
        """The ``strategy_seconds`` and ``pool_size`` series of ``strategy``.

        Looked up once per strategy (``labels`` locks and checks on each
        call); ``strategy`` is a registry name, so the cache stays small.
        """
        series = self._strategy_series.get(strategy)
        if series is None:
            series = (
                self.strategy_seconds.labels(strategy),
                self.pool_size.labels(strategy),
            )
            self._strategy_series[strategy] = series
        return series
