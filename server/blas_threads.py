"""Hold BLAS to one thread while work that threads by itself runs.

Many small matrix products lose more to BLAS's thread hand-offs than they
gain, most of all on a busy machine; such work limits BLAS to one thread and
runs its own threads instead. The BLAS thread count is one setting for the
whole process, so the limit is counted: the first holder sets it, the last
one to leave restores it, however the holders overlap.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from threadpoolctl import ThreadpoolController

_lock = threading.Lock()
_holders = 0
_limiter = None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread for the duration of the ``with`` block.

    Notes
    -----
    Every BLAS call in the process, from any thread, runs on one thread
    while any holder is inside; the previous limits come back when the last
    holder leaves. Other code that sets the limit with threadpoolctl in
    another thread meanwhile (scikit-learn's k-means does, around its fit)
    restores its own saved value when it ends, which can lift ours early,
    or be lifted by ours: only speed suffers, never a result.
    """
    global _holders, _limiter
    with _lock:
        if _holders == 0:
            _limiter = ThreadpoolController().limit(limits=1, user_api="blas")
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _limiter is not None:
                _limiter.restore_original_limits()
                _limiter = None
