"""A native crash (a real SIGSEGV sent to a real server) is never silent."""

import os
import re
import signal
import threading
import time

import grpc
import numpy as np

from alquery.client.local import LocalServer
from alquery.v1 import query_pb2, query_pb2_grpc
from conftest import tensor

U = query_pb2.UncertaintyStrategy
WORKER_LINE = re.compile(r"pid=(\d+) worker serving shared_port=\d+")
FATAL = "Fatal Python error: Segmentation fault"


def rank_once(target):
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(probabilities=tensor([[0.6, 0.4], [0.9, 0.1]])),
        uncertainty=U(method=U.METHOD_MARGIN),
        batch_size=1,
    )
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        return list(stub.Rank(request, timeout=30).ranked_indices)


def wait_for(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


def slow_request():
    """k-center over 100,000 x 64: seconds of work, minutes when loaded."""
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(100_000, 64)).astype(np.float32)
    return query_pb2.RankRequest(
        pool=query_pb2.Pool(embeddings=tensor(embeddings, query_pb2.D_TYPE_FLOAT32)),
        diversity=query_pb2.DiversityStrategy(
            method=query_pb2.DiversityStrategy.METHOD_KCENTER
        ),
        batch_size=5_000,
    )


def test_a_segfault_of_a_single_process_exits_non_zero_with_its_stacks():
    server = LocalServer(["--log-level", "DEBUG"]).start()
    outcome = {}

    def call():
        with grpc.insecure_channel(server.target) as channel:
            try:
                query_pb2_grpc.QueryServiceStub(channel).Rank(
                    slow_request(), timeout=120
                )
            except grpc.RpcError as error:
                outcome["code"] = error.code()

    try:
        assert rank_once(server.target) == [0]
        thread = threading.Thread(target=call)
        thread.start()
        wait_for(lambda: "".join(server.log).count("request started") >= 2)
        os.kill(server.process.pid, signal.SIGSEGV)
        assert server.process.wait(timeout=60) == -signal.SIGSEGV
        thread.join(60)
    finally:
        server.stop()
    # The call that was running when the process died fails, visibly.
    assert outcome["code"] == grpc.StatusCode.UNAVAILABLE
    log = "".join(server.log)
    assert FATAL in log
    assert "most recent call first" in log


def test_a_segfaulted_worker_is_logged_and_replaced_with_one_worker():
    server = LocalServer(["--workers", "1", "--grace-seconds", "5"]).start()
    try:
        assert rank_once(server.target) == [0]
        pids = lambda: WORKER_LINE.findall("".join(server.log))  # noqa: E731
        wait_for(lambda: len(pids()) == 1)
        victim = int(pids()[0])
        os.kill(victim, signal.SIGSEGV)
        wait_for(lambda: any(
            "ERROR" in line
            and f"worker pid={victim} exited unexpectedly exit_code=-11" in line
            for line in server.log
        ))
        wait_for(lambda: len(pids()) == 2)
        assert rank_once(server.target) == [0]
        assert server.stop() == 0
    finally:
        server.stop()
    assert FATAL in "".join(server.log)
