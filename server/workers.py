"""``alquery serve --workers N``: N server processes behind one port.

The parent process serves no RPC. It chooses the ports once, starts N
worker processes that each run the whole server with ``so_reuseport`` on
(the kernel spreads new connections over them), serves ``/metrics`` for
all of them, and supervises: SIGTERM or SIGINT is passed on to every
worker for a graceful drain, and a worker that dies unexpectedly is
logged at ERROR and replaced.

Notes
-----
Metrics use prometheus_client's multiprocess mode: the parent creates a
temporary ``PROMETHEUS_MULTIPROC_DIR`` before any worker starts, the
workers write their samples there, the parent sums them with
``MultiProcessCollector`` and removes the directory at exit.

The kernel balances connections, not requests: one client with one
channel (one HTTP/2 connection) is served by one worker all along. Many
clients, or clients that open several channels, spread over the workers.

Each worker's native thread pools (BLAS, OpenMP, onnxruntime) get
``max(1, cores // N)`` threads, so N workers do not start N times as many
threads as there are cores; see ``server.threads``.

With port 0 the parent picks a free port by binding one and letting it
go just before the workers bind it; another program could take it in
between (the workers then fail and the parent exits 1).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from alquery.server import threads

if TYPE_CHECKING:
    from alquery.server.app import ServerConfig

logger = logging.getLogger("alquery.server.workers")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MAX_RESTARTS_PER_WORKER = 5
"""Replacements per worker slot before the parent gives up and exits 1."""
START_TIMEOUT_SECONDS = 120.0


def serve_workers(
    config: ServerConfig, workers: int, log_level: str, log_format: str
) -> int:
    """Run ``workers`` processes of ``config`` until SIGTERM or SIGINT.

    Parameters
    ----------
    config : alquery.server.app.ServerConfig
        Settings of every worker; its ``metrics_port`` is served by the
        parent, and ports 0 are chosen here once for all workers.
    workers : int
        Number of worker processes, at least 1.
    log_level, log_format : str
        Passed to each worker's ``logs.configure``.

    Returns
    -------
    int
        0 when every worker exited 0 after the signal, else 1. A second
        signal is passed on too, and ends the workers at once (status 1),
        as it does a single server.

    Raises
    ------
    OSError
        When a port cannot be bound.
    """
    from alquery.server.app import _transport

    # Each worker's native pools get its share of the cores (server.threads).
    share = threads.threads_per_worker(workers)
    config = dataclasses.replace(config, model_threads=config.model_threads or share)
    directory = tempfile.mkdtemp(prefix="alquery-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        with threads.worker_environment(share):
            supervisor = _Supervisor(config, workers, log_level, log_format)
            return supervisor.run(_transport)
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


class _Supervisor:
    """The parent's state: worker processes by slot, and the stop flag."""

    def __init__(
        self, config: ServerConfig, workers: int, log_level: str, log_format: str
    ) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._ready: multiprocessing.Queue[int] = self._context.Queue()
        self._config = config
        self._metrics_port = config.metrics_port
        self._count = workers
        self._log = (log_level, log_format)
        self._slots: list[BaseProcess] = []
        self._restarts = [0] * workers
        self._stop = threading.Event()

    def run(self, transport: Callable[[ServerConfig], str]) -> int:
        config = self._config
        held = [_hold_port(config.host, config.port)]
        if config.health_port is not None:
            held.append(_hold_port(config.host, config.health_port))
        ports = [sock.getsockname()[1] for sock in held]
        self._config = config = dataclasses.replace(
            config, port=ports[0], metrics_port=None, worker=True,
            workers=self._count, health_port=ports[1] if len(ports) > 1 else None,
        )
        # Workers get SIGTERM from here; a terminal's Ctrl-C reaches only
        # the parent, since each worker leads its own process group.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        try:
            # Before any worker starts, so a taken metrics port is an error
            # with nothing left running.
            metrics_http, metrics_port = self._serve_metrics()
        finally:
            for sock in held:
                sock.close()
        self._slots = [self._spawn() for _ in range(self._count)]
        if not self._await_ready():
            self._terminate_all()
            self._join_all()
            if metrics_http is not None:
                metrics_http.shutdown()
                metrics_http.server_close()
            if self._stop.is_set():
                logger.info("stopped before every worker served")
                return 0 if all(p.exitcode == 0 for p in self._slots) else 1
            raise OSError(
                f"workers did not start on {config.host}:{config.port}"
            )
        # What the workers' k-center runs: they load the same files.
        from alquery.server.strategies import kcenter_native

        logger.info(
            "serving port=%d metrics_port=%s max_message_mib=%d threads=%d "
            "transport=%s auth=%s health_port=%s workers=%d "
            "native_threads_per_worker=%s model_threads=%d kcenter_loops=%s",
            config.port, metrics_port, config.max_message_mib, config.threads,
            transport(config), "off" if config.auth_token is None else "token",
            config.health_port, self._count,
            os.environ.get("OPENBLAS_NUM_THREADS"), config.model_threads,
            kcenter_native.STATUS,
        )
        code = self._supervise()
        if metrics_http is not None:
            metrics_http.shutdown()
            metrics_http.server_close()
        logger.info("stopped workers=%d status=%d", self._count, code)
        return code

    def _spawn(self) -> BaseProcess:
        process = self._context.Process(
            target=_worker_main,
            args=(self._config, self._ready, os.getpid(), *self._log),
            name="alquery-worker",
        )
        process.start()
        return process

    def _await_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        started = 0
        while started < self._count:
            if self._stop.is_set() or time.monotonic() > deadline:
                return False
            if any(p.exitcode is not None for p in self._slots):
                return False
            try:
                self._ready.get(timeout=0.1)
            except queue.Empty:
                continue
            started += 1
        return True

    def _serve_metrics(self) -> tuple[object | None, int | None]:
        if self._metrics_port is None:
            return None, None
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=os.environ[MULTIPROC_ENV])
        try:
            http, _ = start_http_server(
                self._metrics_port, addr=self._config.host, registry=registry
            )
        except OSError as error:
            raise OSError(
                f"--metrics-port {self._metrics_port}: cannot listen on "
                f"{self._config.host}:{self._metrics_port}: {error}"
            ) from error
        return http, http.server_port

    def _supervise(self) -> int:
        from prometheus_client import multiprocess

        while not self._stop.is_set():
            wait([p.sentinel for p in self._slots], timeout=0.5)
            self._drain_ready()
            for slot, process in enumerate(self._slots):
                if process.exitcode is None or self._stop.is_set():
                    continue
                multiprocess.mark_process_dead(process.pid)
                logger.error(
                    "worker pid=%d exited unexpectedly exit_code=%d",
                    process.pid, process.exitcode,
                )
                if self._restarts[slot] >= MAX_RESTARTS_PER_WORKER:
                    logger.error(
                        "worker slot=%d restarted %d times; stopping",
                        slot, self._restarts[slot],
                    )
                    self._terminate_all()
                    self._join_all()
                    return 1
                self._restarts[slot] += 1
                self._slots[slot] = self._spawn()
                logger.info(
                    "replacement worker started pid=%d slot=%d",
                    self._slots[slot].pid, slot,
                )
        self._join_all()
        return 0 if all(p.exitcode == 0 for p in self._slots) else 1

    def _drain_ready(self) -> None:
        while True:
            try:
                self._ready.get_nowait()
            except queue.Empty:
                return

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop.set()
        self._terminate_all()

    def _terminate_all(self) -> None:
        for process in self._slots:
            if process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)

    def _join_all(self) -> None:
        from prometheus_client import multiprocess

        for process in self._slots:
            process.join()
            multiprocess.mark_process_dead(process.pid)
            if process.exitcode != 0:
                logger.error(
                    "worker pid=%d exit_code=%d", process.pid, process.exitcode
                )


def _hold_port(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` (0: a free one), not listening.

    Without SO_REUSEPORT, so that a port another server already listens on
    is an error here, as it is for a single process, rather than a port the
    workers would silently share with it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error}") from error
    return sock


def _worker_main(
    config: ServerConfig, ready: multiprocessing.Queue[int], parent: int,
    log_level: str, log_format: str,
) -> None:
    """Entry point of a worker process: serve until SIGTERM."""
    from alquery.server import app, logs, registry

    os.setpgrp()
    logs.configure(log_level, log_format, with_pid=True)
    # Load every strategy module (and with them scikit-learn's and SciPy's
    # native libraries) first, so the cap reaches every pool.
    registry.all_strategies()
    pools = threads.limit_loaded_pools()
    logger.info(
        "worker threads blas=%s openmp=%s model_threads=%d",
        pools.get("blas", "-"), pools.get("openmp", "-"),
        config.model_threads,
    )
    threading.Thread(
        target=_exit_with_parent, args=(parent,), daemon=True
    ).start()
    sys.exit(app.serve(config, on_started=lambda _: ready.put(os.getpid())))


def _exit_with_parent(parent: int) -> None:
    """SIGTERM this worker once its parent is gone (killed with SIGKILL)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
