"""Query strategies, one family per module; importing this registers them all.

A family that outgrows one module splits by method group
(``diversity_sampling``, ``hybrid_clustering``, ``bayesian_joint``, ...).
"""

from alquery.server.strategies import (
    badge,
    bayesian,
    bayesian_joint,
    committee,
    credibility,
    credibility_clusters,
    credibility_conformal,
    credibility_gradients,
    density,
    diversity,
    diversity_clusters,
    diversity_kcenter,
    diversity_coverage,
    diversity_sampling,
    diversity_typiclust,
    hybrid,
    hybrid_clustering,
    uncertainty,
)

__all__ = [
    "badge",
    "bayesian",
    "bayesian_joint",
    "committee",
    "credibility",
    "credibility_clusters",
    "credibility_conformal",
    "credibility_gradients",
    "density",
    "diversity",
    "diversity_clusters",
    "diversity_kcenter",
    "diversity_coverage",
    "diversity_sampling",
    "diversity_typiclust",
    "hybrid",
    "hybrid_clustering",
    "uncertainty",
]
