"""The alquery client for asyncio programs, on ``grpc.aio``.

Same requests, answers, errors, deadlines and retries as ``AlqueryClient``;
each method is a coroutine, so one event loop can keep many ranks in flight.
"""

from __future__ import annotations

from typing import Any

import grpc

from alquery.client.client import MAX_RECEIVE_BYTES, build_request
from alquery.client.errors import from_rpc_error
from alquery.client.results import RankResult, rank_result, strategy_dicts
from alquery.client.retry import (
    RetryPolicy,
    call_with_retry_async,
    checked_policy,
    checked_timeout,
)
from alquery.v1 import query_pb2, query_pb2_grpc

_BLOCKING_ONLY = frozenset({"model", "score_validation", "progress"})
"""``AlqueryClient.rank`` options this client does not offer."""


class AsyncAlqueryClient:
    """Talk to an alquery server at ``target`` from asyncio code.

    Parameters
    ----------
    target : str
        The server address, e.g. "127.0.0.1:50051".
    timeout : float or None, default=300
        Deadline in seconds for each call, retries included; None waits
        forever. ``rank`` and ``strategies`` take their own ``timeout`` too.
    retry : RetryPolicy, default=RetryPolicy()
        How a call that gets UNAVAILABLE is retried.

    Notes
    -----
    Create and use the client inside one running event loop (``grpc.aio``
    binds the channel to it).

    Examples
    --------
    >>> async with AsyncAlqueryClient("127.0.0.1:50051") as client:  # +SKIP
    ...     results = await asyncio.gather(
    ...         client.rank("uncertainty.margin", 10, probabilities=p),
    ...         client.rank("diversity.kcenter", 10, embeddings=e),
    ...     )
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = 300.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        timeout = checked_timeout(timeout)
        retry = checked_policy(retry)
        self._channel = grpc.aio.insecure_channel(
            target, options=[("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
        )
        self._stub = query_pb2_grpc.QueryServiceStub(self._channel)
        self._timeout = timeout
        self._retry = retry

    async def close(self) -> None:
        """Close the channel, cancelling calls still running."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncAlqueryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def rank(
        self,
        strategy: str,
        batch_size: int,
        *,
        timeout: float | None = None,
        **inputs: Any,
    ) -> RankResult:
        """Rank the pool; the parameters are those of ``AlqueryClient.rank``
        but ``model``, ``score_validation`` and ``progress``: ONNX models
        and streamed pools are the blocking client's only.

        Raises
        ------
        AlqueryError
            With the server's status, or INVALID_ARGUMENT for input the
            client refuses before sending.
        TypeError
            For ``model``, ``score_validation`` or ``progress``.
        """
        for name in _BLOCKING_ONLY.intersection(inputs):
            raise TypeError(
                f"AsyncAlqueryClient.rank: no {name!r}; ONNX models and "
                "streamed pools are in AlqueryClient only"
            )
        request = build_request(strategy, batch_size, **inputs)
        response = await self._call(self._stub.Rank, request, timeout)
        return rank_result(response, omit_scores=request.omit_scores)

    async def strategies(
        self, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Return the server's strategies as dicts (name, parameters, ...)."""
        request = query_pb2.ListStrategiesRequest()
        response = await self._call(self._stub.ListStrategies, request, timeout)
        return strategy_dicts(response)

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        timeout = checked_timeout(timeout)
        try:
            return await call_with_retry_async(
                method,
                request,
                timeout=self._timeout if timeout is None else timeout,
                policy=self._retry,
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error, request) from None
