"""The passes-based uncertainty strategies against the peer libraries' own code.

Inputs are random Dirichlet draws with every probability well above the
peers' epsilons (1e-8 in small-text, 1e-7 in scikit-activeml), so that those
clips do not matter, and with continuous scores, so that there are no ties
except where a measure is discrete (vote counts), which the tests handle.
baal also has BALD, BatchBALD, Variance and EPIG, but it needs torch, which
alquery does not install, so it is not compared here.
"""

import numpy as np
import pytest

from alquery.server.selection import top_k
from alquery.server.strategies.bayesian import bald, variation_ratios
from alquery.server.strategies.bayesian_joint import batchbald
from alquery.server.strategies.committee import (
    consensus_entropy,
    kl_max,
    kl_mean,
    vote_entropy,
)

RNG = np.random.default_rng(2027)
N_POOL, N_PASSES, N_CLASSES = 200, 7, 4
PASSES = RNG.dirichlet(np.full(N_CLASSES, 2.0), size=(N_POOL, N_PASSES))
ROWS = np.arange(N_POOL)[:, None]


class FixedMember:
    """A fitted-looking classifier that returns one member's probabilities.

    X = [[0], [1], ...] selects pool rows, so a peer's committee code runs on
    the test's own probabilities; ``predict`` is the argmax (lowest class on
    a tie), as a scikit-learn classifier's is.
    """

    def __init__(self, probabilities):
        self.probabilities = probabilities
        self.classes_ = np.arange(probabilities.shape[1])

    def fit(self, *args, **kwargs):
        return self

    def predict_proba(self, X, **kwargs):
        return self.probabilities[np.asarray(X, dtype=int).ravel()]

    def predict(self, X, **kwargs):
        return self.predict_proba(X).argmax(axis=1)


def modal_committee():
    models = pytest.importorskip("modAL.models", reason="modAL-python not installed")
    learners = [
        models.ActiveLearner(estimator=FixedMember(PASSES[:, t]))
        for t in range(N_PASSES)
    ]
    return models.Committee(learner_list=learners)


def clean_cut(scores):
    """A batch size whose cut does not split a group of tied scores."""
    ordered = np.sort(scores)[::-1]
    cuts = np.flatnonzero(ordered[:-1] > ordered[1:]) + 1
    return int(cuts[cuts >= len(ordered) // 10][0])


@pytest.mark.parametrize(
    "ours, theirs, sampling",
    [
        (vote_entropy, "vote_entropy", "vote_entropy_sampling"),
        (consensus_entropy, "consensus_entropy", "consensus_entropy_sampling"),
        (kl_max, "KL_max_disagreement", "max_disagreement_sampling"),
    ],
)
def test_committee_scores_and_batches_equal_modal(ours, theirs, sampling):
    committee = modal_committee()
    disagreement = pytest.importorskip("modAL.disagreement")
    scores = ours(PASSES)
    expected = getattr(disagreement, theirs)(committee, ROWS)
    np.testing.assert_allclose(scores, expected, rtol=1e-9, atol=1e-12)

    batch_size = clean_cut(scores)
    picked, _ = getattr(disagreement, sampling)(committee, ROWS, n_instances=batch_size)
    ranking = top_k(scores, batch_size, higher_first=True)
    # modAL returns its batch unordered (argpartition); compare as sets.
    assert set(ranking.ranked_indices.tolist()) == set(np.ravel(picked).tolist())


def votes():
    # The members' hard votes, shape (n_pool, n_members), lowest class on a tie.
    return PASSES.argmax(axis=2)


def test_vote_entropy_equals_scikit_activeml():
    qbc = pytest.importorskip(
        "skactiveml.pool._query_by_committee", reason="scikit-activeml not installed"
    )
    expected = qbc.vote_entropy(votes(), classes=np.arange(N_CLASSES))
    np.testing.assert_allclose(vote_entropy(PASSES), expected, rtol=1e-12, atol=1e-15)


def test_variation_ratios_equal_scikit_activeml():
    qbc = pytest.importorskip(
        "skactiveml.pool._query_by_committee", reason="scikit-activeml not installed"
    )
    expected = qbc.variation_ratios(votes())
    np.testing.assert_allclose(variation_ratios(PASSES), expected, rtol=1e-12)


def test_kl_mean_equals_scikit_activeml_average_kl_divergence():
    qbc = pytest.importorskip(
        "skactiveml.pool._query_by_committee", reason="scikit-activeml not installed"
    )
    # It takes (n_members, n_pool, n_classes) and clips it in place: a copy.
    expected = qbc.average_kl_divergence(PASSES.swapaxes(0, 1).copy())
    np.testing.assert_allclose(kl_mean(PASSES), expected, rtol=1e-9)


def test_bald_equals_small_text_in_bits():
    bayesian = pytest.importorskip(
        "small_text.query_strategies.bayesian", reason="small-text not installed"
    )
    # small-text works in bits and adds 1e-8 inside its logs.
    expected = bayesian._bald(PASSES) * np.log(2)
    np.testing.assert_allclose(bald(PASSES), expected, atol=1e-6)


def test_bald_batch_equals_small_text_as_a_set():
    bayesian = pytest.importorskip(
        "small_text.query_strategies.bayesian", reason="small-text not installed"
    )

    class DropoutClassifier:
        def predict_proba(self, dataset, dropout_sampling=1):
            return PASSES

    picked = bayesian.BALD(dropout_samples=N_PASSES).query(
        DropoutClassifier(), None, np.arange(N_POOL), np.array([], int), None, n=20
    )
    ranking = top_k(bald(PASSES), 20, higher_first=True)
    # small-text returns its batch unordered (argpartition).
    assert set(ranking.ranked_indices.tolist()) == set(picked.tolist())


def skactiveml_batch_bald(batch_size, n_configurations):
    module = pytest.importorskip(
        "skactiveml.pool._bald", reason="scikit-activeml not installed"
    )
    return module.batch_bald(
        PASSES.swapaxes(0, 1).copy(),
        batch_size,
        n_MC_samples=n_configurations,
        random_state=0,
    )


def test_bald_equals_scikit_activeml_first_batchbald_step():
    utilities = skactiveml_batch_bald(1, N_PASSES)
    np.testing.assert_allclose(bald(PASSES), utilities[0], rtol=1e-9)


def test_batchbald_equals_scikit_activeml_while_both_enumerate():
    # 4^5 = 1024 <= 2000 configurations: every step of a batch of 6 is exact
    # in both (the same switching rule), so picks and values match.
    utilities = skactiveml_batch_bald(6, 2000)
    picks = np.nanargmax(utilities, axis=1)
    ours = batchbald(PASSES, 6, 2000, np.random.default_rng(0))
    assert ours.ranked_indices.tolist() == picks.tolist()
    # Their utility is the batch's mutual information after each pick; our
    # scores are the gains, whose running sum is that.
    np.testing.assert_allclose(
        np.cumsum(ours.scores), utilities[np.arange(6), picks], rtol=1e-9
    )


def test_batchbald_drawn_values_differ_from_scikit_activeml_only_by_draws():
    # Past 4^k > 64 both draw configurations with their own generators, so
    # values differ by Monte Carlo error. The first steps are still exact
    # and equal; the rest are compared loosely.
    utilities = skactiveml_batch_bald(5, 64)
    picks = np.nanargmax(utilities, axis=1)
    ours = batchbald(PASSES, 5, 64, np.random.default_rng(0))
    assert ours.ranked_indices[:4].tolist() == picks[:4].tolist()
    np.testing.assert_allclose(
        np.cumsum(ours.scores)[:4], utilities[np.arange(4), picks[:4]], rtol=1e-9
    )
    assert abs(np.cumsum(ours.scores)[4] - np.nanmax(utilities[4])) < 0.3
