"""Make a native crash of a serving process visible instead of silent.

A fault inside a native library (onnxruntime, BLAS, gRPC core) kills the
process with a signal, and Python code cannot run any more to log it.
``report_fatal_signals`` turns on the standard library's faulthandler, so
such a death writes "Fatal Python error: Segmentation fault" (or Bus
error, Floating point exception, Aborted, Illegal instruction) and every
thread's Python stack to stderr before the process ends with the signal
(exit status 128 + signal in a shell, -signal for a parent in Python).

Notes
-----
The dump is plain text even with ``--log-format json``: it is written from
the signal handler, where no logging can run. A supervisor restarts the
process: ``alquery serve --workers N`` (N = 1 too, see server/workers.py)
logs the dead worker's exit code at ERROR and starts another; a container
runtime or systemd does the same for a single unsupervised process.
"""

from __future__ import annotations

import faulthandler
import logging
import sys

logger = logging.getLogger("alquery.server.crash")


def report_fatal_signals() -> None:
    """Dump every thread's stack to stderr on a fatal signal."""
    faulthandler.enable(file=sys.stderr, all_threads=True)
    logger.debug("fatal signals dump stacks to stderr")
