import numpy as np
import pytest

from alquery.server.selection import top_k
from alquery.server.strategies.bayesian import bald
from alquery.server.strategies.committee import (
    consensus_entropy,
    hard_votes,
    kl_max,
    kl_mean,
    vote_entropy,
)

# Three pool samples, two members, two classes: members that agree on the
# vote, members that disagree completely, and a member whose own top classes
# tie (0.5, 0.5), which votes for the lower class, 0.
MEMBERS = np.array(
    [
        [[0.8, 0.2], [0.6, 0.4]],
        [[0.9, 0.1], [0.1, 0.9]],
        [[1.0, 0.0], [0.5, 0.5]],
    ]
)


def test_hard_votes_count_each_members_argmax():
    np.testing.assert_array_equal(
        hard_votes(MEMBERS), [[1.0, 0.0], [0.5, 0.5], [1.0, 0.0]]
    )


def test_vote_entropy_with_a_members_tie_voting_for_the_lower_class():
    # Votes (0, 0), (0, 1), (0, 0): entropies 0, ln 2, 0.
    scores = vote_entropy(MEMBERS)
    np.testing.assert_allclose(scores, [0.0, np.log(2), 0.0], atol=1e-15)
    # Samples 0 and 2 tie at 0; the lower pool position ranks first.
    assert top_k(scores, 3, higher_first=True).ranked_indices.tolist() == [1, 0, 2]


def test_consensus_entropy_is_the_entropy_of_the_mean():
    # Means (0.7, 0.3), (0.5, 0.5), (0.75, 0.25):
    # 0.7*0.356675 + 0.3*1.203973 = 0.610864; ln 2;
    # 0.75*0.287682 + 0.25*1.386294 = 0.562335.
    np.testing.assert_allclose(
        consensus_entropy(MEMBERS), [0.610864, np.log(2), 0.562335], atol=1e-6
    )


def test_kl_mean_and_max_from_the_consensus():
    # Sample 0: KL(0.8,0.2 || 0.7,0.3) = 0.8 ln(8/7) + 0.2 ln(2/3) = 0.025732;
    #           KL(0.6,0.4 || 0.7,0.3) = 0.6 ln(6/7) + 0.4 ln(4/3) = 0.022582.
    # Sample 1: both 0.9 ln 1.8 + 0.1 ln 0.2 = 0.368064.
    # Sample 2: KL(1,0 || 0.75,0.25) = ln(4/3) = 0.287682 (0 ln 0 = 0);
    #           KL(0.5,0.5 || 0.75,0.25) = 0.5 ln(2/3) + 0.5 ln 2 = 0.143841.
    np.testing.assert_allclose(
        kl_mean(MEMBERS), [0.024157, 0.368064, 0.215762], atol=1e-6
    )
    np.testing.assert_allclose(
        kl_max(MEMBERS), [0.025732, 0.368064, 0.287682], atol=1e-6
    )
    assert np.isfinite(kl_max(MEMBERS)).all()


def test_kl_mean_equals_bald():
    rng = np.random.default_rng(7)
    members = rng.dirichlet(np.full(4, 0.5), size=(50, 5))
    np.testing.assert_allclose(kl_mean(members), bald(members), atol=1e-12)


def test_agreeing_members_score_zero_up_to_rounding_never_below():
    # The mean of three 0.3s rounds, so KL is 0 only to about 1e-16.
    members = np.array([[[0.3, 0.7], [0.3, 0.7], [0.3, 0.7]]])
    assert vote_entropy(members)[0] == 0.0
    for function in (kl_mean, kl_max):
        assert 0.0 <= function(members)[0] < 1e-15


@pytest.mark.parametrize("function", [kl_mean, kl_max])
def test_kl_ties_go_to_the_lower_position(function):
    # Sample 1 holds sample 0's members in the other order.
    members = np.array(
        [
            [[0.9, 0.1], [0.2, 0.8]],
            [[0.2, 0.8], [0.9, 0.1]],
            [[0.6, 0.4], [0.4, 0.6]],
        ]
    )
    scores = function(members)
    assert scores[0] == scores[1]
    assert top_k(scores, 3, higher_first=True).ranked_indices.tolist() == [0, 1, 2]
