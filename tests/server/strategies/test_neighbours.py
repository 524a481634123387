import tracemalloc

import numpy as np
import pytest

from alquery.server.strategies import neighbours
from alquery.server.strategies.diversity import squared_distances
from alquery.server.strategies.neighbours import k_nearest


def sorted_rows(distances, k):
    """The first k of a stable argsort of every full distance row."""
    positions = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, positions, axis=1), positions


def test_ties_go_to_the_lower_reference_position():
    # Distances from 0: 1, 1, 4, 1, 1 -> the three nearest are 0, 1, 3.
    references = np.array([[1.0], [-1.0], [2.0], [-1.0], [1.0]])
    distances, positions = k_nearest(references, 3, queries=np.zeros((1, 1)))
    assert positions.tolist() == [[0, 1, 3]]
    assert distances.tolist() == [[1.0, 1.0, 1.0]]


def test_a_row_is_not_its_own_neighbour():
    # On a line at 0, 1, 3: nearest others of 0 are 1 (distance 1), 3 (3).
    references = np.array([[0.0], [1.0], [3.0]])
    distances, positions = k_nearest(references, 2)
    assert positions.tolist() == [[1, 2], [0, 2], [1, 0]]
    assert distances.tolist() == [[1.0, 3.0], [1.0, 2.0], [2.0, 3.0]]


@pytest.mark.parametrize("k", [1, 4, 29])
def test_matches_a_stable_sort_of_the_full_matrix(k):
    rng = np.random.default_rng(3)
    references = rng.normal(size=(30, 5))
    queries = rng.normal(size=(17, 5))
    full = squared_distances(queries, references)
    expected = sorted_rows(full, k)
    got = k_nearest(references, k, queries=queries)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_allclose(got[0], np.sqrt(expected[0]), rtol=1e-12)


@pytest.mark.parametrize(
    "margin, query_rows, chunk_elements",
    [(8, 4096, 1 << 22), (0, 4096, 1 << 22), (0, 3, 7), (2, 5, 64), (40, 1, 1)],
)
def test_ties_are_exact_whether_settled_or_searched_again(
    monkeypatch, margin, query_rows, chunk_elements
):
    # Integer points: every distance is exact and most rows tie at the cut;
    # a margin of 0 sends every such row to the full search.
    rng = np.random.default_rng(4)
    references = rng.integers(0, 3, size=(40, 2)).astype(np.float64)
    full = squared_distances(references, references)
    np.fill_diagonal(full, np.inf)
    expected = sorted_rows(full, 6)
    monkeypatch.setattr(neighbours, "TIE_MARGIN", margin)
    monkeypatch.setattr(neighbours, "QUERY_ROWS", query_rows)
    monkeypatch.setattr(neighbours, "CHUNK_ELEMENTS", chunk_elements)
    distances, positions = k_nearest(references, 6)
    np.testing.assert_array_equal(positions, expected[1])
    np.testing.assert_array_equal(distances, np.sqrt(expected[0]))


def test_duplicates_beyond_the_margin_take_the_lowest_positions():
    # 30 copies of one point, then 5 others far away: each copy's 5 nearest
    # others are the lowest copies but itself, at distance 0.
    references = np.vstack([np.zeros((30, 4)), np.full((5, 4), 10.0)])
    distances, positions = k_nearest(references, 5)
    assert positions[0].tolist() == [1, 2, 3, 4, 5]
    assert positions[3].tolist() == [0, 1, 2, 4, 5]
    assert positions[29].tolist() == [0, 1, 2, 3, 4]
    assert not distances[:30].any()
    # The far points: the other 4 at 0, then the first copy at 20.
    assert positions[30].tolist() == [31, 32, 33, 34, 0]
    assert distances[30].tolist() == [0.0, 0.0, 0.0, 0.0, 20.0]


def test_every_reference_and_duplicates():
    references = np.ones((5, 3))
    distances, positions = k_nearest(references, 4)
    assert positions.tolist() == [
        [1, 2, 3, 4],
        [0, 2, 3, 4],
        [0, 1, 3, 4],
        [0, 1, 2, 4],
        [0, 1, 2, 3],
    ]
    assert not distances.any()


def test_check_runs_before_each_chunk_and_can_stop_the_work(monkeypatch):
    monkeypatch.setattr(neighbours, "QUERY_ROWS", 2)
    calls = []

    def check():
        calls.append(None)
        if len(calls) == 3:
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        k_nearest(np.zeros((10, 2)), 1, check=check)
    assert len(calls) == 3


def test_memory_stays_far_below_the_full_matrix():
    # The full 6,000 x 6,000 float64 matrix alone would take 288 MB.
    references = np.random.default_rng(5).normal(size=(6000, 8))
    tracemalloc.start()
    try:
        k_nearest(references, 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 120e6
