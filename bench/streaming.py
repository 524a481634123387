"""Streaming large pools: server peak memory against the payload, and time.

Starts a server in a child process (``alquery serve`` on a loopback port),
sends one pool of --rows x --features float32 embeddings by ``RankStream``
(diversity.random, batch 10, so the strategy itself adds next to nothing)
and reads the server's peak resident memory (VmHWM in /proc) against its
resident memory before the call. The default pool, 1,000,000 x 768 float32
(2.86 GiB), is beyond protobuf's 2 GiB message limit: it can only go by
the stream. For a baseline in the same run, a pool that fits one message
(--unary-rows rows) goes both ways and the two answers and times are
compared.

Writes a section of bench/RESULTS.md between streaming markers.

    .venv/bin/python bench/streaming.py
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

from alquery.client import AlqueryClient
from alquery.client.local import LocalServer
from results import write_section  # noqa: E402  (bench/)

HERE = pathlib.Path(__file__).resolve().parent
SECTION = "streaming"
GIB = float(1 << 30)


def memory_kib(pid: int, key: str) -> int:
    """Return a /proc/<pid>/status value in KiB (VmRSS, VmHWM)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux 4.0+: write 5 to clear_refs)."""
    pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")


def pool(rows: int, features: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, features), dtype=np.float32)


def timed_rank(client: AlqueryClient, embeddings: np.ndarray):
    start = time.perf_counter()
    result = client.rank("diversity.random", 10, embeddings=embeddings, seed=1)
    return time.perf_counter() - start, result



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=768)
    parser.add_argument("--unary-rows", type=int, default=100_000)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)

    with LocalServer(["--threads", "2", "--max-stream-mib", "8192"]) as server:
        pid = server.process.pid
        target = server.target
        unary = AlqueryClient(target, timeout=3600, stream_threshold_bytes=1 << 62)
        stream = AlqueryClient(target, timeout=3600, stream_threshold_bytes=0)

        small = pool(args.unary_rows, args.features, seed=1)
        unary_s, unary_result = timed_rank(unary, small)
        stream_s, stream_result = timed_rank(stream, small)
        same = unary_result.indices.tolist() == stream_result.indices.tolist()

        large = pool(args.rows, args.features)
        payload = large.nbytes
        rss_before = memory_kib(pid, "VmRSS") * 1024
        reset_peak(pid)
        large_s, _ = timed_rank(stream, large)
        peak = memory_kib(pid, "VmHWM") * 1024
        unary.close()
        stream.close()

    extra = peak - rss_before
    rows = [
        "| case | payload | seconds | MiB/s | server memory |",
        "|---|---|---|---|---|",
        f"| {args.unary_rows:,} x {args.features} by Rank (one message) "
        f"| {small.nbytes / GIB:.2f} GiB | {unary_s:.2f} "
        f"| {small.nbytes / unary_s / (1 << 20):.0f} | |",
        f"| same by RankStream (4 MiB chunks) | {small.nbytes / GIB:.2f} GiB "
        f"| {stream_s:.2f} | {small.nbytes / stream_s / (1 << 20):.0f} "
        f"| same answer: {same} |",
        f"| {args.rows:,} x {args.features} by RankStream | {payload / GIB:.2f} GiB "
        f"| {large_s:.2f} | {payload / large_s / (1 << 20):.0f} "
        f"| peak {peak / GIB:.2f} GiB, {rss_before / GIB:.2f} GiB before: "
        f"+{extra / GIB:.2f} GiB = {extra / payload:.2f}x the payload |",
    ]
    text = "\n".join(
        [
            "## Streaming large pools (RankStream)",
            "",
            "Server in a child process on loopback, client in this one; "
            "diversity.random, batch 10. Server memory: peak resident "
            "(VmHWM, reset before the call) less resident before it. "
            "Shared, loaded 2-core machine, one run.",
            "",
            *rows,
            "",
            "Produced by:",
            "",
            "    .venv/bin/python bench/streaming.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
        ]
    )
    print(text)
    write_section(SECTION, text, args.results)


if __name__ == "__main__":
    main()
