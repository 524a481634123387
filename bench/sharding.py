"""Sharded k-center against one server: the covering radius of each answer.

``ShardedClient`` answers ``diversity.kcenter`` by a two-round composable
core-set (round 1: k centers per shard from the labeled set; round 2:
k-center on the union of those picks). This script ranks the same pool on
one server and sharded over --shards counts, and prints the covering radius
of each answer (the largest distance from a pool sample to its nearest
pick or labeled sample; lower is better) and the ratio sharded / one
server. Greedy k-center is a 2-approximation of the best radius in each
round, so the sharded radius is at most 4 times the best, hence at most 4
times the one server's greedy radius; below 1 means the sharded answer
covers better.

Data: scikit-learn's digits (pixels / 16, 64 features, the first 20
samples as the labeled set, the other 1,777 the pool); Fashion-MNIST (50
PCA components of a 5,000-image pool, ``bench/datasets.py``, skipped when
not installed); and a synthetic 768-d Gaussian mixture (--clusters
components, unit spread, centers 3 apart per axis, no labeled set; the
shape of text or image embeddings) and 768-d isotropic noise.

The seconds are wall time on this machine with every server a child
process on 127.0.0.1 (--servers of them; shards beyond take turns): they
show the cost of the two rounds, not a speed-up a cluster would give.

Writes a section of bench/RESULTS.md between sharding markers.

    .venv/bin/python bench/sharding.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sys
import time

import numpy as np

from alquery.client import AlqueryClient, ShardedClient
from alquery.client.local import LocalServer
from alquery.client.shard_merge import covering_radius
from datasets import MissingData, fashion  # noqa: E402  (bench/)
from results import write_section  # noqa: E402  (bench/)

HERE = pathlib.Path(__file__).resolve().parent
SECTION = "sharding"
STRATEGY = "diversity.kcenter"


def digits_case():
    from sklearn.datasets import load_digits

    x = load_digits().data / 16.0
    return "digits, pixels", x[20:], x[:20]


def fashion_case():
    data = fashion()
    return "Fashion-MNIST, 50 PCA", data.pool_x[20:], data.pool_x[:20]


def mixture_case(n_pool, n_clusters, seed=0):
    rng = np.random.default_rng(seed)
    if n_clusters == 1:
        return "768-d isotropic", rng.normal(size=(n_pool, 768)), None
    means = rng.normal(scale=3.0, size=(n_clusters, 768))
    members = rng.integers(n_clusters, size=n_pool)
    pool = means[members] + rng.normal(size=(n_pool, 768))
    return f"768-d, {n_clusters} clusters", pool, None


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def run_case(case, batch_sizes, shard_counts, targets):
    name, pool, labeled = case
    rows = []
    with AlqueryClient(targets[0], timeout=3600) as one:
        for k in batch_sizes:
            seconds, single = timed(
                one.rank, STRATEGY, k, embeddings=pool, labeled_embeddings=labeled
            )
            radius = covering_radius(pool, single.indices, labeled)
            for n_shards in shard_counts:
                with ShardedClient(targets, n_shards=n_shards, timeout=3600) as many:
                    sharded_s, answer = timed(
                        many.rank,
                        STRATEGY,
                        k,
                        embeddings=pool,
                        labeled_embeddings=labeled,
                    )
                sharded = covering_radius(pool, answer.indices, labeled)
                rows.append(
                    f"| {name} | {len(pool):,} x {pool.shape[1]} "
                    f"| {0 if labeled is None else len(labeled)} | {k} "
                    f"| {n_shards} | {radius:.3f} | {sharded:.3f} "
                    f"| {sharded / radius:.3f} | {seconds:.2f} | {sharded_s:.2f} |"
                )
                print(rows[-1], flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", default="2,4,8")
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--n-pool", type=int, default=20_000)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--batch-sizes", default="10,50,200")
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    shard_counts = [int(s) for s in args.shards.split(",")]
    batch_sizes = [int(k) for k in args.batch_sizes.split(",")]

    cases = [digits_case()]
    try:
        cases.append(fashion_case())
    except MissingData as missing:
        print(f"skipping Fashion-MNIST: {missing}", file=sys.stderr)
    cases.append(mixture_case(args.n_pool, args.clusters))
    cases.append(mixture_case(args.n_pool, 1))

    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(LocalServer(["--threads", "2"]))
            for _ in range(args.servers)
        ]
        targets = [server.target for server in servers]
        rows = []
        for case in cases:
            rows += run_case(case, batch_sizes, shard_counts, targets)

    header = (
        "| data | pool | labeled | k | shards | radius, one server "
        "| radius, sharded | sharded / one | one server (s) | sharded (s) |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    ratios = [float(row.split("|")[8]) for row in rows]
    command = "    .venv/bin/python bench/sharding.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = "\n".join(
        [
            "## Sharded k-center: two-round core-set against one server",
            "",
            "Covering radius (largest distance from a pool sample to its "
            "nearest pick or labeled sample; lower is better) of "
            f"`{STRATEGY}` on one server and through `ShardedClient`; the "
            "theory bounds sharded / one server by 4. Measured ratios: "
            f"{min(ratios):.3f} to {max(ratios):.3f}. "
            f"{os.cpu_count()} cores, shared; {args.servers} servers as child "
            "processes on 127.0.0.1 (shards beyond them take turns), so the "
            "seconds show the two rounds' cost, not a cluster's speed-up.",
            "",
            header,
            *rows,
            "",
            "Produced by:",
            "",
            command.rstrip(),
        ]
    )
    print(text)
    write_section(SECTION, text, args.results)


if __name__ == "__main__":
    main()
