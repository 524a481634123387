"""Query strategies, one family per module; importing this registers them all."""

from alquery.server.strategies import credibility, diversity, uncertainty

__all__ = ["credibility", "diversity", "uncertainty"]
