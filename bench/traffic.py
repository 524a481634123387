"""Mixed valid traffic for the load, soak and shutdown runs.

``Mix`` builds one request of each kind once (small scored, embeddings
diversity, hybrid, an ONNX model run, a streamed pool); ``drive`` sends
them from many client threads, each on a channel (a connection) of its
own, and records every call's kind, status and latency. ``server_rss``
reads a server process's memory from /proc.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import pathlib
import threading
import time
from collections import Counter
from collections.abc import Callable

import grpc
import numpy as np

from alquery.client import streaming
from alquery.v1 import query_pb2, query_pb2_grpc
from onnx_throughput import network

KINDS = ("margin", "kcenter", "badge", "model", "stream")
MIB = 1 << 20


def _tensor(array: np.ndarray) -> query_pb2.Tensor:
    dtype = {
        np.dtype(np.float32): query_pb2.D_TYPE_FLOAT32,
        np.dtype(np.float64): query_pb2.D_TYPE_FLOAT64,
    }[array.dtype]
    return query_pb2.Tensor(dtype=dtype, shape=array.shape, data=array.tobytes())


class Mix:
    """One valid request of each kind, built once from a fixed seed.

    Parameters
    ----------
    n_pool : int
        Pool size of every request (the model request runs the network on
        this many rows).
    n_features, n_classes : int
        Embedding width and number of classes.
    """

    def __init__(self, n_pool: int = 1000, n_features: int = 32, n_classes: int = 10):
        rng = np.random.default_rng(0)
        probabilities = rng.dirichlet(np.ones(n_classes), size=n_pool)
        embeddings = rng.normal(size=(n_pool, n_features)).astype(np.float32)
        u, d, h = (
            query_pb2.UncertaintyStrategy,
            query_pb2.DiversityStrategy,
            query_pb2.HybridStrategy,
        )
        self.margin = query_pb2.RankRequest(
            pool=query_pb2.Pool(probabilities=_tensor(probabilities)),
            uncertainty=u(method=u.METHOD_MARGIN),
            batch_size=10,
        )
        self.kcenter = query_pb2.RankRequest(
            pool=query_pb2.Pool(embeddings=_tensor(embeddings)),
            diversity=d(method=d.METHOD_KCENTER),
            batch_size=20,
        )
        self.badge = query_pb2.RankRequest(
            pool=query_pb2.Pool(
                probabilities=_tensor(probabilities), embeddings=_tensor(embeddings)
            ),
            hybrid=h(method=h.METHOD_BADGE),
            batch_size=10,
        )
        model = query_pb2.Model(onnx=network(n_features, 16, n_classes))
        self.model = query_pb2.RankRequest(
            pool=query_pb2.Pool(embeddings=_tensor(embeddings)),
            uncertainty=u(method=u.METHOD_ENTROPY),
            inference=query_pb2.Inference(models=[model]),
            batch_size=10,
        )
        self.stream_header = query_pb2.RankRequest(
            pool=query_pb2.Pool(
                probabilities=query_pb2.Tensor(
                    dtype=query_pb2.D_TYPE_FLOAT64, shape=probabilities.shape
                )
            ),
            uncertainty=u(method=u.METHOD_MARGIN),
            batch_size=10,
        )
        self.stream_payload = {"pool.probabilities": probabilities}
        self.expected_first = self._expected_first(probabilities)

    @staticmethod
    def _expected_first(probabilities: np.ndarray) -> int:
        top = np.sort(probabilities, axis=1)
        return int(np.argmin(top[:, -1] - top[:, -2]))

    def call(self, stub: query_pb2_grpc.QueryServiceStub, kind: str, timeout: float):
        """Send one request of ``kind``; return the response."""
        if kind == "stream":
            # Small chunks, so a pool of this size still takes several
            # messages.
            messages = streaming.messages(
                self.stream_header, self.stream_payload, chunk_bytes=64 << 10
            )
            return stub.RankStream(messages, timeout=timeout).response
        return stub.Rank(getattr(self, kind), timeout=timeout)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One call: its kind, status name, start and end (monotonic seconds),
    and whether an OK answer was the right one (None when not checked)."""

    kind: str
    status: str
    start: float
    end: float
    correct: bool | None = None


def drive(
    target: str,
    mix: Mix,
    clients: int,
    *,
    kinds: tuple[str, ...] = KINDS,
    max_requests: int | None = None,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    timeout: float = 120.0,
    stop_on_unavailable: bool = False,
) -> list[Outcome]:
    """Send ``mix``'s requests from ``clients`` threads until a bound is hit.

    Each thread cycles through ``kinds`` (starting at its own offset) on a
    channel of its own. The run ends after ``max_requests`` calls in all,
    after ``seconds``, or when ``stop`` is set, whichever comes first; with
    ``stop_on_unavailable`` a thread also ends after its first UNAVAILABLE.
    """
    stop = stop or threading.Event()
    deadline = math.inf if seconds is None else time.monotonic() + seconds
    tickets = itertools.count()
    budget = math.inf if max_requests is None else max_requests
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(target, options=options) as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            for step in itertools.count(offset):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                if next(tickets) >= budget:
                    return
                outcome = _one_call(stub, mix, kinds[step % len(kinds)], timeout)
                with lock:
                    outcomes.append(outcome)
                if stop_on_unavailable and outcome.status == "UNAVAILABLE":
                    return

    threads = [
        threading.Thread(target=client, args=(i,), name=f"load-client-{i}")
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def _one_call(stub, mix: Mix, kind: str, timeout: float) -> Outcome:
    start = time.monotonic()
    try:
        response = mix.call(stub, kind, timeout)
    except grpc.RpcError as error:
        return Outcome(kind, error.code().name, start, time.monotonic())
    end = time.monotonic()
    correct = None
    if kind in ("margin", "stream"):
        correct = response.ranked_indices[0] == mix.expected_first
    else:
        correct = len(set(response.ranked_indices)) == len(response.ranked_indices)
    return Outcome(kind, "OK", start, end, correct)


def statuses(outcomes: list[Outcome]) -> Counter[str]:
    """How many calls ended with each status."""
    return Counter(outcome.status for outcome in outcomes)


def percentile_ms(outcomes: list[Outcome], q: float) -> float:
    """The ``q``-th percentile latency of ``outcomes`` in milliseconds."""
    if not outcomes:
        return float("nan")
    latencies = [(o.end - o.start) * 1000.0 for o in outcomes]
    return float(np.percentile(latencies, q))


def server_rss(pid: int) -> tuple[float, float]:
    """The process's resident memory now and its peak (VmHWM), in MiB."""
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return (
        int(fields["VmRSS"].split()[0]) / 1024.0,
        int(fields["VmHWM"].split()[0]) / 1024.0,
    )


def sample_rss(
    pid: int, every: float, stop: threading.Event
) -> Callable[[], list[tuple[float, float]]]:
    """Sample ``pid``'s RSS every ``every`` seconds on a thread until
    ``stop`` is set; the returned function joins it and gives the
    (seconds since start, MiB) samples."""
    samples: list[tuple[float, float]] = []
    start = time.monotonic()

    def run() -> None:
        while True:
            samples.append((time.monotonic() - start, server_rss(pid)[0]))
            if stop.wait(every):
                return

    thread = threading.Thread(target=run, name="rss-sampler", daemon=True)
    thread.start()

    def finish() -> list[tuple[float, float]]:
        thread.join()
        return samples

    return finish
