"""Credibility by gradients: how much one training step on a pool sample
would lower the validation loss of a softmax last layer (GLISTER-style)."""

from __future__ import annotations

import numpy as np
from alquery.server.probabilities import predictive
from alquery.server.registry import Strategy, register
from alquery.server.strategies.credibility import VALIDATION_INPUTS
from alquery.server.strategies.diversity import CHUNK_ELEMENTS
from numpy.typing import NDArray


def residuals(probabilities: NDArray, labels: NDArray) -> NDArray[np.float64]:
    """p_i - e_(y_i): the cross-entropy gradient with respect to the logits."""
    out = np.array(probabilities, dtype=np.float64)
    out[np.arange(len(labels)), labels] -= 1.0
    return out


def validation_gradient(
    validation_probabilities: NDArray,
    validation_labels: NDArray,
    validation_embeddings: NDArray,
) -> NDArray[np.float64]:
    """G_val = sum_j (p_j - e_(y_j)) h_j^T, shape (n_classes, n_features).

    The gradient of the summed validation cross-entropy with respect to the
    weights W of a softmax layer with logits W h. Accumulated over chunks of
    the validation set, so no (n_validation, n_classes, n_features) array is
    built.
    """
    p = predictive(validation_probabilities)
    n_validation, n_classes = p.shape
    n_features = validation_embeddings.shape[1]
    gradient = np.zeros((n_classes, n_features))
    chunk = max(1, CHUNK_ELEMENTS // max(n_classes, n_features))
    for start in range(0, n_validation, chunk):
        rows = slice(start, start + chunk)
        r = residuals(p[rows], validation_labels[rows])
        gradient += r.T @ np.asarray(validation_embeddings[rows], dtype=np.float64)
    return gradient


def gradient_alignment(
    pool_probabilities: NDArray,
    pool_embeddings: NDArray,
    validation_probabilities: NDArray,
    validation_labels: NDArray,
    validation_embeddings: NDArray,
) -> NDArray[np.float64]:
    """One-step validation-loss decrease from training on each pool sample.

    For a softmax last layer with weights W (n_classes, n_features) on the
    embeddings h, the cross-entropy gradient of a sample with label y is
    g = (p - e_y) h^T. A step W <- W - eta g_i lowers the summed validation
    loss by about eta <g_i, G_val> (first order), with G_val from
    ``validation_gradient``. The score is that inner product,

        score_i = <(p_i - e_yhat_i) h_i^T, G_val>_F
                = sum_j <p_i - e_yhat_i, p_j - e_y_j> <h_i, h_j>
                = (p_i - e_yhat_i)^T G_val h_i,

    with yhat_i = argmax_c p_ic the hypothesised label (lowest class among
    ties); highest first.

    Parameters
    ----------
    pool_probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Averaged over passes first, as are the validation probabilities.
    pool_embeddings : ndarray of shape (n_pool, n_features)
        The inputs of the softmax layer.
    validation_probabilities : ndarray of shape (n_validation, [n_passes,] n_classes)
    validation_labels : ndarray of shape (n_validation,)
    validation_embeddings : ndarray of shape (n_validation, n_features)

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Negative when the step would raise the validation loss.

    Notes
    -----
    The label is the predicted one, not an expectation over y ~ p_i: the
    expected gradient is zero, since E_y[p_i - e_y] = p_i - p_i = 0. The last
    line of the formula is evaluated: G_val is built once (n_classes x
    n_features, summed over validation chunks), then each pool chunk costs
    one product with it, so no per-sample gradient matrix and no
    n_pool x n_validation array exists. Cost O((n_pool + n_validation) *
    n_classes * n_features); memory O(n_classes * n_features) plus a chunk.
    No bias term: append a constant-1 feature to the embeddings to include
    one. The step size eta only scales the scores and is left out. Ties go to
    the lower pool position.

    References
    ----------
    Killamsetty, Sivasubramanian, Ramakrishnan & Iyer, "GLISTER:
    Generalization based Data Subset Selection for Efficient and Robust
    Learning", AAAI 2021.
    """
    gradient = validation_gradient(
        validation_probabilities, validation_labels, validation_embeddings
    )
    p = predictive(pool_probabilities)
    n_pool, n_classes = p.shape
    scores = np.empty(n_pool)
    chunk = max(1, CHUNK_ELEMENTS // max(n_classes, pool_embeddings.shape[1]))
    for start in range(0, n_pool, chunk):
        rows = slice(start, start + chunk)
        r = residuals(p[rows], p[rows].argmax(axis=1))
        h = np.asarray(pool_embeddings[rows], dtype=np.float64)
        scores[rows] = np.einsum("ic,ic->i", r, h @ gradient.T)
    return scores


register(
    Strategy(
        family="credibility",
        method="gradient_alignment",
        description=(
            "score = <(p - e_yhat) h^T, G_val>, the first-order decrease of the "
            "validation cross-entropy after a step on the pool sample with its "
            "predicted label (softmax last layer on the embeddings); highest "
            "first; ties to the lower pool position."
        ),
        required_inputs=("pool_probabilities", "pool_embeddings", *VALIDATION_INPUTS),
        higher_first=True,
        score=lambda query: gradient_alignment(
            query.pool_probabilities,
            query.pool_embeddings,
            query.validation_probabilities,
            query.validation_labels,
            query.validation_embeddings,
        ),
    )
)
