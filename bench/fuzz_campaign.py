"""A long fuzz campaign against every RPC of a real server.

Run: .venv/bin/python bench/fuzz_campaign.py [--requests 20000]
Writes the fuzz section of RESULTS.md: requests tried per RPC, by status.

The requests come from the hypothesis strategies of tests/fuzz_requests.py
(the CI campaign in tests/test_fuzz.py draws from the same ones, fewer of
them). The server is a real ``alquery serve`` child process on 127.0.0.1.
After every ``--check-every`` requests a valid margin request must get the
right answer; the run fails (exit 1) on any UNKNOWN or INTERNAL, any other
undocumented status, a wrong answer or a dead server, and the server's log
must hold no traceback.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections import Counter

import grpc
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings

from alquery.client.local import LocalServer
from alquery.v1 import query_pb2, query_pb2_grpc

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import fuzz_requests as fuzz  # noqa: E402  (tests/)
from results import write_section  # noqa: E402  (bench/)

SECTION = "fuzz"
SHARES = {
    "Rank": 0.35,
    "Rank with models": 0.15,
    "DescribeModel": 0.1,
    "UploadModel": 0.1,
    "RankStream": 0.15,
    "raw bytes (every method)": 0.15,
}
"""Each campaign's share of ``--requests``."""


def _check_request() -> tuple[query_pb2.RankRequest, list[int]]:
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(probabilities=fuzz.dense(probabilities)),
        uncertainty=query_pb2.UncertaintyStrategy(method=2),
        batch_size=2,
    )
    return request, [0, 2]


class Campaign:
    """Counts statuses per campaign and checks the server between calls."""

    def __init__(self, channel: grpc.Channel, check_every: int) -> None:
        self.channel = channel
        self.stub = query_pb2_grpc.QueryServiceStub(channel)
        self.counts: dict[str, Counter[str]] = {}
        self.failures: list[str] = []
        self.check_every = check_every
        self.sent = 0

    def record(self, name: str, code: grpc.StatusCode, example: object) -> None:
        self.counts.setdefault(name, Counter())[code.name] += 1
        if code not in fuzz.DOCUMENTED:
            self.failures.append(f"{name}: {code.name} for {str(example)[:300]!r}")
        self.sent += 1
        if self.sent % self.check_every == 0:
            self.check()

    def check(self) -> None:
        request, expected = _check_request()
        answer = list(self.stub.Rank(request, timeout=60).ranked_indices)
        if answer != expected:
            self.failures.append(f"check request answered {answer}, not {expected}")

    def run(self, name: str, strategy, send, examples: int) -> None:
        """Draw ``examples`` values of ``strategy`` and send each."""

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(value=strategy)
        def campaign(value):
            self.record(name, send(value), value)

        campaign()


def run(requests: int, check_every: int) -> tuple[str, list[str]]:
    with LocalServer(["--grace-seconds", "30"]) as server:
        with grpc.insecure_channel(server.target) as channel:
            campaign = Campaign(channel, check_every)
            stub = campaign.stub

            def raw(call):
                method, body = call
                sent = iter(body) if method in fuzz.STREAMING_METHODS else body
                return fuzz.status_of(fuzz.raw_method(channel, method), sent)

            senders = {
                "Rank": (fuzz.rank_requests(), lambda r: fuzz.status_of(stub.Rank, r)),
                "Rank with models": (
                    fuzz.inference_requests(), lambda r: fuzz.status_of(stub.Rank, r)
                ),
                "DescribeModel": (
                    fuzz.describe_requests(),
                    lambda r: fuzz.status_of(stub.DescribeModel, r),
                ),
                "UploadModel": (
                    fuzz.upload_streams(),
                    lambda m: fuzz.status_of(stub.UploadModel, iter(m)),
                ),
                "RankStream": (
                    fuzz.rank_streams(),
                    lambda m: fuzz.status_of(stub.RankStream, iter(m)),
                ),
                "raw bytes (every method)": (fuzz.raw_calls(), raw),
            }
            start = time.monotonic()
            for name, share in SHARES.items():
                strategy, send = senders[name]
                campaign.run(name, strategy, send, max(1, round(requests * share)))
            campaign.check()
            elapsed = time.monotonic() - start
        exit_code = server.stop()
    log = "".join(server.log)
    failures = list(campaign.failures)
    if "Traceback" in log:
        failures.append("the server log holds a traceback")
    if exit_code != 0:
        failures.append(f"the server exited {exit_code} after SIGTERM")
    return _table(requests, campaign.counts, elapsed, failures), failures


def _table(requests: int, counts: dict[str, Counter[str]], elapsed: float,
           failures: list[str]) -> str:
    codes = sorted({code for counter in counts.values() for code in counter})
    for always in ("UNKNOWN", "INTERNAL"):
        if always not in codes:
            codes.append(always)
    total: Counter[str] = Counter()
    lines = [
        "## Fuzz campaign",
        "",
        f"`.venv/bin/python bench/fuzz_campaign.py --requests {requests}`: "
        "hypothesis-drawn random and adversarial requests (tests/"
        "fuzz_requests.py) against an `alquery serve` child on loopback, "
        f"{elapsed:.0f} s. A valid margin request checked between them got "
        "the right answer every time"
        + ("" if not failures else " EXCEPT as listed below")
        + ".",
        "",
        "| campaign | requests | " + " | ".join(codes) + " |",
        "|---|---|" + "---|" * len(codes),
    ]
    for name, counter in counts.items():
        total.update(counter)
        cells = " | ".join(str(counter.get(code, 0)) for code in codes)
        lines.append(f"| {name} | {sum(counter.values())} | {cells} |")
    cells = " | ".join(f"**{total.get(code, 0)}**" for code in codes)
    lines.append(f"| **all** | **{sum(total.values())}** | {cells} |")
    if failures:
        lines += ["", "Failures:", ""] + [f"- {failure}" for failure in failures[:20]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--check-every", type=int, default=50)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    text, failures = run(args.requests, args.check_every)
    print(text)
    write_section(SECTION, text, args.results)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
