"""The bit-pattern bound is above every exact entropy, and not far above."""

import math

import numpy as np
import pytest

from alquery.server.probabilities import softmax
from alquery.server.strategies import entropy_pattern, uncertainty
from alquery.server.strategies.entropy_pattern import (
    MAX_GAP,
    pattern_bound,
    pattern_sum,
)
from alquery.server.strategies.uncertainty_chunks import scores_by_chunk

RNG = np.random.default_rng(31)


def bound(p, chunk_bytes=1 << 20):
    """The pattern bound of every row of ``p`` (float32)."""
    scale, offset = pattern_bound(p.shape[1])
    return scale * -scores_by_chunk(p, pattern_sum, chunk_bytes=chunk_bytes) + offset


def rows(values):
    return np.array(values, np.float32)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ([0.5, 0.5], -(2.0**23)),  # two terms of 1/2 (-1 2^23)
        ([0.25] * 4, -2.0 * 2**23),  # four of 1/4 (-2 2^23)
        ([1.0, 0.0, 0.0], 0.0),  # certain: b(1) - b(1) = 0, zeros add 0
        ([1.0, -0.0], 0.0),  # -0.0's pattern wraps, times zero
        ([0.75, 0.25], -(0.75 * 2**22 + 0.25 * 2 * 2**23)),  # 3/4 = 2^-1 1.5
    ],
)
def test_pattern_sums_by_hand(row, expected):
    assert scores_by_chunk(rows([row]), pattern_sum)[0] == expected


def test_powers_of_two_are_bounded_tightly():
    # log2 of a power of two is read exactly and the sums are exact: the
    # bound is the entropy (ln 2 for two halves) plus the rounding
    # allowance, a relative (n + 3) 2^-24 and the offset.
    for row, entropy in [([0.5, 0.5], math.log(2)), ([0.25] * 4, math.log(4))]:
        got = bound(rows([row]))[0]
        offset = pattern_bound(len(row))[1]
        assert entropy < got < entropy * (1 + (len(row) + 4) * 2.0**-24) + offset


def test_the_largest_gap_is_where_the_docstring_says():
    # At m = 1 / ln 2 - 1 the estimate e + m is MAX_GAP below log2 x.
    x = np.float32(0.5 / math.log(2))
    row = rows([[x, 1 - x]])
    gap = bound(row)[0] - uncertainty.entropy(row)[0]
    assert 0.8 * x * MAX_GAP * math.log(2) < gap < MAX_GAP * math.log(2)
    assert MAX_GAP == pytest.approx(0.0860713, abs=1e-7)


def every_float32_in_unit_interval(stride):
    # Zero, -0.0, the subnormals and normals up to 1, every stride-th
    # pattern, and the last 2^16 below 1.
    patterns = np.concatenate(
        [
            np.arange(0, 0x3F800001, stride, dtype=np.uint32),
            np.arange(0x3F800000 - 2**16, 0x3F800001, dtype=np.uint32),
            np.array([0x80000000], np.uint32),
        ]
    )
    return patterns.view(np.float32)


def test_the_bound_holds_for_single_values_across_the_range():
    # One value a row: -x ln x against its bound, for about 1.1 million
    # values from 0 through the subnormals to 1.
    x = every_float32_in_unit_interval(1021)[:, None]
    assert np.all(uncertainty.entropy(x) <= bound(x))


def peaked(n_pool, n_classes):
    return softmax(RNG.normal(scale=3.0, size=(n_pool, n_classes))).astype(
        np.float32
    )


def unnormalised(n_pool, n_classes):
    # Values in [0, 1] that do not sum to 1: the bound needs no sum.
    return RNG.random((n_pool, n_classes), dtype=np.float32)


def powers_of_two(n_pool, n_classes):
    # Every estimate exact: only rounding separates bound and entropy.
    exponents = RNG.integers(1, 40, size=(n_pool, n_classes))
    return (2.0 ** -exponents.astype(np.float64)).astype(np.float32)


def widest_gaps(n_pool, n_classes):
    # Every value near m = 1 / ln 2 - 1, where the estimate is lowest.
    exponents = RNG.integers(1, 30, size=(n_pool, n_classes))
    return (2.0 ** -exponents.astype(np.float64) / math.log(2)).astype(np.float32)


def subnormal_and_zero(n_pool, n_classes):
    choices = rows([0.0, -0.0, 1e-45, 1e-40, 1e-38, 2.0**-126, 3e-8, 1.0])
    return RNG.choice(choices, size=(n_pool, n_classes))


def uniform(n_pool, n_classes):
    return np.full((n_pool, n_classes), 1 / n_classes, np.float32)


KINDS = [peaked, unnormalised, powers_of_two, widest_gaps, subnormal_and_zero,
         uniform]


@pytest.mark.parametrize("make", KINDS)
@pytest.mark.parametrize("n_classes", [1, 2, 10, 1000, 4096])
def test_the_bound_is_above_every_exact_score(make, n_classes):
    p = make(200, n_classes)
    assert np.all(uncertainty.entropy(p) <= bound(p, chunk_bytes=4 * n_classes * 7))


@pytest.mark.parametrize("make", [peaked, unnormalised, uniform, widest_gaps])
@pytest.mark.parametrize("n_classes", [2, 10, 1000])
def test_the_bound_is_at_most_the_largest_gap_above(make, n_classes):
    # bound - exact <= MAX_GAP ln 2 sum_c x_c, plus the offset and the
    # relative rounding allowance.
    p = make(200, n_classes)
    slack = bound(p) - uncertainty.entropy(p)
    total = p.sum(axis=1, dtype=np.float64)
    offset = pattern_bound(n_classes)[1]
    assert np.all(slack <= (MAX_GAP * math.log(2) + 1e-3) * total + offset)


def test_the_pattern_of_one_is_exact():
    assert int(entropy_pattern.ONE_PATTERN) == np.float32(1).view(np.int32)
    assert pattern_bound(1000)[1] == pytest.approx(math.log(2) * 2.0**-18 * 1000)
