"""k-center greedy: alquery's exact greedy against plain numpy and peers.

The plain baseline is the usual numpy k-center: float32 embeddings, squared
norms cached, one full distance row per pick (one BLAS matrix-vector
product) and a running minimum. alquery's ``kcenter_greedy`` partitions
the pool into small groups, updates a group only when it could hold the
next pick, skips pairs by the triangle inequality and by a lower bound
from the pool's leading principal directions, screens in float32 with a
rounding bound and computes exactly (float64) only what might change a
nearest distance. Both start from the sample nearest the pool mean and
run in this process under the same BLAS thread limit (threadpoolctl), once
per value of --blas-threads (alquery holds BLAS to one thread inside its
greedy loop and runs its own worker threads).

Data:

- ``clustered``: a Gaussian mixture in 768 dimensions (--clusters
  components, unit spread, centers 3 apart per axis), synthetic;
- ``isotropic``: Gaussian noise, the worst case for the bounds, synthetic;
- ``fashion-mnist``: real data, but pixels, not learned embeddings: the
  70,000 Fashion-MNIST images (train and test) from Debian's
  dataset-fashion-mnist, 784 pixels scaled to [0, 1];
- ``fashion-mlp768``: real learned embeddings, the nearest this machine
  gets to the goal's case: the 768-unit hidden-layer activations of a
  small network (scikit-learn MLPClassifier, 3 epochs, seed 0) trained on
  the 60,000 Fashion-MNIST training images, for all 70,000 images
  (bench/fashion_embeddings.py; cached under bench/cache). No 768-d real
  embeddings of 100,000 samples ship here.

"same picks" compares with the one-row-per-pick reference
(tests/kcenter_reference.py; run only with --check-reference, it costs
more than the baseline). The approximate rows run alquery's greedy on a
seeded random projection (``kcenter_projected``) and report its coverage
radius, max_i min_pick ||x_i - x_pick|| in the full space, against the
exact greedy's, and the share of picks both made. scikit-activeml's
``CoreSet`` runs in a child process (its per-pick cost is a full
scikit-learn distance pass) on the raw pixels and on the learned
embeddings, against alquery on the same input, one labeled sample given to
both.

Writes a section of bench/RESULTS.md between kcenter markers.

    .venv/bin/python bench/kcenter.py --check-reference
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from alquery.server.strategies.diversity import nearest_center_distances
from alquery.server.strategies import kcenter_native
from alquery.server.strategies.diversity_kcenter import (
    kcenter_greedy_counted,
    kcenter_projected,
)
from results import write_section  # noqa: E402  (bench/)

HERE = pathlib.Path(__file__).resolve().parent
SECTION = "kcenter"
FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


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


def synthetic(n_pool, n_features, n_clusters, seed=0):
    rng = np.random.default_rng(seed)
    if n_clusters == 1:
        return rng.normal(size=(n_pool, n_features)).astype(np.float32)
    means = rng.normal(scale=3.0, size=(n_clusters, n_features))
    members = rng.integers(n_clusters, size=n_pool)
    noise = rng.normal(size=(n_pool, n_features))
    return (means[members] + noise).astype(np.float32)


def fashion_mnist(n_pool=None):
    sys.path.insert(0, str(HERE))
    from datasets import _idx

    images = [
        _idx(FASHION_DIR / name).reshape(-1, 784)
        for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    ]
    pool = np.vstack(images).astype(np.float32) / np.float32(255.0)
    return pool if n_pool is None else pool[:n_pool]


def learned(n_pool=None):
    sys.path.insert(0, str(HERE))
    from fashion_embeddings import learned_embeddings

    pool = learned_embeddings()
    return pool if n_pool is None else pool[:n_pool]


LOADERS = {"fashion-mnist": fashion_mnist, "fashion-mlp768": learned}


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def coverage_radius(pool, picks):
    """max_i min_pick ||x_i - x_pick||, float64, the k-center objective."""
    x = np.asarray(pool, dtype=np.float64)
    return float(np.sqrt(nearest_center_distances(x, x[picks]).max()))


def same_as_reference(pool, n_picks, ranking):
    sys.path.insert(0, str(HERE.parent / "tests"))
    from kcenter_reference import kcenter_greedy_reference

    reference = kcenter_greedy_reference(pool, n_picks)
    return bool(
        np.array_equal(reference.ranked_indices, ranking.ranked_indices)
        and np.array_equal(reference.scores, ranking.scores)
    )


def numpy_rounds(pool, n_picks):
    """alquery's greedy without its compiled loops, as where no C compiler
    built them: seconds and ranking."""
    saved = kcenter_native.LIBRARY
    kcenter_native.LIBRARY = None
    try:
        seconds, (ranking, _, _) = timed(kcenter_greedy_counted, pool, n_picks)
    finally:
        kcenter_native.LIBRARY = saved
    return seconds, ranking


def run_case(name, pool, n_picks, threads, check_reference, compare_rounds):
    plain_s, (_, plain_evals) = timed(plain_kcenter, pool, n_picks)
    ours_s, (ranking, ours_evals, screened) = timed(
        kcenter_greedy_counted, pool, n_picks
    )
    same = "not run"
    if check_reference:
        same = str(same_as_reference(pool, n_picks, ranking))
    rounds = "not run"
    if compare_rounds and kcenter_native.LIBRARY is not None:
        rounds_s, other = numpy_rounds(pool, n_picks)
        identical = np.array_equal(
            other.ranked_indices, ranking.ranked_indices
        ) and np.array_equal(other.scores, ranking.scores)
        rounds = f"{rounds_s:.2f} ({'identical' if identical else 'DIFFERENT'})"
    n_pool, n_features = pool.shape
    row = (
        f"| {threads} | {name} | {n_pool:,} x {n_features} | {n_picks:,} "
        f"| {plain_s:.2f} | {ours_s:.2f} | {plain_s / ours_s:.1f}x "
        f"| {rounds} "
        f"| {screened / plain_evals:.1%} | {ours_evals / plain_evals:.2%} "
        f"| {same} |"
    )
    return row, ranking, ours_s


def approximate_rows(name, pool, n_picks, exact, exact_s, dims):
    exact_radius = coverage_radius(pool, exact.ranked_indices)
    rows = []
    for dim in dims:
        seconds, ranking = timed(
            kcenter_projected, pool, n_picks, None, dim, np.random.default_rng(0)
        )
        radius = coverage_radius(pool, ranking.ranked_indices)
        shared = len(np.intersect1d(ranking.ranked_indices, exact.ranked_indices))
        rows.append(
            f"| {name} | {dim} | {seconds:.2f} | {exact_s / seconds:.1f}x "
            f"| {radius:.3f} | {exact_radius:.3f} | {radius / exact_radius:.3f} "
            f"| {shared / n_picks:.1%} |"
        )
        print(rows[-1], flush=True)
    return rows


def skactiveml_child(data, n_pool, n_picks):
    """Run scikit-activeml's CoreSet; print its seconds and picks as JSON."""
    from skactiveml.pool import CoreSet

    x = LOADERS[data](n_pool)
    y = np.full(len(x), np.nan)
    y[0] = 0
    start = time.perf_counter()
    picks = CoreSet(random_state=0).query(x, y, batch_size=n_picks)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "picks": np.asarray(picks).tolist()}))


def skactiveml_row(data, n_pool, n_picks):
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--skactiveml-child",
            f"{data}:{n_pool},{n_picks}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = json.loads(child.stdout.strip().splitlines()[-1])
    x = LOADERS[data](n_pool)
    ours_s, (ranking, _, _) = timed(kcenter_greedy_counted, x[1:], n_picks, x[:1])
    same = ranking.ranked_indices + 1 == np.array(theirs["picks"])
    return (
        f"| {data} | {len(x) - 1:,} x {x.shape[1]}, 1 labeled | {n_picks:,} "
        f"| {theirs['seconds']:.2f} | {ours_s:.2f} "
        f"| {theirs['seconds'] / ours_s:.1f}x | {bool(same.all())} |"
    )


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--n-pool", type=int, default=100_000)
    parser.add_argument("--n-picks", type=int, default=1_000)
    parser.add_argument("--fashion-pool", type=int, default=70_000)
    parser.add_argument("--check-reference", action="store_true")
    parser.add_argument("--blas-threads", default="2,1")
    parser.add_argument("--projections", default="128,32")
    parser.add_argument(
        "--skactiveml",
        default="fashion-mnist:20000,200;fashion-mlp768:70000,1000",
        help="data:pool,picks;... (data: fashion-mnist, fashion-mlp768); "
        "empty to skip",
    )
    parser.add_argument("--skactiveml-child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    args.load = os.getloadavg()
    if args.skactiveml_child:
        data, sizes = args.skactiveml_child.split(":")
        skactiveml_child(data, *map(int, sizes.split(",")))
        return
    small = (max(1, args.n_pool // 5), max(1, args.n_picks // 5))
    cases = [
        ("clustered", lambda: synthetic(args.n_pool, 768, args.clusters), args.n_picks),
        ("isotropic", lambda: synthetic(small[0], 768, 1), small[1]),
        ("fashion-mnist", lambda: fashion_mnist(args.fashion_pool), args.n_picks),
        ("fashion-mlp768", lambda: learned(args.fashion_pool), args.n_picks),
    ]
    speed, approximate = [], []
    for position, threads in enumerate(map(int, args.blas_threads.split(","))):
        with threadpool_limits(threads, user_api="blas"):
            for name, load, n_picks in cases:
                pool = load()
                # The reference and the approximations: once, at the first
                # thread setting.
                first = position == 0
                row, ranking, seconds = run_case(
                    name,
                    pool,
                    n_picks,
                    threads,
                    args.check_reference and first,
                    compare_rounds=first,
                )
                speed.append(row)
                print(row, flush=True)
                if first and name != "isotropic" and args.projections:
                    dims = [int(d) for d in args.projections.split(",")]
                    approximate += approximate_rows(
                        name, pool, n_picks, ranking, seconds, dims
                    )
    peer = []
    for job in filter(None, args.skactiveml.split(";")):
        data, sizes = job.split(":")
        peer.append(skactiveml_row(data, *map(int, sizes.split(","))))
        print(peer[-1], flush=True)
    write(args, argv, speed, approximate, peer)


def write(args, argv, speed, approximate, peer):
    compiled = "built" if kcenter_native.LIBRARY is not None else "NOT built"
    command = "    .venv/bin/python bench/kcenter.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = "\n".join(
        [
            "## k-center greedy: exact greedy against plain numpy and peers",
            "",
            f"{os.cpu_count()} cores, shared machine, load average "
            f"{args.load[0]:.1f} at the start and {os.getloadavg()[0]:.1f} at "
            "the end; one run each. Speed-up = "
            "plain numpy seconds / alquery seconds, both in one process under "
            "the same BLAS thread limit. Distances as a share of the plain "
            "greedy's n_pool per pick. clustered and isotropic are synthetic; "
            "fashion-mnist is 784 raw pixels of real images; fashion-mlp768 "
            "is real learned embeddings: the 768-unit hidden layer of a small "
            "network trained on Fashion-MNIST, for all 70,000 images (see the "
            "script).",
            "",
            f"Compiled loops (server/strategies/_kcenter.c): {compiled}. "
            "alquery, numpy rounds: the same greedy without them (as where no "
            "C compiler built them), at the first BLAS setting; its picks and "
            "scores must be identical. Screened: (row, center) pairs screened "
            "in float32 (the compiled rounds screen pair by pair; the numpy "
            "rounds screen whole blocks, several times more).",
            "",
            "| BLAS threads | data | pool | picks | numpy plain (s) | alquery (s) "
            "| speed-up | alquery, numpy rounds (s) | screened (float32) "
            "| exact (float64) | same picks and scores as reference |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *speed,
            "",
            "Approximate mode (``kcenter_projection``): the greedy on a seeded "
            "Gaussian random projection, at the first BLAS setting. Coverage "
            "radius: max over the pool of the distance to the nearest pick, "
            "in the full space (lower is better).",
            "",
            "| data | projected dims | seconds | speed-up vs exact | radius "
            "| exact greedy's radius | ratio | picks shared with exact |",
            "|---|---|---|---|---|---|---|---|",
            *approximate,
            "",
            "scikit-activeml's CoreSet (child process, default BLAS threads) "
            "against alquery on the same input:",
            "",
            "| data | pool | picks | scikit-activeml (s) | alquery (s) "
            "| speed-up | same picks |",
            "|---|---|---|---|---|---|---|",
            *peer,
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
