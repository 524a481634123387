"""Shared fixtures: a real alquery server on a loopback port, and ways to call it."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from alquery.client import AlqueryClient
from alquery.server import app
from alquery.v1 import query_pb2, query_pb2_grpc


@pytest.fixture(scope="session")
def server():
    """A real server on 127.0.0.1 with its metrics endpoint, shared by tests."""
    running = app.start(app.ServerConfig(port=0, metrics_port=0, threads=4))
    yield running
    running.stop(grace_seconds=1)


@pytest.fixture(scope="session")
def target(server) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def channel(target):
    with grpc.insecure_channel(target) as channel:
        yield channel


@pytest.fixture(scope="session")
def stub(channel) -> query_pb2_grpc.QueryServiceStub:
    """The generated stub, for tests that build requests field by field."""
    return query_pb2_grpc.QueryServiceStub(channel)


@pytest.fixture(scope="session")
def client(target):
    with AlqueryClient(target, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def shm_dir(tmp_path_factory):
    """A shared-memory directory only this user may use, one per module."""
    path = tmp_path_factory.mktemp("shm")
    path.chmod(0o700)
    return path


@pytest.fixture(scope="module")
def shm_server(shm_dir):
    """A server with --shared-memory-dir on ``shm_dir``, one per module."""
    running = app.start(
        app.ServerConfig(port=0, metrics_port=None, shared_memory_dir=str(shm_dir))
    )
    yield running
    running.stop(grace_seconds=1)


@pytest.fixture(scope="module")
def shm_target(shm_server) -> str:
    return f"127.0.0.1:{shm_server.port}"


@pytest.fixture(scope="module")
def shm_stub(shm_target):
    with grpc.insecure_channel(shm_target) as channel:
        yield query_pb2_grpc.QueryServiceStub(channel)


def tensor(values, dtype=query_pb2.D_TYPE_FLOAT64, shape=None) -> query_pb2.Tensor:
    """Build a wire tensor by hand, with the shape given or taken from values."""
    numpy_dtype = {
        query_pb2.D_TYPE_FLOAT32: "<f4",
        query_pb2.D_TYPE_FLOAT64: "<f8",
        query_pb2.D_TYPE_INT32: "<i4",
        query_pb2.D_TYPE_INT64: "<i8",
    }[dtype]
    array = np.asarray(values, dtype=numpy_dtype)
    return query_pb2.Tensor(
        dtype=dtype,
        shape=array.shape if shape is None else shape,
        data=array.tobytes(),
    )


def assert_refused_then_served(stub, request, code, *fragments) -> None:
    """``stub.Rank(request)`` fails with ``code`` and a message holding every
    fragment; then a good request is still answered (the server serves on)."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.Rank(request, timeout=30)
    assert caught.value.code() == code, caught.value.details()
    for fragment in fragments:
        assert fragment in caught.value.details()
    good = query_pb2.RankRequest(
        uncertainty=query_pb2.UncertaintyStrategy(
            method=query_pb2.UncertaintyStrategy.METHOD_ENTROPY
        ),
        batch_size=2,
        pool=query_pb2.Pool(probabilities=tensor(np.full((5, 4), 0.25))),
    )
    assert len(stub.Rank(good, timeout=30).ranked_indices) == 2
