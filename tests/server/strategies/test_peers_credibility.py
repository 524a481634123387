"""The credibility strategies against peer libraries, on inputs without ties.

crepes (the ``peers`` extra) computes conformal p-values; no installable peer
has the other credibility methods, so those are tested against brute-force
constructions in their own test modules. The trust score's reference code
(google/TrustScore) is not on PyPI, and alibi's TrustScore pulls spaCy and
transformers and pins an older numpy, so neither is installed; the
differences from the reference code are stated in ``trust_score``'s Notes.
"""

import numpy as np
import pytest

from alquery.server.selection import top_k
from alquery.server.strategies.credibility_conformal import conformal
from alquery.v1 import query_pb2

C = query_pb2.CredibilityStrategy
RNG = np.random.default_rng(7)
N_CLASSES = 4
VALIDATION = RNG.dirichlet(np.full(N_CLASSES, 0.8), size=150)
LABELS = RNG.integers(0, N_CLASSES, size=150)
POOL = RNG.dirichlet(np.full(N_CLASSES, 0.8), size=200)


def ours(pool, validation, labels, class_conditional):
    return conformal(
        pool,
        validation,
        labels,
        C.NONCONFORMITY_ONE_MINUS_PROBABILITY,
        class_conditional,
        np.random.default_rng(0),
    )


def crepes_p_values(pool, validation, labels, class_conditional):
    crepes = pytest.importorskip("crepes", reason="crepes not installed")
    calibration = 1.0 - validation[np.arange(len(labels)), labels]
    if not class_conditional:
        classifier = crepes.ConformalClassifier().fit(calibration)
        return classifier.predict_p(1.0 - pool, smoothing=False)
    classifier = crepes.ConformalClassifier().fit(calibration, bins=labels)
    columns = [
        classifier.predict_p(
            1.0 - pool[:, c], bins=np.full(len(pool), c), smoothing=False
        )
        for c in range(pool.shape[1])
    ]
    return np.stack(columns, axis=1)


@pytest.mark.parametrize("class_conditional", [False, True])
def test_conformal_equals_crepes(class_conditional):
    values = crepes_p_values(POOL, VALIDATION, LABELS, class_conditional)
    result = ours(POOL, VALIDATION, LABELS, class_conditional)
    ordered = np.sort(values, axis=1)
    np.testing.assert_allclose(result.scores, ordered[:, -1], atol=1e-12)
    np.testing.assert_allclose(
        result.extras["confidence"], 1.0 - ordered[:, -2], atol=1e-12
    )
    # p-values take few values, so rank by the peer's credibility with the
    # same tie-break and compare.
    expected = top_k(ordered[:, -1], 50, higher_first=False).ranked_indices
    assert top_k(result.scores, 50, higher_first=False).ranked_indices.tolist() == (
        expected.tolist()
    )


def test_mondrian_differs_from_crepes_for_a_class_absent_from_calibration():
    # crepes gives a class with no calibration sample the p-value
    # (0 + 1) / (0 + 1) = 1, so every pool sample looks fully credible; we
    # fall back to the whole calibration set for that class.
    labels = np.where(LABELS == 3, 0, LABELS)
    values = crepes_p_values(POOL, VALIDATION, labels, class_conditional=True)
    assert np.all(values[:, 3] == 1.0)
    marginal = crepes_p_values(POOL, VALIDATION, labels, class_conditional=False)
    ordered = np.sort(np.column_stack([values[:, :3], marginal[:, 3]]), axis=1)
    result = ours(POOL, VALIDATION, labels, class_conditional=True)
    np.testing.assert_allclose(result.scores, ordered[:, -1], atol=1e-12)
