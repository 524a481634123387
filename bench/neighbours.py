"""Exact k-nearest-neighbour search: alquery's chunked search against the
alternatives.

Reference set: --knn-pool samples x --knn-features (default 100,000 x 64), a
Gaussian mixture of 50 components (centers N(0, 3^2), unit spread); queries:
--knn-queries more samples of the same mixture; k = --k. Methods, each in
its own child process (``peak.py``: seconds, peak RSS over the input):

- alquery: ``strategies.neighbours.k_nearest`` (scikit-learn's brute
  search for k + 8 candidates, then exact ties to the lower position).
- before, typicality: the chunked ``numpy.partition`` the typicality used
  before (distances only, no positions, no tie order).
- before, validation_knn: the chunked stable ``argsort`` of each distance
  row that validation_knn used before.
- full matrix: one n_queries x n_pool matrix, then a stable argsort.
- scikit-learn ``NearestNeighbors``, brute force and k-d tree (exact).

"same" compares each method's positions (or, for "before, typicality",
distances) with alquery's. Then TypiClust end to end on the reference set
(--typiclust-batch clusters). Each child first runs its method on a tiny
input, so one-time costs are left out. Writes the neighbours section of
bench/RESULTS.md; run it alone or through bench/badge.py:

    .venv/bin/python bench/neighbours.py
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np

from alquery.server.strategies.diversity import (
    CHUNK_ELEMENTS,
    squared_distances,
    squared_norms,
)
from alquery.server.strategies.diversity_typiclust import typiclust
from alquery.server.strategies.neighbours import k_nearest
from peak import measure_here, run_child  # noqa: E402  (bench/)
from results import write_section  # noqa: E402  (bench/)

HERE = pathlib.Path(__file__).resolve().parent
SECTION = "neighbours"
METHODS = (
    "alquery",
    "before_typicality",
    "before_validation_knn",
    "full_matrix",
    "sklearn_brute",
    "sklearn_kd_tree",
    "typiclust",
)


def make_input(n_pool, n_queries, n_features, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(50, n_features))
    n_total = n_pool + n_queries
    points = centers[rng.integers(50, size=n_total)]
    points += rng.normal(size=(n_total, n_features))
    return points[:n_pool], points[n_pool:]


def chunked(references, queries, k, select):
    # The loop both "before" methods shared: a chunk of query rows at a time.
    norms = squared_norms(queries)
    chunk = max(1, CHUNK_ELEMENTS // len(references))
    parts = []
    for start in range(0, len(queries), chunk):
        rows = slice(start, start + chunk)
        block = squared_distances(queries[rows], references, norms[rows])
        parts.append(select(block, k))
    return np.concatenate(parts)


def run_method(method, references, queries, k, batch_size):
    if method == "alquery":
        return k_nearest(references, k, queries=queries)[1]
    if method == "before_typicality":
        return chunked(
            references,
            queries,
            k,
            lambda block, k: np.sort(np.partition(block, k - 1, axis=1)[:, :k]),
        )
    if method == "before_validation_knn":
        return chunked(
            references,
            queries,
            k,
            # A copy: the slice would keep each chunk's whole argsort alive.
            lambda block, k: np.argsort(block, axis=1, kind="stable")[:, :k].copy(),
        )
    if method == "full_matrix":
        full = squared_distances(queries, references)
        return np.argsort(full, axis=1, kind="stable")[:, :k]
    if method == "typiclust":
        return typiclust(references, batch_size, 0).ranked_indices
    from sklearn.neighbors import NearestNeighbors

    algorithm = method.removeprefix("sklearn_")
    search = NearestNeighbors(n_neighbors=k, algorithm=algorithm).fit(references)
    return search.kneighbors(queries, return_distance=False)


def child(args):
    # A tiny warm-up run first: one-time costs are not measured.
    run_method(args.child, *make_input(200, 5, 4), 3, 2)
    references, queries = make_input(args.knn_pool, args.knn_queries, args.knn_features)
    measured, answer = measure_here(
        lambda: run_method(
            args.child, references, queries, args.k, args.typiclust_batch
        )
    )
    if args.child == "before_typicality":
        # Compare distances: this method never had positions.
        ours = np.take_along_axis(
            squared_distances(queries, references),
            k_nearest(references, args.k, queries=queries)[1],
            axis=1,
        )
        measured["same"] = bool(np.array_equal(answer, ours))
    elif args.child != "typiclust":
        ours = k_nearest(references, args.k, queries=queries)[1]
        measured["same"] = bool(np.array_equal(answer, ours))
        measured["rows_differing"] = int((answer != ours).any(axis=1).sum())
    print(json.dumps(measured))


def main(argv=None, command=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--knn-pool", type=int, default=100_000)
    parser.add_argument("--knn-features", type=int, default=64)
    parser.add_argument("--knn-queries", type=int, default=2_000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--typiclust-batch", type=int, default=10)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    parser.add_argument("--child", choices=METHODS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    shared = [
        "--knn-pool", str(args.knn_pool), "--knn-features", str(args.knn_features),
        "--knn-queries", str(args.knn_queries), "--k", str(args.k),
        "--typiclust-batch", str(args.typiclust_batch),
    ]  # fmt: skip
    rows = []
    baseline = None
    for method in args.methods.split(","):
        result = run_child(__file__, ["--child", method, *shared])
        if method == "alquery":
            baseline = result["seconds"]
        ratio = "-"
        if baseline is not None and method != "typiclust":
            ratio = f"{result['seconds'] / baseline:.1f}x"
        same = result.get("same")
        same = "-" if same is None else ("yes" if same else "no")
        if result.get("rows_differing"):
            same += f" ({result['rows_differing']} rows differ)"
        rows.append(
            f"| {method} | {result['seconds']:.2f} | {ratio} "
            f"| {result['extra_mb']:,.0f} | {same} |"
        )
        print(rows[-1], flush=True)
    if command is None:
        own = sys.argv[1:] if argv is None else argv
        command = (".venv/bin/python bench/neighbours.py " + " ".join(own)).rstrip()
    text = "\n".join(
        [
            "## Exact k-nearest neighbours without n x n matrices",
            "",
            f"{os.cpu_count()} cores, shared machine; each row one run in its "
            f"own child process. {args.knn_queries:,} queries against "
            f"{args.knn_pool:,} x {args.knn_features} references (50-component "
            f"Gaussian mixture), k = {args.k}; the typiclust row is "
            f"TypiClust on the {args.knn_pool:,} references with batch size "
            f"{args.typiclust_batch} (k-means and every visited cluster's "
            "typicality). Extra peak = peak RSS minus RSS after the input is "
            "built.",
            "",
            "| method | seconds | time / alquery's | extra peak (MB) "
            "| same answer as alquery |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Produced by:",
            "",
            f"    {command}",
        ]
    )
    print(text)
    write_section(SECTION, text, args.results)


if __name__ == "__main__":
    main()
