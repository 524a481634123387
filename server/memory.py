"""The memory guard: a budget, and one ledger that admits requests against it.

Before a request computes, the servicer asks ``footprints`` for its working
memory (its arrays plus the strategy's own working set, see
``footprints.estimate``) and reserves that many bytes here. A request whose
estimate alone exceeds the budget is refused at once; one that fits alone
but not next to the requests running now waits until enough is released,
or until its deadline (at most ``MAX_WAIT_SECONDS``), and is then refused
the same way. Refusals raise ``MemoryBudgetError`` (RESOURCE_EXHAUSTED),
whose message names the estimate, the budget and the pool's shape.

Notes
-----
The ledger guards against the server's own requests, not against other
programs: the budget is a share of the memory given to the server (see
``default_budget_bytes``), and the estimates are upper bounds measured for
every strategy (``tests/server/test_footprints.py``), not the process's
resident size. gRPC has already received a plain ``Rank`` request's bytes
when it is refused; a ``RankStream`` call is refused before its buffers are
allocated.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType

from alquery.server.errors import MemoryBudgetError
from alquery.server.interceptors import current_call
from alquery.server.metrics import Metrics

logger = logging.getLogger("alquery.server.memory")

MIB = 1 << 20
DEFAULT_BUDGET_SHARE = 0.5
"""The default budget is this share of the memory the server may use."""
MAX_WAIT_SECONDS = 60.0
"""How long a request that fits the budget waits for memory at most, when
its deadline is later (or it has none)."""
DEADLINE_MARGIN_SECONDS = 0.5
"""A waiting request gives up this long before its deadline, so that its
refusal reaches the client before the deadline does."""
_POLL_SECONDS = 0.25
"""A waiting request re-checks whether its call is still active this often;
releases wake it at once."""


def available_memory_bytes() -> int:
    """Return the memory this process may use: the cgroup limit if set and
    below the physical memory, else the physical memory."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path, unlimited in (
        ("/sys/fs/cgroup/memory.max", "max"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", ""),  # cgroup v1
    ):
        try:
            with open(path, encoding="ascii") as file:
                text = file.read().strip()
        except OSError:
            continue
        if text and text != unlimited and text.isdigit():
            return min(physical, int(text))
    return physical


def default_budget_mib(workers: int = 1) -> int:
    """Half of ``available_memory_bytes``, split evenly among ``workers``."""
    total = available_memory_bytes() * DEFAULT_BUDGET_SHARE
    return max(1, int(total // workers) // MIB)


class MemoryLedger:
    """Bytes reserved by the requests running now, against one budget.

    Thread-safe; one per server process. ``on_change(reserved_bytes,
    waiting)`` is called, under the ledger's lock, after every change of the
    bytes reserved or of the number of requests waiting for room (the
    guard sets its gauges with it).
    """

    def __init__(
        self,
        budget_bytes: int,
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        if budget_bytes < 1:
            raise ValueError(f"budget_bytes must be at least 1, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._reserved = 0
        self._waiting = 0
        self._changed = threading.Condition()
        self._on_change = on_change or (lambda reserved, waiting: None)

    @property
    def reserved_bytes(self) -> int:
        """Bytes reserved now, by every running request together."""
        with self._changed:
            return self._reserved

    @property
    def waiting(self) -> int:
        """Requests waiting for room now."""
        with self._changed:
            return self._waiting

    def reserve(
        self,
        nbytes: int,
        describe: Callable[[], str],
        *,
        wait_seconds: float | None,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> Reservation:
        """Reserve ``nbytes``, waiting for room up to ``wait_seconds``.

        Parameters
        ----------
        nbytes : int
            The request's estimate.
        describe : callable
            Returns what the refusal message says about the request (its
            shapes and strategy), after "memory: ".
        wait_seconds : float or None
            The call's time left; None (no deadline) and longer times wait
            ``MAX_WAIT_SECONDS`` at most.
        stop_requested : callable
            True once the call is over (cancelled, deadline); a waiting
            request then gives up.

        Raises
        ------
        MemoryBudgetError
            ``nbytes`` exceeds the budget (at once), or no room came in time.
        CancelledError
            The call ended while waiting (raised by the caller's check).
        """
        reservation = Reservation(self, 0)
        reservation.resize(
            nbytes, describe, wait_seconds=wait_seconds, stop_requested=stop_requested
        )
        return reservation

    def _change(
        self,
        old: int,
        new: int,
        describe: Callable[[], str],
        wait_seconds: float | None,
        stop_requested: Callable[[], bool],
    ) -> None:
        if new > self.budget_bytes:
            raise MemoryBudgetError(
                f"memory: {describe()} needs an estimated {_mib(new)} of "
                f"working memory, over the server's budget of "
                f"{_mib(self.budget_bytes)} (--memory-budget-mib); send a "
                "smaller pool, fewer passes or features, or a smaller batch",
                reason="memory_budget",
            )
        limit = MAX_WAIT_SECONDS if wait_seconds is None else wait_seconds
        deadline = time.monotonic() + min(MAX_WAIT_SECONDS, max(0.0, limit))
        with self._changed:
            if self._reserved - old + new > self.budget_bytes:
                self._wait(old, new, deadline, describe, stop_requested)
            self._reserved += new - old
            self._on_change(self._reserved, self._waiting)
            if new < old:
                self._changed.notify_all()

    def _wait(
        self,
        old: int,
        new: int,
        deadline: float,
        describe: Callable[[], str],
        stop_requested: Callable[[], bool],
    ) -> None:
        # Called and returns with the lock held.
        self._waiting += 1
        self._on_change(self._reserved, self._waiting)
        try:
            while self._reserved - old + new > self.budget_bytes:
                left = deadline - time.monotonic()
                if left <= 0 or stop_requested():
                    raise MemoryBudgetError(
                        f"memory: {describe()} needs an estimated "
                        f"{_mib(new)} of working memory; the server's budget "
                        f"is {_mib(self.budget_bytes)} and "
                        f"{_mib(self._reserved - old)} of it stayed taken by "
                        "other requests until this call's deadline; retry "
                        "later",
                        reason="memory_wait",
                    )
                self._changed.wait(min(left, _POLL_SECONDS))
        finally:
            self._waiting -= 1
            self._on_change(self._reserved, self._waiting)

    def _release(self, nbytes: int) -> None:
        with self._changed:
            self._reserved -= nbytes
            self._on_change(self._reserved, self._waiting)
            self._changed.notify_all()


class Reservation:
    """Bytes one request holds in a ``MemoryLedger``; a context manager that
    releases them on exit, whatever happened."""

    def __init__(self, ledger: MemoryLedger, nbytes: int) -> None:
        self._ledger = ledger
        self.nbytes = nbytes

    def resize(
        self,
        nbytes: int,
        describe: Callable[[], str],
        *,
        wait_seconds: float | None,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        """Hold ``nbytes`` instead, waiting for room as ``reserve`` does when
        it grows. On a refusal the reservation keeps its old size."""
        self._ledger._change(
            self.nbytes, nbytes, describe, wait_seconds, stop_requested
        )
        self.nbytes = nbytes

    def release(self) -> None:
        """Give the bytes back; a second call does nothing."""
        nbytes, self.nbytes = self.nbytes, 0
        if nbytes:
            self._ledger._release(nbytes)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _mib(nbytes: int) -> str:
    return f"{nbytes / MIB:.1f} MiB ({nbytes} bytes)"


class MemoryGuard:
    """The servicer's side of the ledger: estimate, reserve, count.

    ``metrics`` (optional) gets the reserved bytes and the budget as gauges;
    refusals are counted by the observing interceptor, whose reason this
    sets on the call's record ("memory_budget" or "memory_wait").
    """

    def __init__(self, budget_bytes: int, metrics: Metrics | None = None) -> None:
        # Called under the ledger's lock. Nearly every request changes the
        # reserved bytes and not the waiting count: only changes are set.
        last = [-1, -1]

        def on_change(reserved: int, waiting: int) -> None:
            if metrics is None:
                return
            if reserved != last[0]:
                metrics.memory_reserved.set(reserved)
                last[0] = reserved
            if waiting != last[1]:
                metrics.memory_waiting.set(waiting)
                last[1] = waiting

        self.ledger = MemoryLedger(budget_bytes, on_change)
        if metrics is not None:
            metrics.memory_budget.set(budget_bytes)

    def reservation(self) -> Reservation:
        """An empty reservation for one call; ``admit`` sizes it. Use it as
        a context manager, so its bytes go back however the call ends."""
        return Reservation(self.ledger, 0)

    def admit(
        self,
        reservation: Reservation,
        nbytes: int,
        describe: Callable[[], str],
        call: CallLimits,
    ) -> None:
        """Make ``reservation`` hold ``nbytes``, waiting for room if needed.

        Raises
        ------
        MemoryBudgetError
            As ``MemoryLedger.reserve``; the call's record then carries the
            refusal's reason, and the reservation keeps its old size.
        """
        remaining = call.time_remaining()
        if remaining is not None:
            # Refuse a little before the deadline, so the client hears why.
            remaining = max(0.0, remaining - DEADLINE_MARGIN_SECONDS)
        try:
            reservation.resize(
                nbytes,
                describe,
                wait_seconds=remaining,
                stop_requested=call.stop_requested,
            )
        except MemoryBudgetError as error:
            current_call().reject_reason = error.reason
            logger.debug(
                "memory refused reason=%s estimate=%d reserved=%d budget=%d",
                error.reason, nbytes, self.ledger.reserved_bytes,
                self.ledger.budget_bytes,
            )
            raise


@dataclasses.dataclass(frozen=True)
class CallLimits:
    """How long a call may still wait, and whether it is over."""

    time_remaining: Callable[[], float | None]
    stop_requested: Callable[[], bool]
