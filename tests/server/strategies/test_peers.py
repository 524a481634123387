"""Our strategies against the peer libraries' own code, on inputs without ties.

modAL, scikit-activeml and small-text are installed by ``make test`` (the
``peers`` extra); a test whose library is missing is skipped with the reason.
Where a peer uses a different sign or complement for the same quantity, the
test says so and converts.
"""

import numpy as np
import pytest

from alquery.server.selection import top_k
from alquery.server.strategies.diversity_kcenter import kcenter_greedy
from alquery.server.strategies.uncertainty import entropy, least_confidence, margin

RNG = np.random.default_rng(2026)
POOL = RNG.normal(size=(120, 6))
LABELED = RNG.normal(size=(4, 6)) + 2.0


def _digits_probabilities():
    """A real model's outputs: logistic regression on 100 digits, scored on
    the remaining 1,697 images."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=2000).fit(x[:100] / 16, y[:100])
    return model.predict_proba(x[100:] / 16)


SETS = {
    "dirichlet": RNG.dirichlet(np.full(5, 0.7), size=300),
    "digits": _digits_probabilities(),
}


@pytest.fixture(params=sorted(SETS))
def probabilities(request):
    values = SETS[request.param]
    # The comparisons assume no ties in any score.
    assert len(np.unique(values.max(axis=1))) == len(values)
    return values


class FixedProbabilities:
    """A fitted 'classifier' whose predict_proba looks rows up by index.

    The peers take a classifier; this one returns the test's probabilities
    for X = [[0], [1], ...], so the peer's own scoring code runs on them.
    """

    def __init__(self, probabilities):
        self.probabilities = probabilities

    def fit(self, *args, **kwargs):
        return self

    def predict_proba(self, X, **kwargs):
        return self.probabilities[np.asarray(X, dtype=int).ravel()]


def rows(probabilities):
    return np.arange(len(probabilities))[:, None]


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (least_confidence, "classifier_uncertainty"),
        (margin, "classifier_margin"),
        (entropy, "classifier_entropy"),
    ],
)
def test_uncertainty_scores_equal_modal(probabilities, ours, theirs):
    modal = pytest.importorskip(
        "modAL.uncertainty", reason="modAL-python not installed"
    )
    expected = getattr(modal, theirs)(
        FixedProbabilities(probabilities), rows(probabilities)
    )
    np.testing.assert_allclose(ours(probabilities), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "sampling, ours, higher_first",
    [
        ("uncertainty_sampling", least_confidence, True),
        ("margin_sampling", margin, False),
        ("entropy_sampling", entropy, True),
    ],
)
def test_uncertainty_batches_equal_modal(probabilities, sampling, ours, higher_first):
    modal = pytest.importorskip(
        "modAL.uncertainty", reason="modAL-python not installed"
    )
    picked, _ = getattr(modal, sampling)(
        FixedProbabilities(probabilities), rows(probabilities), n_instances=15
    )
    ranking = top_k(ours(probabilities), 15, higher_first=higher_first)
    # modAL returns its batch unordered (argpartition); compare as sets.
    assert set(ranking.ranked_indices.tolist()) == set(np.ravel(picked).tolist())


@pytest.mark.parametrize(
    "ours, method, convert",
    [
        (least_confidence, "least_confident", lambda s: s),
        # scikit-activeml scores margin as 1 - (p_(1) - p_(2)), higher first.
        (margin, "margin_sampling", lambda s: 1.0 - s),
        (entropy, "entropy", lambda s: s),
    ],
)
def test_uncertainty_scores_equal_scikit_activeml(probabilities, ours, method, convert):
    pool = pytest.importorskip(
        "skactiveml.pool", reason="scikit-activeml not installed"
    )
    expected = pool.uncertainty_scores(probabilities, method=method)
    np.testing.assert_allclose(
        convert(ours(probabilities)), expected, rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize(
    "ours, strategy, convert",
    [
        # small-text's LeastConfidence scores max_c p_c, lower first.
        (least_confidence, "LeastConfidence", lambda s: 1.0 - s),
        (margin, "BreakingTies", lambda s: s),
        (entropy, "PredictionEntropy", lambda s: s),
    ],
)
def test_uncertainty_scores_equal_small_text(probabilities, ours, strategy, convert):
    strategies = pytest.importorskip(
        "small_text.query_strategies", reason="small-text not installed"
    )
    peer = getattr(strategies, strategy)()
    everything = np.arange(len(probabilities))
    expected = peer.get_confidence(
        FixedProbabilities(probabilities),
        rows(probabilities),
        everything,
        np.array([], int),
        None,
    )
    np.testing.assert_allclose(
        convert(ours(probabilities)), expected, rtol=1e-9, atol=1e-12
    )


def test_kcenter_picks_equal_small_text_greedy_coreset():
    coresets = pytest.importorskip(
        "small_text.query_strategies.coresets", reason="small-text not installed"
    )
    # small-text indexes one matrix holding pool and labeled rows; keeping the
    # pool first makes its positions ours.
    x = np.vstack([POOL, LABELED])
    picked = coresets.greedy_coreset(
        x,
        np.arange(len(POOL)),
        np.arange(len(POOL), len(x)),
        25,
        distance_metric="euclidean",
    )
    ours = kcenter_greedy(POOL, 25, LABELED)
    assert ours.ranked_indices.tolist() == picked.tolist()


def test_kcenter_picks_equal_scikit_activeml_core_set():
    core_set = pytest.importorskip(
        "skactiveml.pool._core_set", reason="scikit-activeml not installed"
    )
    x = np.vstack([POOL, LABELED])
    y = np.full(len(x), np.nan)
    y[len(POOL) :] = 0
    picked, _ = core_set.k_greedy_center(x, y, batch_size=25, random_state=0)
    ours = kcenter_greedy(POOL, 25, LABELED)
    assert ours.ranked_indices.tolist() == picked.tolist()
