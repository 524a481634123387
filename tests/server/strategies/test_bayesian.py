import numpy as np

from alquery.server.selection import top_k
from alquery.server.strategies.bayesian import bald, mean_std, variation_ratios

# Three pool samples, two passes, two classes (the committee tests' input).
PASSES = np.array(
    [
        [[0.8, 0.2], [0.6, 0.4]],
        [[0.9, 0.1], [0.1, 0.9]],
        [[1.0, 0.0], [0.5, 0.5]],
    ]
)


def test_bald_is_entropy_of_the_mean_minus_mean_entropy():
    # Sample 0: H(0.7, 0.3) = 0.610864; H(0.8, 0.2) = 0.500402,
    #   H(0.6, 0.4) = 0.673012, mean 0.586707; BALD 0.024157.
    # Sample 1: ln 2 - H(0.9, 0.1) = 0.693147 - 0.325083 = 0.368064.
    # Sample 2: H(0.75, 0.25) - (0 + ln 2) / 2 = 0.562335 - 0.346574.
    np.testing.assert_allclose(
        bald(PASSES), [0.024157, 0.368064, 0.215762], atol=1e-6
    )


def test_bald_ties_go_to_the_lower_position_and_agreement_scores_zero():
    # Samples 0 and 1 hold the same passes in another order; sample 2's
    # passes agree, so it scores exactly 0, not a rounding error below.
    passes = np.array(
        [
            [[0.9, 0.1], [0.1, 0.9]],
            [[0.1, 0.9], [0.9, 0.1]],
            [[0.3, 0.7], [0.3, 0.7]],
        ]
    )
    scores = bald(passes)
    assert scores[0] == scores[1] and scores[2] >= 0.0
    assert top_k(scores, 3, higher_first=True).ranked_indices.tolist() == [0, 1, 2]


def test_variation_ratios_count_the_modal_votes():
    # Votes (0, 0), (0, 1), (0, 0): the last sample's second pass ties
    # (0.5, 0.5) and votes for class 0. Scores 1 - 2/2, 1 - 1/2, 1 - 2/2.
    np.testing.assert_allclose(variation_ratios(PASSES), [0.0, 0.5, 0.0])


def test_variation_ratios_with_a_tie_between_modal_classes():
    # Three passes voting 0, 1, 2: every class is modal with one vote, so
    # the score is 1 - 1/3 whichever is taken.
    passes = np.array([[[0.6, 0.3, 0.1], [0.1, 0.6, 0.3], [0.3, 0.1, 0.6]]])
    np.testing.assert_allclose(variation_ratios(passes), [2 / 3])


def test_mean_std_is_the_population_std_averaged_over_classes():
    # Sample 0: class 0 holds 0.8 and 0.6, population std 0.1; class 1 too.
    # Sample 1: 0.9 and 0.1, std 0.4. Sample 2: 1.0 and 0.5, std 0.25.
    # (The sample std, divisor T - 1, would be sqrt(2) times larger.)
    np.testing.assert_allclose(mean_std(PASSES), [0.1, 0.4, 0.25], atol=1e-12)


# Four passes in two independent halves: sample A tells passes {0, 1} from
# {2, 3}, B is a copy of A, C tells {0, 2} from {1, 3} less sharply, and D
# is a coin flip under every pass.
