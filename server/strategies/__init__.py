"""Query strategies, one family per module; importing this registers them all."""

from alquery.server.strategies import (
    bayesian,
    committee,
    credibility,
    diversity,
    uncertainty,
)

__all__ = ["bayesian", "committee", "credibility", "diversity", "uncertainty"]
