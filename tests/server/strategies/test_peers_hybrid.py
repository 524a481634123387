"""The hybrid strategies and information density against the peers' own code.

modAL (information density, ranked batch) and scikit-activeml (BADGE, CLUE)
run on the same random inputs, which have no ties. Where a peer differs on
purpose or by a bug, the test shows the difference instead of copying it.
"""

import numpy as np
import pytest

from alquery.server.strategies.badge import GradientEmbeddings, badge
from alquery.server.strategies.clustering_tools import d2_sampling
from alquery.server.strategies.density import information_density
from alquery.server.strategies.hybrid import ranked_batch
from alquery.server.strategies.hybrid_clustering import clue
from alquery.server.strategies.uncertainty import entropy, least_confidence, margin

RNG = np.random.default_rng(2027)
N_POOL, N_CLASSES = 90, 4
PROBABILITIES = RNG.dirichlet(np.full(N_CLASSES, 0.7), size=N_POOL)
POOL = RNG.normal(size=(N_POOL, 5))
LABELED = RNG.normal(size=(6, 5)) + 1.0


class Learner:
    """Just enough of a modAL learner for ``modAL.batch``'s own code to run.

    Its ``predict_proba`` returns the test's probabilities for the pool.
    """

    on_transformed = False

    def __init__(self, labeled):
        self.X_training = labeled

    def predict_proba(self, X, **kwargs):
        assert len(X) == N_POOL
        return PROBABILITIES


def test_euclidean_density_equals_modal():
    modal = pytest.importorskip("modAL.density", reason="modAL-python not installed")
    np.testing.assert_allclose(
        information_density(POOL, "euclidean"),
        modal.information_density(POOL, metric="euclidean"),
        rtol=1e-12,
    )


def test_modal_cosine_density_averages_one_over_two_minus_cosine():
    # modAL turns every metric d into 1 / (1 + d); its cosine distance is
    # 1 - cos, so it averages 1 / (2 - cos) where we average cos itself.
    modal = pytest.importorskip("modAL.density", reason="modAL-python not installed")
    unit = POOL / np.linalg.norm(POOL, axis=1, keepdims=True)
    cosines = unit @ unit.T
    np.testing.assert_allclose(
        information_density(POOL, "cosine"), cosines.mean(axis=1), rtol=1e-12
    )
    np.testing.assert_allclose(
        modal.information_density(POOL, metric="cosine"),
        (1.0 / (2.0 - cosines)).mean(axis=1),
        rtol=1e-9,
    )


@pytest.mark.parametrize("batch_size", [1, 7, 25])
def test_ranked_batch_equals_modal_with_a_labeled_set(batch_size):
    modal = pytest.importorskip("modAL.batch", reason="modAL-python not installed")
    theirs, _ = modal.uncertainty_batch_sampling(
        Learner(LABELED), POOL, n_instances=batch_size
    )
    ours = ranked_batch(PROBABILITIES, POOL, batch_size, LABELED)
    # Both return picks in pick order.
    assert ours.ranked_indices.tolist() == np.asarray(theirs).tolist()


def test_ranked_batch_cold_start_against_modal():
    # Both start from the sample with the smallest mean distance to the pool.
    # modAL then leaves that sample in the pool (so it can be picked again)
    # and counts it in |U|, which shifts alpha to n_pool / (n_pool + 1) where
    # ours is (n_pool - 1) / n_pool; the picks agree until that shift flips
    # a close call.
    modal = pytest.importorskip("modAL.batch", reason="modAL-python not installed")
    theirs, _ = modal.ranked_batch(
        Learner(None), POOL, least_confidence(PROBABILITIES), 10, "euclidean", None
    )
    ours = ranked_batch(PROBABILITIES, POOL, 10).ranked_indices
    assert ours[0] == theirs[0]
    assert len(set(ours.tolist())) == 10
    shared = np.cumprod(ours == np.asarray(theirs)).sum()
    assert shared >= 3


def skactiveml_classifier():
    base = pytest.importorskip(
        "skactiveml.base", reason="scikit-activeml not installed"
    )

    class Fixed(base.SkactivemlClassifier):
        """Returns the test's probabilities and pool embeddings by row."""

        def __init__(self, classes=None, missing_label=np.nan):
            super().__init__(classes=classes, missing_label=missing_label)

        def fit(self, X, y, sample_weight=None):
            return self

        def predict_proba(self, X, **kwargs):
            rows = np.asarray(X, dtype=int).ravel()
            return PROBABILITIES[rows], POOL[rows]

    return Fixed(classes=np.arange(N_CLASSES))


ROWS = np.arange(N_POOL, dtype=float)[:, None]
UNLABELED = np.full(N_POOL, np.nan)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_badge_replays_skactiveml_draws(seed):
    # scikit-activeml keeps the origin as a center, so its D^2 is
    # min(||g||^2, distance to the nearest pick). Given that as the initial
    # D^2 and the random state it derives from its seed, our factorised
    # distances and inverse-CDF draws give its picks exactly.
    classifier = skactiveml_classifier()
    pool_module = pytest.importorskip("skactiveml.pool")
    utils = pytest.importorskip("skactiveml.utils")
    theirs = pool_module.Badge(random_state=seed).query(
        ROWS, UNLABELED, classifier, fit_clf=False, batch_size=12
    )
    gradients = GradientEmbeddings(PROBABILITIES, POOL)
    first = int(np.argmax(gradients.squared_norms))
    replayed, _ = d2_sampling(
        first,
        gradients.squared_distances_to,
        12,
        utils.check_random_state(seed, N_POOL + 1),
        initial=gradients.squared_norms.copy(),
    )
    assert replayed.tolist() == [int(i) for i in theirs]
    # Our BADGE has the same first pick but no origin center.
    ours = badge(PROBABILITIES, POOL, 12, np.random.default_rng(seed))
    assert ours.ranked_indices[0] == theirs[0]


@pytest.mark.parametrize(
    "ours, theirs", [("entropy", "entropy"), ("least_confidence", "least_confident")]
)
@pytest.mark.parametrize("seed", [3, 4])
def test_clue_equals_skactiveml_as_a_set(ours, theirs, seed):
    classifier = skactiveml_classifier()
    pool_module = pytest.importorskip("skactiveml.pool")
    picked = pool_module.Clue(
        method=theirs, cluster_algo_dict={"random_state": seed}, random_state=0
    ).query(ROWS, UNLABELED, classifier, fit_estimator=False, batch_size=8)
    ranking = clue(PROBABILITIES, POOL, 8, seed, ours)
    # scikit-activeml lets centroids choose in label order, we by total
    # uncertainty; the sets agree when no two centroids share a nearest
    # sample, as here.
    assert sorted(ranking.ranked_indices.tolist()) == sorted(int(i) for i in picked)


def test_uncertainty_orientation_matches_skactiveml():
    # The hybrids mix in 1 - margin; scikit-activeml's margin utility is the
    # same quantity, and its entropy uses the natural log like ours.
    pytest.importorskip("skactiveml.pool", reason="scikit-activeml not installed")
    from skactiveml.pool import uncertainty_scores

    np.testing.assert_allclose(
        uncertainty_scores(PROBABILITIES, method="margin_sampling"),
        1.0 - margin(PROBABILITIES),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        uncertainty_scores(PROBABILITIES, method="entropy"),
        entropy(PROBABILITIES),
        rtol=1e-12,
    )
