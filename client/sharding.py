"""Rank a pool larger than one server should hold, over several servers.

``ShardedClient`` splits the pool into contiguous shards, sends each shard
with the shared inputs (labeled set, validation set, parameters, seed,
models) to one server, and merges the answers: exactly for strategies that
score each sample on its own, and by a two-round composable core-set for
``diversity.kcenter``. Every other strategy is refused by name, with the
reason; ``shard_table.SHARDING`` is the table.
"""

from __future__ import annotations

import numbers
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from alquery.client import streaming
from alquery.client.client import AlqueryClient
from alquery.client.errors import AlqueryError
from alquery.client.results import RankResult
from alquery.client.retry import RetryPolicy
from alquery.client.security import ChannelSecurity
from alquery.client.shard_merge import merge_top_k, shard_bounds
from alquery.client.shard_table import EXACT, sharding_mode
from alquery.client.tensors import as_array

POOL_INPUTS = ("probabilities", "logits", "embeddings")
SHARED_INPUTS = (
    "labeled_embeddings",
    "labeled_labels",
    "validation_probabilities",
    "validation_logits",
    "validation_labels",
    "validation_embeddings",
    "params",
    "seed",
    "return_scores",
    "model",
    "score_validation",
)
"""Inputs every shard gets as they are; any other input is refused, so
that one added to ``AlqueryClient.rank`` later (a sampling mode, say) is
not merged as if it were exact."""


class ShardedClient:
    """Rank one pool over several alquery servers, a contiguous shard each.

    Parameters
    ----------
    targets : sequence of str
        Server addresses, "host:port", at least one.
    n_shards : int or None, default=None
        Shards to cut the pool into; None gives one per target. Shard s goes
        to target ``s % len(targets)``; each target ranks its shards one
        after the other, the targets at the same time.
    timeout, retry, stream_threshold_bytes
        As for ``AlqueryClient``, for each call to each target.
    security : ChannelSecurity, or a sequence of one per target, or None
        One applies to every target.

    Notes
    -----
    ``shard_table.SHARDING`` says what each strategy does:

    - Exact (uncertainty measures, credibility.validation_knn, conformal,
      trust_score, gradient_alignment, hybrid.expected_gradient_length):
      each shard returns its top ``batch_size`` with scores, and the merge
      sorts them by score, ties to the lower pool position. The answer is
      the one server's answer, provided the servers compute a row's score
      to the same bits whatever rows surround it (tested on these servers).
    - ``diversity.kcenter``, approximate: round 1 picks ``batch_size``
      centers in each shard (from the labeled set), round 2 runs k-center
      on the union of those picks with the labeled set on the first target.
      Its covering radius is at most 4 times the optimal one (2 per round,
      as greedy k-center is a 2-approximation), so at most 4 times the one
      server's greedy radius; each score is the pick's distance to the
      labeled set and the earlier picks, as on one server.
    - Everything else is refused with the reason: batch-aware strategies,
      scores that depend on the whole pool, per-position random draws.

    A sampling mode (``selection``, ``temperature``) is refused by name,
    like any input not in ``SHARED_INPUTS``: its Gumbel keys are drawn per
    pool position from one seed, and a shard cannot draw its own.
    Pool-row numbers in a shard's error message are rows of that shard;
    the message says which pool rows the shard holds.
    """

    def __init__(
        self,
        targets: Sequence[str],
        *,
        n_shards: int | None = None,
        timeout: float | None = 300.0,
        retry: RetryPolicy = RetryPolicy(),
        security: ChannelSecurity | Sequence[ChannelSecurity] | None = None,
        stream_threshold_bytes: int = streaming.DEFAULT_THRESHOLD_BYTES,
    ) -> None:
        if isinstance(targets, str) or not targets:
            raise ValueError("targets: give a non-empty list of 'host:port'")
        if n_shards is not None and (
            isinstance(n_shards, bool)
            or not isinstance(n_shards, numbers.Integral)
            or n_shards < 1
        ):
            raise ValueError(f"n_shards={n_shards!r}; must be an integer, at least 1")
        if security is None or isinstance(security, ChannelSecurity):
            security = [security] * len(targets)
        if len(security) != len(targets):
            raise ValueError(
                f"security: {len(security)} given for {len(targets)} targets"
            )
        self.targets = list(targets)
        self.n_shards = len(self.targets) if n_shards is None else n_shards
        self._clients = [
            AlqueryClient(
                target,
                timeout=timeout,
                retry=retry,
                security=options,
                stream_threshold_bytes=stream_threshold_bytes,
            )
            for target, options in zip(self.targets, security)
        ]
        self._executor = ThreadPoolExecutor(
            max_workers=len(self.targets), thread_name_prefix="alquery-shard"
        )
        self._higher_first: dict[str, bool] = {}

    def close(self) -> None:
        """Close every channel and the worker threads."""
        self._executor.shutdown(wait=True)
        for client in self._clients:
            client.close()

    def __enter__(self) -> ShardedClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def strategies(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """The first target's strategies (see ``AlqueryClient.strategies``)."""
        return self._clients[0].strategies(timeout=timeout)

    def rank(
        self,
        strategy: str,
        batch_size: int,
        *,
        timeout: float | None = None,
        **inputs: Any,
    ) -> RankResult:
        """Rank the pool over the shards and return the best ``batch_size``.

        Takes the inputs of ``AlqueryClient.rank``. ``probabilities``,
        ``logits`` and ``embeddings`` are split by rows; everything else goes
        to every shard. Indices are pool positions, as on one server.
        ``timeout`` is each call's deadline, not the whole ranking's.

        Raises
        ------
        AlqueryError
            INVALID_ARGUMENT for a strategy that cannot be sharded (naming
            why), pool inputs whose row counts differ, or a batch size below
            1; a shard's status, its message prefixed with the shard.
        """
        mode = sharding_mode(strategy, inputs.get("params"))
        _check_inputs(inputs)
        _check_batch_size(batch_size)
        pool = _pool_arrays(inputs)
        n_pool = len(next(iter(pool.values()))) if pool else 0
        if n_pool == 0:
            # Nothing to split: the server says what is missing.
            return self._clients[0].rank(
                strategy, batch_size, timeout=timeout, **inputs, **pool
            )

        return_scores = inputs.pop("return_scores", True)
        k = min(batch_size, n_pool)
        if mode == EXACT:
            result = self._rank_exact(strategy, k, pool, inputs, timeout)
        else:
            result = self._rank_coreset(strategy, k, pool, inputs, timeout)
        warnings = result.warnings
        if batch_size > n_pool:
            warnings = (
                (
                    f"batch_size={batch_size} exceeds the pool size "
                    f"n_pool={n_pool}; returning all {n_pool} pool samples ranked"
                ),
                *warnings,
            )
        return RankResult(
            indices=result.indices,
            scores=result.scores if return_scores else None,
            strategy=result.strategy,
            warnings=warnings,
            extras=result.extras if return_scores else {},
        )

    def _rank_exact(
        self,
        strategy: str,
        k: int,
        pool: dict[str, NDArray],
        shared: dict[str, Any],
        timeout: float | None,
    ) -> RankResult:
        bounds = shard_bounds(len(next(iter(pool.values()))), self.n_shards)
        answers = self._map_shards(
            bounds,
            lambda client, start, stop: client.rank(
                strategy,
                min(k, stop - start),
                timeout=timeout,
                **_rows(pool, slice(start, stop)),
                **shared,
            ),
        )
        higher_first = self._direction(strategy, timeout)
        starts = [start for start, _ in bounds]
        return merge_top_k(answers, starts, k, higher_first=higher_first)

    def _rank_coreset(
        self,
        strategy: str,
        k: int,
        pool: dict[str, NDArray],
        shared: dict[str, Any],
        timeout: float | None,
    ) -> RankResult:
        # Round 1: k centers in each shard; a shard of k rows or fewer is
        # taken whole without a call.
        bounds = shard_bounds(len(next(iter(pool.values()))), self.n_shards)

        def round_one(client: AlqueryClient, start: int, stop: int) -> NDArray:
            if stop - start <= k:
                return np.arange(start, stop)
            answer = client.rank(
                strategy,
                k,
                timeout=timeout,
                return_scores=False,
                **_rows(pool, slice(start, stop)),
                **shared,
            )
            return answer.indices + start

        # Round 2: k-center on the union, kept in pool order so that ties
        # still go to the lower pool position.
        union = np.sort(np.concatenate(self._map_shards(bounds, round_one)))
        final = self._clients[0].rank(
            strategy, k, timeout=timeout, **_rows(pool, union), **shared
        )
        return RankResult(
            indices=union[final.indices],
            scores=final.scores,
            strategy=final.strategy,
            warnings=final.warnings,
            extras=final.extras,
        )

    def _map_shards(
        self,
        bounds: list[tuple[int, int]],
        call: Callable[[AlqueryClient, int, int], Any],
    ) -> list[Any]:
        # Each target takes its shards in turn; the targets run at once. The
        # first failure stops shards not yet started.
        results: list[Any] = [None] * len(bounds)
        failed = threading.Event()

        def serve(target: int) -> None:
            for shard in range(target, len(bounds), len(self._clients)):
                if failed.is_set():
                    return
                start, stop = bounds[shard]
                try:
                    results[shard] = call(self._clients[target], start, stop)
                except AlqueryError as error:
                    failed.set()
                    raise AlqueryError(
                        error.code,
                        f"shard {shard + 1} of {len(bounds)} (pool rows {start} "
                        f"to {stop - 1}, at {self.targets[target]}): "
                        f"{error.details}",
                    ) from None
                except Exception:
                    failed.set()
                    raise

        used = range(min(len(self._clients), len(bounds)))
        futures = [self._executor.submit(serve, target) for target in used]
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        return results

    def _direction(self, strategy: str, timeout: float | None) -> bool:
        if strategy not in self._higher_first:
            for info in self._clients[0].strategies(timeout=timeout):
                self._higher_first[info["name"]] = info["higher_first"]
        return self._higher_first[strategy]


def _check_inputs(inputs: dict[str, Any]) -> None:
    unknown = sorted(set(inputs) - set(POOL_INPUTS) - set(SHARED_INPUTS))
    if unknown:
        raise AlqueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{unknown[0]}: ShardedClient.rank does not take this input; it "
            "takes " + ", ".join(POOL_INPUTS + SHARED_INPUTS),
        )


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise AlqueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"batch_size: got {batch_size!r}; expected an integer of at least 1",
        )
    if batch_size < 1:
        raise AlqueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"batch_size: got {batch_size}; it must be at least 1",
        )


def _pool_arrays(inputs: dict[str, Any]) -> dict[str, NDArray]:
    # Pops the pool inputs out of ``inputs``; what stays is shared.
    pool = {
        name: as_array(inputs.pop(name), f"pool.{name}")
        for name in POOL_INPUTS
        if inputs.get(name) is not None
    }
    rows = {name: (len(array) if array.ndim else 0) for name, array in pool.items()}
    if len(set(rows.values())) > 1:
        shown = " but ".join(f"pool.{name} has {n} rows" for name, n in rows.items())
        raise AlqueryError(
            grpc.StatusCode.INVALID_ARGUMENT, f"{shown}; they must agree"
        )
    if any(array.ndim == 0 for array in pool.values()):
        inputs.update(pool)
        return {}
    return pool


def _rows(pool: dict[str, NDArray], rows: slice | NDArray) -> dict[str, NDArray]:
    return {name: array[rows] for name, array in pool.items()}
