"""Screened top-k entropy equals top-k of the exact scores, bit for bit."""

import math

import numpy as np
import pytest

from alquery.server.probabilities import softmax
from alquery.server.selection import top_k
from alquery.server.strategies import entropy_screen, uncertainty
from alquery.server.strategies.entropy_screen import (
    LOG_ERROR,
    entropy_top_k,
    float32_log_error,
    log_is_accurate,
    log_sample,
    screen_bound,
    screen_sum,
)
from alquery.server.strategies.entropy_pattern import pattern_sum
from alquery.server.strategies.uncertainty_chunks import scores_by_chunk
from alquery.v1 import query_pb2
from conftest import tensor

RNG = np.random.default_rng(23)
SUBNORMAL = np.float32(1e-40)


def exact_top_k(values, batch_size, logits=False):
    """The reference: every sample scored exactly, then selection.top_k."""
    scores = uncertainty.entropy(values, logits=logits)
    return top_k(scores, batch_size, higher_first=True)


def normalised(p):
    p = np.abs(np.asarray(p, dtype=np.float64))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def peaked(n_pool, n_classes):
    return softmax(RNG.normal(scale=3.0, size=(n_pool, n_classes))).astype(
        np.float32
    )


def near_ties(n_pool, n_classes):
    # One row in every class order, and copies nudged by one float32 ulp
    # in a class: equal and almost equal entropies throughout.
    base = peaked(1, n_classes)[0]
    rows = np.array([RNG.permutation(base) for _ in range(n_pool)])
    nudged = RNG.random(n_pool) < 0.5
    column = RNG.integers(n_classes, size=n_pool)
    rows[nudged, column[nudged]] = np.nextafter(
        rows[nudged, column[nudged]], np.float32(1)
    )
    return rows


def uniform_rows(n_pool, n_classes):
    return np.full((n_pool, n_classes), 1 / n_classes, np.float32)


def all_equal(n_pool, n_classes):
    return np.tile(peaked(1, n_classes), (n_pool, 1))


def one_hot(n_pool, n_classes):
    p = np.zeros((n_pool, n_classes), np.float32)
    p[np.arange(n_pool), RNG.integers(n_classes, size=n_pool)] = 1
    return p


def tiny_and_subnormal(n_pool, n_classes):
    # Near-certain rows whose other classes hold tiny, subnormal and zero
    # values: entropies of 1e-30 and below, many of them close.
    p = np.zeros((n_pool, n_classes), np.float32)
    choices = np.array([0, SUBNORMAL, 1e-38, 1e-30, 3e-8, 1e-45], np.float32)
    p[:, 1:] = RNG.choice(choices, size=(n_pool, n_classes - 1))
    p[:, 0] = 1 - p[:, 1:].sum(axis=1, dtype=np.float32)
    return p


def signed_zeros(n_pool, n_classes):
    # Peaked rows with zeros and -0.0 (whose bit pattern is the sign bit).
    p = peaked(n_pool, n_classes)
    p[RNG.random(p.shape) < 0.3] = 0.0
    p[RNG.random(p.shape) < 0.3] = -0.0
    return p


def mixed(n_pool, n_classes):
    # A few of every kind above, shuffled.
    kinds = [peaked, near_ties, uniform_rows, one_hot, tiny_and_subnormal]
    parts = [kind(n_pool // len(kinds) + 1, n_classes) for kind in kinds]
    return RNG.permutation(np.concatenate(parts))[:n_pool]


POOLS = [peaked, near_ties, uniform_rows, all_equal, one_hot,
         tiny_and_subnormal, signed_zeros, mixed]


@pytest.mark.parametrize("make", POOLS)
@pytest.mark.parametrize("n_classes", [2, 10, 33, 300])
@pytest.mark.parametrize("batch_size", [1, 7, 50, 51, 200])
def test_the_batch_is_exact_top_k(make, n_classes, batch_size):
    # 50 is the most MAX_SURVIVOR_SHARE lets the screens try on 200
    # samples; 51 and the whole pool are scored exactly.
    p = make(200, n_classes)
    expected = exact_top_k(p, batch_size)
    # Small chunks: many chunks, split over the threads.
    got = entropy_top_k(p, batch_size, chunk_bytes=4 * n_classes * 3)
    np.testing.assert_array_equal(got.ranked_indices, expected.ranked_indices)
    np.testing.assert_array_equal(got.scores, expected.scores)
    assert got.ranked_indices.dtype == np.int64


@pytest.mark.parametrize("make", POOLS)
@pytest.mark.parametrize("batch_size", [1, 16])
def test_the_sampled_first_cut_keeps_the_batch(make, batch_size):
    # 4,100 samples: the batch is at most 1/256 of the pool, so the cut is
    # first placed from every 16th sample.
    p = make(4100, 10)
    expected = exact_top_k(p, batch_size)
    got = entropy_top_k(p, batch_size, chunk_bytes=4 * 10 * 100)
    np.testing.assert_array_equal(got.ranked_indices, expected.ranked_indices)
    np.testing.assert_array_equal(got.scores, expected.scores)


@pytest.mark.parametrize("batch_size", [2, 16])
def test_the_first_cut_holds_when_the_sampled_rows_are_the_best(batch_size):
    # Every 16th row is close to uniform, the rest peaked: the best rows
    # of the pool are all in the sample, and the cut must still keep them.
    p = peaked(4100, 10)
    sampled = np.arange(0, 4100, 16)
    p[sampled] = softmax(RNG.normal(scale=0.3, size=(len(sampled), 10)))
    expected = exact_top_k(p, batch_size)
    assert set(expected.ranked_indices) <= set(sampled)
    got = entropy_top_k(p, batch_size)
    np.testing.assert_array_equal(got.ranked_indices, expected.ranked_indices)
    np.testing.assert_array_equal(got.scores, expected.scores)


@pytest.mark.parametrize("chunk_bytes", [1, 4 * 10 * 64, 1 << 30])
def test_chunk_and_thread_boundaries_do_not_change_the_batch(chunk_bytes):
    p = mixed(3001, 10)
    expected = exact_top_k(p, 50)
    got = entropy_top_k(p, 50, chunk_bytes=chunk_bytes)
    np.testing.assert_array_equal(got.ranked_indices, expected.ranked_indices)
    np.testing.assert_array_equal(got.scores, expected.scores)


def test_the_probe_need_not_hold_the_batch():
    # [1/2 + e, 1/2 - e] has a larger pattern bound than [1/2, 1/2] but a
    # smaller entropy: the probe takes 5 of the 20 such rows, and the 5
    # rows of halves, the true batch, must still pass the probe's cut.
    e = 2.0**-6
    high = RNG.uniform(0.8, 0.99, size=300)
    p = np.stack([high, 1 - high], axis=1).astype(np.float32)
    p[RNG.choice(300, size=20, replace=False)] = [0.5 + e, 0.5 - e]
    halves = [11, 60, 150, 151, 299]
    p[halves] = 0.5
    survivors = entropy_screen.screen(p, 5)
    got = entropy_top_k(p, 5)
    np.testing.assert_array_equal(got.ranked_indices, halves)
    np.testing.assert_array_equal(got.scores, exact_top_k(p, 5).scores)
    assert not set(halves) & set(entropy_screen._largest(
        -scores_by_chunk(p, pattern_sum), 5, 75
    ))
    assert set(halves) <= set(survivors.positions)


def test_the_float32_log_narrows_what_the_pattern_bound_keeps():
    # Near-uniform rows: entropies spread over about 1e-3, far inside the
    # pattern bound's 0.06 but far outside the float32 screen's bound.
    p = softmax(RNG.normal(scale=0.1, size=(4000, 50))).astype(np.float32)
    survivors = entropy_screen.screen(p, 10)
    assert survivors.after_pattern > 2000
    assert len(survivors.positions) < 100
    expected = exact_top_k(p, 10)
    got = entropy_top_k(p, 10)
    np.testing.assert_array_equal(got.ranked_indices, expected.ranked_indices)
    np.testing.assert_array_equal(got.scores, expected.scores)


@pytest.mark.parametrize("make", [peaked, near_ties, mixed])
def test_without_the_float32_log_the_batch_is_still_exact(make, monkeypatch):
    # A CPU whose float32 log misses the bound: only the pattern bound
    # screens, and more samples are scored exactly.
    monkeypatch.setattr(entropy_screen, "log_is_accurate", lambda: False)
    p = make(3000, 10)
    expected = exact_top_k(p, 20)
    got = entropy_top_k(p, 20, chunk_bytes=4 * 10 * 64)
    np.testing.assert_array_equal(got.ranked_indices, expected.ranked_indices)
    np.testing.assert_array_equal(got.scores, expected.scores)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(300, 12), (300, 3, 12)])
def test_unscreened_inputs_take_the_exact_path(dtype, shape):
    # float64 probabilities, passes and logits are not screened, and
    # come out as the exact path's batch.
    logits = RNG.normal(scale=3.0, size=shape).astype(dtype)
    for values, is_logits in [(logits, True), (softmax(logits).astype(dtype), False)]:
        expected = exact_top_k(values, 9, logits=is_logits)
        got = entropy_top_k(values, 9, logits=is_logits, chunk_bytes=500)
        np.testing.assert_array_equal(got.ranked_indices, expected.ranked_indices)
        np.testing.assert_array_equal(got.scores, expected.scores)


def test_well_separated_pools_are_confirmed_on_few_samples():
    p = peaked(20000, 50)
    survivors = entropy_screen.screen(p, 100)
    assert survivors.after_pattern < 2000
    assert len(survivors.positions) < 200


@pytest.mark.parametrize("n_pool", [500, 5000])
def test_a_screen_that_keeps_everyone_scores_everyone(n_pool):
    # All rows equal: the screen gives up, every sample is scored, and ties
    # go by position.
    p = all_equal(n_pool, 10)
    assert entropy_screen.screen(p, 5) is None
    got = entropy_top_k(p, 5)
    np.testing.assert_array_equal(got.ranked_indices, [0, 1, 2, 3, 4])


@pytest.mark.parametrize("make", POOLS)
@pytest.mark.parametrize("n_classes", [2, 10, 1000])
def test_the_screen_is_within_its_bound(make, n_classes):
    p = make(300, n_classes)
    exact = uncertainty.entropy(p)
    screened = -scores_by_chunk(p, screen_sum)
    c, a = screen_bound(n_classes)
    assert np.all(np.abs(exact - screened) <= c * screened + a)


def test_the_bound_is_not_loose_by_orders_of_magnitude():
    # On long uniform rows the float32 sum really does drift: the bound
    # stays within a few hundred times the error it covers.
    p = uniform_rows(4, 1000)
    exact = uncertainty.entropy(p)
    screened = -scores_by_chunk(p, screen_sum)
    c, a = screen_bound(1000)
    error = np.abs(exact - screened).max()
    assert 0 < error and c * screened.max() + a < 1000 * error


def test_float32_log_is_within_the_assumed_error_on_a_sample():
    # Every 61st float32 in [2^-126, 1], and the last 2^20 below 1.
    strided = np.arange(0x00800000, 0x3F800001, 61, dtype=np.uint32)
    last = np.arange(0x3F800000 - 2**20, 0x3F800001, dtype=np.uint32)
    assert float32_log_error(strided) <= LOG_ERROR
    assert float32_log_error(last) <= LOG_ERROR
    assert log_is_accurate()


def test_a_log_outside_the_bound_turns_the_screen_off(caplog):
    # 2^-18 relative error, or log(1) != 0: the check fails, and warns.
    def coarse(x):
        return np.log(x) * np.float32(1 + 2.0**-18)

    def shifted(x):
        return np.log(x) + np.float32(1e-30)

    with caplog.at_level("WARNING", logger="alquery.strategies.entropy"):
        assert not log_is_accurate(coarse)
        assert not log_is_accurate(shifted)
    assert "scored exactly" in caplog.text
    assert float32_log_error(log_sample(), shifted) == math.inf


@pytest.mark.large
def test_float32_log_is_within_the_assumed_error_everywhere():
    # All 1.06e9 float32 in [2^-126, 1], 2^22 at a time (tens of seconds).
    step = 2**22
    for start in range(0x00800000, 0x3F800001, step):
        stop = min(start + step, 0x3F800001)
        bits = np.arange(start, stop, dtype=np.uint32)
        assert float32_log_error(bits) <= LOG_ERROR


def test_the_server_answers_the_screened_batch(stub):
    p = mixed(400, 10)
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(probabilities=tensor(p, query_pb2.D_TYPE_FLOAT32)),
        uncertainty=query_pb2.UncertaintyStrategy(
            method=query_pb2.UncertaintyStrategy.METHOD_ENTROPY
        ),
        batch_size=20,
    )
    response = stub.Rank(request)
    expected = exact_top_k(p, 20)
    assert list(response.ranked_indices) == expected.ranked_indices.tolist()
    assert list(response.scores) == expected.scores.tolist()
