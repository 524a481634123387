"""Write one benchmark's section of bench/RESULTS.md, keeping the others.

Each benchmark owns the text between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->``; running it again replaces only that block.
"""

from __future__ import annotations

import pathlib


def write_section(name: str, text: str, path: pathlib.Path) -> None:
    """Put ``text`` between ``name``'s markers in ``path`` (appended if new)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{start}\n{text}\n{end}"
    if start in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)
