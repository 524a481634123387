"""Split a pass over the rows of a large array across the compute threads.

numpy releases the GIL inside its array operations, so a pass chunk by
chunk over a large pool runs on several cores when contiguous row ranges
are handed to threads. The ranges are whole chunks, and each range's result
comes back in row order, so a caller can report what the first range found
exactly as a single pass over the rows would.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from alquery.server.blas_threads import one_blas_thread
from alquery.server.threads import compute_threads

CHUNKS_PER_THREAD = 4
"""Rows are split over threads only when each gets this many chunks."""

Result = TypeVar("Result")


def row_parts(n_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Return contiguous (start, stop) row ranges of whole chunks, in order.

    One range per thread, on up to ``threads.compute_threads()`` threads,
    and only as many as give each at least ``CHUNKS_PER_THREAD`` chunks of
    ``chunk_rows`` rows; a single range (0, n_rows) otherwise.
    """
    n_chunks = -(-n_rows // chunk_rows)
    threads = part_count(n_chunks)
    if threads == 1:
        return [(0, n_rows)]
    per_part = -(-n_chunks // threads) * chunk_rows
    return [
        (start, min(start + per_part, n_rows))
        for start in range(0, n_rows, per_part)
    ]


def part_count(n_chunks: int) -> int:
    """How many threads ``row_parts`` splits ``n_chunks`` chunks over.

    ``n_chunks // CHUNKS_PER_THREAD``, at most
    ``threads.compute_threads()`` and at least 1. Below two threads' worth
    of chunks the answer is 1 whatever the thread count, so the look-up of
    it is spared: small requests, most calls, take that path.
    """
    if n_chunks < 2 * CHUNKS_PER_THREAD:
        return 1
    return max(1, min(compute_threads(), n_chunks // CHUNKS_PER_THREAD))


def map_parts(
    work: Callable[[int, int], Result], parts: list[tuple[int, int]]
) -> list[Result]:
    """Return ``work(start, stop)`` of every part, in the order of ``parts``.

    A single part runs on the calling thread; more run at the same time,
    one thread each, with BLAS held to one thread meanwhile
    (``blas_threads.one_blas_thread``): BLAS calls made from several
    threads at once, each asking for BLAS's own threads, were 20 times
    slower here. An exception in any part is raised here.
    """
    if len(parts) == 1:
        return [work(*parts[0])]
    with (
        one_blas_thread(),
        ThreadPoolExecutor(len(parts), thread_name_prefix="alquery-rows") as pool,
    ):
        return list(pool.map(lambda part: work(*part), parts))
