"""Where the CPU of one small ``Rank`` call goes, on the server and the client.

Run: .venv/bin/python bench/request_profile.py [--calls 3000] [--clients 4]
Writes the section between the request-profile markers of RESULTS.md.

An in-process server (``app.start``, the one INFO line per request written
to /dev/null) serves ``--clients`` client processes, each calling
``AlqueryClient.rank`` with uncertainty.margin on 1,000 x 10 probabilities,
batch 10. Every thread of the server and of each client runs under its own
``cProfile`` with a per-thread CPU clock, so waiting costs nothing and the
shares hold on a loaded machine. Printed: CPU milliseconds per call on each
side and the share of each part (by the module of the function that spends
it), then the functions with the most own CPU. Profiling slows Python code
more than native code, so the Python shares read high; compare runs of this
script, not its milliseconds with the benchmarks'.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import logging
import multiprocessing
import os
import pathlib
import pstats
import sys
import tempfile
import threading
import time

import numpy as np

HERE = pathlib.Path(__file__).parent
REPO = f"{HERE.resolve().parent}/"
"""Stripped from the paths of our own functions in the listings."""
sys.path.insert(0, str(HERE))
from results import write_section  # noqa: E402  (bench/)

SECTION = "request-profile"

# Parts of a call, by the path of the module a function lives in; the first
# match wins, native code (``~``) is attributed to its caller's part.
SERVER_PARTS = (
    ("interceptor: metrics", ("prometheus_client",)),
    ("interceptor: log line", ("logging/", "alquery/server/logs.py")),
    ("interceptor: bookkeeping", ("server/interceptors.py",)),
    ("edge checks", ("server/edge.py", "server/tensors.py",
                     "server/probabilities.py")),
    ("strategy and selection", ("server/strategies/", "server/selection.py",
                                "server/ranking.py", "numpy/")),
    ("parse and respond", ("server/servicer.py", "protobuf/")),
    ("grpc server (python)", ("grpc/", "concurrent/", "threading.py")),
)
CLIENT_PARTS = (
    ("build request", ("client/client.py", "client/tensors.py",
                       "client/frames.py", "client/streaming.py",
                       "client/models.py", "numpy/", "protobuf/")),
    ("retry wrapper", ("client/retry.py", "functools")),
    ("decode response", ("client/results.py",)),
    ("grpc channel (python)", ("grpc/", "threading.py")),
)


IDLE = frozenset({
    "<method 'get' of '_queue.SimpleQueue' objects>",
    "<method 'acquire' of '_thread.lock' objects>",
})
"""Where an idle thread waits. A thread's CPU clock should not move there,
but threads parked in them before a ``clear`` show seconds of it, so they
are left out."""


def _install_thread_profiles(out: list[cProfile.Profile]) -> None:
    """Give every thread started from now on its own CPU-clock profile."""

    def bootstrap(frame, event, arg):  # noqa: ANN001 (a profile hook)
        profile = cProfile.Profile(time.thread_time)
        out.append(profile)
        profile.enable()  # replaces this hook in the current thread

    threading.setprofile(bootstrap)


def _part(filename: str, parts: tuple) -> str:
    for name, needles in parts:
        if any(needle in filename for needle in needles):
            return name
    return "other"


def summarise(stats: pstats.Stats, calls: int, parts: tuple, title: str) -> str:
    """CPU per call and the share of each part, by own (not cumulative) time."""
    by_part: collections.Counter[str] = collections.Counter()
    calls_by_part: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    total = 0.0
    for (filename, line, name), row in stats.stats.items():
        if name in IDLE:
            continue
        own = row[2]
        total += own
        if filename == "~":
            # A builtin: charge it to the callers that called it.
            callers = row[4]
            spent = sum(c[2] for c in callers.values()) or 1.0
            for (caller_file, _, _), c in callers.items():
                by_part[_part(caller_file, parts)] += own * c[2] / spent
                calls_by_part[_part(caller_file, parts)] += c[1]
        else:
            by_part[_part(filename, parts)] += own
            calls_by_part[_part(filename, parts)] += row[1]
        short = filename.split("site-packages/")[-1].removeprefix(REPO)
        by_function[f"{short}:{line}({name})"] += own
    lines = [
        f"{title}: {1000 * total / calls:.3f} ms CPU per call (profiled), "
        f"{sum(calls_by_part.values()) / calls:.0f} Python function calls "
        f"per call, over {calls} calls",
        "",
        "| part | share of CPU | function calls per call |",
        "|---|---|---|",
    ]
    for name, seconds in by_part.most_common():
        lines.append(
            f"| {name} | {seconds / total:.1%} | "
            f"{calls_by_part[name] / calls:.0f} |"
        )
    lines += ["", f"{title}, most own CPU:", ""]
    for name, seconds in by_function.most_common(12):
        lines.append(f"- {seconds / total:5.1%} {name}")
    return "\n".join(lines)


def _client_main(target: str, calls: int, path: str, ready, go) -> None:  # noqa: ANN001
    from alquery.client import AlqueryClient

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(10), size=1000)
    with AlqueryClient(target) as client:
        for _ in range(20):
            client.rank("uncertainty.margin", 10, probabilities=probabilities)
        ready.set()
        go.wait()
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        for _ in range(calls):
            client.rank("uncertainty.margin", 10, probabilities=probabilities)
        profile.disable()
    profile.dump_stats(path)


def run(calls: int, clients: int) -> str:
    from alquery.server import app, logs

    logs.configure("INFO")
    sink = open(os.devnull, "w")
    for handler in logging.getLogger(logs.ROOT).handlers:
        handler.setStream(sink)
    profiles: list[cProfile.Profile] = []
    _install_thread_profiles(profiles)
    server = app.start(app.ServerConfig(port=0, metrics_port=None))
    context = multiprocessing.get_context("spawn")
    per_client = calls // clients
    with tempfile.TemporaryDirectory() as directory:
        paths = [os.path.join(directory, f"client{i}.prof") for i in range(clients)]
        go = context.Event()
        readies = [context.Event() for _ in paths]
        processes = [
            context.Process(
                target=_client_main,
                args=(f"127.0.0.1:{server.port}", per_client, path, ready, go),
            )
            for path, ready in zip(paths, readies)
        ]
        for process in processes:
            process.start()
        for ready in readies:
            ready.wait()
        # Only the timed calls count on the server: start afresh.
        for profile in profiles:
            profile.clear()
        go.set()
        for process in processes:
            process.join()
        server.stop(5)
        threading.setprofile(None)
        client_stats = pstats.Stats(*paths)
    server_stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        server_stats.add(profile)
    done = per_client * clients
    return "\n\n".join((
        "## Where a small call's CPU goes",
        f"`.venv/bin/python bench/request_profile.py --calls {calls} "
        f"--clients {clients}`: uncertainty.margin on 1,000 x 10, batch 10, "
        f"through `AlqueryClient` from {clients} client processes to an "
        "in-process server; per-thread CPU-clock profiles, load average "
        f"{os.getloadavg()[0]:.1f} at the end. Profiling slows Python more "
        "than native code: read the shares and call counts, not the "
        "milliseconds.",
        summarise(server_stats, done, SERVER_PARTS, "Server"),
        summarise(client_stats, done, CLIENT_PARTS, "Client"),
    ))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    text = run(args.calls, args.clients)
    print(text)
    write_section(SECTION, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
