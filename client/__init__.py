"""The alquery Python client: numpy in, ranked pool positions out."""

from alquery.client.client import AlqueryClient, RankResult, strategy_names
from alquery.client.errors import AlqueryError
from alquery.client.security import ChannelSecurity

__all__ = [
    "AlqueryClient",
    "AlqueryError",
    "ChannelSecurity",
    "RankResult",
    "strategy_names",
]
