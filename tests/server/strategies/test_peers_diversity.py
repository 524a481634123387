"""The diversity strategies against scikit-learn, scikit-activeml and
small-text, on inputs without ties.

Where a peer breaks ties at random, the test swaps in a lowest-position
tie-break (ours) so that any tie that does occur is settled the same way;
where a peer draws from its own generator, the test compares what the draw
is made from (probabilities, clusters) and says so.
"""

import numpy as np
import pytest

from alquery.server.strategies.diversity_clusters import (
    kmeans_plusplus,
    kmeans_representatives,
)
from alquery.server.strategies.diversity_coverage import probcover
from alquery.server.strategies.diversity_sampling import coreset_probabilities
from alquery.server.strategies.diversity_typiclust import typiclust

RNG = np.random.default_rng(31)
POOL = RNG.normal(size=(150, 5))
LABELED = RNG.normal(size=(6, 5)) + 1.5


def test_lightweight_coreset_probabilities_equal_small_text(monkeypatch):
    coresets = pytest.importorskip(
        "small_text.query_strategies.coresets", reason="small-text not installed"
    )
    # small-text draws with numpy.random.choice(p=q) on the global legacy
    # generator; catching the p it passes compares q itself.
    seen = {}

    def capture(a, size, replace, p):
        seen["p"] = p
        return np.arange(size)

    monkeypatch.setattr(np.random, "choice", capture)
    pool = POOL + 0.5  # keep the pool mean away from 0
    coresets.lightweight_coreset(pool, pool.mean(axis=0), 10, normalized=False)
    np.testing.assert_allclose(
        coreset_probabilities(pool, angular=True), seen["p"], rtol=1e-12
    )


def test_lightweight_coreset_strategy_class_equals_the_function(monkeypatch):
    # small-text's LightweightCoreset class normalises rows first; angles do
    # not change under scaling, so its q equals ours with angular=True.
    coresets = pytest.importorskip(
        "small_text.query_strategies.coresets", reason="small-text not installed"
    )
    seen = {}
    monkeypatch.setattr(
        np.random, "choice", lambda a, size, replace, p: seen.setdefault("p", p)
    )
    pool = POOL + 0.5
    unlabeled = np.arange(len(pool))
    coresets.LightweightCoreset(normalize=True).sample(
        None, None, unlabeled, None, None, 5, pool
    )
    np.testing.assert_allclose(
        coreset_probabilities(pool, angular=True), seen["p"], rtol=1e-12
    )


@pytest.mark.parametrize("n_local_trials", [1, 3])
@pytest.mark.parametrize("seed", [0, 7])
def test_kmeans_plusplus_picks_equal_scikit_learn(n_local_trials, seed):
    # Given a RandomState seeded alike, both consume the same uniform draws:
    # one for the first (uniform) pick, then n_local_trials per step.
    from sklearn.cluster import kmeans_plusplus as sklearn_kmeans_plusplus

    _, expected = sklearn_kmeans_plusplus(
        POOL, 12, random_state=seed, n_local_trials=n_local_trials
    )
    ranking = kmeans_plusplus(
        POOL, 12, np.random.RandomState(seed), n_local_trials=n_local_trials
    )
    assert ranking.ranked_indices.tolist() == expected.tolist()


def lowest_argmax(a, random_state=None, **kwargs):
    """scikit-activeml's rand_argmax with our tie-break: the lowest index."""
    return np.atleast_1d(np.nanargmax(np.asarray(a, dtype=float)))


def with_labels(pool, labeled):
    X = np.vstack([pool, labeled])
    y = np.r_[np.full(len(pool), np.nan), np.arange(len(labeled)) % 2]
    return X, y


@pytest.mark.parametrize("labeled", [LABELED, LABELED[:0]], ids=["labeled", "cold"])
@pytest.mark.parametrize("seed", [0, 3])
def test_typiclust_equals_scikit_activeml(monkeypatch, labeled, seed):
    # Same rows in the same order and the same KMeans seed (n_init 1, their
    # "auto") give both the same clusters; rand_argmax is swapped for our
    # lowest-index tie-break. Their typicality k / (sum + 1e-7) differs from
    # ours 1 / (mean + 1e-12) by under 1e-7 relative here.
    typi_clust = pytest.importorskip(
        "skactiveml.pool._typi_clust", reason="scikit-activeml not installed"
    )
    monkeypatch.setattr(typi_clust, "rand_argmax", lowest_argmax)
    X, y = with_labels(POOL, labeled)
    picks, utilities = typi_clust.TypiClust(random_state=seed, k=5).query(
        X, y, batch_size=8, return_utilities=True
    )
    ranking = typiclust(
        POOL, 8, seed, labeled if len(labeled) else None, n_neighbors=5
    )
    assert ranking.ranked_indices.tolist() == picks.tolist()
    np.testing.assert_allclose(
        ranking.scores, utilities[np.arange(8), picks], rtol=1e-6
    )


def test_kmeans_picks_equal_small_text_embedding_kmeans(monkeypatch):
    # small-text L2-normalises and matches by cosine similarity; on unit
    # rows that is our Euclidean nearest sample. Its KMeans is unseeded, so
    # the test seeds it alike. It returns picks in centroid order; ours come
    # by distance, so the sets are compared.
    strategies = pytest.importorskip(
        "small_text.query_strategies.strategies", reason="small-text not installed"
    )
    import functools

    import sklearn.cluster

    monkeypatch.setattr(
        sklearn.cluster,
        "KMeans",
        functools.partial(sklearn.cluster.KMeans, random_state=5, n_init=1),
    )
    unit = POOL / np.linalg.norm(POOL, axis=1, keepdims=True)
    theirs = strategies.EmbeddingKMeans(normalize=True).sample(
        None, None, np.arange(len(unit)), np.array([], dtype=int), None, 10, unit
    )
    ours = kmeans_representatives(unit, 10, seed=5)
    assert sorted(ours.ranked_indices.tolist()) == sorted(theirs.tolist())


@pytest.mark.parametrize("labeled", [LABELED, LABELED[:0]], ids=["labeled", "cold"])
@pytest.mark.parametrize("radius", [1.2, 2.0])
@pytest.mark.filterwarnings("ignore:The maximum purity")  # no purity search
def test_probcover_equals_scikit_activeml(monkeypatch, labeled, radius):
    # One delta skips their purity search; rand_argmax is swapped for our
    # lowest-index tie-break (counts are integers, so ties are common). Their
    # utility of a pick is the number of samples it newly covers, as ours.
    prob_cover = pytest.importorskip(
        "skactiveml.pool._prob_cover", reason="scikit-activeml not installed"
    )
    monkeypatch.setattr(prob_cover, "rand_argmax", lowest_argmax)
    X, y = with_labels(POOL, labeled)
    picks, utilities = prob_cover.ProbCover(deltas=[radius]).query(
        X, y, batch_size=25, return_utilities=True
    )
    ranking = probcover(POOL, 25, radius, labeled if len(labeled) else None)
    assert ranking.ranked_indices.tolist() == picks.tolist()
    np.testing.assert_array_equal(ranking.scores, utilities[np.arange(25), picks])
