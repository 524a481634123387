import numpy as np
import pytest

from alquery.server.probabilities import softmax
from alquery.server.selection import top_k
from alquery.server.strategies import credibility_gradients
from alquery.server.strategies.credibility_gradients import gradient_alignment


def test_gradient_alignment_hand_computed():
    # Validation, one feature: h = 1, p = (0.8, 0.2), y = 1 -> p - e_y =
    # (0.8, -0.8); h = -1, p = (0.3, 0.7), y = 1 -> (0.3, -0.3) times -1.
    # G_val = (0.8 - 0.3, -0.8 + 0.3) = (0.5, -0.5).
    validation = np.array([[0.8, 0.2], [0.3, 0.7]])
    # Pool: (p - e_yhat) . G_val * h:
    #   h=2,    (0.9, 0.1), yhat 0: (-0.1, 0.1) -> -0.1 * 2    = -0.2
    #   h=2,    (0.3, 0.7), yhat 1: (0.3, -0.3) ->  0.3 * 2    =  0.6
    #   h=-1,   (0.6, 0.4), yhat 0: (-0.4, 0.4) -> -0.4 * -1   =  0.4
    #   h=0.5,  (0.5, 0.5), yhat 0 (tie, lowest class): -0.5 * 0.5 = -0.25
    #   h=-2,   (0.8, 0.2), yhat 0: (-0.2, 0.2) -> -0.2 * -2   =  0.4
    pool = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5], [0.8, 0.2]])
    scores = gradient_alignment(
        pool,
        np.array([[2.0], [2.0], [-1.0], [0.5], [-2.0]]),
        validation,
        np.array([1, 1]),
        np.array([[1.0], [-1.0]]),
    )
    np.testing.assert_allclose(scores, [-0.2, 0.6, 0.4, -0.25, 0.4], atol=1e-12)
    # Pools 2 and 4 tie at 0.4: the lower position first.
    assert top_k(scores, 5, higher_first=True).ranked_indices.tolist() == [
        1,
        2,
        4,
        0,
        3,
    ]


def random_problem(seed, n_pool=9, n_validation=7, n_classes=3, n_features=4):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(n_classes, n_features))
    pool_embeddings = rng.normal(size=(n_pool, n_features))
    validation_embeddings = rng.normal(size=(n_validation, n_features))
    labels = rng.integers(0, n_classes, size=n_validation)
    return weights, pool_embeddings, validation_embeddings, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_alignment_equals_brute_force_gradients(seed):
    weights, pool_h, validation_h, labels = random_problem(seed)
    pool_p = softmax(pool_h @ weights.T)
    validation_p = softmax(validation_h @ weights.T)

    # Build every gradient matrix explicitly.
    eye = np.eye(weights.shape[0])
    validation_gradient = sum(
        np.outer(validation_p[j] - eye[labels[j]], validation_h[j])
        for j in range(len(labels))
    )
    expected = [
        np.sum(np.outer(p - eye[p.argmax()], h) * validation_gradient)
        for p, h in zip(pool_p, pool_h)
    ]
    # And the pairwise form sum_j <r_i, r_j> <h_i, h_j>.
    pool_r = pool_p - eye[pool_p.argmax(axis=1)]
    validation_r = validation_p - eye[labels]
    pairwise = ((pool_r @ validation_r.T) * (pool_h @ validation_h.T)).sum(axis=1)

    scores = gradient_alignment(pool_p, pool_h, validation_p, labels, validation_h)
    np.testing.assert_allclose(scores, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(scores, pairwise, rtol=1e-10, atol=1e-12)


def test_score_predicts_the_decrease_of_the_validation_loss():
    # A small step on pool sample i with its predicted label lowers the
    # summed validation loss by eta * score_i, to first order.
    weights, pool_h, validation_h, labels = random_problem(3)
    pool_p = softmax(pool_h @ weights.T)

    def validation_loss(w):
        p = softmax(validation_h @ w.T)
        return -np.log(p[np.arange(len(labels)), labels]).sum()

    scores = gradient_alignment(
        pool_p, pool_h, softmax(validation_h @ weights.T), labels, validation_h
    )
    eta, eye = 1e-6, np.eye(weights.shape[0])
    for p, h, score in zip(pool_p, pool_h, scores):
        step = np.outer(p - eye[p.argmax()], h)
        decrease = validation_loss(weights) - validation_loss(weights - eta * step)
        assert decrease == pytest.approx(eta * score, rel=1e-4, abs=1e-12)


def test_chunking_does_not_change_the_scores(monkeypatch):
    weights, pool_h, validation_h, labels = random_problem(4, n_pool=30)
    pool_p = softmax(pool_h @ weights.T)
    validation_p = softmax(validation_h @ weights.T)
    whole = gradient_alignment(pool_p, pool_h, validation_p, labels, validation_h)
    monkeypatch.setattr(credibility_gradients, "CHUNK_ELEMENTS", 8)
    chunked = gradient_alignment(pool_p, pool_h, validation_p, labels, validation_h)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)


def test_passes_are_averaged():
    weights, pool_h, validation_h, labels = random_problem(5)
    pool_p = softmax(pool_h @ weights.T)
    validation_p = softmax(validation_h @ weights.T)
    shifted = softmax(pool_h @ weights.T * 0.5)
    stacked = np.stack([pool_p, shifted], axis=1)
    np.testing.assert_allclose(
        gradient_alignment(stacked, pool_h, validation_p, labels, validation_h),
        gradient_alignment(
            (pool_p + shifted) / 2, pool_h, validation_p, labels, validation_h
        ),
        rtol=1e-12,
    )
