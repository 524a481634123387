"""The chunked kernels equal the plain formulas, whatever the chunking."""

import math
import tracemalloc

import numpy as np
import pytest

from alquery.server.probabilities import predictive, softmax
from alquery.server.strategies import uncertainty
from alquery.server.strategies.uncertainty_chunks import (
    entropy_sum,
    margin_gap,
    scores_at,
    scores_by_chunk,
    top_one,
    top_ratio,
)
from alquery.server.threads import compute_threads

RNG = np.random.default_rng(11)


def plain(kernel, p):
    """The kernel's quantity by the plain float64 formula, row by row."""
    p = np.asarray(p, dtype=np.float64)
    top = -np.sort(-p, axis=1)
    if kernel is top_one:
        return top[:, 0]
    if kernel is margin_gap:
        return top[:, 0] - top[:, 1]
    if kernel is top_ratio:
        return top[:, 1] / top[:, 0]
    return np.array([math.fsum(x * math.log(x) for x in row if x > 0) for row in p])


def pool(n_pool, n_classes, dtype):
    # Peaked rows: softmax of wide normal logits, with some exact zeros.
    p = softmax(RNG.normal(scale=4.0, size=(n_pool, n_classes)))
    p[RNG.random(p.shape) < 0.05] = 0.0
    p[:, 0] += 1.0 - p.sum(axis=1)
    return np.abs(p).astype(dtype)


KERNELS = [top_one, margin_gap, top_ratio, entropy_sum]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n_classes", [2, 10, 33, 200])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk_bytes", [1, 1000, 7 * 4 * 33, 1 << 30])
def test_chunked_scores_equal_the_plain_formula(kernel, n_classes, dtype, chunk_bytes):
    # chunk_bytes=1 gives one row per chunk; the others cut the 101 rows
    # unevenly, so the last chunk is short.
    p = pool(101, n_classes, dtype)
    scores = scores_by_chunk(p, kernel, chunk_bytes=chunk_bytes)
    assert scores.dtype == np.float64
    if kernel is entropy_sum:
        # Snapped terms: within n_classes * 2^-53 * 8 of the exact sum.
        np.testing.assert_allclose(scores, plain(kernel, p), rtol=0, atol=1e-12)
    else:
        # The top two are exact in any dtype, and combined in float64.
        np.testing.assert_array_equal(scores, plain(kernel, p))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n_classes", [3, 40])
def test_logits_are_scored_as_their_float64_softmax(kernel, n_classes):
    logits = RNG.normal(scale=5.0, size=(64, n_classes)).astype(np.float32)
    fused = scores_by_chunk(logits, kernel, logits=True, chunk_bytes=1000)
    # Entropy's snapped terms move it by up to 1e-15 absolute.
    expected = plain(kernel, softmax(logits))
    np.testing.assert_allclose(fused, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kernel", KERNELS)
def test_passes_are_averaged_before_scoring(kernel):
    passes = RNG.dirichlet(np.ones(6), size=(30, 4)).astype(np.float32)
    scores = scores_by_chunk(passes, kernel, chunk_bytes=500)
    np.testing.assert_allclose(scores, plain(kernel, predictive(passes)), atol=1e-12)


@pytest.mark.parametrize("n_classes", [4, 64])
def test_a_top_value_held_twice_is_a_zero_margin(n_classes):
    p = np.full((3, n_classes), 0.0, dtype=np.float32)
    p[0, [1, 3]] = 0.5  # exact two-way tie at the top
    p[1, 0], p[1, 2] = 0.75, 0.25
    p[2, :] = 1.0 / n_classes  # every class tied
    np.testing.assert_array_equal(uncertainty.margin(p), [0.0, 0.5, 0.0])
    np.testing.assert_array_equal(uncertainty.ratio_of_confidence(p), [1, 1 / 3, 1])


@pytest.mark.parametrize("n_classes", [6, 50])
def test_float32_entropy_ties_rows_with_the_same_values_in_another_order(n_classes):
    base = RNG.dirichlet(np.ones(n_classes), size=40).astype(np.float32)
    shuffled = np.array([row[RNG.permutation(n_classes)] for row in base])
    np.testing.assert_array_equal(
        uncertainty.entropy(base), uncertainty.entropy(shuffled)
    )


@pytest.mark.parametrize(
    "measure", ["least_confidence", "margin", "ratio_of_confidence", "entropy"]
)
@pytest.mark.parametrize("logits", [False, True])
def test_scoring_allocates_a_few_chunks_not_a_copy_of_the_pool(measure, logits):
    # 20,000 x 500 float32 is 40 MB; a float64 copy would be 80 MB. numpy
    # reports its buffers to tracemalloc, so the peak is what scoring holds.
    values = RNG.random((20_000, 500), dtype=np.float32)
    if not logits:
        values /= values.sum(axis=1, keepdims=True)
    tracemalloc.start()
    try:
        getattr(uncertainty, measure)(values, logits=logits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Each scoring thread holds its own chunk scratch.
    scores_bytes = 20_000 * 8
    assert peak < scores_bytes + compute_threads() * 8 * 2**20


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("threads", ["1", "3"])
@pytest.mark.parametrize("shape", [(997, 7), (501, 3, 5)])
def test_scores_do_not_depend_on_how_many_threads_share_the_pool(
    kernel, threads, shape, monkeypatch
):
    # 997 rows in chunks of 10 rows: 100 chunks, split over 3 threads
    # unevenly (the last part short); OMP_NUM_THREADS sets the thread count.
    values = RNG.normal(size=shape)
    p = softmax(values)
    one = scores_by_chunk(p, kernel, chunk_bytes=10 * 8 * shape[-1] * shape[1])
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    for logits, given in ((False, p), (True, values)):
        split = scores_by_chunk(
            given, kernel, logits=logits, chunk_bytes=10 * 8 * shape[-1] * shape[1]
        )
        expected = one if not logits else scores_by_chunk(
            given, kernel, logits=True, chunk_bytes=1 << 30
        )
        np.testing.assert_array_equal(split, expected)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("threads", ["1", "3"])
@pytest.mark.parametrize("chunk_bytes", [1, 7 * 4 * 12, 1 << 30])
def test_gathered_rows_score_as_in_the_pool(kernel, threads, chunk_bytes, monkeypatch):
    # Positions out of order and repeated, split over the threads in
    # chunks of 1 row, 7 rows and all: each score is its row's own.
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    p = pool(500, 12, np.float32)
    positions = RNG.integers(500, size=301)
    expected = scores_by_chunk(p, kernel)[positions]
    got = scores_at(p, positions, kernel, chunk_bytes=chunk_bytes)
    np.testing.assert_array_equal(got, expected)
    assert len(scores_at(p, positions[:0], kernel)) == 0


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n_classes", [2, 3, 10, 32, 33])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("values", ["random", "few levels", "equal rows"])
def test_a_one_chunk_pool_scores_as_chunk_by_chunk(kernel, n_classes, dtype, values):
    # A pool that fits one chunk is scored straight from the array; the
    # same pool cut into chunks of 3 rows goes through the general path.
    # Bit-identical, with many ties ("few levels": values of a few
    # quarters, unnormalised; "equal rows": every class equal).
    if values == "random":
        p = pool(1000, n_classes, dtype)
    elif values == "few levels":
        p = (RNG.integers(1, 5, size=(1000, n_classes)) / 4).astype(dtype)
    else:
        p = np.full((1000, n_classes), 1.0 / n_classes, dtype)
    one = scores_by_chunk(p, kernel)
    chunked = scores_by_chunk(p, kernel, chunk_bytes=3 * n_classes * p.itemsize)
    np.testing.assert_array_equal(one, chunked)
