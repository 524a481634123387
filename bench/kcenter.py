"""k-center greedy: alquery's bounded greedy against a plain numpy one.

The plain baseline is the usual numpy k-center: float32 embeddings, squared
norms cached, one full distance row per pick (one BLAS matrix-vector
product) and a running minimum. alquery's ``kcenter_greedy`` skips, by
the triangle inequality, every sample a new center cannot bring closer,
screens the rest in float32 with a rounding bound, and computes exactly
(float64) only the distances that might drop. Both start from the sample
nearest the pool mean and run in this process with the same BLAS thread
limit (threadpoolctl), once per value of --blas-threads: on a busy
machine, BLAS threads can cost more than they bring.

Data: a Gaussian mixture in 768 dimensions (--clusters components, unit
spread, centers 3 apart per axis), the shape of real embeddings, and the
worst case for the bounds, isotropic noise (one component). On isotropic
noise the bounds skip almost nothing. Each case prints the seconds, the
ratio to the baseline, how many sample-to-center distances each computed,
and whether the picks match alquery's one-row-per-pick reference (run only
when --check-reference is given: it costs as much as the baseline, twice).

Writes a section of bench/RESULTS.md between kcenter markers.

    .venv/bin/python bench/kcenter.py
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from alquery.server.strategies.diversity_kcenter import kcenter_greedy_counted
from results import write_section  # noqa: E402  (bench/)

HERE = pathlib.Path(__file__).resolve().parent
SECTION = "kcenter"


def plain_kcenter(pool: np.ndarray, n_picks: int) -> tuple[np.ndarray, int]:
    """Plain numpy k-center greedy, float32, one distance row per pick."""
    x = pool - pool.mean(axis=0)
    norms = np.einsum("ij,ij->i", x, x)
    picks = [int(np.argmin(norms))]
    nearest = np.full(len(x), np.inf, dtype=np.float32)
    for _ in range(n_picks - 1):
        c = x[picks[-1]]
        row = norms - 2.0 * (x @ c) + norms[picks[-1]]
        np.minimum(nearest, row, out=nearest)
        nearest[picks] = -1.0
        picks.append(int(np.argmax(nearest)))
    return np.array(picks), n_picks * len(x)


def make_pool(n_pool, n_features, n_clusters, seed=0):
    rng = np.random.default_rng(seed)
    if n_clusters == 1:
        return rng.normal(size=(n_pool, n_features)).astype(np.float32)
    means = rng.normal(scale=3.0, size=(n_clusters, n_features))
    members = rng.integers(n_clusters, size=n_pool)
    noise = rng.normal(size=(n_pool, n_features))
    return (means[members] + noise).astype(np.float32)


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def run_case(n_pool, n_features, n_picks, n_clusters, check_reference, threads):
    pool = make_pool(n_pool, n_features, n_clusters)
    plain_s, (_, plain_evals) = timed(plain_kcenter, pool, n_picks)
    ours_s, (ranking, ours_evals, screened) = timed(
        kcenter_greedy_counted, pool, n_picks
    )
    same = "not run"
    if check_reference:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from kcenter_reference import kcenter_greedy_reference

        reference = kcenter_greedy_reference(pool, n_picks)
        same = str(
            np.array_equal(reference.ranked_indices, ranking.ranked_indices)
        )
    data = "isotropic" if n_clusters == 1 else f"{n_clusters} clusters"
    return (
        f"| {threads} | {n_pool:,} x {n_features} | {data} | {n_picks:,} "
        f"| {plain_s:.2f} "
        f"| {ours_s:.2f} | {plain_s / ours_s:.1f}x | {plain_evals:,} "
        f"| {screened:,} ({screened / plain_evals:.1%}) "
        f"| {ours_evals:,} ({ours_evals / plain_evals:.1%}) | {same} |"
    )



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--check-reference", action="store_true")
    parser.add_argument("--blas-threads", default="2,1")
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)

    cases = [
        (20_000, 768, 200, args.clusters),
        (20_000, 768, 200, 1),
        (100_000, 768, 1_000, args.clusters),
    ]
    header = (
        "| BLAS threads | pool | data | picks | numpy plain (s) | alquery (s) "
        "| speed-up "
        "| distances, plain | alquery: screened in float32 | alquery: exact "
        "| same picks as reference |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for position, threads in enumerate(map(int, args.blas_threads.split(","))):
        # The reference costs as much as the baseline: check it once.
        check = args.check_reference and position == 0
        with threadpool_limits(threads, user_api="blas"):
            for case in cases:
                rows.append(run_case(*case, check, threads))
                print(rows[-1], flush=True)
    command = "    .venv/bin/python bench/kcenter.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = "\n".join(
        [
            "## k-center greedy: bounded greedy against plain numpy",
            "",
            f"{os.cpu_count()} cores, shared and loaded machine; both in one "
            "process, one run each, under the same BLAS thread limit. "
            "Synthetic data (see the script).",
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
