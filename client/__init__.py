"""The alquery Python client: numpy in, ranked pool positions out."""

from alquery.client.client import AlqueryClient, RankResult, strategy_names
from alquery.client.errors import AlqueryError
from alquery.client.models import OnnxModel

__all__ = ["AlqueryClient", "AlqueryError", "OnnxModel", "RankResult", "strategy_names"]
