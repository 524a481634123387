"""A mixed load on ``alquery serve --workers 2``: native pools of one share
of the cores per worker (the rule) against every core per worker.

Run: .venv/bin/python bench/worker_threads.py [--seconds 30] [--n-pool 5000]
     [--features 256] [--small-clients 8]
Writes the section between the worker-threads markers of RESULTS.md.

Two setups of the same server, in one run: the rule (each worker's BLAS,
OpenMP and onnxruntime pools get max(1, cores // 2) threads), and every core
per worker (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``--model-threads`` set to the core count, what a worker got before the
rule). The load, for ``--seconds``: two client processes each send
diversity.kcenter on n_pool x features float32 embeddings with a 100-row
labeled set (batch 50) in a loop, and one client process runs
``--small-clients`` threads sending uncertainty.margin on 1,000 x 10
(batch 10) in a loop.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import pathlib
import sys
import time

import numpy as np

from alquery.client.local import LocalServer
from alquery.server.threads import available_cores
from alquery.v1 import query_pb2

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
from results import write_section  # noqa: E402  (bench/)
from workers import client_process, margin_request, summarise  # noqa: E402

SECTION = "worker-threads"
BLAS_CLIENTS = 2


def kcenter_request(n_pool: int, features: int) -> query_pb2.RankRequest:
    """diversity.kcenter on n_pool x features float32, 100 labeled, batch 50."""
    rng = np.random.default_rng(1)

    def tensor(array: np.ndarray) -> query_pb2.Tensor:
        return query_pb2.Tensor(
            dtype=query_pb2.D_TYPE_FLOAT32, shape=array.shape,
            data=array.astype("<f4").tobytes(),
        )

    return query_pb2.RankRequest(
        pool=query_pb2.Pool(embeddings=tensor(rng.normal(size=(n_pool, features)))),
        labeled=query_pb2.LabeledSet(
            embeddings=tensor(rng.normal(size=(100, features)))
        ),
        diversity=query_pb2.DiversityStrategy(
            method=query_pb2.DiversityStrategy.METHOD_KCENTER
        ),
        batch_size=50,
    )


def measure(
    extra_args: list[str], env: dict[str, str], seconds: float, n_pool: int,
    features: int, small_clients: int,
) -> dict[str, tuple[float, float, float]]:
    """Requests/s, p50 and p99 ms of each kind of request, under the mix."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        server = LocalServer(["--workers", "2", *extra_args]).start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    context = multiprocessing.get_context("spawn")
    outs = {"kcenter": context.Queue(), "margin": context.Queue()}
    heavy = functools.partial(kcenter_request, n_pool, features)
    try:
        # Every client stops at the same moment; each warms up first.
        until = time.monotonic() + 10.0 + seconds
        processes = [
            context.Process(
                target=client_process,
                args=(server.target, 1, None, None, outs["kcenter"], heavy, until),
            )
            for _ in range(BLAS_CLIENTS)
        ]
        processes.append(context.Process(
            target=client_process,
            args=(server.target, small_clients, None, None, outs["margin"],
                  margin_request, until),
        ))
        for process in processes:
            process.start()
        results = {
            "kcenter": [t for _ in range(BLAS_CLIENTS) for t in outs["kcenter"].get()],
            "margin": outs["margin"].get(),
        }
        for process in processes:
            process.join()
    finally:
        server.stop()
    return {kind: summarise(timed) for kind, timed in results.items()}


def run(seconds: float, n_pool: int, features: int, small_clients: int) -> str:
    cores = available_cores()
    every_core = {
        "OMP_NUM_THREADS": str(cores), "OPENBLAS_NUM_THREADS": str(cores),
        "MKL_NUM_THREADS": str(cores),
    }
    # The rule twice, first and last: their spread is the run's noise.
    setups = [
        (f"rule: {max(1, cores // 2)} per worker", [], {}),
        (f"every core: {cores} per worker",
         ["--model-threads", str(cores)], every_core),
        (f"rule: {max(1, cores // 2)} per worker, again", [], {}),
    ]
    load = os.getloadavg()[0]
    rows = [
        (name, measure(args, env, seconds, n_pool, features, small_clients))
        for name, args, env in setups
    ]
    lines = [
        "## Native threads per worker",
        "",
        f"`.venv/bin/python bench/worker_threads.py --seconds {seconds:g} "
        f"--n-pool {n_pool} --features {features} --small-clients "
        f"{small_clients}`: `alquery serve --workers 2` on this {cores}-core "
        f"machine under a mixed load for {seconds:g} s: {BLAS_CLIENTS} client "
        f"processes sending diversity.kcenter on {n_pool:,} x {features} "
        "float32 embeddings (100 labeled, batch 50) in a loop, and one "
        f"process of {small_clients} threads sending uncertainty.margin on "
        "1,000 x 10 (batch 10). Each worker's BLAS and OpenMP pools hold "
        "the rule's threads, or every core (the variables set, as before "
        f"the rule). Load average when the run began: {load:.1f}.",
        "",
        "| native threads | kcenter requests/s | kcenter p50 ms | "
        "kcenter p99 ms | margin requests/s | margin p50 ms | margin p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in rows:
        (k_rate, k_50, k_99), (m_rate, m_50, m_99) = (
            result["kcenter"], result["margin"]
        )
        lines.append(
            f"| {name} | {k_rate:.2f} | {k_50:.0f} | {k_99:.0f} | {m_rate:.0f} "
            f"| {m_50:.1f} | {m_99:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--n-pool", type=int, default=5000)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--small-clients", type=int, default=8)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    text = run(args.seconds, args.n_pool, args.features, args.small_clients)
    print(text)
    write_section(SECTION, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
