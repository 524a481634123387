"""BADGE: alquery's factorised distances against materialised gradients.

Issue 6 asks for BADGE at 20,000 pool samples x 100 classes x 768
features in under 1 s and 500 MB of extra memory. Three ways to run it:

- alquery: ``strategies.badge.badge``; the gradient embedding
  g_i = (p_i - e_yhat) (outer) h_i is never built: each pick costs one
  n x n_classes and one n x n_features matrix-vector product.
- materialised: plain numpy that builds g as an n x (n_classes *
  n_features) float64 array (12.3 GB at the full size) and draws with the
  same D^2 sampling, so its picks must equal alquery's.
- scikit-activeml's ``Badge`` (peer), which also builds g and keeps the
  origin as a center, so its picks differ from ours.

Every case runs in its own child process (``peak.py``): seconds, and peak
RSS minus the RSS after the input is built. The materialised form and
scikit-activeml run at a reduced pool (--small-pool), with alquery again
at that size for a like-for-like row. Each child first runs its case on a
tiny input, so one-time costs (imports, thread pools) are left out. Random
input: probabilities are the softmax of N(0, 2^2) logits, embeddings
N(0, 1), float64. Then the neighbour-search cases of ``neighbours.py``
run (skip them with --skip-neighbours).

Writes the badge and neighbours sections of bench/RESULTS.md. The peer
and materialised cases take over 3 GB:

    .venv/bin/python bench/badge.py
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np

import neighbours  # noqa: E402  (bench/)
from alquery.server.strategies.badge import badge
from alquery.server.strategies.clustering_tools import d2_sampling
from peak import measure_here, run_child  # noqa: E402  (bench/)
from results import write_section  # noqa: E402  (bench/)

HERE = pathlib.Path(__file__).resolve().parent
SECTION = "badge"


def make_input(n_pool, n_classes, n_features, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n_pool, n_classes))
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities, rng.normal(size=(n_pool, n_features))


def materialised_badge(probabilities, embeddings, batch_size, rng):
    """BADGE on the explicit n x (n_classes * n_features) gradients."""
    n_pool, n_classes = probabilities.shape
    one_hot = np.eye(n_classes)[probabilities.argmax(axis=1)]
    gradients = (probabilities - one_hot)[:, :, None] * embeddings[:, None, :]
    gradients = gradients.reshape(n_pool, -1)
    norms = np.einsum("ij,ij->i", gradients, gradients)

    def distances_to(j):
        out = norms - 2.0 * (gradients @ gradients[j]) + norms[j]
        return np.maximum(out, 0.0, out=out)

    first = int(np.argmax(norms))
    picks, _ = d2_sampling(first, distances_to, batch_size, rng)
    return picks


def skactiveml_badge(probabilities, embeddings, batch_size, seed):
    from skactiveml.base import SkactivemlClassifier
    from skactiveml.pool import Badge

    class Fixed(SkactivemlClassifier):
        # Returns the benchmark's probabilities and embeddings by row.
        def fit(self, X, y, sample_weight=None):
            return self

        def predict_proba(self, X, **kwargs):
            rows = np.asarray(X, dtype=int).ravel()
            return probabilities[rows], embeddings[rows]

    n_pool, n_classes = probabilities.shape
    classifier = Fixed(classes=np.arange(n_classes))
    rows = np.arange(n_pool, dtype=float)[:, None]
    unlabeled = np.full(n_pool, np.nan)
    return Badge(random_state=seed).query(
        rows, unlabeled, classifier, fit_clf=False, batch_size=batch_size
    )


def runner(case, probabilities, embeddings, batch_size):
    if case == "alquery":
        rng = np.random.default_rng(0)
        return lambda: badge(probabilities, embeddings, batch_size, rng).ranked_indices
    if case == "materialised":
        rng = np.random.default_rng(0)
        return lambda: materialised_badge(probabilities, embeddings, batch_size, rng)
    return lambda: skactiveml_badge(probabilities, embeddings, batch_size, 0)


def child(args):
    # A tiny warm-up run first, so one-time costs (lazy imports, thread
    # pools) are not measured.
    runner(args.child, *make_input(20, 3, 4), 2)()
    probabilities, embeddings = make_input(
        args.n_pool, args.n_classes, args.n_features
    )
    run = runner(args.child, probabilities, embeddings, args.batch_size)
    measured, picks = measure_here(run)
    measured["picks"] = [int(i) for i in picks]
    print(json.dumps(measured))


def measure(case, n_pool, n_classes, n_features, batch_size):
    arguments = [
        "--child", case, "--n-pool", str(n_pool), "--n-classes",
        str(n_classes), "--n-features", str(n_features), "--batch-size",
        str(batch_size),
    ]  # fmt: skip
    result = run_child(__file__, arguments)
    print(case, n_pool, batch_size, f"{result['seconds']:.2f} s",
          f"{result['extra_mb']:.0f} MB", flush=True)  # fmt: skip
    return result


def row(case, n_pool, n_classes, n_features, batch_size, result, same, ours=None):
    ratio = "-" if ours is None else f"{result['seconds'] / ours['seconds']:.0f}x"
    return (
        f"| {case} | {n_pool:,} x {n_classes} x {n_features} | {batch_size} "
        f"| {result['seconds']:.2f} | {ratio} | {result['extra_mb']:,.0f} "
        f"| {same} |"
    )


def badge_section(args, command):
    sizes = (args.n_classes, args.n_features)
    rows = []
    for batch_size in map(int, args.batch_sizes.split(",")):
        result = measure("alquery", args.n_pool, *sizes, batch_size)
        rows.append(row("alquery", args.n_pool, *sizes, batch_size, result, "-"))

    small, batch_size = args.small_pool, args.small_batch
    ours = measure("alquery", small, *sizes, batch_size)
    rows.append(row("alquery", small, *sizes, batch_size, ours, "-"))
    cases = ["materialised"] + ([] if args.skip_skactiveml else ["skactiveml"])
    for case in cases:
        result = measure(case, small, *sizes, batch_size)
        same = "yes" if result["picks"] == ours["picks"] else "no"
        if case == "skactiveml":
            same += " (origin kept as a center: differs by design)"
        rows.append(row(case, small, *sizes, batch_size, result, same, ours))
    return "\n".join(
        [
            "## BADGE: factorised distances against materialised gradients",
            "",
            f"{os.cpu_count()} cores, shared machine; each row one run in its "
            "own child process. Extra peak = peak RSS minus RSS after the input "
            "is built (probabilities and embeddings in float64). The "
            "materialised float64 gradients take n_pool x n_classes x "
            "n_features x 8 bytes, hence the smaller pool for those rows.",
            "",
            "| method | n_pool x classes x features | batch | seconds "
            "| time / alquery's | extra peak (MB) | same picks as alquery |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Produced by:",
            "",
            f"    {command}",
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pool", type=int, default=20_000)
    parser.add_argument("--n-classes", type=int, default=100)
    parser.add_argument("--n-features", type=int, default=768)
    parser.add_argument("--batch-sizes", default="10,100")
    parser.add_argument("--small-pool", type=int, default=4_000)
    parser.add_argument("--small-batch", type=int, default=10)
    parser.add_argument("--skip-skactiveml", action="store_true")
    parser.add_argument("--skip-neighbours", action="store_true")
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    parser.add_argument("--child", choices=["alquery", "materialised", "skactiveml"])
    parser.add_argument("--batch-size", type=int)
    args, rest = parser.parse_known_args(argv)
    if args.child:
        return child(args)

    own = sys.argv[1:] if argv is None else argv
    command = ".venv/bin/python bench/badge.py " + " ".join(own)
    text = badge_section(args, command.rstrip())
    print(text)
    write_section(SECTION, text, args.results)
    if not args.skip_neighbours:
        neighbours.main(rest + ["--results", str(args.results)], command.rstrip())


if __name__ == "__main__":
    main()
