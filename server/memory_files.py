"""Memory files a client hands over: what the server accepts, and mapping.

``check`` accepts a descriptor only when it is a memory file on tmpfs
(``memfd_create`` without MFD_HUGETLB), readable, sealed against
shrinking and long enough; ``Received.map`` maps a byte range of it
read-only once the range is known to hold no hole. ``sealed_fd`` receives
the descriptors. See its docstring for why a sealed memory file can be
mapped safely and a plain file cannot.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import mmap
import os
import socket

import numpy as np
from numpy.typing import NDArray

from alquery.server.errors import InvalidRequestError

TMPFS_MAGIC = 0x01021994
"""fstatfs's f_type for tmpfs, where memfd_create puts its files (without
MFD_HUGETLB)."""


def _load_fstatfs():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.fstatfs
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_void_p)
    function.restype = ctypes.c_int
    return function


_fstatfs = _load_fstatfs()


def supported() -> bool:
    """Whether this platform can receive and check sealed memory files."""
    return (
        _fstatfs is not None
        and hasattr(socket, "SCM_RIGHTS")
        and hasattr(fcntl, "F_GET_SEALS")
        and hasattr(os, "SEEK_HOLE")
        and os.path.isdir("/proc/self/fd")
    )


@dataclasses.dataclass(frozen=True)
class Received:
    """A checked memory file: its descriptor, and whether it is sealed
    against writes too (F_SEAL_WRITE: its bytes can no longer change,
    through any descriptor or mapping)."""

    fd: int
    frozen: bool

    def map(self, offset: int, nbytes: int, where: str) -> NDArray[np.uint8]:
        """Map bytes ``offset`` to ``offset + nbytes`` read-only; the
        mapping lasts as long as the array (or a view of it).

        Raises
        ------
        InvalidRequestError
            Naming ``where``: the range holds a hole (pages never written
            or allocated, which reading would allocate on the server's
            account), or the system refuses the mapping.
        """
        hole = os.lseek(self.fd, offset, os.SEEK_HOLE)
        if hole < offset + nbytes:
            raise InvalidRequestError(
                f"{where}: the memory file has a hole at byte {hole}, inside "
                "the tensor; write every byte, or allocate the file "
                "(posix_fallocate), before the call"
            )
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        try:
            mapped = mmap.mmap(
                self.fd, offset - start + nbytes, flags=mmap.MAP_SHARED,
                prot=mmap.PROT_READ, offset=start,
            )
        except (OSError, OverflowError, ValueError) as error:
            raise InvalidRequestError(
                f"{where}: cannot map {nbytes} bytes at offset {offset} of the "
                f"memory file ({error})"
            ) from None
        return np.frombuffer(
            mapped, dtype=np.uint8, count=nbytes, offset=offset - start
        )


def check(fd: int, where: str, needed: int) -> bool:
    """Refuse ``fd`` unless it is a memory file on tmpfs, readable, sealed
    against shrinking and holding at least ``needed`` bytes; return whether
    it is also sealed against writes.

    Raises
    ------
    InvalidRequestError
        Naming ``where`` and what the descriptor is instead.
    """
    try:
        # Answered by the kernel alone, for any descriptor: asked first,
        # before anything that a file system the client serves could delay.
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        seals = None
    if seals is None or _filesystem(fd) != TMPFS_MAGIC:
        raise InvalidRequestError(
            f"{where}: the descriptor received is not a memory file on tmpfs; "
            "send one made by memfd_create without MFD_HUGETLB"
        )
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
        raise InvalidRequestError(
            f"{where}: the memory file was opened write-only; send a "
            "descriptor the server can read"
        )
    if not seals & fcntl.F_SEAL_SHRINK:
        raise InvalidRequestError(
            f"{where}: the memory file is not sealed against shrinking; create "
            "it with MFD_ALLOW_SEALING and add F_SEAL_SHRINK before the call"
        )
    size = os.fstat(fd).st_size
    if size < needed:
        raise InvalidRequestError(
            f"{where}: the memory file holds {size} bytes; the tensor's "
            f"offset, shape and dtype need {needed}"
        )
    return bool(seals & fcntl.F_SEAL_WRITE)


def _filesystem(fd: int) -> int:
    # struct statfs starts with f_type, a C long on Linux.
    buffer = ctypes.create_string_buffer(256)
    if _fstatfs(fd, buffer) != 0:
        return -1
    return ctypes.c_long.from_buffer(buffer).value
