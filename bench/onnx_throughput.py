"""ONNX throughput: rows per second through the service against onnxruntime in-process.

A 768 -> 256 (relu) -> 10 network, built here with onnx.helper, scores
100,000 x 768 float32 embeddings. The service path is a full
``AlqueryClient.rank`` call (uncertainty.entropy, batch size 10) to a
server started here in a child process on a loopback port: encoding,
transport, decoding, the model in chunks, the checks and the strategy.
The baseline runs the same model with onnxruntime in this process on all
rows at once, with the same thread count. Each is timed --repeats times
after one warm-up; the best run counts.

Two more rows split the gap: alquery's chunked runner called in this
process (no transport), and the service again with glibc told to keep
freed memory (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_ large) in both
processes, which shows what fresh-page faults cost on this machine: each
request allocates several pool-sized buffers.

Writes a section of bench/RESULTS.md between onnx_throughput markers.

    .venv/bin/python bench/onnx_throughput.py
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from alquery.client import AlqueryClient, OnnxModel
from alquery.client.local import LocalServer
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


def best_seconds(work, repeats: int) -> float:
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def in_process(
    model: bytes, embeddings: np.ndarray, threads: int, repeats: int
) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return best_seconds(lambda: session.run(None, {"x": embeddings}), repeats)


def runner_in_process(
    model: bytes, embeddings: np.ndarray, threads: int, repeats: int
) -> float:
    from alquery.server.models import binding, runner
    from alquery.server.models.cache import ModelCache
    from alquery.v1 import query_pb2

    loaded = ModelCache(1 << 30, 1 << 30, threads).add(model, "model")
    bound = binding.resolve(
        query_pb2.Model(output_kind=query_pb2.OUTPUT_KIND_LOGITS),
        loaded.inputs, loaded.outputs, "model",
    )
    control = runner.RunControl(ort.RunOptions(), lambda: False, threads)
    return best_seconds(
        lambda: runner.run(
            loaded, bound, embeddings, field="model", features_field="pool",
            seed=np.random.SeedSequence(0), control=control,
        ),
        repeats,
    )


def through_service(
    model: bytes, embeddings: np.ndarray, threads: int, repeats: int
) -> float:
    flags = ["--threads", "2", "--model-threads", str(threads)]
    with LocalServer(flags) as server, AlqueryClient(
        server.target, timeout=600
    ) as client:
        bound = OnnxModel(model, output_kind="logits")
        return best_seconds(
            lambda: client.rank(
                "uncertainty.entropy", 10, model=bound, embeddings=embeddings
            ),
            repeats,
        )


KEEP_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 36)}


def _with_env(env, measure, model, embeddings, args) -> float:
    """Run ``measure`` in a child Python with ``env`` set (glibc reads it at
    start), so this process keeps its own allocator settings."""
    import json
    import subprocess

    code = (
        "import json, sys, numpy as np; sys.path.insert(0, sys.argv[1]);"
        "import onnx_throughput as b;"
        "x = np.random.default_rng(1).normal(size=(int(sys.argv[2]), 768))"
        ".astype(np.float32);"
        "print(json.dumps(b.through_service(b.network(), x, int(sys.argv[3]),"
        " int(sys.argv[4]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(HERE), str(args.rows),
         str(args.threads), str(args.repeats)],
        env={**os.environ, **env}, check=True, capture_output=True, text=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)

    model = network()
    embeddings = np.random.default_rng(1).normal(size=(args.rows, 768))
    embeddings = embeddings.astype(np.float32)
    local = in_process(model, embeddings, args.threads, args.repeats)
    chunked = runner_in_process(model, embeddings, args.threads, args.repeats)
    served = through_service(model, embeddings, args.threads, args.repeats)
    kept = _with_env(KEEP_MEMORY, through_service, model, embeddings, args)
    ratio = local / served
    lines = [
        "## ONNX throughput",
        "",
        f"`.venv/bin/python bench/onnx_throughput.py --rows {args.rows} "
        f"--repeats {args.repeats} --threads {args.threads}` on "
        f"{os.cpu_count()} cores: a 768 -> 256 -> 10 network on "
        f"{args.rows:,} x 768 float32 embeddings, best of {args.repeats} "
        "after a warm-up.",
        "",
        "| path | seconds | rows/s |",
        "|---|---|---|",
        f"| onnxruntime in-process (all rows, one run) | {local:.3f} | "
        f"{args.rows / local:,.0f} |",
        f"| alquery `Rank` with the model (uncertainty.entropy, batch 10) | "
        f"{served:.3f} | {args.rows / served:,.0f} |",
        f"| alquery's chunked runner in-process (no transport) | {chunked:.3f} | "
        f"{args.rows / chunked:,.0f} |",
        f"| alquery `Rank`, glibc keeping freed memory | {kept:.3f} | "
        f"{args.rows / kept:,.0f} |",
        "",
        f"Service / in-process throughput: **{ratio:.0%}** (target "
        f"{TARGET_RATIO:.0%}: {'met' if ratio >= TARGET_RATIO else 'not met'}); "
        f"runner alone {local / chunked:.0%}; service with glibc keeping freed "
        f"memory {local / kept:.0%}.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(SECTION, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
