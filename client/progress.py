"""A one-line progress bar for long uploads, drawn on a terminal stream."""

from __future__ import annotations

from typing import TextIO

GIB = float(1 << 30)


class ProgressBar:
    """Redraw ``label [####    ] 41% 1.20/2.93 GiB`` in place on ``stream``.

    Call it as ``bar(done, total)`` (``streaming.Progress``); it redraws
    only when the whole percentage changes, and ends the line at 100 %.
    """

    def __init__(self, stream: TextIO, label: str = "upload", width: int = 30):
        self._stream = stream
        self._label = label
        self._width = width
        self._shown = -1

    def __call__(self, done: int, total: int) -> None:
        percent = 100 if total <= 0 else min(100, done * 100 // total)
        if percent == self._shown:
            return
        self._shown = percent
        filled = self._width * percent // 100
        bar = "#" * filled + " " * (self._width - filled)
        self._stream.write(
            f"\r{self._label} [{bar}] {percent:3d}% "
            f"{done / GIB:.2f}/{total / GIB:.2f} GiB"
        )
        if percent == 100:
            self._stream.write("\n")
        self._stream.flush()
