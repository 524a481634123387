"""Tensors read from a shared-memory directory: same answers, clear refusals."""

from __future__ import annotations

import os
import socket

import grpc
import numpy as np
import pytest
from conftest import assert_refused_then_served as assert_refused
from conftest import tensor
from onnx_models import mlp

from alquery.client import AlqueryClient, OnnxModel
from alquery.server import app
from alquery.server.errors import InvalidRequestError
from alquery.server.shared_memory import (
    READ_BYTES,
    SharedMemoryConfigError,
    SharedMemoryDir,
    SharedMemoryReads,
)
from alquery.v1 import query_pb2, query_pb2_grpc

RNG = np.random.default_rng(7)
PROBABILITIES = RNG.dirichlet(np.ones(4), size=300)
EMBEDDINGS = RNG.normal(size=(300, 8)).astype(np.float32)
LABELED = RNG.normal(size=(5, 8)).astype(np.float32)
VALIDATION = {
    "validation_probabilities": RNG.dirichlet(np.ones(4), size=40),
    "validation_labels": RNG.integers(0, 4, size=40),
    "validation_embeddings": RNG.normal(size=(40, 8)).astype(np.float32),
}


@pytest.fixture(params=[False, True], ids=["files", "sealed"])
def clients(request, shm_server, shm_dir):
    """A client sending bytes and one sending every tensor through shared
    memory: as files, or as sealed memory files."""
    target = f"127.0.0.1:{shm_server.port}"
    with AlqueryClient(target, timeout=60) as plain, AlqueryClient(
        target, timeout=60, shared_memory_dir=shm_dir,
        shared_memory_sealed=request.param,
    ) as shared:
        shared._shared_memory.threshold_bytes = 0
        yield plain, shared


CASES = {
    "uncertainty": ("uncertainty.entropy", {"probabilities": PROBABILITIES}),
    "diversity": (
        "diversity.kcenter",
        {"embeddings": EMBEDDINGS, "labeled_embeddings": LABELED},
    ),
    "credibility": (
        "credibility.validation_knn",
        {"embeddings": EMBEDDINGS, "probabilities": PROBABILITIES, **VALIDATION},
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_answers_equal_the_bytes_path(clients, shm_dir, case):
    plain, shared = clients
    strategy, inputs = CASES[case]
    expected = plain.rank(strategy, 10, **inputs)
    got = shared.rank(strategy, 10, **inputs)
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_array_equal(got.scores, expected.scores)
    assert os.listdir(shm_dir) == []


def test_onnx_model_on_shared_memory_equals_the_bytes_path(clients, shm_dir):
    # Several reads of READ_BYTES, so the model starts on rows already read.
    pool = RNG.normal(size=(3 * READ_BYTES // 4096 + 7, 1024)).astype(np.float32)
    model = OnnxModel(mlp(1024, 16, 3), output_name="logits")
    plain, shared = clients
    expected = plain.rank("uncertainty.margin", 20, model=model, embeddings=pool)
    got = shared.rank("uncertainty.margin", 20, model=model, embeddings=pool)
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_array_equal(got.scores, expected.scores)


def test_shared_array_is_referenced_in_place(clients, shm_dir):
    plain, shared = clients
    with shared.shared_array(EMBEDDINGS.shape, np.float32) as pool:
        pool[:] = EMBEDDINGS
        # A memory file has no name in the directory; a file has one.
        names = os.listdir(shm_dir)
        assert len(names) == (0 if shared._shared_memory.sealed else 1)
        got = shared.rank("diversity.kcenter", 10, embeddings=pool[100:])
        assert os.listdir(shm_dir) == names
    expected = plain.rank("diversity.kcenter", 10, embeddings=EMBEDDINGS[100:])
    np.testing.assert_array_equal(got.indices, expected.indices)
    assert os.listdir(shm_dir) == []


def write(shm_dir, name, array) -> None:
    (shm_dir / name).write_bytes(np.ascontiguousarray(array).tobytes())


def ref_request(name, offset=0, shape=(300, 4), **tensor_fields):
    """An entropy request whose pool probabilities reference ``name``."""
    probabilities = query_pb2.Tensor(
        dtype=query_pb2.D_TYPE_FLOAT64,
        shape=shape,
        shared_memory=query_pb2.SharedMemoryRef(name=name, offset=offset),
        **tensor_fields,
    )
    return query_pb2.RankRequest(
        uncertainty=query_pb2.UncertaintyStrategy(
            method=query_pb2.UncertaintyStrategy.METHOD_ENTROPY
        ),
        batch_size=3,
        pool=query_pb2.Pool(probabilities=probabilities),
    )


def test_offset_reads_from_the_middle_of_a_file(shm_stub, shm_dir, stub):
    write(shm_dir, "offset.bin", np.concatenate([np.zeros(3), PROBABILITIES.ravel()]))
    got = shm_stub.Rank(ref_request("offset.bin", offset=24), timeout=30)
    expected = stub.Rank(
        query_pb2.RankRequest(
            uncertainty=query_pb2.UncertaintyStrategy(
                method=query_pb2.UncertaintyStrategy.METHOD_ENTROPY
            ),
            batch_size=3,
            pool=query_pb2.Pool(probabilities=tensor(PROBABILITIES)),
        ),
        timeout=30,
    )
    assert list(got.ranked_indices) == list(expected.ranked_indices)


def test_disabled_server_refuses_with_failed_precondition(stub, shm_dir):
    write(shm_dir, "disabled.bin", PROBABILITIES)
    assert_refused(
        stub, ref_request("disabled.bin"), grpc.StatusCode.FAILED_PRECONDITION,
        "pool.probabilities", "shared memory is not enabled on this server",
    )


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "/etc/hostname", ".", "..", "", ".hidden", "a" * 129]
)
def test_names_that_are_not_plain_file_names_are_refused(shm_stub, name):
    assert_refused(
        shm_stub, ref_request(name), grpc.StatusCode.INVALID_ARGUMENT,
        "pool.probabilities.shared_memory.name", "not a plain file name",
    )


def test_missing_file_is_refused(shm_stub):
    assert_refused(
        shm_stub, ref_request("missing.bin"), grpc.StatusCode.INVALID_ARGUMENT,
        "pool.probabilities.shared_memory.name", "no file 'missing.bin'",
    )


def test_symbolic_link_in_the_directory_is_refused(shm_stub, shm_dir, tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(PROBABILITIES.tobytes())
    (shm_dir / "link.bin").symlink_to(outside)
    assert_refused(
        shm_stub, ref_request("link.bin"), grpc.StatusCode.INVALID_ARGUMENT,
        "pool.probabilities.shared_memory.name", "symbolic link",
    )


def test_hard_link_is_refused(shm_stub, shm_dir, tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(PROBABILITIES.tobytes())
    os.link(outside, shm_dir / "hardlink.bin")
    assert_refused(
        shm_stub, ref_request("hardlink.bin"), grpc.StatusCode.INVALID_ARGUMENT,
        "'hardlink.bin' has 2 hard links",
    )


def test_fifo_is_refused_without_blocking(shm_stub, shm_dir):
    os.mkfifo(shm_dir / "fifo.bin", 0o600)
    assert_refused(
        shm_stub, ref_request("fifo.bin"), grpc.StatusCode.INVALID_ARGUMENT,
        "'fifo.bin' is a FIFO; expected a regular file",
    )


def test_a_socket_named_as_a_file_is_refused_with_a_hint(shm_stub, shm_dir):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(shm_dir / "handover.sock"))
    try:
        assert_refused(
            shm_stub, ref_request("handover.sock"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "'handover.sock' is a socket; expected a regular file",
            "goes in shared_memory.socket",
        )
    finally:
        listener.close()
        os.unlink(shm_dir / "handover.sock")


def test_directory_is_refused(shm_stub, shm_dir):
    (shm_dir / "sub").mkdir()
    assert_refused(
        shm_stub, ref_request("sub"), grpc.StatusCode.INVALID_ARGUMENT,
        "'sub' is a directory; expected a regular file",
    )


def test_file_too_short_for_the_shape_is_refused(shm_stub, shm_dir):
    write(shm_dir, "short.bin", PROBABILITIES[:299])
    assert_refused(
        shm_stub, ref_request("short.bin"), grpc.StatusCode.INVALID_ARGUMENT,
        "pool.probabilities.shared_memory:", "holds 9568 bytes",
        "needs 9600",
    )


def test_offset_beyond_the_end_is_refused(shm_stub, shm_dir):
    write(shm_dir, "small.bin", PROBABILITIES)
    assert_refused(
        shm_stub, ref_request("small.bin", offset=1 << 40),
        grpc.StatusCode.INVALID_ARGUMENT,
        "pool.probabilities.shared_memory.offset", "beyond the end",
    )


def test_both_data_and_shared_memory_is_refused(shm_stub, shm_dir):
    write(shm_dir, "both.bin", PROBABILITIES)
    request = ref_request("both.bin", data=PROBABILITIES.tobytes())
    assert_refused(
        shm_stub, request, grpc.StatusCode.INVALID_ARGUMENT,
        "pool.probabilities: sets both data and shared_memory",
    )


def test_rank_stream_refuses_shared_memory(shm_stub, shm_dir, shm_server):
    write(shm_dir, "stream.bin", PROBABILITIES)
    header = query_pb2.RankStreamHeader(request=ref_request("stream.bin"))
    with grpc.insecure_channel(f"127.0.0.1:{shm_server.port}") as channel:
        call = channel.stream_unary(
            "/alquery.v1.QueryService/RankStream",
            request_serializer=query_pb2.RankStreamRequest.SerializeToString,
            response_deserializer=query_pb2.RankStreamResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            call(iter([query_pb2.RankStreamRequest(header=header)]), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pool.probabilities.shared_memory: only Rank" in caught.value.details()


def test_truncation_after_the_check_is_a_short_read(shm_dir):
    # ``admit`` runs between the checks and the read: truncate the file there.
    path = shm_dir / "truncated.bin"
    write(shm_dir, "truncated.bin", PROBABILITIES)
    directory = SharedMemoryDir(str(shm_dir))
    try:
        reads = SharedMemoryReads(
            ref_request("truncated.bin"), directory,
            admit=lambda request: os.truncate(path, 100),
        )
        with pytest.raises(InvalidRequestError, match="ended after 100 bytes"):
            reads.read()
    finally:
        directory.close()


def test_truncated_file_through_the_server_keeps_it_serving(shm_stub, shm_dir):
    write(shm_dir, "cut.bin", PROBABILITIES)
    os.truncate(shm_dir / "cut.bin", 4096)
    assert_refused(
        shm_stub, ref_request("cut.bin"), grpc.StatusCode.INVALID_ARGUMENT,
        "holds 4096 bytes",
    )


@pytest.mark.parametrize(
    "mode, problem", [(0o755, "mode 0755"), (0o703, "mode 0703"), (0o777, "0777")]
)
def test_directory_open_to_others_is_refused_at_start(tmp_path, mode, problem):
    path = tmp_path / "open"
    path.mkdir()
    path.chmod(mode)
    with pytest.raises(SharedMemoryConfigError, match=problem):
        app.start(
            app.ServerConfig(port=0, metrics_port=None, shared_memory_dir=str(path))
        )


def test_symbolic_link_or_missing_directory_is_refused_at_start(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(SharedMemoryConfigError, match="symbolic link"):
        SharedMemoryDir(str(tmp_path / "link"))
    # A trailing slash would make lstat follow the link.
    with pytest.raises(SharedMemoryConfigError, match="symbolic link"):
        SharedMemoryDir(f"{tmp_path / 'link'}/")
    with pytest.raises(SharedMemoryConfigError, match="does not exist"):
        SharedMemoryDir(str(tmp_path / "missing"))


def test_memory_guard_refuses_before_reading(shm_dir):
    # 100,000 x 4 float64 probabilities: about 6 MiB with the edge's copy.
    big = RNG.dirichlet(np.ones(4), size=100_000)
    write(shm_dir, "big.bin", big)
    running = app.start(
        app.ServerConfig(
            port=0, metrics_port=None, memory_budget_mib=1,
            shared_memory_dir=str(shm_dir),
        )
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Rank(ref_request("big.bin", shape=big.shape), timeout=30)
    finally:
        running.stop(grace_seconds=1)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "budget" in caught.value.details()


def test_directory_opened_to_others_or_removed_after_start_is_refused(tmp_path):
    path = tmp_path / "later"
    path.mkdir(mode=0o700)
    write(path, "p.bin", PROBABILITIES)
    request = ref_request("p.bin", shape=PROBABILITIES.shape)
    running = app.start(
        app.ServerConfig(port=0, metrics_port=None, shared_memory_dir=str(path))
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            assert len(stub.Rank(request, timeout=30).ranked_indices) == 3
            path.chmod(0o707)
            assert_refused(
                stub, request, grpc.StatusCode.FAILED_PRECONDITION, "mode 0707"
            )
            path.chmod(0o700)
            assert len(stub.Rank(request, timeout=30).ranked_indices) == 3
            # A new directory at the same path is not the one the server holds.
            (path / "p.bin").unlink()
            path.rmdir()
            path.mkdir(mode=0o700)
            write(path, "p.bin", PROBABILITIES)
            assert_refused(
                stub, request, grpc.StatusCode.FAILED_PRECONDITION,
                "was removed after the server started",
            )
    finally:
        running.stop(grace_seconds=1)
