"""The diversity strategies against scikit-learn, scikit-activeml and
small-text, on inputs without ties.

Where a peer breaks ties at random, the test swaps in a lowest-position
tie-break (ours) so that any tie that does occur is settled the same way;
where a peer draws from its own generator, the test compares what the draw
is made from (probabilities, clusters) and says so.
"""

import numpy as np
import pytest

from alquery.server.strategies.diversity_sampling import coreset_probabilities

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
