"""Logging set-up for ``alquery serve``: one format under the ``alquery`` root.

Two formats: ``text``, one human-readable line per record, and ``json``, one
JSON object per line with ``time``, ``level``, ``logger`` and ``message``,
plus the request line's fields (``method``, ``strategy``, ``n_pool``,
``batch_size``, ``status``, ``duration_ms``) as keys of their own.
"""

from __future__ import annotations

import json
import logging
import sys
import time

ROOT = "alquery"
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FORMAT_WITH_PID = "%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s"
LOG_FORMATS = ("text", "json")


class JsonLinesFormatter(logging.Formatter):
    """Format a record as one JSON object on one line; times in UTC."""

    converter = time.gmtime

    def __init__(self, with_pid: bool = False) -> None:
        super().__init__()
        self._with_pid = with_pid

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._with_pid:
            entry["pid"] = record.process
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(
    level: str = "INFO", log_format: str = "text", with_pid: bool = False
) -> None:
    """Send every ``alquery.*`` record at ``level`` or above to stderr.

    Parameters
    ----------
    level : str, default="INFO"
        DEBUG, INFO, WARNING or ERROR.
    log_format : {"text", "json"}, default="text"
        Human-readable lines, or JSON lines for a log pipeline.
    with_pid : bool, default=False
        Put ``pid=N`` (a ``pid`` key in JSON) in every record, so the lines
        of ``--workers`` processes can be told apart.

    Notes
    -----
    Process-wide: records no longer carry ``threadName``, ``processName``,
    ``pathname``, ``lineno`` or ``funcName`` (neither format shows them),
    so ``alquery serve`` calls this, the client library never does.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format: {log_format!r}; expected text or json")
    # Neither format shows a record's thread, process name or source line:
    # the logging HOWTO's "Optimization" switches spare gathering them for
    # every record (about 5 of the request line's 22 microseconds). The
    # pid (``process``) is still recorded.
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    root = logging.getLogger(ROOT)
    root.setLevel(level.upper())
    if log_format == "json":
        formatter: logging.Formatter = JsonLinesFormatter(with_pid=with_pid)
    else:
        formatter = logging.Formatter(FORMAT_WITH_PID if with_pid else FORMAT)
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.propagate = False
