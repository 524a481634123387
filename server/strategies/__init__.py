"""Query strategies, one family per module; importing this registers them all."""

from alquery.server.strategies import (
    credibility,
    credibility_clusters,
    credibility_conformal,
    credibility_gradients,
    diversity,
    uncertainty,
)

__all__ = [
    "credibility",
    "credibility_clusters",
    "credibility_conformal",
    "credibility_gradients",
    "diversity",
    "uncertainty",
]
