"""Logging set-up for ``alquery serve``: one format under the ``alquery`` root."""

from __future__ import annotations

import logging
import sys

ROOT = "alquery"
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure(level: str = "INFO") -> None:
    """Send every ``alquery.*`` record at ``level`` or above to stderr."""
    root = logging.getLogger(ROOT)
    root.setLevel(level.upper())
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.propagate = False
