"""Load and soak: mixed valid traffic from many clients against one server.

Run: .venv/bin/python bench/load.py [--requests 3000] [--seconds 120]
         [--clients 16] [--pool 1000]
     .venv/bin/python bench/load.py --soak-seconds 600
Writes the load (or soak) section of RESULTS.md.

The server is a real ``alquery serve`` child process on 127.0.0.1. The
traffic (bench/traffic.py) cycles through uncertainty.margin, k-center on
embeddings, BADGE, an ONNX network run server-side, and a RankStream call.
The baseline, measured first in the same run, is the same mix from one
client: the load row's ratio is concurrent over sequential throughput.
Every request is valid, so every error counts against the server. The soak
mode runs the load for a fixed time while sampling the server's RSS every
second, and reports the first and last minute's mean RSS and the slope of
a least-squares line through the samples after the first minute.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import threading
import time

import numpy as np

from alquery.client.local import LocalServer

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import traffic  # noqa: E402  (bench/)
from results import write_section  # noqa: E402  (bench/)

WARM_UP_ROUNDS = 2


def _summary(outcomes: list[traffic.Outcome], elapsed: float) -> dict:
    valid_errors = sum(1 for o in outcomes if o.status != "OK")
    wrong = sum(1 for o in outcomes if o.correct is False)
    return {
        "requests": len(outcomes),
        "rate": len(outcomes) / elapsed,
        "p50": traffic.percentile_ms(outcomes, 50),
        "p99": traffic.percentile_ms(outcomes, 99),
        "errors": valid_errors,
        "wrong": wrong,
        "statuses": traffic.statuses(outcomes),
    }


def _timed(server: LocalServer, mix: traffic.Mix, clients: int, **bounds) -> dict:
    start = time.monotonic()
    outcomes = traffic.drive(server.target, mix, clients, **bounds)
    summary = _summary(outcomes, time.monotonic() - start)
    summary["by_kind"] = {
        kind: (
            traffic.percentile_ms([o for o in outcomes if o.kind == kind], 50),
            traffic.percentile_ms([o for o in outcomes if o.kind == kind], 99),
        )
        for kind in traffic.KINDS
    }
    return summary


def load(requests: int, seconds: float, clients: int, pool: int) -> tuple[str, int]:
    """Run the baseline and the load; return the section and the number of
    failed or wrong valid requests."""
    mix = traffic.Mix(n_pool=pool)
    with LocalServer(["--threads", "8"]) as server:
        pid = server.process.pid
        traffic.drive(
            server.target, mix, 1, max_requests=WARM_UP_ROUNDS * len(traffic.KINDS)
        )
        baseline = _timed(
            server, mix, 1, max_requests=max(requests // 10, 50), seconds=seconds / 4
        )
        loaded = _timed(
            server, mix, clients, max_requests=requests, seconds=seconds
        )
        _, peak = traffic.server_rss(pid)
    text = _load_table(requests, seconds, clients, pool, baseline, loaded, peak)
    failures = sum(row["errors"] + row["wrong"] for row in (baseline, loaded))
    return text, failures


def _load_table(requests, seconds, clients, pool, baseline, loaded, peak) -> str:
    ratio = loaded["rate"] / baseline["rate"]
    codes = ", ".join(f"{k} {v}" for k, v in sorted(loaded["statuses"].items()))
    lines = [
        "## Load: mixed valid traffic",
        "",
        f"`.venv/bin/python bench/load.py --requests {requests} --seconds "
        f"{seconds:g} --clients {clients} --pool {pool}`: one `alquery serve "
        f"--threads 8` child on loopback; requests cycle through "
        "uncertainty.margin, diversity.kcenter (batch 20), hybrid.badge, an "
        f"ONNX 32 -> 16 -> 10 network run server-side (entropy), and a "
        f"RankStream margin call; pool {pool} x 32 float32 embeddings, 10 "
        "classes. The client threads share the 2 cores with the server. "
        f"Load average at the end: {os.getloadavg()[0]:.1f}.",
        "",
        "| clients | requests | requests/s | p50 ms | p99 ms | errors | "
        "wrong answers | x one client |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row, scale in (("1 (baseline)", baseline, 1.0), (clients, loaded, ratio)):
        lines.append(
            f"| {name} | {row['requests']} | {row['rate']:.1f} | {row['p50']:.1f} "
            f"| {row['p99']:.1f} | {row['errors']} | {row['wrong']} | {scale:.2f} |"
        )
    lines += [
        "",
        f"Statuses under load: {codes}. Server peak RSS (VmHWM): {peak:.0f} MiB.",
        "",
        "| kind | p50 ms | p99 ms |",
        "|---|---|---|",
    ]
    for kind, (p50, p99) in loaded["by_kind"].items():
        lines.append(f"| {kind} | {p50:.1f} | {p99:.1f} |")
    return "\n".join(lines)


def soak(seconds: float, clients: int, pool: int) -> tuple[str, int]:
    """Run the soak; return the section and the number of failed or wrong
    valid requests."""
    mix = traffic.Mix(n_pool=pool)
    with LocalServer(["--threads", "8"]) as server:
        pid = server.process.pid
        traffic.drive(
            server.target, mix, 1, max_requests=WARM_UP_ROUNDS * len(traffic.KINDS)
        )
        stop = threading.Event()
        finish = traffic.sample_rss(pid, 1.0, stop)
        summary = _timed(server, mix, clients, seconds=seconds)
        stop.set()
        samples = finish()
        _, peak = traffic.server_rss(pid)
    text = _soak_table(seconds, clients, pool, summary, samples, peak)
    return text, summary["errors"] + summary["wrong"]


def rss_trend(samples: list[tuple[float, float]], window: float = 60.0) -> dict:
    """First and last ``window`` seconds' mean RSS, and the slope in MiB per
    minute of a least-squares line through the samples after the first
    window (all samples when the run is shorter than two windows)."""
    times = np.array([t for t, _ in samples])
    rss = np.array([r for _, r in samples])
    window = min(window, times[-1] / 2)
    first = rss[times <= window].mean()
    last = rss[times >= times[-1] - window].mean()
    after = times > window
    if after.sum() < 2:
        after = np.ones_like(times, dtype=bool)
    slope = np.polyfit(times[after], rss[after], 1)[0] * 60.0
    return {"first": first, "last": last, "slope": slope, "window": window}


def _soak_table(seconds, clients, pool, summary, samples, peak) -> str:
    trend = rss_trend(samples)
    codes = ", ".join(f"{k} {v}" for k, v in sorted(summary["statuses"].items()))
    lines = [
        "## Soak: server memory under steady load",
        "",
        f"`.venv/bin/python bench/load.py --soak-seconds {seconds:g} --clients "
        f"{clients} --pool {pool}`: the load run's mix for {seconds:g} s, the "
        f"server's RSS sampled every second ({len(samples)} samples). Load "
        f"average at the end: {os.getloadavg()[0]:.1f}.",
        "",
        "| requests | requests/s | p50 ms | p99 ms | errors | wrong answers | "
        f"first {trend['window']:.0f} s RSS MiB | last {trend['window']:.0f} s "
        "RSS MiB | slope MiB/min | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {summary['requests']} | {summary['rate']:.1f} | {summary['p50']:.1f} "
        f"| {summary['p99']:.1f} | {summary['errors']} | {summary['wrong']} "
        f"| {trend['first']:.1f} | {trend['last']:.1f} | {trend['slope']:+.2f} "
        f"| {peak:.0f} |",
        "",
        f"Statuses: {codes}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument(
        "--soak-seconds", type=float, default=None,
        help="run the soak mode for this long instead of the load run",
    )
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.soak_seconds is None:
        section = "load"
        text, failures = load(args.requests, args.seconds, args.clients, args.pool)
    else:
        section = "soak"
        text, failures = soak(args.soak_seconds, args.clients, args.pool)
    print(text)
    write_section(section, text, args.results)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
