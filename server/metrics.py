"""Prometheus metrics: the conventional gRPC server set, plus alquery's own.

The gRPC names and labels follow the widely used go-grpc-prometheus and
py-grpc-prometheus exporters, so existing dashboards work unchanged:

- ``grpc_server_started_total{grpc_type, grpc_service, grpc_method}``
- ``grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}``
- ``grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}``
- ``grpc_server_msg_received_total`` and ``grpc_server_msg_sent_total``

alquery adds ``alquery_pool_size{strategy}`` (samples per ranked request) and
``alquery_strategy_seconds{strategy}`` (time inside the strategy). Labels are
low-cardinality: strategy names come from the registry, never from a client.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")

# Request sizes from 10 to 10 million samples, a bucket per half decade.
POOL_SIZE_BUCKETS = tuple(
    round(10 ** (exponent / 2)) for exponent in range(2, 15)
)
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
