"""ONNX throughput: rows per second through the service against onnxruntime in-process.

A 768 -> 256 (relu) -> 10 network, built here with onnx.helper, scores
100,000 x 768 float32 embeddings. The service path is a full
``AlqueryClient.rank`` call (uncertainty.entropy, batch size 10) to a
server started here in a child process on a loopback port, by the path
the client picks itself (``RankStream`` above its threshold, the model
running on each block of rows as it arrives): encoding, transport, the
model in chunks, the checks and the strategy. The baseline runs the same
model with onnxruntime in this process on all rows at once, with the same
thread count, before and after the service runs. Each path is timed
--repeats times after one warm-up; medians are compared, best runs shown
too, and CPU seconds (this process, plus the server's for the service)
show the work apart from the load of a shared machine.

Four service rows take the same-host shared-memory path (``Rank`` with
``Tensor.shared_memory``, the server started with --shared-memory-dir on a
0700 directory in /dev/shm), two ways: sealed memory files, whose
descriptor the client hands over through a Unix socket and which the
server maps and reads in place (the client's default on Linux); and files
in the directory, which the server copies into its buffer while the model
runs on the rows read so far. Each way "in place", the pool already in a
``client.shared_array`` (filled once, outside the timing; each call sends a
reference), and "copied", a plain numpy pool that the client copies into a
new memory file or file on each call. A last line compares the server's
stages on the file path in this process (no transport), reading then
running against overlapped.

More rows split the gap: alquery's chunked runner called in this process
(no transport), the service by ``Rank`` (one message), and the service
with glibc told to keep freed memory (MALLOC_MMAP_MAX_=0,
MALLOC_TRIM_THRESHOLD_ large) in both processes, which shows what
fresh-page faults cost on this machine.

Writes a section of bench/RESULTS.md between onnx_throughput markers.

    .venv/bin/python bench/onnx_throughput.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from alquery.client import AlqueryClient, OnnxModel
from alquery.client.local import LocalServer
from alquery.client.streaming import DEFAULT_THRESHOLD_BYTES
from results import write_section  # noqa: E402  (bench/)

HERE = pathlib.Path(__file__).resolve().parent
SECTION = "onnx_throughput"
TARGET_RATIO = 0.8


def network(n_features: int = 768, hidden: int = 256, n_classes: int = 10) -> bytes:
    """The benchmark network with random weights (seed 0)."""
    rng = np.random.default_rng(0)
    weights = [
        ("w1", rng.normal(size=(n_features, hidden)) / np.sqrt(n_features)),
        ("b1", np.zeros(hidden)),
        ("w2", rng.normal(size=(hidden, n_classes)) / np.sqrt(hidden)),
        ("b2", np.zeros(n_classes)),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["pre"]),
            helper.make_node("Relu", ["pre"], ["hidden"]),
            helper.make_node("Gemm", ["hidden", "w2", "b2"], ["logits"]),
        ],
        "bench_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", n_features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", n_classes])],
        [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@dataclasses.dataclass
class Timing:
    """Wall seconds and CPU seconds of each timed run of one path."""

    wall: list[float]
    cpu: list[float]

    @property
    def best(self) -> float:
        return min(self.wall)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


def process_cpu(pid: int | None = None) -> float:
    """CPU seconds (user + system) of this process, or of ``pid``."""
    if pid is None:
        return time.process_time()
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(work, repeats: int, server_pid: int | None = None) -> Timing:
    """Time ``work()`` ``repeats`` times after one warm-up. CPU counts this
    process, plus the server's when ``server_pid`` is given."""
    work()
    timing = Timing([], [])
    for _ in range(repeats):
        cpu = process_cpu() + (process_cpu(server_pid) if server_pid else 0.0)
        start = time.perf_counter()
        work()
        timing.wall.append(time.perf_counter() - start)
        after = process_cpu() + (process_cpu(server_pid) if server_pid else 0.0)
        timing.cpu.append(after - cpu)
    return timing


def in_process(
    model: bytes, embeddings: np.ndarray, threads: int, repeats: int
) -> Timing:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return timed(lambda: session.run(None, {"x": embeddings}), repeats)


def runner_in_process(
    model: bytes, embeddings: np.ndarray, threads: int, repeats: int
) -> Timing:
    from alquery.server.models import binding, runner
    from alquery.server.models.cache import ModelCache
    from alquery.v1 import query_pb2

    loaded = ModelCache(1 << 30, 1 << 30, threads).add(model, "model")
    bound = binding.resolve(
        query_pb2.Model(output_kind=query_pb2.OUTPUT_KIND_LOGITS),
        loaded.inputs, loaded.outputs, "model",
    )
    control = runner.RunControl(ort.RunOptions(), lambda: False, threads)
    return timed(
        lambda: runner.run(
            loaded, bound, embeddings, field="model", features_field="pool",
            seed=np.random.SeedSequence(0), control=control,
        ),
        repeats,
    )


def through_service(
    model: bytes,
    embeddings: np.ndarray,
    threads: int,
    repeats: int,
    stream_threshold_bytes: int = DEFAULT_THRESHOLD_BYTES,
) -> Timing:
    """Time ``AlqueryClient.rank`` with the model; by default the client
    picks the path itself (above its threshold, ``RankStream``)."""
    flags = ["--threads", "2", "--model-threads", str(threads)]
    with LocalServer(flags) as server, AlqueryClient(
        server.target, timeout=600, stream_threshold_bytes=stream_threshold_bytes
    ) as client:
        bound = OnnxModel(model, output_kind="logits")
        return timed(
            lambda: client.rank(
                "uncertainty.entropy", 10, model=bound, embeddings=embeddings
            ),
            repeats,
            server.process.pid,
        )


def timed_pair(first, second, repeats: int) -> tuple[Timing, Timing]:
    """Time ``first()`` and ``second()`` in turns, ``repeats`` times each
    after one warm-up, so that the load of a shared machine falls on both
    alike; CPU counts this process."""
    first()
    second()
    pair = Timing([], []), Timing([], [])
    for _ in range(repeats):
        for timing, call in zip(pair, (first, second)):
            cpu = process_cpu()
            start = time.perf_counter()
            call()
            timing.wall.append(time.perf_counter() - start)
            timing.cpu.append(process_cpu() - cpu)
    return pair


def through_shared_memory(
    model: bytes, embeddings: np.ndarray, threads: int, repeats: int, sealed: bool
) -> dict[str, Timing]:
    """Time ``AlqueryClient.rank`` with the pool in shared memory, as sealed
    memory files (mapped by the server) or as files (copied by it): "in
    place", the pool in a ``shared_array``; "copied", a numpy pool the
    client copies into a new file or memory file on each call."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    kind = "sealed memory file" if sealed else "file"
    with tempfile.TemporaryDirectory(dir=base, prefix="alquery-bench-") as shm:
        os.chmod(shm, 0o700)
        flags = [
            "--threads", "2", "--model-threads", str(threads),
            "--shared-memory-dir", shm,
        ]
        with LocalServer(flags) as server, AlqueryClient(
            server.target, timeout=600, shared_memory_dir=shm,
            shared_memory_sealed=sealed,
        ) as client:
            bound = OnnxModel(model, output_kind="logits")

            def run(pool: np.ndarray) -> Timing:
                return timed(
                    lambda: client.rank(
                        "uncertainty.entropy", 10, model=bound, embeddings=pool
                    ),
                    repeats,
                    server.process.pid,
                )

            copied = run(embeddings)
            with client.shared_array(embeddings.shape, embeddings.dtype) as pool:
                pool[:] = embeddings
                in_place = run(pool)
    return {f"{kind}, in place": in_place, f"{kind}, copied": copied}


def shared_memory_stages(
    model: bytes, embeddings: np.ndarray, threads: int, repeats: int
) -> tuple[Timing, Timing]:
    """The server's shared-memory stages in this process, no transport:
    read the file into a buffer and run the model (``inference.apply``),
    one after the other, and overlapped as ``Rank`` does (the model on the
    rows read so far, ``StreamedInference``); timed in turns."""
    from alquery.server.models import inference
    from alquery.server.models.cache import ModelCache
    from alquery.server.models.streamed import StreamedInference
    from alquery.server.shared_memory import SharedMemoryDir, SharedMemoryReads
    from alquery.v1 import query_pb2

    cache = ModelCache(1 << 30, 1 << 30, threads)
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base, prefix="alquery-bench-") as shm:
        os.chmod(shm, 0o700)
        pathlib.Path(shm, "pool").write_bytes(embeddings.tobytes())
        directory = SharedMemoryDir(shm)

        def reads() -> SharedMemoryReads:
            request = query_pb2.RankRequest(batch_size=10)
            pool = request.pool.embeddings
            pool.dtype = query_pb2.D_TYPE_FLOAT32
            pool.shape[:] = embeddings.shape
            pool.shared_memory.name = "pool"
            spec = request.inference.models.add(onnx=model)
            spec.output_kind = query_pb2.OUTPUT_KIND_LOGITS
            return SharedMemoryReads(request, directory)

        def one_after_the_other() -> None:
            assembly = reads()
            assembly.read()
            inference.apply(
                assembly.request, cache, stop_requested=lambda: False,
                on_stop=lambda callback: None, arrivals=assembly,
            )

        def overlapped() -> None:
            assembly = reads()
            job = StreamedInference(
                assembly, cache, lambda: False, lambda callback: None
            )
            assembly.read(job.raise_if_failed)
            job.result()

        try:
            return timed_pair(one_after_the_other, overlapped, repeats)
        finally:
            directory.close()


KEEP_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 36)}


def _with_env(env, args) -> Timing:
    """Run ``through_service`` in a child Python with ``env`` set (glibc
    reads it at start), so this process keeps its own allocator settings."""
    code = (
        "import dataclasses, json, sys, numpy as np; sys.path.insert(0, sys.argv[1]);"
        "import onnx_throughput as b;"
        "x = np.random.default_rng(1).normal(size=(int(sys.argv[2]), 768))"
        ".astype(np.float32);"
        "t = b.through_service(b.network(), x, int(sys.argv[3]), int(sys.argv[4]));"
        "print(json.dumps(dataclasses.asdict(t)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(HERE), str(args.rows),
         str(args.threads), str(args.repeats)],
        env={**os.environ, **env}, check=True, capture_output=True, text=True,
    )
    return Timing(**json.loads(out.stdout.strip().splitlines()[-1]))


def _verdict(ratio: float) -> str:
    return f"{TARGET_RATIO:.0%}: {'met' if ratio >= TARGET_RATIO else 'not met'}"


def shared_lines(shared: dict[str, Timing], local: Timing) -> list[str]:
    """The shared-memory rows' ratios to in-process onnxruntime."""
    lines = []
    for name, served in shared.items():
        ratio = local.median / served.median
        lines.append(
            f"Shared memory, {name}: **{ratio:.0%}** of in-process "
            f"throughput by medians (target {_verdict(ratio)}); best runs "
            f"{local.best / served.best:.0%}; CPU s {served.cpu_median:.2f} "
            f"against {local.cpu_median:.2f}."
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)

    model = network()
    embeddings = np.random.default_rng(1).normal(size=(args.rows, 768))
    embeddings = embeddings.astype(np.float32)
    local = in_process(model, embeddings, args.threads, args.repeats)
    chunked = runner_in_process(model, embeddings, args.threads, args.repeats)
    served = through_service(model, embeddings, args.threads, args.repeats)
    unary = through_service(
        model, embeddings, args.threads, args.repeats, stream_threshold_bytes=1 << 62
    )
    kept = _with_env(KEEP_MEMORY, args)
    shared = {
        **through_shared_memory(
            model, embeddings, args.threads, args.repeats, sealed=True
        ),
        **through_shared_memory(
            model, embeddings, args.threads, args.repeats, sealed=False
        ),
    }
    sequential, overlapped = shared_memory_stages(
        model, embeddings, args.threads, args.repeats
    )
    # Again, so that load on the shared machine weighs on both sides.
    local_after = in_process(model, embeddings, args.threads, args.repeats)
    local = Timing(local.wall + local_after.wall, local.cpu + local_after.cpu)

    def row(name: str, timing: Timing) -> str:
        return (
            f"| {name} | {timing.best:.3f} | {timing.median:.3f} | "
            f"{args.rows / timing.median:,.0f} | {timing.cpu_median:.2f} |"
        )

    ratio = local.median / served.median
    lines = [
        "## ONNX throughput",
        "",
        f"`.venv/bin/python bench/onnx_throughput.py --rows {args.rows} "
        f"--repeats {args.repeats} --threads {args.threads}` on "
        f"{os.cpu_count()} cores (shared with other jobs): a 768 -> 256 -> 10 "
        f"network on {args.rows:,} x 768 float32 embeddings, {args.repeats} "
        "runs after a warm-up (in-process: twice that, before and after the "
        "service runs). The service rows are `AlqueryClient.rank` "
        "(uncertainty.entropy, batch 10) against a server in a child process "
        "on loopback; CPU seconds there are the client's plus the server's.",
        "",
        "| path | best (s) | median (s) | rows/s (median) | CPU s (median) |",
        "|---|---|---|---|---|",
        row("onnxruntime in-process (all rows, one run)", local),
        row("alquery's chunked runner in-process (no transport)", chunked),
        row("alquery service, the client's choice: `RankStream`, the model "
            "running while chunks arrive", served),
        row("alquery service, `Rank` (one message)", unary),
        row("alquery service, client's choice, glibc keeping freed memory",
            kept),
        *(
            row(f"alquery service, shared memory: {name}", timing)
            for name, timing in shared.items()
        ),
        "",
        f"Service / in-process throughput, medians: **{ratio:.0%}** (target "
        f"{TARGET_RATIO:.0%}: {'met' if ratio >= TARGET_RATIO else 'not met'}); "
        f"best runs: {local.best / served.best:.0%}. Runner alone "
        f"{local.median / chunked.median:.0%}; `Rank` "
        f"{local.median / unary.median:.0%}; glibc keeping freed memory "
        f"{local.median / kept.median:.0%}.",
        "",
        *shared_lines(shared, local),
        "",
        "Overlap on the shared-memory path, the server's stages in this "
        "process (no transport; read the file into a buffer, run the model), "
        f"timed in turns: one after the other {sequential.median:.3f} s "
        f"(CPU {sequential.cpu_median:.2f}), overlapped as `Rank` does "
        f"{overlapped.median:.3f} s (CPU {overlapped.cpu_median:.2f}), "
        f"medians: overlap saves {1 - overlapped.median / sequential.median:.0%}"
        " of the wall time.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(SECTION, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
