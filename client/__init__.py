"""The alquery Python client: numpy in, ranked pool positions out."""

from alquery.client.aio import AsyncAlqueryClient
from alquery.client.client import AlqueryClient, RankResult, strategy_names
from alquery.client.errors import AlqueryError
from alquery.client.loop import run_loop
from alquery.client.models import OnnxModel
from alquery.client.retry import RetryPolicy
from alquery.client.security import ChannelSecurity
from alquery.client.sharding import ShardedClient

__all__ = [
    "AlqueryClient",
    "AlqueryError",
    "AsyncAlqueryClient",
    "ChannelSecurity",
    "OnnxModel",
    "RankResult",
    "RetryPolicy",
    "ShardedClient",
    "run_loop",
    "strategy_names",
]
