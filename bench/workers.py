"""Throughput and latency of ``alquery serve --workers 2`` against one
process, measured in the same run.

Run: .venv/bin/python bench/workers.py [--calls 4000] [--clients 16]
Writes the section between the workers markers of RESULTS.md.

Each setup is a real ``alquery serve`` child process on 127.0.0.1. The
client is one Python process with ``--clients`` threads, each on a channel
of its own (``grpc.use_local_subchannel_pool``, so each is its own TCP
connection, which the kernel hands to one worker). The client shares the
machine's two cores with the server.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import threading
import time
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


def client_thread(
    target: str, calls: int, barrier: threading.Barrier
) -> tuple[float, float, list[float]]:
    """Start, end and milliseconds per call on a connection of its own.

    Every thread warms up, then waits for the others, so the timed calls
    of all threads overlap.
    """
    request = margin_request()
    options = [("grpc.use_local_subchannel_pool", 1)]
    timings = []
    with grpc.insecure_channel(target, options=options) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        for _ in range(WARM_UP):
            stub.Rank(request, timeout=60)
        barrier.wait()
        first = time.perf_counter()
        for _ in range(calls):
            start = time.perf_counter()
            stub.Rank(request, timeout=60)
            timings.append((time.perf_counter() - start) * 1000.0)
    return first, time.perf_counter(), timings


def measure(workers: int, calls: int, clients: int) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 milliseconds for one server setup."""
    per_client = calls // clients
    barrier = threading.Barrier(clients)
    with LocalServer(["--workers", str(workers)]) as server:
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(
                client_thread, [server.target] * clients,
                [per_client] * clients, [barrier] * clients,
            ))
    elapsed = max(r[1] for r in results) - min(r[0] for r in results)
    timings = [t for result in results for t in result[2]]
    rate = len(timings) / elapsed
    return rate, statistics.median(timings), float(np.percentile(timings, 99))


def run(calls: int, clients: int) -> str:
    # --workers 1 again last: the spread between the two single-process
    # rows is the run-order noise the ratio must be read against.
    setups = [("1 (one process)", 1), ("2", 2), ("1 (one process), again", 1)]
    load = os.getloadavg()[0]
    rows = {name: measure(workers, calls, clients) for name, workers in setups}
    base = rows[setups[0][0]][0]
    lines = [
        "## Worker processes",
        "",
        f"`.venv/bin/python bench/workers.py --calls {calls} --clients "
        f"{clients}`: uncertainty.margin on 1,000 x 10 probabilities "
        f"(80 KB requests), batch 10; {clients} client threads in one "
        "process, each on its own connection, against `alquery serve` "
        "child processes on loopback, on this 2-core machine (the client "
        "shares the cores). Load average when the run began: "
        f"{load:.1f} (other work on the machine widens the spread between "
        "the two one-process rows).",
        "",
        "| --workers | requests/s | p50 ms | p99 ms | requests/s / one process |",
        "|---|---|---|---|---|",
    ]
    for name, (rate, p50, p99) in rows.items():
        lines.append(
            f"| {name} | {rate:.0f} | {p50:.2f} | {p99:.2f} | {rate / base:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    text = run(args.calls, args.clients)
    print(text)
    write_section(SECTION, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
