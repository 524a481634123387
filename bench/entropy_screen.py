"""Screened top-k entropy against scoring every sample, on easy and hard pools.

For each size (--sizes, rows x classes, float32 probabilities) and pool,
in process:

- ``exact``: ``uncertainty.entropy`` then ``selection.top_k``, the route of
  every request before the screen (and still of the sampling modes);
- ``screened``: ``entropy_screen.entropy_top_k``, the server's top-k route.

Pools: ``peaked`` (softmax of N(0, 3^2) logits, as in
bench/uncertainty_speed.py), ``confident`` (a trained classifier's look:
N(0, 1) logits with 8 added to one class, so most rows are near-certain),
``flat`` (softmax of N(0, 0.1^2) logits: near-uniform rows whose entropies
spread far less than the pattern bound's 0.06 nats, as at a cold start),
``near ties`` (one row in random class orders, half of them nudged by one
float32 ulp), ``all equal`` (one row repeated: every sample survives the
screens, the worst case). Time is the best of --repeat calls; the batches
are compared, and must be equal.

Writes one entropy-screen-ROWSxCLASSES section of bench/RESULTS.md per
size:

    .venv/bin/python bench/entropy_screen.py
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import sys
import time

import numpy as np

from results import write_section  # noqa: E402  (bench/)
from uncertainty_speed import probabilities  # noqa: E402  (bench/)

from alquery.server.selection import top_k
from alquery.server.strategies import entropy_screen, uncertainty

HERE = pathlib.Path(__file__).resolve().parent


def softmax_of(logits: np.ndarray) -> np.ndarray:
    """Row softmax in place, in blocks of 64 MiB, float32."""
    step = max(1, (64 << 20) // (4 * logits.shape[1]))
    for start in range(0, len(logits), step):
        block = logits[start : start + step]
        block -= block.max(axis=1, keepdims=True)
        np.exp(block, out=block)
        block /= block.sum(axis=1, keepdims=True)
    return logits


def confident(rows: int, classes: int) -> np.ndarray:
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((rows, classes), dtype=np.float32)
    logits[np.arange(rows), rng.integers(classes, size=rows)] += 8.0
    return softmax_of(logits)


def flat(rows: int, classes: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((rows, classes), dtype=np.float32)
    logits *= 0.1
    return softmax_of(logits)


def near_ties(rows: int, classes: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    base = probabilities(1, classes)[0]
    p = np.empty((rows, classes), np.float32)
    for start in range(0, rows, 4096):
        block = p[start : start + 4096]
        block[:] = base[rng.random(block.shape).argsort(axis=1)]
    nudged = rng.random(rows) < 0.5
    column = rng.integers(classes, size=rows)
    p[nudged, column[nudged]] = np.nextafter(p[nudged, column[nudged]], 1)
    return p


def all_equal(rows: int, classes: int) -> np.ndarray:
    return np.tile(probabilities(1, classes), (rows, 1))


POOLS = {
    "peaked": probabilities,
    "confident": confident,
    "flat": flat,
    "near ties": near_ties,
    "all equal": all_equal,
}


def best_of(run, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000x10,100000x1000",
                        help="comma-separated ROWSxCLASSES")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    command = shlex.join(["bench/entropy_screen.py", *(argv or sys.argv[1:])])
    for size in args.sizes.split(","):
        text = "\n".join(size_section(size, args, command))
        print(text, flush=True)
        if not args.no_write:
            write_section(f"entropy-screen-{size}", text, args.results)


def size_section(size: str, args: argparse.Namespace, command: str) -> list[str]:
    """Markdown lines for one size: every pool, exact against screened."""
    rows, classes = (int(part) for part in size.split("x"))
    k = args.batch_size
    lines = [
        "## Entropy top-k: the screens against scoring every sample, "
        f"{rows:,} x {classes:,}",
        "",
        f"`.venv/bin/python {command}`. {rows:,} x {classes:,} float32 "
        f"probabilities, batch size {k}, best of {args.repeat} calls in one "
        "process, on this 2-core machine. Survivors: the samples scored "
        "exactly after the screens (the whole pool when they give up); "
        "pattern: the samples that pass the bit-pattern bound, before the "
        "float32 log.",
        "",
        "| pool | exact s | screened s | screened / exact | pattern "
        "| survivors | same batch and scores |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, make in POOLS.items():
        p = make(rows, classes)
        exact_s, expected = best_of(
            lambda: top_k(uncertainty.entropy(p), k, higher_first=True),
            args.repeat,
        )
        screened_s, got = best_of(
            lambda: entropy_screen.entropy_top_k(p, k), args.repeat
        )
        kept = entropy_screen.screen(p, k)
        survivors = rows if kept is None else len(kept.positions)
        pattern = "" if kept is None else f"{kept.after_pattern:,}"
        same = np.array_equal(got.ranked_indices, expected.ranked_indices) and (
            np.array_equal(got.scores, expected.scores)
        )
        lines.append(
            f"| {name} | {exact_s:.4f} | {screened_s:.4f} "
            f"| {screened_s / exact_s:.2f} | {pattern} | {survivors:,} "
            f"| {'yes' if same else 'NO'} |"
        )
    return lines


if __name__ == "__main__":
    main()
