import numpy as np
import pytest

from alquery.server.probabilities import softmax
from alquery.server.selection import top_k
from alquery.server.strategies.uncertainty import (
    entropy,
    least_confidence,
    margin,
    ratio_of_confidence,
)

# Hand-computed on four rows: a clear winner, a near three-way tie, an exact
# two-way tie with a zero, and a certain prediction.
PROBABILITIES = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.4, 0.35, 0.25],
        [0.5, 0.5, 0.0],
        [1.0, 0.0, 0.0],
    ]
)


def test_least_confidence_is_one_minus_the_top_probability():
    np.testing.assert_allclose(
        least_confidence(PROBABILITIES), [0.3, 0.6, 0.5, 0.0], atol=1e-12
    )


def test_margin_is_the_gap_between_the_two_largest():
    np.testing.assert_allclose(margin(PROBABILITIES), [0.5, 0.05, 0.0, 1.0], atol=1e-12)


def test_entropy_in_nats_with_zero_log_zero_as_zero():
    # Row 0: 0.7*0.356675 + 0.2*1.609438 + 0.1*2.302585 = 0.801819.
    # Row 1: 0.4*0.916291 + 0.35*1.049822 + 0.25*1.386294 = 1.080528.
    scores = entropy(PROBABILITIES)
    np.testing.assert_allclose(scores, [0.801819, 1.080528, np.log(2), 0.0], atol=1e-6)
    assert np.isfinite(scores).all()
    assert str(scores[3]) == "0.0"  # not -0.0


def test_ratio_of_confidence_is_the_runner_up_over_the_top():
    # 0.2 / 0.7 = 0.285714; 0.35 / 0.4 = 0.875; 0.5 / 0.5 = 1; 0 / 1 = 0.
    np.testing.assert_allclose(
        ratio_of_confidence(PROBABILITIES), [0.285714, 0.875, 1.0, 0.0], atol=1e-6
    )


def test_ratio_of_confidence_ties_go_to_the_lower_position():
    # 0.3 / 0.5 = 0.6 and 0.36 / 0.6 = 0.6 tie; margin tells them apart
    # (0.2 and 0.24), the ratio does not.
    probabilities = np.array([[0.9, 0.1, 0.0], [0.6, 0.36, 0.04], [0.3, 0.5, 0.2]])
    scores = ratio_of_confidence(probabilities)
    np.testing.assert_allclose(scores, [1 / 9, 0.6, 0.6])
    ranking = top_k(scores, 3, higher_first=True)
    assert ranking.ranked_indices.tolist() == [1, 2, 0]


def test_passes_are_averaged_before_scoring():
    # Two passes that disagree completely average to a coin flip.
    passes = np.array([[[0.9, 0.1], [0.1, 0.9]], [[0.8, 0.2], [0.8, 0.2]]])
    np.testing.assert_allclose(least_confidence(passes), [0.5, 0.2])
    np.testing.assert_allclose(margin(passes), [0.0, 0.6])
    np.testing.assert_allclose(ratio_of_confidence(passes), [1.0, 0.25])


@pytest.mark.parametrize("shift", [0.0, 1000.0, -1000.0])
def test_softmax_is_stable_for_large_logits(shift):
    logits = np.array([[0.0, np.log(3.0)]]) + shift
    np.testing.assert_allclose(softmax(logits), [[0.25, 0.75]])


def test_entropy_ties_rows_with_the_same_values_in_another_class_order():
    # Summed in class order these two differ in the last bit (found by a
    # user); summed smallest first they tie, and the lower position wins.
    rows = np.array([[0.6, 0.3, 0.1], [0.6, 0.1, 0.3], [0.1, 0.3, 0.6]])
    scores = entropy(rows)
    assert scores[0] == scores[1] == scores[2]
    rng = np.random.default_rng(5)
    base = rng.dirichlet(np.ones(6), size=50)
    shuffled = np.array([row[rng.permutation(6)] for row in base])
    np.testing.assert_array_equal(entropy(base), entropy(shuffled))
