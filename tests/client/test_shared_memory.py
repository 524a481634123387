"""The client's shared-memory files: placed, referenced in place, removed."""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys

import grpc
import numpy as np
import pytest

from alquery.client import AlqueryClient, AlqueryError, cli
from alquery.client.client import build_request
from alquery.client.shared_memory import SharedMemory, sealing_supported

RNG = np.random.default_rng(11)
PROBABILITIES = RNG.dirichlet(np.ones(3), size=20_000)
LABELS = RNG.integers(0, 3, size=20_000)


@pytest.fixture(params=[False, True], ids=["files", "sealed"])
def sealed(request):
    """Whether the client hands over sealed memory files or files."""
    return request.param


def test_files_are_removed_after_a_successful_call(
    shm_target, shm_dir, client, sealed
):
    with AlqueryClient(
        shm_target, shared_memory_dir=shm_dir, shared_memory_sealed=sealed
    ) as shared:
        got = shared.rank("uncertainty.margin", 5, probabilities=PROBABILITIES)
    expected = client.rank("uncertainty.margin", 5, probabilities=PROBABILITIES)
    np.testing.assert_array_equal(got.indices, expected.indices)
    assert os.listdir(shm_dir) == []


@pytest.mark.parametrize("server_side", ["refusing request", "disabled server"])
def test_files_are_removed_after_a_failed_call(
    shm_target, target, shm_dir, server_side, sealed
):
    # The disabled server's refusal shows the references were sent.
    if server_side == "disabled server":
        where, batch_size, code = target, 5, grpc.StatusCode.FAILED_PRECONDITION
    else:
        where, batch_size, code = shm_target, 0, grpc.StatusCode.INVALID_ARGUMENT
    with AlqueryClient(
        where, shared_memory_dir=shm_dir, shared_memory_sealed=sealed
    ) as shared:
        with pytest.raises(AlqueryError) as caught:
            shared.rank(
                "uncertainty.margin", batch_size, probabilities=PROBABILITIES
            )
    assert caught.value.code == code
    assert os.listdir(shm_dir) == []


def test_large_tensors_go_to_files_and_small_ones_stay_inline(shm_dir):
    shared = SharedMemory(shm_dir, threshold_bytes=1000, sealed=False)
    deferred = {}
    request = build_request(
        "credibility.validation_knn", 3, probabilities=PROBABILITIES,
        validation_probabilities=PROBABILITIES[:10], deferred=deferred,
    )
    with shared.place(request, deferred) as placed:
        assert placed
        ref = request.pool.probabilities.shared_memory
        assert ref.offset == 0
        on_disk = np.fromfile(shm_dir / ref.name, dtype="<f8")
        np.testing.assert_array_equal(on_disk, PROBABILITIES.ravel())
        assert os.stat(shm_dir / ref.name).st_mode & 0o777 == 0o600
        assert list(deferred) == ["validation.probabilities"]
        assert not request.validation.probabilities.HasField("shared_memory")
    assert os.listdir(shm_dir) == []


def test_shared_array_slices_are_referenced_without_a_copy(shm_dir):
    shared = SharedMemory(shm_dir, sealed=False)
    with shared.shared_array((100, 4), np.float32) as pool:
        (name,) = os.listdir(shm_dir)
        deferred = {}
        request = build_request(
            "diversity.kcenter", 3, embeddings=pool[10:], deferred=deferred
        )
        with shared.place(request, deferred):
            ref = request.pool.embeddings.shared_memory
            assert (ref.name, ref.offset) == (name, 10 * 4 * 4)
            assert os.listdir(shm_dir) == [name]
    assert os.listdir(shm_dir) == []


def test_shared_array_refuses_dtypes_it_cannot_send(shm_dir):
    with pytest.raises(ValueError, match="float16 cannot be sent"):
        with SharedMemory(shm_dir).shared_array(4, np.float16):
            pass
    with AlqueryClient("127.0.0.1:1") as client:
        with pytest.raises(ValueError, match="no shared_memory_dir"):
            client.shared_array(4)


def test_shared_array_takes_numpy_sizes_and_refuses_impossible_ones(shm_dir):
    with SharedMemory(shm_dir).shared_array(np.int64(5)) as array:
        assert array.shape == (5,)
    with SharedMemory(shm_dir).shared_array((np.int32(2), 3)) as array:
        assert array.shape == (2, 3)
    with pytest.raises(ValueError, match="a file holds at most"):
        with SharedMemory(shm_dir).shared_array((2**40, 2**30)):
            pass
    assert list(shm_dir.iterdir()) == []


def test_missing_directory_is_refused(tmp_path):
    with pytest.raises(ValueError, match="shared_memory_dir"):
        SharedMemory(tmp_path / "missing")


def test_cli_rank_through_shared_memory(shm_target, shm_dir, tmp_path, capsys):
    path = tmp_path / "p.npy"
    np.save(path, PROBABILITIES)
    status = cli.main([
        "rank", "--target", shm_target, "--strategy", "uncertainty.entropy",
        "--batch-size", "4", "--probabilities", str(path),
        "--shared-memory-dir", str(shm_dir),
    ])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert len(json.loads(out)["indices"]) == 4
    assert os.listdir(shm_dir) == []


def test_cli_rank_names_a_missing_or_wrong_directory(shm_target, tmp_path, capsys):
    path = tmp_path / "p.npy"
    np.save(path, PROBABILITIES)
    for given, problem in [
        (tmp_path / "missing", "does not exist"),
        (path, "not a directory"),
    ]:
        with pytest.raises(SystemExit) as exited:
            cli.main([
                "rank", "--target", shm_target, "--strategy",
                "uncertainty.entropy", "--batch-size", "4", "--probabilities",
                str(path), "--shared-memory-dir", str(given),
            ])
        assert exited.value.code == 2
        assert f"--shared-memory-dir {given}: {problem}" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [[], ["--workers", "1"]])
def test_cli_serve_refuses_a_directory_others_can_read(tmp_path, workers):
    path = tmp_path / "open"
    path.mkdir()
    path.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-m", "alquery.client.cli", "serve", "--port", "0",
         "--metrics-port", "-1", "--shared-memory-dir", str(path), *workers],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert f"alquery serve: --shared-memory-dir {path}: has mode 0755" in (
        result.stderr
    )


def test_cli_serve_names_the_variable_that_set_a_refused_directory(tmp_path):
    path = tmp_path / "open"
    path.mkdir()
    path.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-m", "alquery.client.cli", "serve", "--port", "0",
         "--metrics-port", "-1"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "ALQUERY_SHARED_MEMORY_DIR": str(path)},
    )
    assert result.returncode == 1
    assert f"alquery serve: ALQUERY_SHARED_MEMORY_DIR={path}: has mode 0755" in (
        result.stderr
    )
    assert "--shared-memory-dir" not in result.stderr


def test_calls_from_several_threads_share_one_client(shm_target, shm_dir, client):
    expected = client.rank("uncertainty.entropy", 5, probabilities=PROBABILITIES)
    with AlqueryClient(shm_target, shared_memory_dir=shm_dir) as shared:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(
                lambda _: shared.rank(
                    "uncertainty.entropy", 5, probabilities=PROBABILITIES
                ),
                range(8),
            ))
    for result in results:
        np.testing.assert_array_equal(result.indices, expected.indices)
    assert os.listdir(shm_dir) == []


def memory_files_open() -> int:
    """How many memory files this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:alquery")
    return count


def take_descriptor(shm_dir, name) -> int:
    """Connect to the client's socket ``name`` as the server does."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(10)
        connection.connect(str(shm_dir / name))
        _, fds, _, _ = socket.recv_fds(connection, 1, 2)
    (fd,) = fds
    return fd


@pytest.mark.skipif(not sealing_supported(), reason="memory files need Linux")
def test_sealed_tensors_are_frozen_memory_files_behind_a_socket(shm_dir):
    shared = SharedMemory(shm_dir, threshold_bytes=1000, sealed=True)
    before = memory_files_open()
    deferred = {}
    request = build_request(
        "uncertainty.margin", 3, probabilities=PROBABILITIES, deferred=deferred
    )
    with shared.place(request, deferred) as placed:
        assert placed
        ref = request.pool.probabilities.shared_memory
        assert (ref.name, ref.offset) == ("", 0)
        assert os.listdir(shm_dir) == [ref.socket]
        assert os.stat(shm_dir / ref.socket).st_mode & 0o777 == 0o600
        # Each connection gets the descriptor (one per attempt of a call).
        for _ in range(2):
            fd = take_descriptor(shm_dir, ref.socket)
            try:
                seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
                assert seals & fcntl.F_SEAL_SHRINK and seals & fcntl.F_SEAL_WRITE
                received = np.frombuffer(os.pread(fd, PROBABILITIES.nbytes, 0))
                np.testing.assert_array_equal(received, PROBABILITIES.ravel())
            finally:
                os.close(fd)
    assert os.listdir(shm_dir) == []
    assert memory_files_open() == before


@pytest.mark.skipif(not sealing_supported(), reason="memory files need Linux")
def test_a_sealed_shared_array_is_handed_over_where_it_lies(tmp_path):
    # A group directory: the socket must let a server of the group connect.
    tmp_path.chmod(0o770)
    shared = SharedMemory(tmp_path, sealed=True)
    with shared.shared_array((4096, 4), np.float32) as pool:
        assert os.listdir(tmp_path) == []
        deferred = {}
        request = build_request(
            "diversity.kcenter", 3, embeddings=pool[10:], deferred=deferred
        )
        with shared.place(request, deferred):
            ref = request.pool.embeddings.shared_memory
            assert ref.offset == 10 * 4 * 4
            assert os.stat(tmp_path / ref.socket).st_mode & 0o777 == 0o660
            fd = take_descriptor(tmp_path, ref.socket)
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            # Its size is fixed; its bytes stay the client's to write...
            assert seals & fcntl.F_SEAL_SHRINK and not seals & fcntl.F_SEAL_WRITE
            pool[10, 0] = 42.0
            seen = np.frombuffer(os.pread(fd, 4, ref.offset), np.float32)
            assert seen[0] == 42.0
            # ...but not whoever connects: the descriptor is read-only.
            assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
            with pytest.raises(OSError):
                os.pwrite(fd, b"x", 0)
            # Rows never written hold zeros, on pages of their own (no hole).
            assert os.lseek(fd, ref.offset, os.SEEK_HOLE) == 4096 * 4 * 4
        finally:
            os.close(fd)
    assert os.listdir(tmp_path) == []


def test_sealed_refused_where_the_platform_cannot(shm_dir):
    if sealing_supported():
        assert SharedMemory(shm_dir).sealed
    else:
        with pytest.raises(ValueError, match="sealed"):
            SharedMemory(shm_dir, sealed=True)
