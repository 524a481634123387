"""BADGE: k-means++ seeding on gradient embeddings, without building them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from alquery.server.probabilities import predictive
from alquery.server.registry import Ranking, Strategy, register
from alquery.server.strategies.clustering_tools import UniformSource, d2_sampling
from alquery.server.strategies.diversity import never_cancelled, squared_norms
from numpy.typing import NDArray


class GradientEmbeddings:
    """Distances between the gradient embeddings g_i = r_i (outer) h_i.

    r_i = p_i - e_(yhat_i) is the gradient of the cross-entropy at the
    predicted label yhat_i = argmax_c p_ic (ties to the lower class) with
    respect to the logits, and h_i the sample's embedding, so g_i is the
    gradient with respect to the last layer's weights (no bias). Because
    <g_i, g_j> = <r_i, r_j> <h_i, h_j>,

        ||g_i - g_j||^2 = ||r_i||^2 ||h_i||^2 - 2 <r_i, r_j> <h_i, h_j>
                          + ||r_j||^2 ||h_j||^2,

    and nothing of size n_pool x (n_classes * n_features) is ever built.
    """

    def __init__(self, probabilities: NDArray, embeddings: NDArray) -> None:
        p = predictive(probabilities)
        residuals = p.copy()
        residuals[np.arange(len(p)), p.argmax(axis=1)] -= 1.0
        self.residuals = residuals
        self.embeddings = np.asarray(embeddings, dtype=np.float64)
        self.squared_norms = squared_norms(residuals) * squared_norms(self.embeddings)

    def squared_distances_to(self, j: int) -> NDArray[np.float64]:
        """||g_i - g_j||^2 for every pool sample i, clipped below at 0."""
        inner = (self.residuals @ self.residuals[j]) * (
            self.embeddings @ self.embeddings[j]
        )
        out = self.squared_norms - 2.0 * inner + self.squared_norms[j]
        return np.maximum(out, 0.0, out=out)


def badge(
    probabilities: NDArray,
    embeddings: NDArray,
    batch_size: int,
    rng: UniformSource,
    check: Callable[[], None] = never_cancelled,
) -> Ranking:
    """BADGE: a diverse batch of samples with large, different gradients.

    The first pick is the sample with the largest gradient norm
    ||g_i|| = ||p_i - e_yhat|| ||h_i|| (ties to the lower pool position);
    each next pick is drawn with probability proportional to D_i^2, the
    squared distance in gradient-embedding space (see
    ``GradientEmbeddings``) from sample i to its nearest earlier pick. The
    score of a pick is sqrt(D^2) when it was drawn, and ||g|| for the first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities; passes are averaged first.
    embeddings : ndarray of shape (n_pool, n_features)
        The input h_i of the model's last (linear, softmax) layer.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    rng : Generator or RandomState
        One uniform draw per pick after the first.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in pick order; scores are
        higher for picks farther from the earlier ones, but not sorted.

    Notes
    -----
    Reproducible from the seed. Picks are distinct: a picked sample's D^2
    is 0; when every remaining D^2 is 0 the draw is uniform over the
    remaining samples. Cost O(batch_size * n_pool * (n_classes + n_features))
    time and O(n_pool * (n_classes + n_features)) memory.

    Peers: the first pick and the D^2 rule follow Ash et al.'s code.
    scikit-activeml's ``Badge`` also keeps the origin as a center (its D^2 is
    min(||g_i||^2, distance to the nearest pick)), so its draws differ
    from ours; the tests replay its exact picks by passing ||g||^2 as
    ``initial`` to ``d2_sampling``.

    References
    ----------
    Ash, Zhang, Krishnamurthy, Langford & Agarwal, "Deep Batch Active
    Learning by Diverse, Uncertain Gradient Lower Bounds", ICLR 2020.
    """
    gradients = GradientEmbeddings(probabilities, embeddings)
    first = int(np.argmax(gradients.squared_norms))
    picks, distances = d2_sampling(
        first, gradients.squared_distances_to, batch_size, rng, check=check
    )
    distances[0] = gradients.squared_norms[first]
    return Ranking(ranked_indices=picks, scores=np.sqrt(distances))


register(
    Strategy(
        family="hybrid",
        method="badge",
        description=(
            "k-means++ seeding on gradient embeddings (p - e_yhat) x h: first "
            "the largest gradient norm, then draws proportional to the squared "
            "distance to the nearest pick; seeded; score = that distance."
        ),
        required_inputs=("pool_probabilities", "pool_embeddings"),
        higher_first=True,
        pick=lambda query: badge(
            query.pool_probabilities,
            query.pool_embeddings,
            query.batch_size,
            query.random_generator(),
            check=query.check_cancelled,
        ),
    )
)
