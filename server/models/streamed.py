"""Run a ``RankStream`` call's models while its chunks are still arriving.

The models run in a worker thread (onnxruntime releases the GIL), on the
streamed embeddings as each chunk of rows lands (see
``streaming.Arrivals.rows_ready``), while the handler thread reads the
stream. The runs are those ``Rank`` makes, in the same order and with the
same chunks and seeds, so the answers are the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from numpy.typing import NDArray

from alquery.server.models import inference
from alquery.server.models.cache import ModelCache
from alquery.server.streaming import Arrivals, StreamEndedError

logger = logging.getLogger("alquery.server.models.streamed")


class StreamedInference:
    """``inference.apply`` on a stream being read, in a worker thread.

    Parameters
    ----------
    assembly : Arrivals
        The call; its header's request carries ``inference``.
    cache : ModelCache
        Where the models are found or loaded.
    stop_requested : callable
        True once the call is over (cancel, deadline, server stopping).
    on_stop : callable
        Registers a callback run when the call ends.

    Notes
    -----
    Only the first pass of the first model over a set overlaps with the
    transfer; further committee members and Monte-Carlo passes run once
    the rows are all there, as ``Rank`` runs them. A row that is not
    finite is reported when its chunk of rows comes to run: when a model
    fails on an earlier chunk, that failure is reported instead.
    """

    def __init__(
        self,
        assembly: Arrivals,
        cache: ModelCache,
        stop_requested: Callable[[], bool],
        on_stop: Callable[[Callable[[], None]], object],
    ) -> None:
        self._assembly = assembly
        self._stops: list[Callable[[], None]] = []
        self._decoded: dict[str, NDArray] = {}
        self._error: BaseException | None = None
        self._done = threading.Event()

        def register(callback: Callable[[], None]) -> None:
            self._stops.append(callback)
            on_stop(callback)

        self._thread = threading.Thread(
            target=self._run,
            args=(cache, stop_requested, register),
            name="alquery-stream-model",
            daemon=True,
        )
        self._thread.start()

    def _run(
        self,
        cache: ModelCache,
        stop_requested: Callable[[], bool],
        on_stop: Callable[[Callable[[], None]], None],
    ) -> None:
        try:
            self._decoded = inference.apply(
                self._assembly.request, cache, stop_requested=stop_requested,
                on_stop=on_stop, arrivals=self._assembly,
            )
        except BaseException as error:  # handed to the handler thread
            self._error = error
        finally:
            self._done.set()

    def raise_if_failed(self) -> None:
        """Raise the worker's error if it has failed (the stream may then
        stop being read); a worker that waits or runs raises nothing."""
        if self._done.is_set() and self._error is not None:
            if not isinstance(self._error, StreamEndedError):
                raise self._error

    def stop(self) -> None:
        """Abort a model run in progress and wait for the worker to end
        (called when the stream failed)."""
        for callback in self._stops:
            callback()
        self._thread.join()

    def result(self) -> dict[str, NDArray]:
        """Wait for the worker; return what ``inference.apply`` returned.

        Raises
        ------
        AlqueryError
            The worker's error (an invalid model, rows that are not
            finite, a failed run, a cancelled call).
        """
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._decoded
