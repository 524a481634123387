"""Sealed memory files handed over through a Unix socket: read in place
where only models read them, copied elsewhere, and every bad hand-over
refused with the server still serving."""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import socket
import struct
import threading

import grpc
import numpy as np
import pytest
from conftest import assert_refused_then_served as assert_refused
from onnx_models import mlp

from alquery.client import AlqueryClient, OnnxModel
from alquery.client.client import build_request
from alquery.client.handover import Handover
from alquery.client.shared_memory import SharedMemory
from alquery.server import sealed_fd
from alquery.server.errors import CancelledError, InvalidRequestError, TooLargeError
from alquery.server.models.inference import features_only_models_read
from alquery.server.shared_memory import SharedMemoryDir, SharedMemoryReads
from alquery.v1 import query_pb2

pytestmark = pytest.mark.skipif(
    not sealed_fd.supported(), reason="sealed memory files need Linux"
)

RNG = np.random.default_rng(17)
PROBABILITIES = RNG.dirichlet(np.ones(4), size=300)
EMBEDDINGS = RNG.normal(size=(300, 8)).astype(np.float32)
SIZE = PROBABILITIES.nbytes
SEAL_SIZE = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


def memory_file(data: bytes, seals: int = SEAL_SIZE, size: int | None = None) -> int:
    fd = os.memfd_create("test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    if size is not None:
        os.ftruncate(fd, size)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


@contextlib.contextmanager
def offered(shm_dir, fd):
    """A listening socket in ``shm_dir`` that hands ``fd`` to the server."""
    handover = Handover(str(shm_dir), 0o600)
    try:
        yield handover.offer(fd)
    finally:
        handover.close()


@contextlib.contextmanager
def fake_client(shm_dir, name, send):
    """A socket ``name`` whose client accepts one connection and calls
    ``send(connection)``: for hand-overs that go wrong."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(shm_dir / name))
    listener.listen(1)
    done = threading.Event()

    def serve():
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                send(connection)
                done.wait(30)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield name
    finally:
        done.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes an accept() never met
        listener.close()
        thread.join(30)
        os.unlink(shm_dir / name)


def socket_request(name, offset=0, shape=(300, 4)):
    """An entropy request whose pool probabilities are on socket ``name``."""
    return query_pb2.RankRequest(
        uncertainty=query_pb2.UncertaintyStrategy(
            method=query_pb2.UncertaintyStrategy.METHOD_ENTROPY
        ),
        batch_size=3,
        pool=query_pb2.Pool(
            probabilities=query_pb2.Tensor(
                dtype=query_pb2.D_TYPE_FLOAT64,
                shape=shape,
                shared_memory=query_pb2.SharedMemoryRef(socket=name, offset=offset),
            )
        ),
    )


def expected_entropy_top3(probabilities):
    entropy = -(probabilities * np.log(probabilities)).sum(axis=1)
    return np.argsort(-entropy, kind="stable")[:3]


def test_a_memory_file_at_an_offset_ranks_as_its_bytes(shm_stub, shm_dir):
    fd = memory_file(b"\0" * 24 + PROBABILITIES.tobytes())
    try:
        with offered(shm_dir, fd) as name:
            got = shm_stub.Rank(socket_request(name, offset=24), timeout=30)
    finally:
        os.close(fd)
    np.testing.assert_array_equal(
        got.ranked_indices, expected_entropy_top3(PROBABILITIES)
    )
    assert os.listdir(shm_dir) == []


def no_descriptor(connection):
    connection.sendall(b"\0")


def two_descriptors(connection):
    first, second = memory_file(PROBABILITIES.tobytes()), os.open("/", os.O_RDONLY)
    socket.send_fds(connection, [b"\0"], [first, second])
    os.close(first)
    os.close(second)


def sends(make_fd):
    def send(connection):
        fd = make_fd()
        socket.send_fds(connection, [b"\0"], [fd])
        os.close(fd)

    return send


def regular_file_descriptor():
    return os.open("/proc/self/exe", os.O_RDONLY)


def write_only_memory_file():
    fd = memory_file(PROBABILITIES.tobytes())
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
    finally:
        os.close(fd)


def pipe_descriptor():
    read, write = os.pipe()
    os.close(write)
    return read


@pytest.mark.parametrize(
    ("send", "fragment"),
    [
        (no_descriptor, "sent 0 file descriptors"),
        (two_descriptors, "sent 2 file descriptors"),
        (sends(regular_file_descriptor), "not a memory file on tmpfs"),
        (sends(pipe_descriptor), "not a memory file on tmpfs"),
        (
            sends(lambda: memory_file(PROBABILITIES.tobytes(), seals=0)),
            "not sealed against shrinking",
        ),
        (
            sends(lambda: memory_file(PROBABILITIES.tobytes()[:-8])),
            f"holds {SIZE - 8} bytes; the tensor's offset, shape and dtype "
            f"need {SIZE}",
        ),
        (
            # Frozen, so read in place: a hole would be allocated by the read.
            sends(lambda: memory_file(b"", SEAL_SIZE | fcntl.F_SEAL_WRITE, SIZE)),
            "has a hole at byte 0, inside the tensor",
        ),
        (sends(write_only_memory_file), "opened write-only"),
    ],
    ids=[
        "none", "two", "regular file", "pipe", "unsealed", "short", "holes",
        "write-only",
    ],
)
def test_bad_hand_overs_are_refused(shm_stub, shm_dir, send, fragment):
    with fake_client(shm_dir, "bad.sock", send) as name:
        assert_refused(
            shm_stub, socket_request(name), grpc.StatusCode.INVALID_ARGUMENT,
            "pool.probabilities.shared_memory", fragment,
        )


def test_holes_in_a_file_the_server_copies_read_as_zeros(shm_dir):
    # Copied by reads, not mapped: a hole costs the server nothing.
    fd = memory_file(PROBABILITIES[:100].tobytes(), size=SIZE)
    directory = SharedMemoryDir(str(shm_dir))
    try:
        with offered(shm_dir, fd) as name:
            payloads = SharedMemoryReads(socket_request(name), directory).read()
    finally:
        directory.close()
        os.close(fd)
    got = np.frombuffer(payloads["pool.probabilities"]).reshape(300, 4)
    np.testing.assert_array_equal(got[:100], PROBABILITIES[:100])
    assert not got[100:].any()


def test_a_huge_declared_tensor_meets_the_memory_guard_before_any_mapping(
    shm_stub, shm_dir
):
    # A sparse file as long as the shape claims: 2^40 rows of 4 float64.
    shape = (2**40, 4)
    fd = memory_file(b"", size=2**40 * 32)
    try:
        with offered(shm_dir, fd) as name:
            assert_refused(
                shm_stub, socket_request(name, shape=shape),
                grpc.StatusCode.RESOURCE_EXHAUSTED, "budget",
            )
    finally:
        os.close(fd)


def test_a_hugetlb_memory_file_is_refused(shm_stub, shm_dir):
    try:
        fd = os.memfd_create("huge", os.MFD_HUGETLB | os.MFD_ALLOW_SEALING)
    except OSError as error:
        pytest.skip(f"no hugetlb memory files here: {error}")
    os.close(fd)

    def huge():
        fd = os.memfd_create("huge", os.MFD_HUGETLB | os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, 2 << 20)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEAL_SIZE)
        return fd

    with fake_client(shm_dir, "huge.sock", sends(huge)) as name:
        assert_refused(
            shm_stub, socket_request(name, shape=(10, 4)),
            grpc.StatusCode.INVALID_ARGUMENT, "not a memory file on tmpfs",
        )


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("missing.sock", "no socket 'missing.sock'"),
        ("../escape.sock", "is not a plain socket name"),
        ("x" * 65, "is not a plain socket name"),
        ("plain-file", "'plain-file' is not a socket"),
        ("bound-only.sock", "nobody listens on it"),
    ],
)
def test_sockets_that_cannot_hand_over_are_refused(shm_stub, shm_dir, name, fragment):
    (shm_dir / "plain-file").write_bytes(b"x")
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(str(shm_dir / "bound-only.sock"))  # bound, never listening
    try:
        assert_refused(
            shm_stub, socket_request(name), grpc.StatusCode.INVALID_ARGUMENT,
            "pool.probabilities.shared_memory.socket", fragment,
        )
    finally:
        bound.close()
        os.unlink(shm_dir / "bound-only.sock")
        os.unlink(shm_dir / "plain-file")


def test_both_name_and_socket_is_refused(shm_stub):
    request = socket_request("a.sock")
    request.pool.probabilities.shared_memory.name = "a.bin"
    assert_refused(
        shm_stub, request, grpc.StatusCode.INVALID_ARGUMENT,
        "pool.probabilities.shared_memory: sets both name and socket",
    )


def test_a_client_that_never_sends_is_given_up_on(shm_dir, monkeypatch):
    monkeypatch.setattr(sealed_fd, "MAX_WAIT_SECONDS", 0.2)
    directory = SharedMemoryDir(str(shm_dir))
    try:
        with fake_client(shm_dir, "silent.sock", lambda connection: None) as name:
            # No deadline: the client is blamed after the longest wait.
            with pytest.raises(InvalidRequestError, match="within 0.2 s"):
                SharedMemoryReads(socket_request(name), directory)
            # A deadline that comes first cancels the call instead.
            with pytest.raises(CancelledError, match="deadline passed"):
                SharedMemoryReads(
                    socket_request(name), directory, time_remaining=lambda: 0.1
                )
    finally:
        directory.close()


def lingering_tcp_socket():
    """A TCP socket whose last close blocks for 5 s: SO_LINGER set, its
    send buffer full, its peer (on loopback) never reading."""
    listener = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(listener.getsockname())
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 5))
    sender.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            sender.send(b"x" * 65536)
    return listener, sender


def test_a_descriptor_whose_close_blocks_does_not_hold_the_call(shm_stub, shm_dir):
    listener, sender = lingering_tcp_socket()

    def send(connection):
        socket.send_fds(connection, [b"\0"], [sender.fileno()])
        sender.detach()  # the server now holds the last reference

    try:
        with fake_client(shm_dir, "linger.sock", send) as name:
            # The refusal comes before the close that blocks for 5 s.
            with pytest.raises(grpc.RpcError) as caught:
                shm_stub.Rank(socket_request(name), timeout=3)
    finally:
        listener.close()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a memory file" in caught.value.details()
    assert_refused(
        shm_stub, socket_request("missing.sock"),
        grpc.StatusCode.INVALID_ARGUMENT, "no socket",
    )


def test_when_every_hand_over_thread_waits_more_are_refused(shm_dir, monkeypatch):
    monkeypatch.setattr(sealed_fd, "MAX_WAIT_SECONDS", 5.0)
    directory = SharedMemoryDir(str(shm_dir))
    accepted = threading.Semaphore(0)

    def silent(connection):
        accepted.release()

    errors = []

    def waiting_call(name):
        with contextlib.suppress(InvalidRequestError):
            SharedMemoryReads(socket_request(name), directory)
            errors.append("answered")

    try:
        with contextlib.ExitStack() as stack:
            names = [
                stack.enter_context(fake_client(shm_dir, f"slow{i}.sock", silent))
                for i in range(sealed_fd.HANDOVER_THREADS)
            ]
            calls = [threading.Thread(target=waiting_call, args=(n,)) for n in names]
            for call in calls:
                call.start()
            for _ in names:
                assert accepted.acquire(timeout=30)
            with fake_client(shm_dir, "next.sock", silent) as name:
                with pytest.raises(TooLargeError, match="threads that take memory"):
                    SharedMemoryReads(socket_request(name), directory)
            for call in calls:
                call.join(30)
    finally:
        directory.close()
    assert errors == []


def in_a_mapping(array) -> bool:
    """Whether ``array``'s memory is a mapping (not a buffer of its own)."""
    while isinstance(array, (np.ndarray, memoryview)):
        array = array.base if isinstance(array, np.ndarray) else array.obj
    return isinstance(array, mmap.mmap)


def reads_of(shm_dir, request, in_place):
    directory = SharedMemoryDir(str(shm_dir))
    try:
        reads = SharedMemoryReads(request, directory, in_place=in_place)
        return reads.read()
    finally:
        directory.close()


def test_only_bytes_the_client_cannot_change_or_only_models_read_are_in_place(
    shm_dir,
):
    # A shared_array's memory file stays writable: read in place only where
    # the field is in ``in_place``; a frozen one (F_SEAL_WRITE) always.
    shared = SharedMemory(shm_dir, threshold_bytes=0, sealed=True)
    with shared.shared_array(EMBEDDINGS.shape, np.float32) as pool:
        pool[:] = EMBEDDINGS
        for in_place in (frozenset(), frozenset({"pool.embeddings"})):
            deferred = {}
            request = build_request(
                "diversity.kcenter", 3, embeddings=pool, deferred=deferred,
                labeled_embeddings=EMBEDDINGS[:4],
            )
            with shared.place(request, deferred):
                payloads = reads_of(shm_dir, request, in_place)
            pool[0, 0] += 1.0
            seen = np.frombuffer(payloads["pool.embeddings"], np.float32)
            # In place, the server's bytes are the client's own memory.
            assert (seen[0] == pool[0, 0]) == bool(in_place)
            assert in_a_mapping(seen) == bool(in_place)
            labeled = np.frombuffer(payloads["labeled.embeddings"], np.float32)
            assert in_a_mapping(labeled)  # frozen: in place
            np.testing.assert_array_equal(labeled, EMBEDDINGS[:4].ravel())


def test_strategies_that_read_the_raw_embeddings_get_a_copy():
    def request(strategy, **spec):
        built = build_request(
            strategy, 3, embeddings=EMBEDDINGS, deferred={},
            validation_embeddings=EMBEDDINGS,
            validation_labels=np.zeros(300, np.int64),
        )
        built.inference.models.add(onnx=b"x", **spec)
        return built

    assert features_only_models_read(request("uncertainty.entropy")) == {
        "pool.embeddings"
    }
    # k-center ranks on the pool's own embeddings: they must not change.
    assert features_only_models_read(request("diversity.kcenter")) == set()
    # A model that gives the embeddings: every set it runs on is its alone.
    assert features_only_models_read(
        request("diversity.kcenter", embeddings_output="hidden")
    ) == {"pool.embeddings", "labeled.embeddings", "validation.embeddings"}
    plain = build_request("uncertainty.entropy", 3, embeddings=EMBEDDINGS)
    assert features_only_models_read(plain) == set()


@pytest.mark.parametrize(
    "strategy", ["uncertainty.margin", "diversity.kcenter", "hybrid.badge"]
)
def test_a_model_on_a_shared_array_equals_the_bytes_path(
    shm_target, shm_dir, strategy, client
):
    model = OnnxModel(
        mlp(8, 16, 3), output_name="logits",
        embeddings_output="hidden" if strategy == "hybrid.badge" else None,
    )
    expected = client.rank(strategy, 7, model=model, embeddings=EMBEDDINGS)
    with AlqueryClient(
        shm_target, timeout=60, shared_memory_dir=shm_dir,
        shared_memory_sealed=True,
    ) as shared, shared.shared_array(EMBEDDINGS.shape, np.float32) as pool:
        pool[:] = EMBEDDINGS
        got = shared.rank(strategy, 7, model=model, embeddings=pool)
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_array_equal(got.scores, expected.scores)
