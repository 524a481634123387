"""The ``alquery`` command: ``serve``, ``rank``, ``strategies``, ``describe-model``.

``rank`` prints ``{"indices": [...], "scores": [...], "strategy": "..."}`` on
stdout; server warnings go to stderr. On an error status it prints
``STATUS_CODE: message`` on stderr and exits 1. Usage errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from alquery.client.client import AlqueryClient, selection_modes, strategy_names
from alquery.client.environment import apply_environment, given_by
from alquery.client.errors import AlqueryError
from alquery.client.models import OnnxModel
from alquery.client.progress import ProgressBar
from alquery.client.security import ChannelSecurity, read_token
from alquery.client.streaming import DEFAULT_THRESHOLD_BYTES

# CLI flag -> keyword of AlqueryClient.rank. Each takes a .npy file.
ARRAY_FLAGS = {
    "--probabilities": "probabilities",
    "--logits": "logits",
    "--embeddings": "embeddings",
    "--labeled-embeddings": "labeled_embeddings",
    "--labeled-labels": "labeled_labels",
    "--validation-probabilities": "validation_probabilities",
    "--validation-logits": "validation_logits",
    "--validation-labels": "validation_labels",
    "--validation-embeddings": "validation_embeddings",
}


def _bounded_int(low: int, high: int) -> Any:
    """An argparse type: an integer between ``low`` and ``high`` inclusive."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{value} is out of range; expected {low} to {high}"
            )
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{value} must be a finite number above 0")
    return value


PORT = _bounded_int(0, 65535)
INT64 = _bounded_int(-(2**63), 2**63 - 1)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _add_serve_security_flags(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--health-port", type=_bounded_int(-1, 65535), default=-1,
        help="plaintext port serving only gRPC health, for probes that cannot "
        "use TLS; 0 = any free port, -1 = none (default)",
    )
    serve.add_argument(
        "--log-format", default="text", choices=("text", "json"),
        help="text lines, or one JSON object per line",
    )
    serve.add_argument("--tls-cert", metavar="FILE.pem", help="server certificate")
    serve.add_argument("--tls-key", metavar="FILE.pem", help="its private key")
    serve.add_argument(
        "--tls-client-ca", metavar="FILE.pem",
        help="CA of client certificates; set, every client needs one (mutual TLS)",
    )
    serve.add_argument(
        "--auth-token-file", metavar="FILE",
        help="bearer token every call but health checks must carry "
        "(else $ALQUERY_AUTH_TOKEN)",
    )


def _add_client_security_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--ca", metavar="FILE.pem", help="CA of the server (TLS)")
    command.add_argument("--cert", metavar="FILE.pem", help="client certificate")
    command.add_argument("--key", metavar="FILE.pem", help="client key")
    command.add_argument(
        "--token-file", metavar="FILE",
        help="bearer token to send (else $ALQUERY_AUTH_TOKEN)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alquery", description="Active-learning query strategies over gRPC."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="run the gRPC server",
        epilog="Every flag can also be set by an environment variable: "
        "ALQUERY_ and the flag in capitals, - as _ (--metrics-port: "
        "ALQUERY_METRICS_PORT). A flag on the command line wins.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve.add_argument("--port", type=PORT, default=50051, help="gRPC port; 0 = any")
    serve.add_argument(
        "--metrics-port", type=_bounded_int(-1, 65535), default=9464,
        help="Prometheus port; 0 = any free port, -1 = no metrics endpoint",
    )
    serve.add_argument(
        "--max-message-mib", type=_bounded_int(1, 2047), default=512,
        help="largest request or response, in MiB (1 to 2047; default 512)",
    )
    serve.add_argument(
        "--max-stream-mib", type=_bounded_int(1, 1 << 30), default=4096,
        help="most tensor bytes one RankStream call may declare, in MiB "
        "(default 4096)",
    )
    serve.add_argument(
        "--memory-budget-mib", type=_bounded_int(0, 1 << 30), default=0,
        help="working memory requests are admitted against, in MiB, shared "
        "among --workers; 0 = half the memory of the machine or cgroup",
    )
    serve.add_argument(
        "--threads", type=_bounded_int(1, 256), default=4, help="RPC worker threads"
    )
    serve.add_argument(
        "--grace-seconds", type=_positive_float, default=30.0,
        help="on SIGTERM, how long running requests may take to finish",
    )
    serve.add_argument(
        "--workers", type=_bounded_int(1, 256), default=None,
        help="server processes sharing the port, under a parent that "
        "restarts any that dies (1 too); unset = this process alone. Each "
        "worker's BLAS, OpenMP and onnxruntime pools get max(1, cores // N) "
        "threads (an OMP_NUM_THREADS or OPENBLAS_NUM_THREADS already set, or "
        "--model-threads, wins)",
    )
    serve.add_argument(
        "--model-cache-mib", type=_bounded_int(1, 1 << 20), default=1024,
        help="memory for ONNX models kept by hash, in MiB (default 1024)",
    )
    serve.add_argument(
        "--max-model-mib", type=_bounded_int(1, 1 << 20), default=256,
        help="largest ONNX model accepted, in MiB (default 256)",
    )
    serve.add_argument(
        "--model-threads", type=_bounded_int(0, 256), default=0,
        help="onnxruntime threads per model run; 0 = every core",
    )
    serve.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
        help="level of every alquery.* logger",
    )
    serve.add_argument(
        "--shared-memory-dir", metavar="DIR", default=None,
        help="let clients on this host pass tensors as files in DIR (Rank "
        "only; README: Shared memory); DIR must exist and grant nothing to "
        "others; unset = off",
    )
    _add_serve_security_flags(serve)
    # Every serve flag can also come from ALQUERY_<FLAG> (e.g. ALQUERY_PORT).
    apply_environment(serve, os.environ)

    rank = commands.add_parser("rank", help="rank a pool read from .npy files")
    rank.add_argument("--target", required=True, help="server HOST:PORT")
    rank.add_argument(
        "--strategy", required=True, metavar="FAMILY.METHOD",
        help="one of: " + ", ".join(strategy_names()),
    )
    rank.add_argument("--batch-size", type=INT64, required=True)
    for flag in ARRAY_FLAGS:
        rank.add_argument(flag, metavar="FILE.npy")
    rank.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="strategy parameter, repeatable",
    )
    _add_model_flags(rank)
    rank.add_argument(
        "--score-validation", action="store_true",
        help="also run --model on --validation-embeddings",
    )
    rank.add_argument("--seed", type=_bounded_int(0, 2**64 - 1))
    rank.add_argument(
        "--selection", choices=selection_modes(), default=None,
        help="top_k (the default) or a sampling mode (README: Selection)",
    )
    rank.add_argument(
        "--temperature", type=_positive_float,
        help="temperature of a sampling mode; default 1",
    )
    rank.add_argument("--no-scores", action="store_true", help="omit scores")
    rank.add_argument(
        "--stream-threshold-mib", type=_bounded_int(0, 1 << 30),
        default=DEFAULT_THRESHOLD_BYTES >> 20,
        help="send pools holding more MiB than this in chunks (RankStream)",
    )
    rank.add_argument(
        "--shared-memory-dir", metavar="DIR",
        help="pass large arrays as files in DIR, for a server on this host "
        "started with the same --shared-memory-dir (README: Shared memory)",
    )
    rank.add_argument(
        "--progress", action="store_true",
        help="draw an upload progress bar on stderr even when it is not a "
        "terminal (it is drawn on a terminal anyway)",
    )
    rank.add_argument("--timeout", type=_positive_float, default=300.0, help="seconds")
    _add_client_security_flags(rank)

    strategies = commands.add_parser("strategies", help="list the server's strategies")
    strategies.add_argument("--target", required=True, help="server HOST:PORT")
    strategies.add_argument(
        "--timeout", type=_positive_float, default=30.0, help="seconds"
    )
    _add_client_security_flags(strategies)

    describe = commands.add_parser(
        "describe-model", help="show a model's inputs, outputs and binding"
    )
    describe.add_argument("--target", required=True, help="server HOST:PORT")
    _add_model_flags(describe)
    describe.add_argument(
        "--timeout", type=_positive_float, default=60.0, help="seconds"
    )
    _add_client_security_flags(describe)
    return parser


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", action="append", default=[], metavar="FILE.onnx",
        help="an ONNX model run on the embeddings; repeat for a committee",
    )
    parser.add_argument("--model-input", default="", help="the input to feed")
    parser.add_argument(
        "--model-output", default="", help="the probabilities or logits output"
    )
    parser.add_argument(
        "--output-kind", choices=("probabilities", "logits"),
        help="what --model-output holds; default detected",
    )
    parser.add_argument(
        "--embeddings-output", default="", help="an output to use as embeddings"
    )
    parser.add_argument(
        "--mc-passes", type=_bounded_int(1, 256),
        help="Monte-Carlo dropout passes of each model",
    )


def _models(args: argparse.Namespace) -> list[OnnxModel]:
    return [
        OnnxModel(
            path,
            input_name=args.model_input,
            output_name=args.model_output,
            output_kind=args.output_kind,
            embeddings_output=args.embeddings_output,
            mc_passes=args.mc_passes,
        )
        for path in args.model
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args, parser)
    try:
        if args.command == "rank":
            output = _rank(args, parser)
        elif args.command == "describe-model":
            if len(args.model) != 1:
                parser.error("describe-model: give exactly one --model")
            with _client(args, parser) as client:
                output = client.describe_model(_models(args)[0])
        else:
            with _client(args, parser) as client:
                output = client.strategies()
    except AlqueryError as error:
        sys.stderr.write(f"{error.code.name}: {error.details}\n")
        return 1
    sys.stdout.write(json.dumps(output) + "\n")
    return 0


def _client(args: argparse.Namespace, parser: argparse.ArgumentParser) -> AlqueryClient:
    shared_memory_dir = getattr(args, "shared_memory_dir", None)
    if shared_memory_dir is not None and not os.path.isdir(shared_memory_dir):
        problem = (
            "not a directory" if os.path.exists(shared_memory_dir)
            else "does not exist"
        )
        parser.error(f"--shared-memory-dir {shared_memory_dir}: {problem}")
    try:
        security = ChannelSecurity(
            ca_file=args.ca, cert_file=args.cert, key_file=args.key,
            token=read_token(args.token_file),
        )
        threshold = getattr(
            args, "stream_threshold_mib", DEFAULT_THRESHOLD_BYTES >> 20
        ) << 20
        return AlqueryClient(
            args.target,
            timeout=args.timeout,
            security=security,
            stream_threshold_bytes=threshold,
            shared_memory_dir=shared_memory_dir,
        )
    except (OSError, ValueError) as error:
        parser.error(f"--ca/--cert/--key/--token-file: {error}")


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from alquery.server import app, logs, security

    logs.configure(args.log_level, args.log_format)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key: give both or neither")
    if args.tls_client_ca is not None and args.tls_cert is None:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    tls = None
    if args.tls_cert is not None:
        tls = security.TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)
    try:
        token = security.load_token(args.auth_token_file)
    except security.SecurityConfigError as error:
        parser.exit(1, f"alquery serve: {error}\n")
    config = app.ServerConfig(
        host=args.host,
        port=args.port,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        max_message_mib=args.max_message_mib,
        max_stream_mib=args.max_stream_mib,
        threads=args.threads,
        grace_seconds=args.grace_seconds,
        tls=tls,
        health_port=None if args.health_port < 0 else args.health_port,
        auth_token=token,
        model_cache_mib=args.model_cache_mib,
        max_model_mib=args.max_model_mib,
        model_threads=args.model_threads,
        memory_budget_mib=_worker_budget_mib(args.memory_budget_mib, args.workers),
        shared_memory_dir=_shared_memory_dir(args, parser),
    )
    try:
        if args.workers is not None:
            from alquery.server import workers

            return workers.serve_workers(
                config, args.workers, args.log_level, args.log_format
            )
        return app.serve(config)
    except (OSError, security.SecurityConfigError) as error:
        parser.exit(1, f"alquery serve: {error}\n")


def _shared_memory_dir(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> object:
    # The directory, opened and checked once here: a bad one is refused
    # naming what set it (flag or variable), and --workers workers inherit
    # this descriptor rather than the path.
    from alquery.server import shared_memory

    if args.shared_memory_dir is None:
        return None
    try:
        return shared_memory.SharedMemoryDir(args.shared_memory_dir)
    except shared_memory.SharedMemoryConfigError as error:
        source = given_by(args, "--shared-memory-dir")
        parser.exit(1, f"alquery serve: {error.named(source)}\n")


def _worker_budget_mib(budget_mib: int, workers: int | None) -> int:
    """Each server process's share of ``--memory-budget-mib`` (0: default);
    ``workers`` None is one unsupervised process."""
    from alquery.server import memory

    workers = workers or 1
    if budget_mib == 0:
        return memory.default_budget_mib(workers)
    return max(1, budget_mib // workers)


def _rank(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for flag, keyword in ARRAY_FLAGS.items():
        path = getattr(args, keyword)
        if path is not None:
            inputs[keyword] = _load(path, flag, parser)
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--param {item!r}: expected KEY=VALUE")
        params[key] = value

    with _client(args, parser) as client:
        result = client.rank(
            args.strategy,
            args.batch_size,
            params=params,
            seed=args.seed,
            return_scores=not args.no_scores,
            selection=args.selection,
            temperature=args.temperature,
            model=_models(args) or None,
            score_validation=args.score_validation,
            progress=_progress_bar(args),
            **inputs,
        )
    for warning in result.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    return {
        "indices": result.indices.tolist(),
        "scores": [] if result.scores is None else result.scores.tolist(),
        "strategy": result.strategy,
    }


def _progress_bar(args: argparse.Namespace) -> ProgressBar | None:
    if args.progress or sys.stderr.isatty():
        return ProgressBar(sys.stderr)
    return None


def _load(path: str, flag: str, parser: argparse.ArgumentParser) -> np.ndarray:
    where = f"{flag} {path}: cannot read a .npy array"
    try:
        loaded = np.load(path, allow_pickle=False)
    except EOFError:
        parser.error(f"{where} (empty file)")
    except (OSError, ValueError) as error:
        parser.error(f"{where} ({error})")
    if not isinstance(loaded, np.ndarray):
        # np.load opens an .npz archive too; as an array it would be the
        # names of its members.
        names = ", ".join(loaded.files)
        loaded.close()
        parser.error(
            f"{where} (an .npz archive of {names}; save one array with numpy.save)"
        )
    return loaded


if __name__ == "__main__":
    sys.exit(main())
