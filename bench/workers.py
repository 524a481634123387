"""Throughput and latency of ``alquery serve --workers 2`` against one
process, measured in the same run, with clients in one process or several.

Run: .venv/bin/python bench/workers.py [--calls 16000] [--clients 16]
     [--client-processes 4]
Writes the section between the workers markers of RESULTS.md.

Each setup is a real ``alquery serve`` child process on 127.0.0.1. The
``--clients`` concurrent clients each call ``Rank`` in a loop on a channel
of their own (``grpc.use_local_subchannel_pool``, so each is its own TCP
connection, which the kernel hands to one worker). They run either as
threads of one Python process (which the GIL limits), or spread over
``--client-processes`` processes, as separate client programs are. The
clients share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from alquery.client.local import LocalServer
from alquery.v1 import query_pb2, query_pb2_grpc

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
from results import write_section  # noqa: E402  (bench/)

SECTION = "workers"
WARM_UP = 20


def margin_request() -> query_pb2.RankRequest:
    """uncertainty.margin on 1,000 x 10 probabilities, batch 10."""
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(10), size=1000).astype("<f8")
    return query_pb2.RankRequest(
        pool=query_pb2.Pool(
            probabilities=query_pb2.Tensor(
                dtype=query_pb2.D_TYPE_FLOAT64, shape=probabilities.shape,
                data=probabilities.tobytes(),
            )
        ),
        uncertainty=query_pb2.UncertaintyStrategy(
            method=query_pb2.UncertaintyStrategy.METHOD_MARGIN
        ),
        batch_size=10,
    )


Timed = tuple[float, float, list[float]]
"""Start and end (``time.monotonic``, the same clock in every process on
Linux) and the milliseconds of each call."""


def client_thread(
    target: str,
    calls: int | None,
    barrier: threading.Barrier | None,
    request: query_pb2.RankRequest,
    until: float | None = None,
) -> Timed:
    """Call ``Rank`` on a connection of its own, ``calls`` times or until
    ``until`` (monotonic), after warming up and waiting at ``barrier``, so
    that the timed calls of all clients overlap."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    timings = []
    with grpc.insecure_channel(target, options=options) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        for _ in range(WARM_UP if calls else 1):
            stub.Rank(request, timeout=120)
        if barrier is not None:
            barrier.wait()
        first = time.monotonic()
        while (calls is not None and len(timings) < calls) or (
            until is not None and time.monotonic() < until
        ):
            start = time.perf_counter()
            stub.Rank(request, timeout=120)
            timings.append((time.perf_counter() - start) * 1000.0)
    return first, time.monotonic(), timings


def client_process(
    target: str,
    threads: int,
    calls: int | None,
    barrier: threading.Barrier | None,
    out: multiprocessing.Queue,
    make_request: Callable[[], query_pb2.RankRequest] = margin_request,
    until: float | None = None,
) -> None:
    """A client program: ``threads`` client threads; puts their ``Timed``."""
    request = make_request()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(
            lambda _: client_thread(target, calls, barrier, request, until),
            range(threads),
        ))
    out.put(results)


def run_clients(
    target: str, calls: int, clients: int, processes: int
) -> list[Timed]:
    """Run ``clients`` clients over ``processes`` processes (0: threads of
    this process); return every client's ``Timed``."""
    per_client = calls // clients
    if processes == 0:
        barrier = threading.Barrier(clients)
        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(
                lambda _: client_thread(
                    target, per_client, barrier, margin_request()
                ),
                range(clients),
            ))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(clients)
    out = context.Queue()
    workers = [
        context.Process(
            target=client_process,
            args=(target, threads, per_client, barrier, out),
        )
        for threads in _split(clients, processes)
    ]
    for worker in workers:
        worker.start()
    results = [timed for _ in workers for timed in out.get()]
    for worker in workers:
        worker.join()
    return results


def _split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as can be."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def summarise(results: list[Timed]) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 milliseconds of overlapping clients."""
    elapsed = max(r[1] for r in results) - min(r[0] for r in results)
    timings = [t for result in results for t in result[2]]
    rate = len(timings) / elapsed
    return rate, statistics.median(timings), float(np.percentile(timings, 99))


def measure(
    workers: int, calls: int, clients: int, processes: int
) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 milliseconds for one setup."""
    with LocalServer(["--workers", str(workers)]) as server:
        return summarise(run_clients(server.target, calls, clients, processes))


def run(calls: int, clients: int, processes: int) -> str:
    one, spread = "1 process", f"{processes} processes"
    # --workers 1 again last: the spread between the two single-process
    # rows is the run-order noise the ratios must be read against.
    setups = [
        (1, one, 0), (2, one, 0),
        (1, spread, processes), (2, spread, processes),
        (1, spread + ", again", processes),
    ]
    load = os.getloadavg()[0]
    rows = [(w, c, measure(w, calls, clients, p)) for w, c, p in setups]
    base = {one: rows[0][2][0], spread: rows[2][2][0]}
    lines = [
        "## Worker processes",
        "",
        f"`.venv/bin/python bench/workers.py --calls {calls} --clients "
        f"{clients} --client-processes {processes}`: uncertainty.margin on "
        "1,000 x 10 probabilities (80 KB requests), batch 10; "
        f"{clients} concurrent clients, each on its own connection, calling "
        "in a loop, as threads of one Python process or spread over "
        f"{processes} processes, against `alquery serve` child processes on "
        "loopback, on this 2-core machine (the clients share the cores). "
        f"Load average when the run began: {load:.1f} (other work on the "
        "machine widens the spread between the repeated rows). The ratio is "
        "against one server process with the same clients.",
        "",
        "| --workers | clients in | requests/s | p50 ms | p99 ms | "
        "requests/s / one server process |",
        "|---|---|---|---|---|---|",
    ]
    for workers, clients_in, (rate, p50, p99) in rows:
        ratio = rate / base[clients_in.removesuffix(", again")]
        lines.append(
            f"| {workers} | {clients_in} | {rate:.0f} | {p50:.2f} | {p99:.2f} "
            f"| {ratio:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=16000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    text = run(args.calls, args.clients, args.client_processes)
    print(text)
    write_section(SECTION, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
