"""bench/baseline.py, bench/grpc_floor.py and the CPU reading of bench/workers.py."""

import os
import pathlib
import subprocess
import sys

import grpc

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import baseline  # noqa: E402
from grpc_floor import FloorServer  # noqa: E402
from workers import cpu_seconds, margin_request  # noqa: E402

from alquery.v1 import query_pb2_grpc  # noqa: E402


def _committed(path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(baseline.ROOT), "show", f"HEAD:{path}"],
        check=True, capture_output=True,
    ).stdout


def test_export_puts_each_package_where_pyproject_maps_it(tmp_path):
    baseline.export("HEAD", tmp_path)
    package = tmp_path / "alquery"
    assert (package / "server" / "edge.py").read_bytes() == _committed(
        "server/edge.py"
    )
    assert (package / "server" / "strategies" / "uncertainty.py").is_file()
    assert (package / "v1" / "query_pb2.py").read_bytes() == _committed(
        "client/v1/query_pb2.py"
    )
    assert (package / "client" / "cli.py").is_file()


def test_servers_started_in_the_block_import_the_exported_code(tmp_path):
    baseline.export("HEAD", tmp_path)
    before = os.environ.get("PYTHONPATH")
    script = "import alquery.server.edge as e, alquery.v1 as v; print(e.__file__)"
    with baseline.server_code(tmp_path):
        found = subprocess.run(
            [sys.executable, "-c", script], check=True, capture_output=True,
            text=True,
        ).stdout
    assert found.strip() == str(tmp_path / "alquery" / "server" / "edge.py")
    assert os.environ.get("PYTHONPATH") == before


def test_cpu_seconds_counts_the_process_and_its_children():
    # The child spends CPU, says so, and waits for its stdin to close.
    script = (
        "import sys, time\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "print('spent', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "spent"
        spent = cpu_seconds(child.pid)
        assert spent >= 0.25
        assert cpu_seconds(os.getpid()) >= spent
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def test_the_bare_grpc_server_parses_the_request_and_answers_fixed():
    with FloorServer() as floor:
        with grpc.insecure_channel(floor.target) as channel:
            response = query_pb2_grpc.QueryServiceStub(channel).Rank(
                margin_request(), timeout=30
            )
    assert list(response.ranked_indices) == list(range(10))
    assert response.strategy == "uncertainty.margin"
