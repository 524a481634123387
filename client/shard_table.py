"""Which strategies a pool split over several servers can rank, and how.

``SHARDING`` maps every strategy to ``EXACT`` (each shard's top k, merged
by score, is the one server's answer), ``CORESET`` (k-center's two rounds)
or the reason it is refused; ``sharding_mode`` applies it to a request.
"""

from __future__ import annotations

from typing import Any

import grpc

from alquery.client.errors import AlqueryError
from alquery.v1 import query_pb2

EXACT = "exact"
CORESET = "coreset"

_PER_SAMPLE = (
    "uncertainty.least_confidence",
    "uncertainty.margin",
    "uncertainty.ratio_of_confidence",
    "uncertainty.entropy",
    "uncertainty.bald",
    "uncertainty.variation_ratios",
    "uncertainty.mean_std",
    "uncertainty.vote_entropy",
    "uncertainty.consensus_entropy",
    "uncertainty.kl_mean",
    "uncertainty.kl_max",
    "credibility.validation_knn",
    "credibility.conformal",
    "credibility.trust_score",
    "credibility.gradient_alignment",
    "hybrid.expected_gradient_length",
)
_BATCH_AWARE = (
    "picks its batch from the whole pool at once; of the batch-aware "
    "strategies only diversity.kcenter has a sharded form"
)
_REFUSED = {
    "uncertainty.epig": (
        "its target set is the whole pool (this client sends no target set), "
        "so a sample's score depends on every other pool sample"
    ),
    "diversity.information_density": (
        "a sample's score is its mean similarity to the whole pool"
    ),
    "hybrid.density_weighted": (
        "a sample's score weighs its mean similarity to the whole pool"
    ),
    "diversity.lightweight_coreset": (
        "it draws with weights normalised over the whole pool around the pool mean"
    ),
    "diversity.random": (
        "its keys come from one seeded draw over the whole pool, so a shard "
        "cannot draw the keys of its own rows"
    ),
    **{
        name: _BATCH_AWARE
        for name in (
            "uncertainty.batchbald",
            "diversity.kmeans",
            "diversity.kmeans_plusplus",
            "diversity.typiclust",
            "diversity.probcover",
            "hybrid.badge",
            "hybrid.ranked_batch",
            "hybrid.clue",
            "hybrid.two_step",
            "hybrid.cluster_margin",
            "credibility.weak_clusters",
            "credibility.class_weakness",
        )
    },
}
SHARDING: dict[str, str] = {
    **dict.fromkeys(_PER_SAMPLE, EXACT),
    "diversity.kcenter": CORESET,
    **_REFUSED,
}
"""How each strategy is sharded: ``EXACT`` (each shard's top k, merged by
score), ``CORESET`` (k-center's two rounds), or the reason it is refused."""

_RANDOMIZED_APS = query_pb2.CredibilityStrategy.NONCONFORMITY_APS_RANDOMIZED


def sharding_mode(strategy: str, params: dict[str, Any] | None = None) -> str:
    """Return ``EXACT`` or ``CORESET`` for ``strategy``, or raise.

    Raises
    ------
    AlqueryError
        INVALID_ARGUMENT naming the strategy and why it cannot be sharded.
    """
    mode = SHARDING.get(strategy)
    if mode is None:
        reason = "this client does not know how to shard it"
    elif mode in (EXACT, CORESET):
        reason = _randomized_reason(strategy, params or {})
        if reason is None:
            return mode
    else:
        reason = mode
    raise AlqueryError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"strategy: {strategy} cannot be sharded: {reason}; rank it on one "
        "server (AlqueryClient), or pick one of: "
        + ", ".join(sorted(n for n, m in SHARDING.items() if m in (EXACT, CORESET))),
    )


def _randomized_reason(strategy: str, params: dict[str, Any]) -> str | None:
    if strategy != "credibility.conformal":
        return None
    value = params.get("nonconformity")
    if isinstance(value, str):
        enum = query_pb2.CredibilityStrategy.Nonconformity
        # A name that is no value is for the request's own check to refuse.
        value = enum.Value(value.upper()) if value.upper() in enum.keys() else None
    if value != _RANDOMIZED_APS:
        return None
    return (
        "nonconformity=NONCONFORMITY_APS_RANDOMIZED draws one uniform per "
        "pool position from one seeded stream, so a shard cannot draw its own"
    )
