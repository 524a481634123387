"""The alquery Python client: numpy in, ranked pool positions out."""

from alquery.client.client import AlqueryClient, RankResult, strategy_names
from alquery.client.errors import AlqueryError

__all__ = ["AlqueryClient", "AlqueryError", "RankResult", "strategy_names"]
