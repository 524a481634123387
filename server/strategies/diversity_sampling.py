"""Diversity strategies that draw their batch at random: uniform and
lightweight-coreset sampling.

Both draw from ``query.random_generator()``, so the same request (same seed)
always gets the same batch.
"""

from __future__ import annotations

import numpy as np
from alquery.server.edge import Query
from alquery.server.errors import InvalidRequestError
from alquery.server.registry import Parameter, Ranking, Strategy, register
from alquery.server.selection import top_k
from alquery.server.strategies.diversity import squared_distances, squared_norms
from numpy.typing import NDArray


def random_batch(n_pool: int, batch_size: int, rng: np.random.Generator) -> Ranking:
    """A uniformly random batch: the pool samples with the largest random keys.

    Each pool sample gets a key u_i ~ Uniform[0, 1) from ``rng``; the batch
    is the ``batch_size`` largest keys, highest first, and each score is the
    sample's key. Every subset of ``batch_size`` samples is equally likely,
    and so is every order within it.

    Parameters
    ----------
    n_pool : int
        Pool size.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    rng : numpy.random.Generator
        The only source of randomness.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions, highest key first, and their
        keys.

    Notes
    -----
    The score is the random key the sample was ranked by, so it says nothing
    about the sample; it is there so that the ranking and the scores agree.
    Equal keys (about n_pool^2 / 2^54 likely) go to the lower pool position.
    Cost O(n_pool) time and memory.

    scikit-activeml's ``RandomSampling`` draws its own keys with a legacy
    ``RandomState``, so the two agree in distribution, not draw for draw.
    """
    return top_k(rng.random(n_pool), batch_size, higher_first=True)


def coreset_probabilities(
    embeddings: NDArray, angular: bool = False
) -> NDArray[np.float64]:
    """Lightweight-coreset sampling probabilities of the pool samples.

    q_i = 1 / (2 n_pool) + d_i^2 / (2 sum_j d_j^2), where d_i is the
    distance between sample i's embedding and the pool mean: Euclidean, or
    with ``angular`` the angle between the two vectors divided by pi,
    arccos(cos(x_i, mean)) / pi. When every d_i is 0, q is uniform.

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
        Checked, finite pool embeddings; with ``angular``, no row and not
        the pool mean may have norm 0.
    angular : bool, default=False

    Returns
    -------
    q : ndarray of shape (n_pool,), float64, summing to 1
    """
    x = np.asarray(embeddings, dtype=np.float64)
    mean = x.mean(axis=0, keepdims=True)
    if angular:
        norms = np.sqrt(squared_norms(x)) * np.sqrt(squared_norms(mean))[0]
        cosine = np.clip((x @ mean[0]) / norms, -1.0, 1.0)
        squared = (np.arccos(cosine) / np.pi) ** 2
    else:
        squared = squared_distances(x, mean)[:, 0]
    total = squared.sum()
    uniform = np.full(len(x), 1.0 / len(x))
    if total == 0.0:
        return uniform
    return 0.5 * uniform + 0.5 * squared / total


def lightweight_coreset(
    embeddings: NDArray,
    batch_size: int,
    rng: np.random.Generator,
    angular: bool = False,
) -> Ranking:
    """Draw a lightweight coreset: samples far from the pool mean more often.

    The batch is drawn without replacement, one sample at a time, each with
    probability proportional to q_i (see ``coreset_probabilities``) among
    the samples not yet drawn. q mixes the uniform distribution with the
    squared distance to the pool mean, half and half. Each score is the
    sample's q_i; picks come in draw order.

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
        Checked, finite pool embeddings.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    rng : numpy.random.Generator
        The only source of randomness.
    angular : bool, default=False
        Measure the distance to the mean as an angle (small-text's choice).

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in draw order, and their q_i.

    Notes
    -----
    The draw uses the Gumbel-top-k trick (top ``batch_size`` of
    ln q_i + G_i, G_i ~ Gumbel(0, 1)), which is exactly successive sampling
    proportional to q. Every q_i >= 1 / (2 n_pool) > 0, so no sample is
    impossible. Equal keys go to the lower pool position. Cost
    O(n_pool * n_features) time, O(n_pool) memory.

    small-text's ``lightweight_coreset`` uses the angular distance (our
    ``angular=True``), does not clip the cosine to [-1, 1] before arccos
    (rounding can then give NaN for a sample parallel to the mean), and
    draws with ``numpy.random.choice(replace=False, p=q)`` on the global
    legacy generator: its first draw follows q exactly, later draws only
    approximately successive sampling. The probabilities agree; the draws
    agree in distribution for the first pick.

    References
    ----------
    Bachem, Lucic & Krause, "Scalable k-Means Clustering via Lightweight
    Coresets", KDD 2018.
    """
    q = coreset_probabilities(embeddings, angular)
    keys = np.log(q) + rng.gumbel(size=len(q))
    drawn = top_k(keys, batch_size, higher_first=True).ranked_indices
    return Ranking(ranked_indices=drawn, scores=q[drawn])


def _resolve_angular(value: bool | None, query: Query) -> bool:
    if not value:
        return False
    x = np.asarray(query.pool_embeddings, dtype=np.float64)
    zero_rows = np.flatnonzero(squared_norms(x) == 0.0)
    if len(zero_rows):
        raise InvalidRequestError(
            f"diversity.angular_distance: pool.embeddings row {zero_rows[0]} "
            "has norm 0, so its angle to the pool mean is undefined; send "
            "nonzero embeddings or leave angular_distance false"
        )
    if not np.any(x.mean(axis=0)):
        raise InvalidRequestError(
            "diversity.angular_distance: the pool mean of pool.embeddings is "
            "the zero vector, so angles to it are undefined; leave "
            "angular_distance false"
        )
    return True


register(
    Strategy(
        family="diversity",
        method="random",
        description=(
            "Uniformly random batch, seeded: each pool sample gets a key "
            "u ~ Uniform[0, 1); the largest keys first; score = the key."
        ),
        required_inputs=(),
        higher_first=True,
        pick=lambda query: random_batch(
            query.n_pool, query.batch_size, query.random_generator()
        ),
    )
)

register(
    Strategy(
        family="diversity",
        method="lightweight_coreset",
        description=(
            "Lightweight coreset (Bachem et al. 2018): draw without replacement "
            "with q = 1/(2 n_pool) + d^2 / (2 sum d^2), d = distance to the "
            "pool mean (Euclidean, or angle / pi); seeded; score = q, in draw "
            "order."
        ),
        required_inputs=("pool_embeddings",),
        higher_first=True,
        parameters=(
            Parameter(
                name="angular_distance",
                type="bool",
                default="false",
                description=(
                    "Distance to the pool mean as arccos(cosine) / pi, as "
                    "small-text does, instead of Euclidean."
                ),
                resolve=_resolve_angular,
            ),
        ),
        pick=lambda query: lightweight_coreset(
            query.pool_embeddings,
            query.batch_size,
            query.random_generator(),
            query.params["angular_distance"],
        ),
    )
)
