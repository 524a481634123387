"""Where RankStream overtakes Rank: time by payload size, both ways, same run.

Starts a server in a child process (``alquery serve`` on a loopback port)
and, for each payload size, ranks a pool of float32 embeddings
(diversity.random, batch 10, so the strategy adds next to nothing) once by
``Rank`` (one message) and once by ``RankStream`` (~4 MiB chunks),
alternating, --repeats times; the median counts. The client's default
``stream_threshold_bytes`` should sit near the smallest size from which
the stream stays faster.

Writes a section of bench/RESULTS.md between stream_threshold markers.

    .venv/bin/python bench/stream_threshold.py
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import numpy as np

from alquery.client import AlqueryClient
from alquery.client.local import LocalServer
from alquery.client.streaming import DEFAULT_THRESHOLD_BYTES
from results import write_section  # noqa: E402  (bench/)

HERE = pathlib.Path(__file__).resolve().parent
SECTION = "stream_threshold"
MIB = 1 << 20
FEATURES = 768


def seconds(client: AlqueryClient, embeddings: np.ndarray) -> float:
    start = time.perf_counter()
    client.rank("diversity.random", 10, embeddings=embeddings, seed=1)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes-mib", default="0.25,1,2,4,8,16,64,256",
        help="payload sizes in MiB, comma-separated",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    sizes = [float(size) for size in args.sizes_mib.split(",")]

    rows = []
    rng = np.random.default_rng(0)
    with LocalServer(["--threads", "2"]) as server:
        unary = AlqueryClient(server.target, timeout=600,
                              stream_threshold_bytes=1 << 62)
        stream = AlqueryClient(server.target, timeout=600, stream_threshold_bytes=0)
        for size in sizes:
            n_rows = max(1, int(size * MIB) // (4 * FEATURES))
            pool = rng.standard_normal((n_rows, FEATURES), dtype=np.float32)
            seconds(unary, pool), seconds(stream, pool)  # warm-up
            by_rank, by_stream = [], []
            for _ in range(args.repeats):
                by_rank.append(seconds(unary, pool))
                by_stream.append(seconds(stream, pool))
            rows.append((pool.nbytes, statistics.median(by_rank),
                         statistics.median(by_stream)))
        unary.close()
        stream.close()

    lines = [
        "## Rank or RankStream: where the stream overtakes",
        "",
        f"Loopback, server in a child process, diversity.random on n x "
        f"{FEATURES} float32, median of {args.repeats} alternating calls each "
        "way after a warm-up; shared, loaded 2-core machine. The client "
        f"streams above {DEFAULT_THRESHOLD_BYTES / MIB:g} MiB "
        "(`stream_threshold_bytes`).",
        "",
        "| payload | Rank (s) | RankStream (s) | stream / Rank |",
        "|---|---|---|---|",
    ]
    for n_bytes, by_rank, by_stream in rows:
        lines.append(
            f"| {n_bytes / MIB:.2f} MiB | {by_rank:.4f} | {by_stream:.4f} "
            f"| {by_stream / by_rank:.2f} |"
        )
    lines += [
        "",
        "Produced by:",
        "",
        "    .venv/bin/python bench/stream_threshold.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    ]
    text = "\n".join(lines)
    print(text)
    write_section(SECTION, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
