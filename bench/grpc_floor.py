"""A bare gRPC server for ``Rank``: the floor under alquery's per-call cost.

Run as a script, it serves ``alquery.v1.QueryService/Rank`` on a free
loopback port with what ``alquery serve`` gives gRPC (a pool of 4 handler
threads, the same message-size limits) and nothing of alquery's: no
interceptors, checks, strategy, metrics or log line. Each call parses the
request (so the 80 KB decode is counted) and returns one fixed 10-sample
answer. It prints ``serving port=N`` and stops when its stdin closes.
``FloorServer`` starts it as a child process, as ``LocalServer`` starts
``alquery serve``.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent import futures

import grpc

from alquery.v1 import query_pb2

THREADS = 4
MAX_MESSAGE_BYTES = 512 << 20


def _answer(raw: bytes, context: grpc.ServicerContext) -> query_pb2.RankResponse:
    query_pb2.RankRequest.FromString(raw)
    return _ANSWER


_ANSWER = query_pb2.RankResponse(
    ranked_indices=range(10), scores=[0.5] * 10, strategy="uncertainty.margin"
)


def serve() -> None:
    """Serve until stdin closes."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=THREADS),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    handler = grpc.unary_unary_rpc_method_handler(
        _answer, response_serializer=query_pb2.RankResponse.SerializeToString
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(
            "alquery.v1.QueryService", {"Rank": handler}
        ),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"serving port={port}", flush=True)
    sys.stdin.read()
    server.stop(0).wait()


class FloorServer:
    """``serve`` in a child process, for the length of a ``with`` block."""

    def __enter__(self) -> FloorServer:
        self.process = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith("serving port="):
            self.process.kill()
            raise RuntimeError(f"the bare gRPC server did not start: {line!r}")
        self.target = f"127.0.0.1:{line.split('=')[1].strip()}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


if __name__ == "__main__":
    serve()
