"""Query strategies, one family per module; importing this registers them all.

A family that outgrows one module splits by method group
(``diversity_sampling``, ...).
"""

from alquery.server.strategies import (
    credibility,
    diversity,
    diversity_clusters,
    diversity_coverage,
    diversity_sampling,
    uncertainty,
)

__all__ = [
    "credibility",
    "diversity",
    "diversity_clusters",
    "diversity_coverage",
    "diversity_sampling",
    "uncertainty",
]
