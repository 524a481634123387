"""Run the server of an earlier commit beside this one, in the same benchmark.

``export(commit, directory)`` writes that commit's ``alquery`` packages (as
pyproject.toml maps them onto folders) under ``directory``;
``server_code(directory)`` makes the servers started inside the block
import them instead of this worktree's. The client side stays this
worktree's code, so the two servers meet the same clients.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import subprocess
import tarfile
import tomllib
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parents[1]


def export(commit: str, directory: pathlib.Path) -> pathlib.Path:
    """Write ``commit``'s top-level ``alquery.*`` packages under ``directory``.

    Returns the folder to put on ``PYTHONPATH``. ``alquery`` itself is a
    namespace package, so the exported folders take precedence over the
    editable install's for every subpackage they hold.
    """
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = config["tool"]["setuptools"]["package-dir"]
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
        check=True, capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = tar.getmembers()
        for package, folder in folders.items():
            if package.count(".") != 1:
                continue  # a subpackage comes with its parent's folder
            target = directory.joinpath(*package.split("."))
            for member in members:
                if not member.isfile() or not member.name.startswith(folder + "/"):
                    continue
                path = target / member.name.removeprefix(folder + "/")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(tar.extractfile(member).read())
    return directory


@contextlib.contextmanager
def server_code(directory: pathlib.Path | None) -> Iterator[None]:
    """Start child processes inside the block with ``directory`` first on
    ``PYTHONPATH`` (None: this worktree's code, nothing changed)."""
    if directory is None:
        yield
        return
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(directory), *([before] if before else [])]
    )
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before
