"""``alquery serve --workers 2``: real worker processes behind one port."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from alquery.client.local import LocalServer
from alquery.server.strategies import kcenter_native
from alquery.v1 import query_pb2, query_pb2_grpc
from conftest import tensor

U = query_pb2.UncertaintyStrategy
WORKER_LINE = re.compile(r"pid=(\d+) worker serving shared_port=(\d+)")
REQUEST_PID = re.compile(r"pid=(\d+) request started method=Rank")


def margin_request():
    return query_pb2.RankRequest(
        pool=query_pb2.Pool(probabilities=tensor([[0.6, 0.4], [0.9, 0.1]])),
        uncertainty=U(method=U.METHOD_MARGIN),
        batch_size=1,
    )


def rank_on_new_channel(target, calls):
    """Rank ``calls`` times on a channel of its own (a connection of its own)."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        for _ in range(calls):
            assert stub.Rank(margin_request(), timeout=30).ranked_indices == [0]


def wait_until(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


def worker_pids(server):
    return [int(m.group(1)) for line in server.log if (m := WORKER_LINE.search(line))]


def handled_ok(server):
    port = re.search(r"serving port=\d+ metrics_port=(\d+)", "".join(server.log))
    url = f"http://127.0.0.1:{port.group(1)}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "grpc_server_handled_total"
                and sample.labels.get("grpc_method") == "Rank"
                and sample.labels.get("grpc_code") == "OK"
            ):
                total += sample.value
    return total


@pytest.fixture
def workers():
    server = LocalServer(
        ["--workers", "2", "--metrics-port", "0", "--log-level", "DEBUG",
         "--grace-seconds", "5"]
    ).start()
    yield server
    server.stop()


def test_two_workers_share_the_port_and_the_parent_logs_serving_once(workers):
    wait_until(lambda: len(worker_pids(workers)) == 2)
    log = "".join(workers.log)
    assert len(re.findall(r"serving port=\d+", log)) == 1
    assert "workers=2" in log
    # What k-center runs in the workers: compiled loops where they loaded.
    loops = "compiled" if kcenter_native.LIBRARY is not None else "numpy"
    assert f"kcenter_loops={loops}" in log
    ports = {int(m.group(2)) for m in WORKER_LINE.finditer(log)}
    assert ports == {workers.port}
    assert workers.process.pid not in worker_pids(workers)


def test_a_worker_line_names_its_pid_once(workers):
    wait_until(lambda: len(worker_pids(workers)) == 2)
    for line in workers.log:
        assert line.count("pid=") <= 1, line

THREADS_LINE = re.compile(
    r"worker threads blas=(\d+) openmp=(\d+) model_threads=(\d+)"
)


def worker_threads(server):
    return [m.groups() for line in server.log if (m := THREADS_LINE.search(line))]


def test_each_worker_holds_its_share_of_the_cores_in_every_native_pool(workers):
    wait_until(lambda: len(worker_threads(workers)) == 2)
    share = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert worker_threads(workers) == [(share, share, share)] * 2


def test_thread_variables_the_operator_set_are_kept(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    share = str(max(1, len(os.sched_getaffinity(0)) // 2))
    with LocalServer(
        ["--workers", "2", "--model-threads", "5", "--grace-seconds", "5"]
    ) as server:
        wait_until(lambda: len(worker_threads(server)) == 2)
        assert worker_threads(server) == [("3", share, "5")] * 2
        rank_on_new_channel(server.target, 1)


def test_concurrent_clients_are_served_by_both_workers_and_counted_once(workers):
    clients, calls = 16, 10
    with ThreadPoolExecutor(clients) as pool:
        outcomes = [
            pool.submit(rank_on_new_channel, workers.target, calls)
            for _ in range(clients)
        ]
        for outcome in outcomes:
            outcome.result()
    pids = {int(m.group(1)) for m in REQUEST_PID.finditer("".join(workers.log))}
    assert pids == set(worker_pids(workers))
    assert handled_ok(workers) == clients * calls


def test_a_killed_worker_is_replaced_and_the_others_keep_serving(workers):
    wait_until(lambda: len(worker_pids(workers)) == 2)
    victim = worker_pids(workers)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: any(
        f"worker pid={victim} exited unexpectedly exit_code=-9" in line
        and "ERROR" in line
        for line in workers.log
    ))
    rank_on_new_channel(workers.target, 5)
    wait_until(lambda: len(worker_pids(workers)) == 3)
    assert victim not in worker_pids(workers)[2:]
    for _ in range(8):
        rank_on_new_channel(workers.target, 1)
    # Counters of the dead worker stay in the sum: nothing is lost.
    assert handled_ok(workers) == 13


def test_replaced_workers_read_the_directory_the_server_started_with(tmp_path):
    # The parent hands its open directory down: a worker started after the
    # path was given to another directory still reads the first one.
    started = tmp_path / "shm"
    started.mkdir(mode=0o700)
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.7, 0.3]])
    (started / "p.bin").write_bytes(probabilities.tobytes())
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(probabilities=query_pb2.Tensor(
            dtype=query_pb2.D_TYPE_FLOAT64, shape=probabilities.shape,
            shared_memory=query_pb2.SharedMemoryRef(name="p.bin"),
        )),
        uncertainty=U(method=U.METHOD_MARGIN),
        batch_size=2,
    )
    server = LocalServer(
        ["--workers", "2", "--metrics-port", "-1", "--grace-seconds", "1",
         "--shared-memory-dir", str(started)]
    ).start()
    try:
        wait_until(lambda: len(worker_pids(server)) == 2)
        started.rename(tmp_path / "moved")
        (tmp_path / "shm").mkdir(mode=0o700)
        for victim in worker_pids(server):
            os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(worker_pids(server)) == 4)
        for _ in range(6):
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(server.target, options=options) as channel:
                stub = query_pb2_grpc.QueryServiceStub(channel)
                assert list(stub.Rank(request, timeout=30).ranked_indices) == [0, 2]
    finally:
        server.stop()


def test_sigterm_drains_every_worker_and_the_parent_exits_0(workers):
    rank_on_new_channel(workers.target, 3)
    pids = worker_pids(workers)
    assert workers.stop() == 0
    log = "".join(workers.log)
    for pid in pids:
        assert f"pid={pid} stopped" in log
    assert "stopped workers=2 status=0" in log
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_port_in_use_is_refused_before_any_worker_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "alquery.client.cli", "serve", "--workers", "2",
             "--port", str(port), "--metrics-port", "-1"],
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "worker serving" not in result.stderr


def test_a_port_another_alquery_server_listens_on_is_not_shared(server):
    # The session server is one process on its own port; workers must not
    # join it through SO_REUSEPORT.
    result = subprocess.run(
        [sys.executable, "-m", "alquery.client.cli", "serve", "--workers", "2",
         "--port", str(server.port), "--metrics-port", "-1"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{server.port}" in result.stderr
    assert "worker serving" not in result.stderr


def test_a_taken_metrics_port_is_refused_with_nothing_left_running():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "alquery.client.cli", "serve", "--workers", "2",
             "--port", "0", "--metrics-port", str(port)],
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert f"--metrics-port {port}: cannot listen" in result.stderr
    assert "worker serving" not in result.stderr
