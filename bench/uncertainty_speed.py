"""Uncertainty scoring speed and memory: alquery against numpy and the peers.

For each size (--sizes, rows x classes, float32 probabilities) and each of
least confidence, margin and entropy, every implementation runs in a fresh
child process, so that its memory is its own:

- ``alquery core``: ``uncertainty.<measure>`` then ``selection.top_k``,
  in process; for entropy, ``entropy_screen.entropy_top_k``, the route the
  server takes for a top-k request (the same batch and scores);
- ``alquery edge+rank``: the server's path without the network:
  ``edge.build_query`` on a ready ``RankRequest`` (decode and checks), then
  ``ranking.rank``;
- ``alquery server``: ``AlqueryClient.rank`` against ``alquery serve`` in
  another child on a loopback port (the client streams the pool when it is
  over its threshold); the server's own time comes from its request log
  line, and its memory from its /proc status;
- ``alquery server (shared memory)``: the same, with the server started
  with --shared-memory-dir on a 0700 directory in /dev/shm and the pool
  placed once, before the timing, in the client's ``shared_array``: each
  call sends a reference and the server copies the bytes from the file;
- ``numpy``: the straightforward vectorised formula on the whole array,
  in its float32, then ``np.argpartition`` and a sort of the batch;
  ``numpy float64`` the same after a cast to float64, alquery's precision
  (alquery's entropy is computed in float64);
- ``modAL``: ``uncertainty_sampling``, ``margin_sampling``,
  ``entropy_sampling`` with a classifier whose ``predict_proba`` returns the
  probabilities;
- ``scikit-activeml``: ``UncertaintySampling(method=...).query`` with
  ``fit_clf=False`` and such a classifier;
- ``small-text``: ``LeastConfidence``, ``BreakingTies``,
  ``PredictionEntropy`` ``.query`` with such a classifier.

Time is the best of --repeat calls. Extra memory is the child's peak
resident memory (VmHWM) minus its resident memory once the input is loaded
(the peak is reset there), so the input itself is not counted. Every batch
is compared with alquery core's (same positions, same order).

Writes one section of bench/RESULTS.md per size, between
uncertainty-speed-ROWSxCLASSES markers.
The default sizes move 4 GB inputs, and the peers take up to 11 GB more:

    .venv/bin/python bench/uncertainty_speed.py
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

from results import write_section  # noqa: E402  (bench/)

HERE = pathlib.Path(__file__).resolve().parent
SECTION = "uncertainty-speed"
MEASURES = ("least_confidence", "margin", "entropy")
IMPLEMENTATIONS = (
    "alquery core",
    "alquery edge+rank",
    "alquery server",
    "alquery server (shared memory)",
    "numpy",
    "numpy float64",
    "modAL",
    "scikit-activeml",
    "small-text",
)
MIB = float(1 << 20)


def status_kib(pid: int | str, key: str) -> int:
    """Return a /proc/<pid>/status value in KiB (VmRSS, VmHWM)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak(pid: int | str) -> None:
    """Reset VmHWM to the current resident memory (Linux 4.0 and later)."""
    pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")


def probabilities(rows: int, classes: int, seed: int = 0) -> np.ndarray:
    """Softmax of N(0, 3^2) logits, float32: peaked and varied rows, no ties."""
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((rows, classes), dtype=np.float32)
    p *= 3.0
    step = max(1, (64 << 20) // (4 * classes))
    for start in range(0, rows, step):
        block = p[start : start + step]
        block -= block.max(axis=1, keepdims=True)
        np.exp(block, out=block)
        block /= block.sum(axis=1, keepdims=True)
    return p


# ---- the implementations, each returning the batch's pool positions ----


class Outputs:
    """A fitted classifier stand-in: ``predict_proba`` returns fixed outputs."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def predict_proba(self, X: object) -> np.ndarray:
        return self.values


def alquery_core(p: np.ndarray, measure: str, batch_size: int):
    from alquery.server.selection import top_k
    from alquery.server.strategies import entropy_screen, uncertainty

    def run():
        if measure == "entropy":
            return entropy_screen.entropy_top_k(p, batch_size).ranked_indices
        scores = getattr(uncertainty, measure)(p)
        higher_first = measure != "margin"
        return top_k(scores, batch_size, higher_first=higher_first).ranked_indices

    return run


def alquery_edge(p: np.ndarray, measure: str, batch_size: int):
    from alquery.server import edge, ranking
    from alquery.v1 import query_pb2

    method = getattr(query_pb2.UncertaintyStrategy, f"METHOD_{measure.upper()}")
    request = query_pb2.RankRequest(batch_size=batch_size)
    request.uncertainty.method = method
    # The bytes travel beside the message, as RankStream hands them over
    # (a protobuf message cannot hold 2 GiB).
    request.pool.probabilities.CopyFrom(
        query_pb2.Tensor(dtype=query_pb2.D_TYPE_FLOAT32, shape=p.shape)
    )
    payloads = {"pool.probabilities": memoryview(p).cast("B")}

    def run():
        query = edge.build_query(request, payloads=payloads)
        return ranking.rank(query).ranked_indices

    return run


def numpy_reference(p: np.ndarray, measure: str, batch_size: int):
    def run():
        if measure == "least_confidence":
            keys = p.max(axis=1)  # 1 - max ranks as -max
        elif measure == "margin":
            top = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
            keys = top[:, 1] - top[:, 0]
        else:
            keys = np.einsum("ij,ij->i", p, np.log(p))  # -entropy
        picked = np.argpartition(keys, batch_size - 1)[:batch_size]
        return picked[np.argsort(keys[picked], kind="stable")]

    return run


def numpy_float64(p: np.ndarray, measure: str, batch_size: int):
    def run():
        return numpy_reference(p.astype(np.float64), measure, batch_size)()

    return run


def modal(p: np.ndarray, measure: str, batch_size: int):
    from modAL import uncertainty

    function = {
        "least_confidence": uncertainty.uncertainty_sampling,
        "margin": uncertainty.margin_sampling,
        "entropy": uncertainty.entropy_sampling,
    }[measure]
    X = np.empty((len(p), 0))
    classifier = Outputs(p)

    def run():
        picked, values = function(classifier, X, n_instances=batch_size)
        # modAL returns its batch unordered; order it best first.
        order = np.argsort(values if measure == "margin" else -values, kind="stable")
        return picked[order]

    return run


def scikit_activeml(p: np.ndarray, measure: str, batch_size: int):
    from skactiveml.base import SkactivemlClassifier
    from skactiveml.pool import UncertaintySampling

    class Fitted(SkactivemlClassifier):
        def __init__(self, values=None, classes=None, missing_label=np.nan):
            super().__init__(classes=classes, missing_label=missing_label)
            self.values = values

        def fit(self, X, y, sample_weight=None):
            return self

        def predict_proba(self, X):
            return self.values

    method = {
        "least_confidence": "least_confident",
        "margin": "margin_sampling",
        "entropy": "entropy",
    }[measure]
    X = np.zeros((len(p), 1), np.float32)
    y = np.full(len(p), np.nan)
    classifier = Fitted(p, classes=np.arange(p.shape[1]))

    def run():
        strategy = UncertaintySampling(method=method, random_state=0)
        return strategy.query(
            X, y, clf=classifier, fit_clf=False, batch_size=batch_size
        )

    return run


def small_text(p: np.ndarray, measure: str, batch_size: int):
    from small_text.query_strategies import (
        BreakingTies,
        LeastConfidence,
        PredictionEntropy,
    )

    kind = {
        "least_confidence": LeastConfidence,
        "margin": BreakingTies,
        "entropy": PredictionEntropy,
    }[measure]
    unlabeled = np.arange(len(p))
    empty = np.array([], dtype=np.int64)

    def run():
        strategy = kind()
        picked = strategy.query(
            Outputs(p), unlabeled, unlabeled, empty, empty, n=batch_size
        )
        return np.asarray(picked)

    return run


RUNNERS = {
    "alquery core": alquery_core,
    "alquery edge+rank": alquery_edge,
    "numpy": numpy_reference,
    "numpy float64": numpy_float64,
    "modAL": modal,
    "scikit-activeml": scikit_activeml,
    "small-text": small_text,
}


# ---- one case, in a child process ----


def run_case(implementation: str, measure: str, data: pathlib.Path,
             batch_size: int, repeat: int) -> dict:
    """Run one case here and return its numbers; called in a fresh child."""
    if implementation.startswith("alquery server"):
        shared = "shared memory" in implementation
        with tempfile.TemporaryDirectory(
            prefix="alquery-bench-", dir="/dev/shm" if shared else None
        ) as shm:
            os.chmod(shm, 0o700)
            return run_server_case(
                measure, data, batch_size, repeat, shm if shared else None
            )
    p = np.load(data)
    runner = RUNNERS[implementation]
    # A first call on a few rows loads what the implementation imports or
    # builds lazily, so the peak below is the call's own memory.
    runner(p[:1000], measure, min(batch_size, 10))()
    run = runner(p, measure, batch_size)
    gc.collect()
    pid = "self"
    baseline = status_kib(pid, "VmRSS")
    reset_peak(pid)
    times, picked = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        picked = run()
        times.append(time.perf_counter() - start)
    extra = (status_kib(pid, "VmHWM") - baseline) / 1024.0
    return {"seconds": min(times), "extra_mib": extra,
            "picked": np.asarray(picked).tolist()}


def run_server_case(measure: str, data: pathlib.Path, batch_size: int,
                    repeat: int, shm: str | None = None) -> dict:
    """``AlqueryClient.rank`` against a server child; with ``shm``, through
    that shared-memory directory, the pool in a ``shared_array``."""
    from alquery.client import AlqueryClient
    from alquery.client.local import LocalServer

    p = np.load(data)
    rows = len(p)
    args = ["--max-stream-mib", "16384", "--max-message-mib", "2047"]
    if shm is not None:
        args += ["--shared-memory-dir", shm]
    with LocalServer(args) as server, contextlib.ExitStack() as stack:
        pid = server.process.pid
        client = AlqueryClient(server.target, timeout=3600, shared_memory_dir=shm)
        client.rank(f"uncertainty.{measure}", 1, probabilities=p[:10])
        if shm is not None:
            pool = stack.enter_context(client.shared_array(p.shape, p.dtype))
            pool[:] = p
            p = pool
        gc.collect()
        baseline = status_kib("self", "VmRSS")
        server_baseline = status_kib(pid, "VmRSS")
        reset_peak("self")
        reset_peak(pid)
        times, server_ms, picked = [], [], None
        for _ in range(repeat):
            seen = len(_request_lines(server.log, rows))
            start = time.perf_counter()
            result = client.rank(f"uncertainty.{measure}", batch_size, probabilities=p)
            times.append(time.perf_counter() - start)
            picked = result.indices
            server_ms.append(_next_duration_ms(server.log, rows, seen))
        extra = (status_kib("self", "VmHWM") - baseline) / 1024.0
        server_extra = (status_kib(pid, "VmHWM") - server_baseline) / 1024.0
        client.close()
    best = int(np.argmin(times))
    return {"seconds": times[best], "server_seconds": server_ms[best] / 1000.0,
            "extra_mib": extra, "server_extra_mib": server_extra,
            "picked": picked.tolist()}


def _request_lines(log: list[str], rows: int) -> list[str]:
    return [line for line in log if f" n_pool={rows} " in line]


def _next_duration_ms(log: list[str], rows: int, seen: int) -> float:
    # The server writes its request line after answering, so the client can
    # hold the answer a moment before the line arrives.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = _request_lines(log, rows)
        if len(lines) > seen:
            return float(re.search(r"duration_ms=([\d.]+)", lines[seen]).group(1))
        time.sleep(0.05)
    raise RuntimeError("the server wrote no request line")


# ---- the parent: one child per case, then the table ----


def child(implementation: str, measure: str, data: pathlib.Path,
          batch_size: int, repeat: int, timeout: float) -> dict:
    """Run one case in a fresh interpreter; a failure becomes an ``error``."""
    command = [
        sys.executable, __file__, "--child", implementation, measure, str(data),
        "--batch-size", str(batch_size), "--repeat", str(repeat),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:g} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {done.returncode}: {last[:80]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator <= 0:
        return "-"
    return f"{numerator / denominator:.2f}"


def agreement(picked: list[int], reference: list[int] | None) -> str:
    """Return "yes" for the same batch in the same order, "same set" when
    only the order differs (peers order exactly equal scores arbitrarily)."""
    if picked == reference:
        return "yes"
    if reference is not None and sorted(picked) == sorted(reference):
        return "same set"
    return "no"


def table(rows: int, classes: int, results: dict) -> list[str]:
    """Markdown lines for one size: every implementation, every measure."""
    lines = [
        f"**{rows:,} x {classes:,} float32 probabilities** "
        f"({rows * classes * 4 / MIB:,.0f} MiB)",
        "",
        "| measure | implementation | seconds | / numpy | / alquery core "
        "| extra MiB | same batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for measure in MEASURES:
        core = results.get((measure, "alquery core"), {})
        reference = results.get((measure, "numpy"), {})
        for implementation in IMPLEMENTATIONS:
            result = results.get((measure, implementation))
            if result is None:
                continue
            if "error" in result:
                lines.append(f"| {measure} | {implementation} | {result['error']} "
                             "| | | | |")
                continue
            seconds = result["seconds"]
            same = agreement(result["picked"], core.get("picked"))
            extra = f"{result['extra_mib']:,.0f}"
            if "server_seconds" in result:
                extra += f" (server {result['server_extra_mib']:,.0f})"
            lines.append(
                f"| {measure} | {implementation} | {seconds:.3f} "
                f"| {ratio(seconds, reference.get('seconds'))} "
                f"| {ratio(seconds, core.get('seconds'))} | {extra} | {same} |"
            )
    return lines


def transport_lines(results: dict) -> list[str]:
    """How the server's end-to-end time splits into alquery's work and the
    rest (encoding, transport, parsing, the answer)."""
    lines = []
    for measure in MEASURES:
        server = results.get((measure, "alquery server"), {})
        core = results.get((measure, "alquery core"), {})
        edge = results.get((measure, "alquery edge+rank"), {})
        if "seconds" not in server or "seconds" not in edge:
            continue
        total, work = server["seconds"], edge["seconds"]
        lines.append(
            f"- {measure}: end to end {total:.3f} s. alquery's own work, "
            f"measured in process (edge checks, scoring, top-k), takes "
            f"{work:.3f} s, {core.get('seconds', float('nan')):.3f} s of it "
            f"scoring and top-k; the other {total - work:.3f} s "
            f"({100 * (total - work) / total:.0f}%) go to encoding, transport, "
            f"parsing and the answer. The server's request line says "
            f"{server['server_seconds']:.3f} s (for a streamed pool that "
            "includes receiving the stream)."
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000x10,1000000x1000",
                        help="comma-separated ROWSxCLASSES")
    parser.add_argument("--implementations", default=",".join(IMPLEMENTATIONS))
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds one case may take")
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--data-dir", type=pathlib.Path,
                        default=pathlib.Path(tempfile.gettempdir()),
                        help="where each size's input is saved for the children "
                        "(removed at the end)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS,
                        metavar=("IMPL", "MEASURE", "DATA"))
    args = parser.parse_args(argv)

    if args.child:
        implementation, measure, data = args.child
        result = run_case(implementation, measure, pathlib.Path(data),
                          args.batch_size, args.repeat)
        print(json.dumps(result))
        return

    implementations = args.implementations.split(",")
    header = [
        "`.venv/bin/python "
        + shlex.join(["bench/uncertainty_speed.py", *(argv or sys.argv[1:])])
        + "`. One fresh child process per case; seconds are the best of "
        f"{args.repeat} calls, batch size {args.batch_size}; extra MiB is the "
        "peak resident memory above the resident memory with the input "
        "loaded (for the server case: the client's, and the server "
        "process's in brackets). \"same batch\": the same positions in the "
        "same order as alquery core (\"same set\": only the order differs; "
        "alquery puts exactly equal scores in position order, the peers do "
        "not). Ratios are against the numpy reference "
        "and alquery core measured in the same run, on this 2-core machine.",
    ]
    for size in args.sizes.split(","):
        rows, classes = (int(part) for part in size.split("x"))
        data = args.data_dir / f"alquery-uncertainty-{rows}x{classes}.npy"
        np.save(data, probabilities(rows, classes))
        gc.collect()
        results = {}
        try:
            for measure in MEASURES:
                for implementation in implementations:
                    result = child(implementation, measure, data,
                                   args.batch_size, args.repeat, args.timeout)
                    results[(measure, implementation)] = result
                    shown = result.get("error") or f"{result['seconds']:.3f} s"
                    print(f"{size} {measure} {implementation}: {shown}", flush=True)
        finally:
            data.unlink()
        text = ["## Uncertainty scoring: alquery against numpy and the peers, "
                f"{rows:,} x {classes:,}", "", *header, "",
                *table(rows, classes, results), "", *transport_lines(results)]
        print("\n".join(text))
        # One section per size, so sizes can be rerun apart.
        if not args.no_write:
            write_section(f"{SECTION}-{size}", "\n".join(text), args.results)


if __name__ == "__main__":
    main()
