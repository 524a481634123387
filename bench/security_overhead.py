"""Latency of a small Rank call over plaintext, the token check, TLS and
mutual TLS, each against plaintext measured in the same run.

Run: .venv/bin/python bench/security_overhead.py [--calls 2000]
Writes the section between the security-overhead markers of RESULTS.md.
The certificates are made on the fly (tests/tls_material.py).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

from alquery.client import AlqueryClient, ChannelSecurity
from alquery.server import app
from alquery.server.security import TlsFiles

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from tls_material import make_tls_material  # noqa: E402
from results import write_section  # noqa: E402  (bench/)

SECTION = "security-overhead"
TOKEN = "bench-token-0123456789abcdef"


def measure(target: str, security: ChannelSecurity, calls: int) -> list[float]:
    """Milliseconds per call, one channel, after 50 warm-up calls."""
    probabilities = np.random.default_rng(0).dirichlet(np.ones(10), size=1000)
    timings = []
    with AlqueryClient(target, timeout=30, security=security) as client:
        for index in range(calls + 50):
            start = time.perf_counter()
            client.rank("uncertainty.margin", 10, probabilities=probabilities)
            if index >= 50:
                timings.append((time.perf_counter() - start) * 1000.0)
    return timings


def run(calls: int) -> str:
    folder = pathlib.Path(tempfile.mkdtemp())
    tls = make_tls_material(folder)
    setups = {
        "plaintext": ({}, ChannelSecurity()),
        "token": ({"auth_token": TOKEN}, ChannelSecurity(token=TOKEN)),
        "TLS": (
            {"tls": TlsFiles(tls.server_cert, tls.server_key)},
            ChannelSecurity(ca_file=tls.ca),
        ),
        "mutual TLS + token": (
            {"tls": TlsFiles(tls.server_cert, tls.server_key, tls.ca),
             "auth_token": TOKEN},
            ChannelSecurity(ca_file=tls.ca, cert_file=tls.client_cert,
                            key_file=tls.client_key, token=TOKEN),
        ),
        # Plaintext again, last: the spread between the two plaintext rows
        # is the run-order noise the other ratios must be read against.
        "plaintext, again": ({}, ChannelSecurity()),
    }
    medians = {}
    for name, (settings, security) in setups.items():
        running = app.start(app.ServerConfig(port=0, metrics_port=None, **settings))
        try:
            timings = measure(f"127.0.0.1:{running.port}", security, calls)
        finally:
            running.stop(grace_seconds=1)
        medians[name] = (statistics.median(timings), np.percentile(timings, 99))
    base = medians["plaintext"][0]
    lines = [
        "## Security overhead",
        "",
        f"`.venv/bin/python bench/security_overhead.py --calls {calls}`: "
        f"uncertainty.margin on 1,000 x 10 probabilities (80 KB requests), "
        f"batch 10, {calls} calls on one channel per setup, loopback, "
        "server and client in one process on this 2-core machine. "
        "Handshakes happen once per channel, so they are not in these "
        "per-call times.",
        "",
        "| setup | median ms | p99 ms | median / plaintext |",
        "|---|---|---|---|",
    ]
    for name, (median, p99) in medians.items():
        lines.append(f"| {name} | {median:.3f} | {p99:.3f} | {median / base:.2f} |")
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    text = run(args.calls)
    print(text)
    write_section(SECTION, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
