"""Assemble the gRPC server (query service, health, reflection, metrics) and run it."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from alquery.server import (
    balance,
    crash,
    drain,
    memory,
    registry,
    sealed_fd,
    shared_memory,
)
from alquery.server.interceptors import QUERY_SERVICE, ObservingInterceptor
from alquery.server.metrics import Metrics
from alquery.server.models.cache import ModelCache
from alquery.server.security import TlsFiles, TokenInterceptor, server_credentials
from alquery.server.servicer import QueryServicer, add_to_server
from alquery.server.strategies import entropy_screen, kcenter_native

logger = logging.getLogger("alquery.server.app")

MIB = 1 << 20
DEFAULT_MAX_MESSAGE_MIB = 512
"""Large enough for a 100,000 x 768 float32 pool (293 MiB) with its
probabilities and a labeled set."""


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Settings of one server process.

    ``model_cache_mib`` bounds the ONNX models kept by hash,
    ``max_model_mib`` the largest model accepted, and ``model_threads`` the
    onnxruntime intra-op threads of a run (0: every core).
    """

    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int | None = 9464
    max_message_mib: int = DEFAULT_MAX_MESSAGE_MIB
    threads: int = 4
    grace_seconds: float = 30.0
    tls: TlsFiles | None = None
    """Serve TLS (mutual TLS with a client CA) instead of plaintext."""
    health_port: int | None = None
    """A second, plaintext port that serves only gRPC health checking, for
    probes that cannot speak TLS (a kubelet's); None = no such port."""
    auth_token: str | None = dataclasses.field(default=None, repr=False)
    """Bearer token every call but health checks must carry; kept out of
    the repr so it cannot reach a log."""
    model_cache_mib: int = 1024
    max_model_mib: int = 256
    model_threads: int = 0
    max_stream_mib: int = 4096
    """The most tensor bytes one RankStream call may declare."""
    memory_budget_mib: int | None = None
    """Working memory this process admits requests against (see
    ``server.memory``); None: ``memory.default_budget_mib()``."""
    worker: bool = False
    """One of several ``--workers`` processes (see ``server.workers``): its
    ports are shared with the others (``so_reuseport``) and its start-up
    line says ``worker serving``, as the parent alone logs ``serving``."""
    workers: int = 1
    """With ``worker``: how many worker processes share the port; new
    connections go to them in turn when the kernel allows it
    (``server.balance``)."""
    shared_memory_dir: str | shared_memory.SharedMemoryDir | None = None
    """Read tensors that reference files in this directory (``Rank`` only,
    clients on the same host; see ``server.shared_memory``), given by path
    or already open; None: off."""


@dataclasses.dataclass
class RunningServer:
    """A started server: its gRPC server, bound ports and health servicer."""

    grpc_server: grpc.Server
    port: int
    metrics_port: int | None
    health: health.HealthServicer
    metrics: Metrics
    interceptor: ObservingInterceptor
    _metrics_http: object | None
    health_port: int | None = None
    _health_server: grpc.Server | None = None
    _drain: drain.DrainInterceptor | None = None

    def stop(self, grace_seconds: float, drain_seconds: float = 5.0) -> bool:
        """Refuse new RPCs, let running ones finish for up to the grace period.

        New query calls end UNAVAILABLE at once while the running ones
        finish (``server.drain``); then gRPC stops with what is left of the
        grace period.

        After the grace period gRPC cancels what still runs; strategies notice
        between chunks and stop. Returns False when a handler is still busy
        ``drain_seconds`` after that (e.g. inside a library call that cannot
        be interrupted).
        """
        self.health.enter_graceful_shutdown()
        if self._drain is not None:
            # New query calls end UNAVAILABLE (retry elsewhere) while the
            # running ones finish; see server/drain.py.
            grace_seconds = drain.drain(
                self._drain, lambda: self.interceptor.in_flight, grace_seconds
            )
        self.grpc_server.stop(grace_seconds).wait()
        if self._health_server is not None:
            self._health_server.stop(0).wait()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        deadline = time.monotonic() + drain_seconds
        while self.interceptor.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.interceptor.in_flight == 0


def start(config: ServerConfig) -> RunningServer:
    """Start serving per ``config``; port 0 picks a free port (see ``.port``).

    Raises
    ------
    OSError
        When a port cannot be bound.
    SecurityConfigError
        When a TLS file cannot be read.
    SharedMemoryConfigError
        When the shared-memory directory is missing, a symbolic link, or
        open to other users (an ``OSError``).
    """
    # Import every strategy module (scikit-learn among them) now, so the
    # first request does not pay for it and a broken install fails at start.
    registry.all_strategies()
    # The entropy screen's one check of numpy's float32 log: now, not on a
    # request (its memory is not in any request's estimate).
    entropy_screen.log_is_accurate()
    shared_dir = config.shared_memory_dir
    if isinstance(shared_dir, str):
        shared_dir = shared_memory.SharedMemoryDir(shared_dir)
    metrics = Metrics(CollectorRegistry())
    interceptor = ObservingInterceptor(metrics)
    # The observing interceptor comes first, so refused calls are counted
    # and logged like any other.
    drainer = drain.DrainInterceptor()
    interceptors: list[grpc.ServerInterceptor] = [interceptor, drainer]
    if config.auth_token is not None:
        interceptors.append(TokenInterceptor(config.auth_token))
    credentials = None if config.tls is None else server_credentials(config.tls)
    max_bytes = config.max_message_mib * MIB
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=config.threads, thread_name_prefix="alquery-rpc"
        ),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes),
            # One process owns its port; a second server on it is an error,
            # unless the workers of one parent share it on purpose.
            ("grpc.so_reuseport", int(config.worker)),
        ],
    )
    models = ModelCache(
        config.model_cache_mib * MIB,
        config.max_model_mib * MIB,
        config.model_threads,
        metrics=metrics,
    )
    budget_mib = config.memory_budget_mib or memory.default_budget_mib()
    add_to_server(
        QueryServicer(
            metrics,
            max_response_bytes=max_bytes,
            models=models,
            max_stream_bytes=config.max_stream_mib * MIB,
            memory=memory.MemoryGuard(budget_mib * MIB, metrics),
            shared_memory_dir=shared_dir,
        ),
        server,
    )

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", QUERY_SERVICE):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (QUERY_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )

    address = f"[{config.host}]" if ":" in config.host else config.host
    try:
        if credentials is None:
            port = server.add_insecure_port(f"{address}:{config.port}")
        else:
            port = server.add_secure_port(f"{address}:{config.port}", credentials)
    except RuntimeError as error:
        raise OSError(f"cannot listen on {address}:{config.port}: {error}") from error
    if port == 0:
        raise OSError(f"cannot listen on {address}:{config.port}")

    health_server, health_port = None, None
    if config.health_port is not None:
        health_server, health_port = _start_health_server(
            address, config.health_port, health_servicer, config.worker
        )

    metrics_http, metrics_port = None, None
    if config.metrics_port is not None:
        try:
            metrics_http, _ = start_http_server(
                config.metrics_port, addr=config.host, registry=metrics.registry
            )
        except OSError as error:
            # As with --workers (workers.py): name the flag and the address.
            if health_server is not None:
                health_server.stop(None)
            raise OSError(
                f"--metrics-port {config.metrics_port}: cannot listen on "
                f"{config.host}:{config.metrics_port}: {error}"
            ) from error
        metrics_port = metrics_http.server_port
    server.start()
    if config.worker:
        # Once the port listens, its reuseport group exists and can take the
        # round-robin program; every worker attaches it (the last one wins,
        # so a replaced worker's group keeps it).
        balancing = balance.attach(port, config.workers)
        # The worker's log format carries its pid already (logs.configure);
        # "serving port=" stays the parent's line alone.
        logger.info(
            "worker serving shared_port=%d memory_budget_mib=%d "
            "connection_balancing=%s",
            port, budget_mib, balancing,
        )
    else:
        logger.info(
            "serving port=%d metrics_port=%s max_message_mib=%d threads=%d "
            "transport=%s auth=%s health_port=%s memory_budget_mib=%d "
            "kcenter_loops=%s",
            port, metrics_port, config.max_message_mib, config.threads,
            _transport(config), "off" if config.auth_token is None else "token",
            health_port, budget_mib, kcenter_native.STATUS,
        )
    if shared_dir is not None:
        logger.info(
            "shared memory enabled dir=%s sealed_memory_files=%s",
            shared_dir.path, "yes" if sealed_fd.supported() else "no",
        )
    return RunningServer(
        server, port, metrics_port, health_servicer, metrics, interceptor,
        metrics_http, health_port, health_server, drainer,
    )


def _start_health_server(
    address: str, port: int, health_servicer: health.HealthServicer,
    shared: bool = False,
) -> tuple[grpc.Server, int]:
    """Serve ``health_servicer`` alone, in plaintext, on ``port``."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="alquery-health"),
        options=[("grpc.so_reuseport", int(shared))],
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        bound = server.add_insecure_port(f"{address}:{port}")
    except RuntimeError as error:
        raise OSError(f"cannot listen on {address}:{port}: {error}") from error
    if bound == 0:
        raise OSError(f"cannot listen on {address}:{port}")
    server.start()
    return server, bound


def _transport(config: ServerConfig) -> str:
    if config.tls is None:
        return "plaintext"
    return "tls" if config.tls.client_ca is None else "mtls"


def serve(
    config: ServerConfig, on_started: Callable[[RunningServer], None] | None = None
) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully.

    Returns 0 once every request has finished. A second signal, or a
    request still running after the grace period and a short drain, ends
    the process at once with status 1: Python cannot stop a thread that is
    inside a native library call. A fatal signal (a crash in a native
    library) dumps every thread's stack to stderr first (``server.crash``).
    ``on_started`` is called once the server serves (a worker tells its
    parent so).
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            logger.warning("second signal; exiting now")
            os._exit(1)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    crash.report_fatal_signals()
    running = start(config)
    if on_started is not None:
        on_started(running)
    stop.wait()
    logger.info("shutting down grace_seconds=%.1f", config.grace_seconds)
    if not running.stop(config.grace_seconds):
        logger.warning(
            "exiting with %d requests still running after the grace period",
            running.interceptor.in_flight,
        )
        logging.shutdown()
        os._exit(1)
    logger.info("stopped")
    return 0
