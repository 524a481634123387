"""Query strategies, one family per module; importing this registers them all."""

from alquery.server.strategies import (
    badge,
    credibility,
    density,
    diversity,
    hybrid,
    hybrid_clustering,
    uncertainty,
)

__all__ = [
    "badge",
    "credibility",
    "density",
    "diversity",
    "hybrid",
    "hybrid_clustering",
    "uncertainty",
]
