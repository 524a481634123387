"""parts: contiguous ranges of whole chunks over the threads, results in order."""

import threading

import pytest

from alquery.server.parts import CHUNKS_PER_THREAD, map_parts, part_count, row_parts


@pytest.mark.parametrize("n_rows", [0, 1, 7, 100, 1001])
@pytest.mark.parametrize("chunk_rows", [1, 3, 10, 5000])
@pytest.mark.parametrize("threads", ["1", "2", "4"])
def test_parts_cover_the_rows_in_whole_chunks(n_rows, chunk_rows, threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    parts = row_parts(n_rows, chunk_rows)
    assert parts[0][0] == 0 and parts[-1][1] == n_rows
    assert all(stop == start for (_, stop), (start, _) in zip(parts, parts[1:]))
    assert all(start % chunk_rows == 0 for start, _ in parts)
    assert len(parts) <= int(threads)
    n_chunks = -(-n_rows // chunk_rows)
    if len(parts) > 1:
        assert n_chunks >= CHUNKS_PER_THREAD * len(parts)


def test_results_come_back_in_part_order_from_several_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    parts = row_parts(120, 10)
    seen = set()

    def work(start, stop):
        seen.add(threading.get_ident())
        return start, stop

    assert map_parts(work, parts) == parts
    assert len(parts) == 3 and len(seen) >= 1


def test_an_error_in_a_part_is_raised():
    def work(start, stop):
        if start > 0:
            raise ValueError("second part")
        return start

    with pytest.raises(ValueError, match="second part"):
        map_parts(work, [(0, 5), (5, 10)])


@pytest.mark.parametrize("threads", ["1", "8"])
def test_fewer_chunks_than_two_threads_need_make_one_part(threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    chunk_rows = 10
    largest = (2 * CHUNKS_PER_THREAD - 1) * chunk_rows
    assert row_parts(largest, chunk_rows) == [(0, largest)]
    assert row_parts(0, chunk_rows) == [(0, 0)]
    assert len(row_parts(largest + 1, chunk_rows)) == min(2, int(threads))


@pytest.mark.parametrize("n_chunks", [0, 1, 7, 8, 12, 400])
@pytest.mark.parametrize("threads", ["1", "3"])
def test_part_count_is_the_number_of_parts_row_parts_makes(
    n_chunks, threads, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    assert part_count(n_chunks) == len(row_parts(n_chunks * 10, 10))
    assert 1 <= part_count(n_chunks) <= int(threads)
