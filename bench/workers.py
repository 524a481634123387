"""Throughput and latency of ``alquery serve --workers 2`` against one
process, measured in the same run, with clients in one process or several.

Run: .venv/bin/python bench/workers.py [--calls 16000] [--clients 16]
     [--client-processes 2 4] [--baseline-commit COMMIT] [--repeats 1]
     [--rate R]
Writes the section between the workers markers of RESULTS.md.

Each setup is a real ``alquery serve`` child process on 127.0.0.1. The
``--clients`` concurrent clients each call ``Rank`` in a loop on a channel
of their own (``grpc.use_local_subchannel_pool``, so each is its own TCP
connection, which the kernel hands to one worker). They run either as
threads of one Python process (which the GIL limits), or spread over
``--client-processes`` processes, as separate client programs are (one
per core is how a deployment's clients would run). The clients share the
machine's cores with the server, so every row also gives the CPU each side
spends per call. With ``--baseline-commit`` the server code of that commit
(see ``baseline.py``) is measured beside this worktree's, in the same run.
With ``--rate R``, extra rows follow the saturation rows: the same servers
under open-loop clients that together offer R calls a second on a fixed
schedule, latency counted from each call's due time (``run_paced``).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np

from alquery.client.local import LocalServer
from alquery.v1 import query_pb2, query_pb2_grpc

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import baseline  # noqa: E402  (bench/)
from grpc_floor import FloorServer  # noqa: E402  (bench/)
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
    cpu_out: multiprocessing.Queue | None = None,
) -> None:
    """A client program: ``threads`` client threads; puts their ``Timed``,
    then (with ``cpu_out``) the CPU seconds the calls took, start-up and
    imports left out."""
    request = make_request()
    start = time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(
            lambda _: client_thread(target, calls, barrier, request, until),
            range(threads),
        ))
    out.put(results)
    if cpu_out is not None:
        cpu_out.put(time.process_time() - start)


def paced_thread(
    target: str,
    calls: int,
    barrier: threading.Barrier,
    request: query_pb2.RankRequest,
    start: Any,
    index: int,
    clients: int,
    rate: float,
) -> Timed:
    """One open-loop client, number ``index`` of ``clients``: call ``j``
    is due at start + (index + j * clients) / rate, so that all clients
    together offer ``rate`` calls a second on a fixed schedule, whatever
    the server does. A call sent late (the previous one had not come back
    by then) still counts from when it was due: the milliseconds include
    the wait in the queue. ``start`` is a shared double one client sets
    once all are warm."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    timings = []
    with grpc.insecure_channel(target, options=options) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        for _ in range(WARM_UP):
            stub.Rank(request, timeout=120)
        if barrier.wait() == 0:
            start.value = time.monotonic() + 0.1
        barrier.wait()
        first = start.value
        for call in range(calls):
            due = first + (index + call * clients) / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stub.Rank(request, timeout=120)
            timings.append((time.monotonic() - due) * 1000.0)
    return first, time.monotonic(), timings


def paced_process(
    target: str,
    indices: list[int],
    calls: int,
    clients: int,
    rate: float,
    barrier: threading.Barrier,
    start: Any,
    out: multiprocessing.Queue,
    cpu_out: multiprocessing.Queue,
) -> None:
    """A paced client program: one ``paced_thread`` per index; puts their
    ``Timed``, then the CPU seconds the calls took."""
    request = margin_request()
    begin = time.process_time()
    with ThreadPoolExecutor(len(indices)) as pool:
        results = list(pool.map(
            lambda index: paced_thread(
                target, calls, barrier, request, start, index, clients, rate
            ),
            indices,
        ))
    out.put(results)
    cpu_out.put(time.process_time() - begin)


def run_paced(
    target: str, calls: int, clients: int, processes: int, rate: float
) -> tuple[list[Timed], float]:
    """``run_clients`` for open-loop clients offering ``rate`` calls a
    second together (``paced_thread``), over ``processes`` processes."""
    context = multiprocessing.get_context("spawn")
    barrier, start = context.Barrier(clients), context.Value("d", 0.0)
    out, cpu_out = context.Queue(), context.Queue()
    indices = list(range(clients))
    workers, taken = [], 0
    for threads in _split(clients, processes):
        workers.append(context.Process(
            target=paced_process,
            args=(
                target, indices[taken : taken + threads], calls // clients,
                clients, rate, barrier, start, out, cpu_out,
            ),
        ))
        taken += threads
    return _gather(workers, out, cpu_out)


def run_clients(
    target: str, calls: int, clients: int, processes: int
) -> tuple[list[Timed], float]:
    """Run ``clients`` clients over ``processes`` processes (0: threads of
    this process); return every client's ``Timed`` and the CPU seconds
    the clients spent (with threads: all of this process's, the thread
    that reads the server's log included)."""
    per_client = calls // clients
    if processes == 0:
        barrier = threading.Barrier(clients)
        start = time.process_time()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(
                lambda _: client_thread(
                    target, per_client, barrier, margin_request()
                ),
                range(clients),
            ))
        return results, time.process_time() - start
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(clients)
    out, cpu_out = context.Queue(), context.Queue()
    workers = [
        context.Process(
            target=client_process,
            args=(target, threads, per_client, barrier, out),
            kwargs={"cpu_out": cpu_out},
        )
        for threads in _split(clients, processes)
    ]
    return _gather(workers, out, cpu_out)


def _gather(workers: list, out, cpu_out) -> tuple[list[Timed], float]:
    # Start the client processes; return every client's ``Timed`` and the
    # CPU seconds the processes spent.
    for worker in workers:
        worker.start()
    results = [timed for _ in workers for timed in out.get()]
    cpu = sum(cpu_out.get() for _ in workers)
    for worker in workers:
        worker.join()
    return results, cpu


def _split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as can be."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def summarise(results: list[Timed]) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 milliseconds of overlapping clients."""
    elapsed = max(r[1] for r in results) - min(r[0] for r in results)
    timings = [t for result in results for t in result[2]]
    rate = len(timings) / elapsed
    return rate, statistics.median(timings), float(np.percentile(timings, 99))


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) used so far by process ``pid`` and
    every process below it that is still running, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        process = pending.pop()
        try:
            with open(f"/proc/{process}/stat", encoding="ascii") as file:
                fields = file.read().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for thread in os.listdir(f"/proc/{process}/task"):
                path = f"/proc/{process}/task/{thread}/children"
                with open(path, encoding="ascii") as file:
                    pending += [int(child) for child in file.read().split()]
        except OSError:
            continue  # it ended meanwhile
    return total


def server_processes(pid: int) -> list[int]:
    """Process ``pid`` and its children (a ``--workers`` parent's workers)."""
    children = []
    for thread in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{thread}/children", encoding="ascii") as file:
            children += [int(child) for child in file.read().split()]
    return [pid, *children]


def connections(pids: list[int], port: int) -> list[int]:
    """Established TCP connections to ``port`` held by each of ``pids``
    that listens on it (a ``--workers`` parent and its other children do
    not), from /proc (Linux). gRPC's sockets are IPv6 ones that also take
    IPv4 (127.0.0.1 shows as ::ffff:127.0.0.1), so both tables count."""
    owner = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    owner[link[8:-1]] = pid
        except OSError:
            continue  # it ended meanwhile
    listening: set[int] = set()
    counts = dict.fromkeys(pids, 0)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as file:
            rows = file.readlines()[1:]
        for row in rows:
            # Field 3 is the state (01 established, 0A listening), 9 the inode.
            fields = row.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port != port or fields[9] not in owner:
                continue
            if fields[3] == "0A":
                listening.add(owner[fields[9]])
            elif fields[3] == "01":
                counts[owner[fields[9]]] += 1
    return [counts[pid] for pid in pids if pid in listening]


class ConnectionWatch:
    """Reads, every ``interval`` seconds while its block runs, how the
    clients' connections spread over the server's processes, and keeps the
    reading that saw the most (all clients connected)."""

    def __init__(self, pid: int, port: int, interval: float = 0.2) -> None:
        self._pid, self._port, self._interval = pid, port, interval
        self._done = threading.Event()
        self.spread: list[int] = []

    def _watch(self) -> None:
        while not self._done.wait(self._interval):
            seen = connections(server_processes(self._pid), self._port)
            if sum(seen) > sum(self.spread):
                self.spread = sorted(seen, reverse=True)

    def __enter__(self) -> ConnectionWatch:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


Measured = tuple[float, float, float, float, float, list[int]]
"""Requests per second, p50 and p99 milliseconds, the server's and the
clients' CPU milliseconds per call, and the clients' connections held by
each server process, most first."""


FLOOR = "bare gRPC"
"""The label of the rows measured against ``grpc_floor.FloorServer``."""


@contextlib.contextmanager
def _server(
    workers: int, code: pathlib.Path | None
) -> Iterator[LocalServer | FloorServer]:
    if code == FLOOR:
        with FloorServer() as floor:
            yield floor
        return
    with baseline.server_code(code):
        server = LocalServer(["--workers", str(workers)]).start()
    try:
        yield server
    finally:
        server.stop()


def measure(
    workers: int,
    calls: int,
    clients: int,
    processes: int,
    server_code: pathlib.Path | str | None = None,
    rate: float | None = None,
) -> Measured:
    """Requests per second, latencies and CPU per call for one setup.

    ``server_code``: a folder from ``baseline.export``, ``FLOOR`` for the
    bare gRPC server, or None for this worktree's ``alquery serve``. CPU
    per call counts every call made, the warm-up calls included; the
    server's is its processes' (the parent and every worker) from the
    clients' start to their end, the clients' as ``run_clients`` says.
    With ``rate``, the clients are paced (``run_paced``, at least one
    process): requests/s is then the rate achieved, and the milliseconds
    count from each call's due time.
    """
    with _server(workers, server_code) as server:
        server_before = cpu_seconds(server.process.pid)
        port = int(server.target.rpartition(":")[2])
        with ConnectionWatch(server.process.pid, port) as watch:
            if rate is None:
                results, client_cpu = run_clients(
                    server.target, calls, clients, processes
                )
            else:
                results, client_cpu = run_paced(
                    server.target, calls, clients, max(1, processes), rate
                )
        server_cpu = cpu_seconds(server.process.pid) - server_before
    made = sum(len(r[2]) for r in results) + WARM_UP * len(results)
    rate, p50, p99 = summarise(results)
    return (
        rate, p50, p99, 1000 * server_cpu / made, 1000 * client_cpu / made,
        watch.spread,
    )


GOAL_RATE, GOAL_P99_MS = 1000.0, 20.0
"""Issue 6's goal for small requests on this 2-core machine."""


def run(
    calls: int,
    clients: int,
    processes: list[int],
    baseline_commit: str | None = None,
    repeats: int = 1,
    rate: float | None = None,
) -> str:
    with tempfile.TemporaryDirectory() as directory:
        codes: list[tuple[str, pathlib.Path | str | None]] = [("this", None)]
        if baseline_commit is not None:
            exported = baseline.export(baseline_commit, pathlib.Path(directory))
            codes.insert(0, (baseline_commit, exported))
        text = _run(calls, clients, processes, codes, repeats)
        if rate is not None:
            # The header quotes the command line up to its closing "`:".
            head, tail = text.split("`:", 1)
            text = f"{head} --rate {rate:g}`:{tail}"
            text += "\n\n" + _run_paced(
                calls, clients, processes[0], codes, repeats, rate
            )
        return text


def _run_paced(
    calls: int,
    clients: int,
    processes: int,
    codes: list[tuple[str, pathlib.Path | str | None]],
    repeats: int,
    rate: float,
) -> str:
    """Extra rows: the same servers under open-loop clients offering
    ``rate`` calls a second (``run_paced``), clients in ``processes``
    processes; measured after the saturation rows, in rounds as they are."""
    setups = [(code, workers) for code in codes for workers in (1, 2)]
    load = os.getloadavg()[0]
    measured: list[list[Measured]] = [[] for _ in setups]
    for _ in range(repeats):
        for index, ((_, path), workers) in enumerate(setups):
            measured[index].append(
                measure(workers, calls, clients, processes, path, rate=rate)
            )
    lines = [
        f"Paced (open-loop) rows, extra to the saturation rows above: "
        f"the same servers and requests, but the {clients} clients "
        f"(threads of {processes} processes) together send {rate:,.0f} "
        "calls a second on a fixed schedule (client i's call j is due at "
        f"(i + {clients} j) / {rate:,.0f} s), each waiting for its answer "
        "before its next call. A call's milliseconds count from when it "
        "was due, so time spent queued behind a slow call is included "
        f"(no coordinated omission). {calls} calls per run, {repeats} "
        f"run(s) per setup; load average when these rows began: {load:.1f}. "
        "Achieved requests/s below the offered rate means the server fell "
        f"behind. Goal: p99 under {GOAL_P99_MS:.0f} ms while achieving at "
        f"least 99% of the offered {rate:,.0f} requests/s.",
        "",
        "| server code | --workers | clients in | offered requests/s | "
        "achieved requests/s | p50 ms | p99 ms | server CPU ms/call | "
        "client CPU ms/call | connections | goal met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ((label, _), workers), runs in zip(setups, measured):
        met = sum(r[0] >= 0.99 * rate and r[2] < GOAL_P99_MS for r in runs)
        lines.append(
            f"| {label} | {workers} | {processes} processes, paced "
            f"| {rate:,.0f} | {_spread([r[0] for r in runs], 0)} "
            f"| {_spread([r[1] for r in runs], 2)} "
            f"| {_spread([r[2] for r in runs], 2)} "
            f"| {statistics.median(r[3] for r in runs):.3f} "
            f"| {statistics.median(r[4] for r in runs):.3f} "
            f"| {', '.join('/'.join(map(str, r[5])) for r in runs)} "
            f"| {met}/{len(runs)} |"
        )
    return "\n".join(lines)


def _spread(values: list[float], digits: int) -> str:
    """The median and, with several runs, [lowest, highest]."""
    middle = f"{statistics.median(values):.{digits}f}"
    if len(values) == 1:
        return middle
    return f"{middle} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def _run(
    calls: int,
    clients: int,
    processes: list[int],
    codes: list[tuple[str, pathlib.Path | str | None]],
    repeats: int = 1,
) -> str:
    setups = []
    for count in [0, *processes]:
        setups += [(code, workers, count) for code in codes for workers in (1, 2)]
        setups.append(((FLOOR, FLOOR), 1, count))
    # The first setup again last: the spread between the two is the
    # run-order noise the other rows must be read against.
    setups.append(setups[0])
    load = os.getloadavg()[0]
    # Every round runs every setup once, so a busy spell of the machine
    # touches all setups alike rather than the repeats of one.
    measured: list[list[Measured]] = [[] for _ in setups]
    for _ in range(repeats):
        for index, ((_, path), workers, count) in enumerate(setups):
            measured[index].append(measure(workers, calls, clients, count, path))
    rows = [
        (label, workers, count, runs)
        for ((label, _), workers, count), runs in zip(setups, measured)
    ]
    return "\n".join(
        _header(calls, clients, processes, codes, repeats, load) + _table(rows)
    )


def _header(
    calls: int,
    clients: int,
    processes: list[int],
    codes: list[tuple[str, pathlib.Path | str | None]],
    repeats: int,
    load: float,
) -> list[str]:
    command = (
        f"`.venv/bin/python bench/workers.py --calls {calls} --clients "
        f"{clients} --client-processes {' '.join(map(str, processes))}"
        + (f" --baseline-commit {codes[0][0]}" if len(codes) > 1 else "")
        + (f" --repeats {repeats}`" if repeats > 1 else "`")
    )
    repeated = (
        f"Each setup ran {repeats} times, in {repeats} rounds over all "
        "setups; a row gives the median and, in brackets, the lowest and "
        "highest of its runs. "
        if repeats > 1
        else ""
    )
    return [
        "## Worker processes",
        "",
        f"{command}: uncertainty.margin on 1,000 x 10 probabilities (80 KB "
        f"requests), batch 10; {clients} concurrent clients, each on its own "
        "connection, calling in a loop, as threads of one Python process "
        "or spread over several, against `alquery serve` child processes "
        "on loopback, on this 2-core machine (the clients share the "
        f"cores). Load average when the run began: {load:.1f} (other work "
        "on the machine widens the spread between the repeated rows). "
        + repeated
        + "Server CPU: the server processes' user and system time (/proc) "
        "per call; client CPU: the client processes' (with one process, "
        "it also reads the server's log lines). Connections: how the "
        "clients' connections spread over the server's processes, in each "
        "run (the kernel's so_reuseport hash does not count them; a server "
        "with `server/balance.py` hands them to its workers in turn where "
        "it may load eBPF). Rows \"bare gRPC\": "
        "`bench/grpc_floor.py`, a gRPC server with the same handler pool "
        "that parses the request and sends a fixed answer, the floor under "
        "alquery's cost per call. The ratio is of medians, against one "
        "server process with the same code and clients; goal: at least "
        f"{GOAL_RATE:,.0f} requests/s with p99 under {GOAL_P99_MS:.0f} ms "
        "(runs that met it, of all runs).",
        "",
        "| server code | --workers | clients in | requests/s | p50 ms | "
        "p99 ms | server CPU ms/call | client CPU ms/call | connections | "
        "requests/s / one server process | goal met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]


def _table(rows: list[tuple[str, int, int, list[Measured]]]) -> list[str]:
    def clients_in(count: int) -> str:
        return "1 process" if count == 0 else f"{count} processes"

    spread = _spread

    base: dict[tuple[str, int], float] = {}
    for label, workers, count, runs in rows:
        if workers == 1:
            base.setdefault((label, count), statistics.median(r[0] for r in runs))
    lines = []
    for index, (label, workers, count, runs) in enumerate(rows):
        again = ", again" if index == len(rows) - 1 else ""
        rates = [r[0] for r in runs]
        met = sum(r[0] >= GOAL_RATE and r[2] < GOAL_P99_MS for r in runs)
        ratio = statistics.median(rates) / base[label, count]
        lines.append(
            f"| {label} | {workers} | {clients_in(count)}{again} "
            f"| {spread(rates, 0)} | {spread([r[1] for r in runs], 2)} "
            f"| {spread([r[2] for r in runs], 2)} "
            f"| {statistics.median(r[3] for r in runs):.3f} "
            f"| {statistics.median(r[4] for r in runs):.3f} "
            f"| {', '.join('/'.join(map(str, r[5])) for r in runs)} "
            f"| {ratio:.2f} | {met}/{len(runs)} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=16000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--client-processes", type=int, nargs="+", default=[2, 4],
        help="also measure the clients spread over this many processes",
    )
    parser.add_argument(
        "--baseline-commit", metavar="COMMIT",
        help="also measure the server code of this commit, in the same run",
    )
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="run every setup this many times; rows give medians and spread",
    )
    parser.add_argument(
        "--rate", type=float, metavar="R",
        help="also run paced (open-loop) clients offering R calls/s together, "
        "as extra rows",
    )
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    text = run(
        args.calls, args.clients, args.client_processes, args.baseline_commit,
        args.repeats, args.rate,
    )
    print(text)
    write_section(SECTION, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
