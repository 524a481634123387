import numpy as np
import pytest

from alquery.server.chunks import chunk_rows, probability_chunks, working_dtype
from alquery.server.probabilities import predictive, softmax

RNG = np.random.default_rng(3)


def collect(values, *, logits=False, rows):
    # A chunk's buffer is reused by the next one: copy it while it is valid.
    starts, stops, parts = [], [], []
    for chunk in probability_chunks(values, logits=logits, rows=rows):
        starts.append(chunk.start)
        stops.append(chunk.stop)
        parts.append(chunk.probabilities.copy())
    assert starts == list(range(0, len(values), rows))
    assert stops == starts[1:] + [len(values)]
    return np.concatenate(parts)


@pytest.mark.parametrize("rows", [1, 3, 10, 11, 1000])
def test_chunks_cover_every_row_once_in_order(rows):
    probabilities = RNG.dirichlet(np.ones(4), size=10)
    np.testing.assert_array_equal(collect(probabilities, rows=rows), probabilities)


@pytest.mark.parametrize("rows", [1, 4, 7, 50])
def test_logits_go_through_the_one_softmax_chunk_by_chunk(rows):
    logits = RNG.normal(size=(23, 5)).astype(np.float32) * 10
    np.testing.assert_allclose(
        collect(logits, logits=True, rows=rows), softmax(logits), rtol=1e-15
    )


@pytest.mark.parametrize("logits", [False, True])
def test_passes_are_averaged_in_float64_per_chunk(logits):
    values = RNG.dirichlet(np.ones(3), size=(9, 4)).astype(np.float32)
    if logits:
        values = np.log(values)
    expected = predictive(softmax(values) if logits else values)
    np.testing.assert_array_equal(collect(values, logits=logits, rows=4), expected)


def test_float32_probabilities_are_read_in_place_without_a_copy():
    probabilities = RNG.dirichlet(np.ones(3), size=6).astype(np.float32)
    chunk = next(probability_chunks(probabilities, rows=4))
    assert np.shares_memory(chunk.probabilities, probabilities)
    assert working_dtype(probabilities) == np.float32
    assert working_dtype(probabilities, logits=True) == np.float64


def test_chunk_rows_fill_the_bytes_asked_for():
    values = np.zeros((10_000, 100), dtype=np.float32)
    assert chunk_rows(values, chunk_bytes=40_000) == 100
    assert chunk_rows(values, logits=True, chunk_bytes=40_000) == 50
    assert chunk_rows(values, chunk_bytes=1) == 1
    assert chunk_rows(values[:7], chunk_bytes=1 << 30) == 7
