"""Open a client's file in the shared-memory directory, checked.

A ``SharedMemoryRef.name`` is one plain path component, opened relative to
the directory's descriptor without following symbolic links; the file must
be a regular file with one hard link, long enough for the tensor. The
server never writes or deletes it (``shared_memory`` reads it).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from typing import TYPE_CHECKING

from alquery.server.errors import InvalidRequestError
from alquery.v1 import query_pb2

if TYPE_CHECKING:
    from alquery.server.shared_memory import SharedMemoryDir

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
"""A file name a reference may use: one path component, 1 to 128
characters, not starting with '.' (so never '.' or '..')."""
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symbolic link",
}


def open_checked(
    ref: query_pb2.SharedMemoryRef,
    field: str,
    directory: SharedMemoryDir,
    nbytes: int | None = None,
) -> int:
    """Open ``ref``'s file in ``directory`` and return its descriptor, once
    it is known to be a regular file holding ``offset + nbytes`` bytes.

    Raises
    ------
    InvalidRequestError
        Naming the field: a name that is not one plain component, no such
        file, a file the server may not read, not a regular file (a
        symbolic link, a FIFO, a socket, a directory), more than one hard
        link, or too short.
    """
    where = f"{field}.shared_memory.name"
    if not NAME_PATTERN.fullmatch(ref.name):
        raise InvalidRequestError(
            f"{where}: {ref.name[:100]!r} is not a plain file name; expected "
            "1 to 128 characters from A-Z, a-z, 0-9, '.', '_' and '-', not "
            "starting with '.' (no '/')"
        )
    try:
        fd = os.open(ref.name, _OPEN_FLAGS, dir_fd=directory.fd)
    except OSError as error:
        raise InvalidRequestError(
            f"{where}: {_open_problem(ref.name, error)}"
        ) from None
    try:
        info = os.fstat(fd)
        kind = stat.S_IFMT(info.st_mode)
        if kind != stat.S_IFREG:
            shown = _KINDS.get(kind, "not a regular file")
            raise InvalidRequestError(
                f"{where}: {ref.name!r} is {shown}; expected a regular file"
            )
        if info.st_nlink != 1:
            # A hard link could make the server read a file its client may
            # not (where the kernel does not protect hard links).
            raise InvalidRequestError(
                f"{where}: {ref.name!r} has {info.st_nlink} hard links; "
                "expected a file with exactly one"
            )
        if nbytes is not None and info.st_size < ref.offset + nbytes:
            raise InvalidRequestError(_too_short(field, ref, nbytes, info.st_size))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_problem(name: str, error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return f"no file {name!r} in the server's shared-memory directory"
    if error.errno == errno.ELOOP:
        return f"{name!r} is a symbolic link; expected a regular file"
    if error.errno == errno.ENXIO:
        return (
            f"{name!r} is a socket; expected a regular file (a socket that "
            "hands over a memory file goes in shared_memory.socket)"
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return (
            f"the server may not read {name!r}; give the server's user or "
            "group read access"
        )
    return f"cannot open {name!r} ({error.strerror})"


def _too_short(
    field: str, ref: query_pb2.SharedMemoryRef, nbytes: int, size: int
) -> str:
    if ref.offset >= size:
        return (
            f"{field}.shared_memory.offset: {ref.offset} is beyond the end of "
            f"{ref.name!r}, which holds {size} bytes"
        )
    return (
        f"{field}.shared_memory: {ref.name!r} holds {size} bytes, but offset "
        f"{ref.offset} plus the {nbytes} bytes its shape and dtype declare "
        f"needs {ref.offset + nbytes}"
    )
