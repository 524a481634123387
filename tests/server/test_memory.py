"""The memory guard: the ledger alone, then a real server with an 8 MiB
budget on 127.0.0.1."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from onnx_models import mlp

from alquery.client import AlqueryClient, AlqueryError, OnnxModel
from alquery.client import streaming as client_streaming
from alquery.client.cli import _worker_budget_mib
from alquery.client.client import build_request
from alquery.server import app, edge, footprints, memory
from alquery.server.errors import MemoryBudgetError
from alquery.v1 import query_pb2_grpc

MIB = 1 << 20
BUDGET_MIB = 8
STRATEGY = "uncertainty.least_confidence"
FITS_ALONE = 40_000
"""Pool samples of a request estimated at about 5.8 MiB: one fits in the
budget, two do not."""
TOO_LARGE = 100_000


def wait_until(condition, timeout=30.0):
    """Wait for ``condition()`` to hold; the server's threads finish after
    the client has its answer."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# The ledger alone.


def describe():
    return "a request"


def test_a_reservation_over_the_budget_is_refused_at_once():
    ledger = memory.MemoryLedger(100)
    with pytest.raises(MemoryBudgetError, match="over the server's budget") as error:
        ledger.reserve(101, describe, wait_seconds=30)
    assert error.value.reason == "memory_budget"
    assert ledger.reserved_bytes == 0


def test_a_waiting_reservation_gets_room_when_another_is_released():
    ledger = memory.MemoryLedger(100)
    first = ledger.reserve(60, describe, wait_seconds=0)
    granted = threading.Event()

    def second():
        with ledger.reserve(60, describe, wait_seconds=30):
            granted.set()

    thread = threading.Thread(target=second)
    thread.start()
    wait_until(lambda: ledger.waiting == 1)
    assert not granted.is_set()
    first.release()
    thread.join(30)
    assert granted.is_set()
    assert ledger.reserved_bytes == 0 and ledger.waiting == 0


def test_a_waiting_reservation_is_refused_when_its_time_is_up_or_its_call_ends():
    ledger = memory.MemoryLedger(100)
    with ledger.reserve(60, describe, wait_seconds=0):
        with pytest.raises(MemoryBudgetError, match="stayed taken") as error:
            ledger.reserve(60, describe, wait_seconds=0.05)
        assert error.value.reason == "memory_wait"
        with pytest.raises(MemoryBudgetError, match="stayed taken"):
            ledger.reserve(60, describe, wait_seconds=30, stop_requested=lambda: True)
        assert ledger.reserved_bytes == 60
    assert ledger.reserved_bytes == 0 and ledger.waiting == 0


def test_a_refused_resize_keeps_the_old_size_and_release_is_idempotent():
    ledger = memory.MemoryLedger(100)
    reservation = ledger.reserve(30, describe, wait_seconds=0)
    with pytest.raises(MemoryBudgetError):
        reservation.resize(200, describe, wait_seconds=0)
    assert reservation.nbytes == 30 and ledger.reserved_bytes == 30
    reservation.resize(10, describe, wait_seconds=0)
    assert ledger.reserved_bytes == 10
    reservation.release()
    reservation.release()
    assert ledger.reserved_bytes == 0


def test_each_worker_gets_its_share_of_the_budget():
    assert _worker_budget_mib(1000, 4) == 250
    assert _worker_budget_mib(0, 2) == memory.default_budget_mib(2)
    total = memory.available_memory_bytes() // 2 // MIB
    assert abs(memory.default_budget_mib(1) - total) <= 1


def test_the_header_estimate_bounds_the_checked_query_estimate():
    request, deferred = request_for(FITS_ALONE, streamed=True)
    header, _ = footprints.header_estimate(request)
    client_streaming.attach(request, deferred)
    query = edge.build_query(request)
    sizes = footprints.sizes_of_query(query)
    assert header >= footprints.estimate(STRATEGY, sizes, query.params)


def test_the_sizes_below_make_the_premises_they_name():
    # One FITS_ALONE request fits the budget and two do not; TOO_LARGE alone
    # does not: the server tests below rest on these.
    budget = BUDGET_MIB * MIB
    one, _ = footprints.header_estimate(request_for(FITS_ALONE, streamed=True)[0])
    large, _ = footprints.header_estimate(request_for(TOO_LARGE, streamed=True)[0])
    assert one <= budget < 2 * one
    assert large > budget


# A real server with a small budget.


@pytest.fixture(scope="module")
def guarded():
    running = app.start(
        app.ServerConfig(
            port=0, metrics_port=None, threads=4, memory_budget_mib=BUDGET_MIB
        )
    )
    yield running
    running.stop(grace_seconds=1)


@pytest.fixture(scope="module")
def guarded_stub(guarded):
    with grpc.insecure_channel(f"127.0.0.1:{guarded.port}") as channel:
        yield query_pb2_grpc.QueryServiceStub(channel)


def gauge(running, name, labels=None):
    return running.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def reserved(running):
    return gauge(running, "alquery_memory_reserved_bytes")


def request_for(n_pool, streamed=False):
    probabilities = np.full((n_pool, 2), 0.5)
    probabilities[:, 0] = np.linspace(0.01, 0.99, n_pool)
    probabilities[:, 1] = 1.0 - probabilities[:, 0]
    deferred = {} if streamed else None
    request = build_request(
        STRATEGY, 5, probabilities=probabilities, deferred=deferred
    )
    return request, deferred


class HeldStream:
    """A RankStream call whose header is sent at once and whose bytes wait
    for ``finish()``: the server holds its reservation meanwhile."""

    def __init__(self, stub, n_pool=FITS_ALONE):
        self.go = threading.Event()
        request, deferred = request_for(n_pool, streamed=True)
        all_messages = client_streaming.messages(request, deferred)

        def messages():
            yield next(all_messages)
            self.go.wait(60)
            yield from all_messages

        self.call = stub.RankStream.future(messages(), timeout=60)

    def finish(self):
        self.go.set()
        return self.call.result(timeout=60)

    def cancel(self):
        self.call.cancel()
        self.go.set()


def test_an_estimate_over_the_budget_is_refused_naming_the_sizes(
    guarded, guarded_stub
):
    before = gauge(
        guarded, "alquery_rejected_requests_total", {"reason": "memory_budget"}
    )
    request, _ = request_for(TOO_LARGE)
    with pytest.raises(grpc.RpcError) as error:
        guarded_stub.Rank(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = error.value.details()
    assert details.startswith(f"memory: {STRATEGY} on n_pool={TOO_LARGE}, ")
    assert "n_classes=2" in details and "batch_size=5" in details
    assert f"budget of {BUDGET_MIB}.0 MiB" in details
    assert "--memory-budget-mib" in details

    # The server goes on serving, and nothing stays reserved.
    good, _ = request_for(1000)
    assert len(guarded_stub.Rank(good, timeout=30).ranked_indices) == 5
    after = gauge(
        guarded, "alquery_rejected_requests_total", {"reason": "memory_budget"}
    )
    assert after == before + 1
    wait_until(lambda: reserved(guarded) == 0)


def test_a_stream_over_the_budget_is_refused_from_its_header(
    guarded, guarded_stub
):
    request, deferred = request_for(TOO_LARGE, streamed=True)
    header = next(client_streaming.messages(request, deferred))
    with pytest.raises(grpc.RpcError) as error:
        # Only the header: the refusal cannot wait for the bytes.
        guarded_stub.RankStream(iter([header]), timeout=30)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"n_pool={TOO_LARGE}" in error.value.details()
    wait_until(lambda: reserved(guarded) == 0)


def test_a_request_that_fits_alone_waits_for_the_one_running(
    guarded, guarded_stub
):
    first = HeldStream(guarded_stub)
    wait_until(lambda: reserved(guarded) > 0)
    request, _ = request_for(FITS_ALONE)
    second = guarded_stub.Rank.future(request, timeout=60)
    wait_until(lambda: gauge(guarded, "alquery_memory_waiting_requests") == 1)
    assert not second.done()

    assert len(first.finish().response.ranked_indices) == 5
    assert len(second.result(timeout=60).ranked_indices) == 5
    wait_until(lambda: reserved(guarded) == 0)
    assert gauge(guarded, "alquery_memory_waiting_requests") == 0


def test_a_waiting_request_is_refused_before_its_deadline(guarded, guarded_stub):
    first = HeldStream(guarded_stub)
    wait_until(lambda: reserved(guarded) > 0)
    request, _ = request_for(FITS_ALONE)
    with pytest.raises(grpc.RpcError) as error:
        guarded_stub.Rank(request, timeout=3)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "until this call's deadline" in error.value.details()
    assert f"n_pool={FITS_ALONE}" in error.value.details()

    assert len(first.finish().response.ranked_indices) == 5
    wait_until(lambda: reserved(guarded) == 0)


def test_the_ledger_is_back_to_zero_after_cancels_and_errors(
    guarded, guarded_stub
):
    held = HeldStream(guarded_stub)
    wait_until(lambda: reserved(guarded) > 0)
    held.cancel()
    wait_until(lambda: reserved(guarded) == 0)

    # A request refused by the edge after nothing was reserved, and one
    # refused by the guard.
    bad, _ = request_for(1000)
    bad.batch_size = 0
    for request in (bad, request_for(TOO_LARGE)[0]):
        with pytest.raises(grpc.RpcError):
            guarded_stub.Rank(request, timeout=30)
    wait_until(lambda: reserved(guarded) == 0)
    assert gauge(guarded, "alquery_memory_budget_bytes") == BUDGET_MIB * MIB


def test_a_request_with_models_reserves_the_runner_before_the_models_run(guarded):
    model = OnnxModel(mlp(4, 3, 2), output_name="logits")
    embeddings = np.zeros((10, 4), dtype=np.float32)
    with AlqueryClient(f"127.0.0.1:{guarded.port}", timeout=30) as client:
        # Two of the runner's 64 MiB chunks do not fit a 4 MiB budget.
        with pytest.raises(AlqueryError) as error:
            client.rank(STRATEGY, 2, model=model, embeddings=embeddings)
    assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "the inference models on n_pool=10, n_features=4" in error.value.details
    wait_until(lambda: reserved(guarded) == 0)
