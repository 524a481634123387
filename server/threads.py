"""Native thread pools of ``--workers`` processes: one share of the cores each.

numpy's OpenBLAS, scikit-learn's OpenMP and onnxruntime each start one
thread per core by default. With N worker processes on C cores that makes
N x C threads competing for C cores, and a BLAS call in one worker then
waits for threads the other workers hold. The rule: each worker's pools get
``max(1, C // N)`` threads, C counted from the cores this process may run
on (its CPU affinity).

Notes
-----
The limit travels as the usual variables (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``), which every library reads
when it loads, so the parent sets them before it spawns the workers; a
variable the operator already set is left as it is, which is how to choose
another number. Each worker then applies the limit again with threadpoolctl
to any library already loaded, and reports what its pools hold.
onnxruntime gets the same number through ``--model-threads`` unless that
was set. A CPU quota (a container's ``cpu.max``) is not seen: the rule
counts the cores of the affinity mask.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

import threadpoolctl

logger = logging.getLogger("alquery.server.threads")

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""The variables the native libraries read for their pool sizes."""


def available_cores() -> int:
    """How many cores this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


def compute_threads() -> int:
    """Threads one request may compute on in this process.

    ``OMP_NUM_THREADS`` when set (a ``--workers`` parent sets each worker's
    share there), else every core of the affinity.
    """
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return available_cores()


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Return ``max(1, cores // workers)``: each worker's share of the cores.

    Parameters
    ----------
    workers : int
        Number of worker processes, at least 1.
    cores : int, optional
        Cores to share; default ``available_cores()``.
    """
    if cores is None:
        cores = available_cores()
    return max(1, cores // workers)


@contextmanager
def worker_environment(
    threads: int, environ: MutableMapping[str, str] = os.environ
) -> Iterator[dict[str, str]]:
    """Set each unset ``THREAD_VARIABLES`` to ``threads`` while the block runs.

    Processes spawned inside the block inherit them. Yields the variables
    as the workers see them; afterwards ``environ`` is as it was.
    """
    added = [name for name in THREAD_VARIABLES if name not in environ]
    for name in added:
        environ[name] = str(threads)
    try:
        yield {name: environ[name] for name in THREAD_VARIABLES}
    finally:
        for name in added:
            environ.pop(name, None)


def limit_loaded_pools() -> dict[str, int]:
    """Cap the loaded libraries' pools at this process's variables.

    BLAS pools are capped at ``OPENBLAS_NUM_THREADS``, OpenMP pools at
    ``OMP_NUM_THREADS`` (when set). Libraries that read the variables when
    they loaded hold these sizes already; this catches any loaded before.
    Returns the largest pool of each kind (``blas``, ``openmp``) afterwards.
    """
    limits = {}
    variables = (("blas", "OPENBLAS_NUM_THREADS"), ("openmp", "OMP_NUM_THREADS"))
    for kind, name in variables:
        text = os.environ.get(name, "")
        if text.isdigit() and int(text) > 0:
            limits[kind] = int(text)
    if limits:
        threadpoolctl.threadpool_limits(limits=limits)
    return pool_sizes()


def pool_sizes() -> dict[str, int]:
    """The largest thread pool of each kind loaded in this process."""
    sizes: dict[str, int] = {}
    for pool in threadpoolctl.threadpool_info():
        kind = pool["user_api"]
        sizes[kind] = max(sizes.get(kind, 0), pool["num_threads"])
    return sizes
