"""Receive a client's sealed memory file through a Unix socket and map it.

A ``SharedMemoryRef`` with ``socket`` set names a Unix stream socket in the
server's shared-memory directory on which the client listens. The server
connects and reads one message whose ancillary data carries one file
descriptor: a memory file the client made with ``memfd_create`` and sealed
against shrinking (``receive``). ``Received.map`` then maps a byte range of
it read-only. Nothing is copied: the server reads the pages the client
wrote.

Why a sealed memory file and not a plain one: a client can shorten a plain
file while the server reads a mapping of it, and the server's next read of
a page past the new end kills it with SIGBUS. A memory file sealed with
F_SEAL_SHRINK can never get shorter, and one on tmpfs (not hugetlbfs, where
a page that cannot be allocated also raises SIGBUS) gives zeroed pages for
any hole the client punches. So a mapping of it can be read safely whatever
the client does. Unless the file is also sealed against writes, the client
may still change the bytes during the call; the caller decides where that
is harmless (``shared_memory``).

The exchange runs on one of ``HANDOVER_THREADS`` threads of its own, never
on the call's: what a client sends can make a close block (a TCP socket
with SO_LINGER, a file on a FUSE file system it serves), and only such a
thread waits then. The call waits for the answer until its budget runs
out, and a client that holds every hand-over thread only stalls other
hand-overs (RESOURCE_EXHAUSTED), not the server.

Notes
-----
Linux only (memfd_create, F_GET_SEALS, SEEK_HOLE and fstatfs). The server
connects through /proc/self/fd/<directory descriptor>/<name>, so it reaches
the directory it opened at start whatever the path now names; /proc must
be mounted. Between the check that the name is a socket and the
connection, someone allowed to write in the directory could swap in a
symbolic link to another socket: they could hand the server descriptors
anyway, and the descriptor received is checked all the same.
"""

from __future__ import annotations

import array
import concurrent.futures
import errno
import os
import re
import socket
import stat
import threading
import time

import numpy as np
from numpy.typing import NDArray

from alquery.server.errors import (
    CancelledError,
    InvalidRequestError,
    SharedMemoryDisabledError,
    TooLargeError,
)
from alquery.server.memory_files import Received, check, supported
from alquery.v1 import query_pb2

SOCKET_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
"""A socket name a reference may use: one path component, 1 to 64
characters (a Unix socket's path holds at most 107 bytes, and the server
adds "/proc/self/fd/<n>/" in front), not starting with '.'."""
MAX_WAIT_SECONDS = 10.0
"""Longest a call waits for all its clients' memory files together,
whatever its deadline."""
HANDOVER_THREADS = 4
"""Threads that take memory files from clients, per process."""
_MAX_DESCRIPTORS = 253
"""Room for as many descriptors as one message can carry (the kernel's
SCM_MAX_FD), so that none is dropped, and closed, by the kernel on the
receiving thread."""

_free_threads = threading.BoundedSemaphore(HANDOVER_THREADS)
_threads = concurrent.futures.ThreadPoolExecutor(
    HANDOVER_THREADS, thread_name_prefix="alquery-handover"
)


def receive(
    directory_fd: int, name: str, where: str, needed: int, seconds: float
) -> Received:
    """Take the memory file the client offers on socket ``name`` of the
    directory: at least ``needed`` bytes long, checked (``check``), its
    descriptor close-on-exec (the caller closes it).

    ``where`` names the field in messages (e.g.
    "pool.embeddings.shared_memory.socket"). The exchange runs on a
    hand-over thread; the call waits for it at most ``seconds``.

    Raises
    ------
    InvalidRequestError
        A bad name, no socket of that name, nobody listening, no answer in
        time, a message that does not carry exactly one descriptor, or a
        descriptor ``check`` refuses.
    TooLargeError
        When every hand-over thread is busy.
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
    if not _free_threads.acquire(blocking=False):
        raise TooLargeError(
            f"{where}: all {HANDOVER_THREADS} threads that take memory files "
            "are busy with clients that are slow to hand theirs over; retry, "
            "or send the bytes in data or in a file"
        )
    taking: concurrent.futures.Future[Received] = concurrent.futures.Future()
    try:
        _threads.submit(_take, taking, directory_fd, name, where, needed, seconds)
    except BaseException:
        _free_threads.release()
        raise
    try:
        return taking.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        # Whatever comes later is not used: close it then.
        taking.add_done_callback(_close_late)
        raise _late(where, name, seconds) from None


class _TimedOut(InvalidRequestError):
    """The client did not hand over its memory file in time."""


def _late(where: str, name: str, seconds: float) -> _TimedOut:
    return _TimedOut(
        f"{where}: the client did not hand over its memory file on {name!r} "
        f"within {seconds:.1f} s; keep accepting until the answer comes"
    )


def _close_late(taking: concurrent.futures.Future[Received]) -> None:
    if taking.exception() is None:
        os.close(taking.result().fd)


def _take(
    taking: concurrent.futures.Future[Received],
    directory_fd: int,
    name: str,
    where: str,
    needed: int,
    seconds: float,
) -> None:
    """On a hand-over thread: connect, receive, check (see ``receive``);
    answer through ``taking``, then close what was refused (which may
    block) and free the thread."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    refused: list[int] = []
    try:
        taking.set_result(
            _receive_checked(connection, directory_fd, name, where, needed, seconds,
                             refused)
        )
    except BaseException as error:  # handed to the waiting call
        taking.set_exception(error)
    finally:
        try:
            # Closing drops any descriptor still queued on the connection.
            connection.close()
            for fd in refused:
                os.close(fd)
        finally:
            _free_threads.release()


def _receive_checked(
    connection: socket.socket,
    directory_fd: int,
    name: str,
    where: str,
    needed: int,
    seconds: float,
    refused: list[int],
) -> Received:
    connection.settimeout(max(seconds, 1e-3))
    try:
        connection.connect(f"/proc/self/fd/{directory_fd}/{name}")
        _, ancillary, flags, _ = connection.recvmsg(
            1, socket.CMSG_SPACE(_MAX_DESCRIPTORS * 4), socket.MSG_CMSG_CLOEXEC
        )
    except (TimeoutError, BlockingIOError):
        raise _late(where, name, seconds) from None
    except OSError as error:
        raise InvalidRequestError(
            f"{where}: cannot take the memory file from {name!r} "
            f"({_connect_problem(error)})"
        ) from None
    received = _descriptors(ancillary)
    if len(received) != 1 or flags & socket.MSG_CTRUNC:
        refused.extend(received)
        raise InvalidRequestError(
            f"{where}: the client sent {len(received)} file descriptors on "
            f"{name!r}; expected exactly one (SCM_RIGHTS) in its first message"
        )
    fd = received[0]
    try:
        return Received(fd, check(fd, where.removesuffix(".socket"), needed))
    except BaseException:
        refused.append(fd)
        raise


def _connect_problem(error: OSError) -> str:
    if error.errno == errno.ECONNREFUSED:
        return "nobody listens on it"
    if error.errno in (errno.EACCES, errno.EPERM):
        return (
            "the server may not connect: the socket must be writable by the "
            "server's user or by one of its groups (a setgid directory gives "
            "its files the directory's group)"
        )
    return error.strerror or type(error).__name__


def _descriptors(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    received = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            whole = len(data) - len(data) % received.itemsize
            received.frombytes(data[:whole])
    return list(received)


class Handed:
    """The memory files a request's references name, received and checked.

    One connection per distinct socket, all within ``seconds`` together.
    ``map`` maps a field's bytes; ``close`` closes the descriptors (the
    mappings keep the files).

    Parameters
    ----------
    tensors : dict
        Fields that reference shared memory, with their tensors.
    sizes : dict
        The byte count of each field.
    directory_fd : int
        The shared-memory directory's descriptor.
    seconds : float
        How long the call may wait for all of them.
    deadline_bound : bool
        Whether ``seconds`` is what is left of the call's deadline: running
        out then cancels the call instead of blaming the client.

    Raises
    ------
    InvalidRequestError
        As ``receive``, or a reference that sets both name and socket.
    TooLargeError
        As ``receive``.
    CancelledError
        When the call's deadline passes while waiting.
    SharedMemoryDisabledError
        On a platform that cannot receive memory files.
    """

    def __init__(
        self,
        tensors: dict[str, query_pb2.Tensor],
        sizes: dict[str, int],
        directory_fd: int,
        seconds: float,
        deadline_bound: bool,
    ) -> None:
        self._refs = {
            field: tensor.shared_memory
            for field, tensor in tensors.items()
            if tensor.shared_memory.socket
        }
        self._sizes = sizes
        self._files: dict[str, Received] = {}
        # Per socket: the first field naming it, and the bytes all need.
        needed: dict[str, tuple[str, int]] = {}
        for field, ref in self._refs.items():
            where = f"{field}.shared_memory"
            if ref.name:
                raise InvalidRequestError(
                    f"{where}: sets both name and socket; set one"
                )
            if not supported():
                raise SharedMemoryDisabledError(
                    f"{where}.socket: this server cannot receive memory files "
                    "(Linux with /proc mounted only); name a file instead"
                )
            first, most = needed.get(ref.socket, (field, 0))
            needed[ref.socket] = first, max(most, ref.offset + sizes[field])
        ends = time.monotonic() + seconds
        try:
            for name, (field, nbytes) in needed.items():
                left = max(0.0, ends - time.monotonic())
                try:
                    self._files[name] = receive(
                        directory_fd, name, f"{field}.shared_memory.socket",
                        nbytes, left,
                    )
                except _TimedOut as error:
                    if deadline_bound:
                        raise CancelledError(
                            "the call's deadline passed while the server waited "
                            f"for a memory file ({error})"
                        ) from None
                    raise
        except BaseException:
            self.close()
            raise

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields whose bytes are in memory files."""
        return tuple(self._refs)

    def frozen(self, field: str) -> bool:
        """Whether ``field``'s memory file can no longer change."""
        return self._files[self._refs[field].socket].frozen

    def map(self, field: str) -> NDArray[np.uint8]:
        """Map ``field``'s bytes read-only (see ``Received.map``)."""
        ref = self._refs[field]
        return self._files[ref.socket].map(
            ref.offset, self._sizes[field], f"{field}.shared_memory"
        )

    def descriptor(self, field: str) -> tuple[int, int]:
        """A new descriptor of ``field``'s memory file (the caller closes
        it) and the offset of its bytes there."""
        ref = self._refs[field]
        return os.dup(self._files[ref.socket].fd), ref.offset

    def close(self) -> None:
        """Close every descriptor received."""
        for received in self._files.values():
            os.close(received.fd)
        self._files.clear()
