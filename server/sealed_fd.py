"""Receive a client's sealed memory file through a Unix socket and map it.

A ``SharedMemoryRef`` with ``socket`` set names a Unix stream socket in the
server's shared-memory directory on which the client listens. The server
connects (``receive``) and reads one message whose ancillary data carries
one file descriptor: a memory file the client made with ``memfd_create``
and sealed against shrinking. ``map_bytes`` then maps a byte range of it
read-only. Nothing is copied: the server reads the pages the client wrote.

Why a sealed memory file and not a plain one: a client can shorten a plain
file while the server reads a mapping of it, and the server's next read of
a page past the new end kills it with SIGBUS. A memory file sealed with
F_SEAL_SHRINK can never get shorter, and one on tmpfs (not hugetlbfs, where
a page that cannot be allocated also raises SIGBUS) gives zeroed pages for
any hole the client punches. So a mapping of it can be read safely whatever
the client does. Unless the file is also sealed against writes, the client
may still change the bytes during the call; the caller decides where that
is harmless (``shared_memory``).

Notes
-----
Linux only (memfd_create, F_GET_SEALS and fstatfs). The server connects
through /proc/self/fd/<directory descriptor>/<name>, so it reaches the
directory it opened at start whatever the path now names; /proc must be
mounted. Between the check that the name is a socket and the connection,
someone allowed to write in the directory could swap in a symbolic link to
another socket: they could hand the server descriptors anyway, and the
descriptor received is checked all the same.
"""

from __future__ import annotations

import array
import ctypes
import errno
import fcntl
import mmap
import os
import re
import socket
import stat

import numpy as np
from numpy.typing import NDArray

from alquery.server.errors import InvalidRequestError, SharedMemoryDisabledError
from alquery.v1 import query_pb2

SOCKET_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
"""A socket name a reference may use: one path component, 1 to 64
characters (a Unix socket's path holds at most 107 bytes, and the server
adds "/proc/self/fd/<n>/" in front), not starting with '.'."""
TMPFS_MAGIC = 0x01021994
"""fstatfs's f_type for tmpfs, where memfd_create puts its files (without
MFD_HUGETLB)."""
MAX_WAIT_SECONDS = 10.0
"""Longest wait for a client to accept and send its descriptor, whatever
the call's deadline: the wait holds one of the server's threads."""
_MAX_DESCRIPTORS = 8
"""Room for this many descriptors in one message, so that a client that
sends several is told so (the kernel closes any beyond the room)."""


def _load_fstatfs():  # noqa: ANN202  (a ctypes function or None)
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
        and os.path.isdir("/proc/self/fd")
    )


def receive(directory_fd: int, name: str, where: str, timeout: float) -> int:
    """Connect to the socket ``name`` in the directory and return the one
    descriptor the client sends on it (close-on-exec; the caller closes it).

    ``where`` names the field in messages (e.g.
    "pool.embeddings.shared_memory.socket"). ``timeout`` bounds the whole
    exchange, capped at ``MAX_WAIT_SECONDS``.

    Raises
    ------
    InvalidRequestError
        A bad name, no socket of that name, nobody listening, no answer in
        time, or a message that does not carry exactly one descriptor.
    """
    if not SOCKET_NAME_PATTERN.fullmatch(name):
        raise InvalidRequestError(
            f"{where}: {name[:100]!r} is not a plain socket name; expected 1 "
            "to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-', not "
            "starting with '.' (no '/')"
        )
    try:
        info = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise InvalidRequestError(
            f"{where}: no socket {name!r} in the server's shared-memory directory"
        ) from None
    except OSError as error:
        raise InvalidRequestError(
            f"{where}: cannot examine {name!r} ({error.strerror})"
        ) from None
    if not stat.S_ISSOCK(info.st_mode):
        raise InvalidRequestError(
            f"{where}: {name!r} is not a socket; expected the Unix socket on "
            "which the client hands over its memory file"
        )
    wait = max(0.0, min(timeout, MAX_WAIT_SECONDS))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(wait)
        try:
            connection.connect(f"/proc/self/fd/{directory_fd}/{name}")
            _, ancillary, flags, _ = connection.recvmsg(
                1, socket.CMSG_SPACE(_MAX_DESCRIPTORS * 4), socket.MSG_CMSG_CLOEXEC
            )
        except TimeoutError:
            raise InvalidRequestError(
                f"{where}: the client did not send its memory file on "
                f"{name!r} within {wait:.1f} s; keep accepting until the "
                "answer comes"
            ) from None
        except OSError as error:
            raise InvalidRequestError(
                f"{where}: cannot take the memory file from {name!r} "
                f"({_connect_problem(error)})"
            ) from None
    received = _descriptors(ancillary)
    if len(received) != 1 or flags & socket.MSG_CTRUNC:
        for fd in received:
            os.close(fd)
        count = "more than 8" if flags & socket.MSG_CTRUNC else len(received)
        raise InvalidRequestError(
            f"{where}: the client sent {count} file descriptors on {name!r}; "
            "expected exactly one (SCM_RIGHTS) in its first message"
        )
    return received[0]


def _connect_problem(error: OSError) -> str:
    if error.errno == errno.ECONNREFUSED:
        return "nobody listens on it"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "the server may not connect; give its user or group write access"
    return error.strerror or type(error).__name__


def _descriptors(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    received = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            whole = len(data) - len(data) % received.itemsize
            received.frombytes(data[:whole])
    return list(received)


def check(fd: int, where: str, needed: int) -> bool:
    """Refuse ``fd`` unless it is a memory file on tmpfs sealed against
    shrinking and holding at least ``needed`` bytes; return whether it is
    also sealed against writes (F_SEAL_WRITE: its bytes can no longer
    change, through any descriptor or mapping).

    Raises
    ------
    InvalidRequestError
        Naming ``where`` and what the descriptor is instead.
    """
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or _filesystem(fd) != TMPFS_MAGIC:
        raise InvalidRequestError(
            f"{where}: the descriptor received is not a memory file on tmpfs; "
            "send one made by memfd_create without MFD_HUGETLB"
        )
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        seals = 0
    if not seals & fcntl.F_SEAL_SHRINK:
        raise InvalidRequestError(
            f"{where}: the memory file is not sealed against shrinking; create "
            "it with MFD_ALLOW_SEALING and add F_SEAL_SHRINK before the call"
        )
    if info.st_size < needed:
        raise InvalidRequestError(
            f"{where}: the memory file holds {info.st_size} bytes; the "
            f"tensor's offset, shape and dtype need {needed}"
        )
    return bool(seals & fcntl.F_SEAL_WRITE)


def _filesystem(fd: int) -> int:
    # struct statfs starts with f_type, a C long on Linux.
    buffer = ctypes.create_string_buffer(256)
    if _fstatfs(fd, buffer) != 0:
        return -1
    return ctypes.c_long.from_buffer(buffer).value


def map_bytes(fd: int, offset: int, nbytes: int, where: str) -> NDArray[np.uint8]:
    """Map bytes ``offset`` to ``offset + nbytes`` of a checked memory file,
    read-only; the mapping lasts as long as the array (or a view of it).

    Raises
    ------
    InvalidRequestError
        Naming ``where``, when the system refuses the mapping.
    """
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    try:
        mapped = mmap.mmap(
            fd, offset - start + nbytes, flags=mmap.MAP_SHARED,
            prot=mmap.PROT_READ, offset=start,
        )
    except (OSError, OverflowError, ValueError) as error:
        raise InvalidRequestError(
            f"{where}: cannot map {nbytes} bytes at offset {offset} of the "
            f"memory file ({error})"
        ) from None
    return np.frombuffer(mapped, dtype=np.uint8, count=nbytes, offset=offset - start)


def map_sockets(
    tensors: dict[str, query_pb2.Tensor],
    sizes: dict[str, int],
    directory_fd: int,
    timeout: float,
) -> tuple[dict[str, NDArray[np.uint8]], set[str]]:
    """Map the bytes of every tensor whose reference names a socket, by
    field, and name the fields whose memory file can no longer change.

    ``tensors`` maps fields to tensors that reference shared memory,
    ``sizes`` to their byte counts; ``directory_fd`` is the shared-memory
    directory's descriptor. One connection per distinct socket; each
    descriptor is checked, mapped, then closed (the mappings keep the
    memory files).

    Raises
    ------
    InvalidRequestError
        As ``receive``, ``check`` and ``map_bytes``, or a reference that
        sets both name and socket.
    SharedMemoryDisabledError
        On a platform that cannot receive memory files.
    """
    received: dict[str, int] = {}
    mapped, frozen = {}, set()
    try:
        for field, tensor in tensors.items():
            ref = tensor.shared_memory
            if not ref.socket:
                continue
            where = f"{field}.shared_memory"
            if ref.name:
                raise InvalidRequestError(
                    f"{where}: sets both name and socket; set one"
                )
            if not supported():
                raise SharedMemoryDisabledError(
                    f"{where}.socket: this server's platform cannot receive "
                    "memory files; name a file instead"
                )
            fd = received.get(ref.socket)
            if fd is None:
                fd = receive(directory_fd, ref.socket, f"{where}.socket", timeout)
                received[ref.socket] = fd
            if check(fd, where, ref.offset + sizes[field]):
                frozen.add(field)
            mapped[field] = map_bytes(
                fd, ref.offset, sizes[field], where
            )
    finally:
        for fd in received.values():
            os.close(fd)
    return mapped, frozen
