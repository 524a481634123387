"""Read tensors that a client on the same host left in shared memory.

A ``Tensor`` may carry a ``SharedMemoryRef`` instead of its ``data``: a
file name and a byte offset, or the name of a Unix socket on which the
client hands over a sealed memory file (``sealed_fd``). A server started
with ``--shared-memory-dir DIR`` opens DIR once, at start
(``SharedMemoryDir``), and for each ``Rank`` call that references it
(``SharedMemoryReads``) checks every reference, receives and maps the
memory files, reserves memory, then copies into buffers of its own the
bytes it does not read in place. The buffers then go to
``edge.build_query`` as a ``RankStream`` call's do, and the ONNX runner may
start on the first rows while later ones are still being read
(``models.streamed``).

Notes
-----
Files are copied rather than mapped: a client that truncates a mapped
file would kill the server with SIGBUS on the next access, while a short
read is just an error to report. Memory files sealed against shrinking are
mapped (``sealed_fd`` says why that is safe) and read in place where the
client cannot change them (sealed against writes too) or where only the
request's models read them (``in_place``); elsewhere they are copied, so
that the checks made on the bytes hold for the strategy.
Files are opened relative to the directory's descriptor, without following
symbolic links, and must be regular files with one hard link; the name is
one path component from a small character set.
The server never writes or deletes a file: they are the client's.

A missing file is INVALID_ARGUMENT, not NOT_FOUND: clients already read
NOT_FOUND as "the server no longer holds that model, send it again".
"""

from __future__ import annotations

import logging
import os
import stat
import time
import weakref
from collections.abc import Callable, Collection
from multiprocessing import reduction
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alquery.server import sealed_fd, shared_files
from alquery.server.errors import InvalidRequestError, SharedMemoryDisabledError
from alquery.server.streaming import STREAMABLE, Arrivals, Slot, tensor_bytes
from alquery.v1 import query_pb2

logger = logging.getLogger("alquery.server.shared_memory")

READ_BYTES = 8 << 20
"""Bytes read per system call; the model runner may start on rows once
they have been read."""


class SharedMemoryConfigError(OSError):
    """``--shared-memory-dir`` names a directory the server refuses to use.

    ``path`` and ``problem`` say which and why; the message names the flag
    (``named`` names what else set the value, such as its variable).
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"--shared-memory-dir {path}: {problem}")
        self.path, self.problem = path, problem

    def named(self, source: str) -> str:
        """The message with ``source`` (a flag, or a variable: NAME=path)
        in place of the flag."""
        separator = " " if source.startswith("-") else "="
        return f"{source}{separator}{self.path}: {self.problem}"


class SharedMemoryDir:
    """The directory of ``--shared-memory-dir``, held open by descriptor.

    Parameters
    ----------
    path : str
        The directory. It must exist, must not be a symbolic link, and must
        grant nothing to others (mode & 0o007 == 0): anyone who can write
        there can plant files that the server reads for other clients, and
        anyone who can read there can read the clients' pools.

    Raises
    ------
    SharedMemoryConfigError
        Naming the path and what is wrong with it.

    Notes
    -----
    The descriptor is opened once: renaming or replacing the path later
    does not change the directory this process reads from. A ``--workers``
    worker receives a duplicate of the parent's descriptor when it is
    spawned (``__reduce__``), so a worker started again reads the same
    directory too. ``check`` runs on every request that uses it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        # "link/" would make lstat follow the link: examine "link" itself.
        path = path.rstrip("/") or "/"
        try:
            before = os.lstat(path)
        except FileNotFoundError:
            raise _refuse(
                path, "does not exist; create it (mode 0700 or 0770)"
            ) from None
        except OSError as error:
            raise _refuse(path, f"cannot be examined ({error.strerror})") from None
        if stat.S_ISLNK(before.st_mode):
            raise _refuse(path, "is a symbolic link; give the real directory")
        if not stat.S_ISDIR(before.st_mode):
            raise _refuse(path, "is not a directory")
        if before.st_mode & 0o007:
            raise _refuse(
                path,
                f"has mode {stat.S_IMODE(before.st_mode):04o}, which lets "
                "other users read or write it; remove their access "
                "(chmod o-rwx) so that only the clients' user or group can",
            )
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(path, flags)
        opened = os.fstat(self.fd)
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            os.close(self.fd)
            raise _refuse(path, "was replaced while the server opened it")

    def check(self) -> None:
        """Refuse to read while the directory is removed or open to others.

        Raises
        ------
        SharedMemoryDisabledError
            When the directory was removed since the server started (a new
            one at the same path is not the one it holds: restart it), or
            its mode now grants others access.
        """
        now = os.fstat(self.fd)
        if now.st_nlink == 0:
            raise SharedMemoryDisabledError(
                f"shared_memory: the server's directory {self.path} was "
                "removed after the server started; restart the server to "
                "use a new one"
            )
        if now.st_mode & 0o007:
            raise SharedMemoryDisabledError(
                f"shared_memory: the server's directory {self.path} now has "
                f"mode {stat.S_IMODE(now.st_mode):04o}, which lets other "
                "users read or write it; the server reads nothing from it "
                "until their access is removed (chmod o-rwx)"
            )

    def close(self) -> None:
        """Close the directory's descriptor."""
        os.close(self.fd)

    def __reduce__(self) -> tuple[Callable[..., SharedMemoryDir], tuple]:
        # Pickled for a process that multiprocessing spawns (a --workers
        # worker's config): the child gets a duplicate of this descriptor,
        # not the path, which may name another directory by then.
        return _inherited, (self.path, reduction.DupFd(self.fd))


def _inherited(path: str, duplicate: reduction.DupFd) -> SharedMemoryDir:
    # The directory a parent checked and handed down (``__reduce__``).
    directory = SharedMemoryDir.__new__(SharedMemoryDir)
    directory.path, directory.fd = path, duplicate.detach()
    return directory


def _refuse(path: str, problem: str) -> SharedMemoryConfigError:
    return SharedMemoryConfigError(path, problem)


def references(request: query_pb2.RankRequest) -> dict[str, query_pb2.Tensor]:
    """Return the tensors of ``request`` that reference shared memory, by
    field path (e.g. "pool.embeddings").

    Raises
    ------
    InvalidRequestError
        When a tensor sets both ``data`` and ``shared_memory``.
    """
    found = {}
    for group, names in _STREAMABLE_BY_GROUP.items():
        # Most requests leave most groups unset: skip their fields at once.
        if not request.HasField(group):
            continue
        parent = getattr(request, group)
        for name in names:
            tensor = _reference(parent, group, name)
            if tensor is not None:
                found[f"{group}.{name}"] = tensor
    return found


_STREAMABLE_BY_GROUP = {
    group: tuple(
        field.partition(".")[2] for field in STREAMABLE if field.startswith(f"{group}.")
    )
    for group in dict.fromkeys(field.partition(".")[0] for field in STREAMABLE)
}
"""``STREAMABLE``'s tensor names by the request field that holds them."""


def _reference(parent: Any, group: str, name: str) -> query_pb2.Tensor | None:
    # ``parent``'s tensor ``name`` if it references shared memory, else None.
    if name in ("probabilities", "logits"):
        if parent.WhichOneof("predictions") != name:
            return None
    elif not parent.HasField(name):
        return None
    tensor = getattr(parent, name)
    if not tensor.HasField("shared_memory"):
        return None
    if tensor.data:
        raise InvalidRequestError(
            f"{group}.{name}: sets both data and shared_memory; send the "
            "bytes one way only"
        )
    return tensor


class SharedMemoryReads(Arrivals):
    """A ``Rank`` call's shared-memory tensors, checked, then being read.

    Creating it checks every reference (name, file type, size) and the
    dtype and shape that give its byte count, calls ``admit(request)``,
    then allocates one buffer per tensor; ``read`` copies the files' bytes
    into them. As with a ``RankStream`` call's ``Assembly``, other threads
    may use the rows read so far (see ``streaming.Arrivals``).

    Parameters
    ----------
    request : RankRequest
        The call's request.
    directory : SharedMemoryDir or None
        The server's directory; None when shared memory is not enabled.
    admit : callable, optional
        Runs once the references are checked, before any buffer exists;
        may raise to refuse the call (the memory guard).
    in_place : collection of str, default=()
        Fields that only the request's models read
        (``inference.features_only_models_read``): a memory file the client
        can still write is read in place for these, and copied for others.
    time_remaining : callable, optional
        Seconds left before the call's deadline (None: no deadline); the
        call waits for its clients' memory files no longer than that, nor
        than ``sealed_fd.MAX_WAIT_SECONDS``.

    Raises
    ------
    SharedMemoryDisabledError
        When ``directory`` is None.
    InvalidRequestError
        Naming the field: a bad name, a file that is missing, not a regular
        file (a symbolic link, a FIFO, a directory) or too short, a memory
        file that cannot be received or is not sealed, a bad dtype or
        shape, or both ``data`` and ``shared_memory`` set.

    Notes
    -----
    The server reads what the file holds while it reads: a client
    that rewrites a file during the call gets an answer on the mixed bytes
    (or an error, when they are not finite).
    """

    def __init__(
        self,
        request: query_pb2.RankRequest,
        directory: SharedMemoryDir | None,
        admit: Callable[[query_pb2.RankRequest], object] | None = None,
        in_place: Collection[str] = (),
        time_remaining: Callable[[], float | None] = lambda: None,
    ) -> None:
        tensors = references(request)
        if tensors and directory is None:
            fields = ", ".join(tensors)
            raise SharedMemoryDisabledError(
                f"{fields}: shared memory is not enabled on this server (start "
                "it with --shared-memory-dir); send the bytes in data instead"
            )
        if tensors:
            directory.check()
        self.request = request
        self._directory = directory
        self._files: dict[str, query_pb2.SharedMemoryRef] = {}
        # Sealed memory files to copy from: field -> (descriptor, offset).
        self._sealed: dict[str, tuple[int, int]] = {}
        self._close_sealed = weakref.finalize(self, _close_all, self._sealed)
        sizes = {}
        for field, tensor in tensors.items():
            sizes[field] = tensor_bytes(tensor, field)
            ref = tensor.shared_memory
            if not ref.socket:
                # Checked now; read later, through a descriptor opened anew.
                os.close(shared_files.open_checked(ref, field, directory, sizes[field]))
                self._files[field] = ref
        handed = _hand_over(tensors, sizes, directory, time_remaining())
        try:
            if admit is not None:
                admit(request)
            slots = {}
            for field, nbytes in sizes.items():
                if field not in handed.fields:
                    slots[field] = Slot(field, nbytes)
                elif field in in_place or handed.frozen(field):
                    slots[field] = Slot.holding(field, handed.map(field))
                else:
                    # Read, not mapped: a mapping read through would count
                    # the client's pages in this process's memory too.
                    self._sealed[field] = handed.descriptor(field)
                    slots[field] = Slot(field, nbytes)
        except BaseException:
            # Let go of the files now, not when a traceback is collected.
            self._close_sealed()
            raise
        finally:
            handed.close()
        super().__init__(slots)

    def read(
        self, after_chunk: Callable[[], None] | None = None
    ) -> dict[str, NDArray[np.uint8]]:
        """Copy every referenced file's bytes; return them by field, read-only.

        Tensors mapped in place are there already. ``after_chunk`` runs
        after each read; an error it raises ends the reading (a model run
        that failed ends the call early).

        Raises
        ------
        InvalidRequestError
            When a file changed since it was checked: it was removed,
            replaced by something that is not a regular file, or truncated
            (the read came up short).
        """
        start = time.perf_counter()
        try:
            for field, ref in self._files.items():
                fd = shared_files.open_checked(ref, field, self._directory)
                try:
                    self._read_fd(field, fd, ref.offset, after_chunk, ref.name)
                finally:
                    os.close(fd)
            for field, (fd, offset) in self._sealed.items():
                self._read_fd(field, fd, offset, after_chunk)
            payloads = {field: slot.finish() for field, slot in self._slots.items()}
        except BaseException:
            self._fail()
            # Let the mappings go now, not when a traceback is collected.
            for slot in self._slots.values():
                slot.buffer = np.empty(0, dtype=np.uint8)
            raise
        finally:
            self._close_sealed()
        logger.debug(
            "shared memory read tensors=%d bytes=%d seconds=%.3f",
            len(payloads), sum(len(p) for p in payloads.values()),
            time.perf_counter() - start,
        )
        return payloads

    def _read_fd(
        self,
        field: str,
        fd: int,
        offset: int,
        after_chunk: Callable[[], None] | None,
        name: str | None = None,
    ) -> None:
        """Copy ``field``'s bytes from ``fd`` at ``offset`` into its slot;
        ``name`` is the file's, None for a sealed memory file."""
        slot = self._slots[field]
        size = len(slot.buffer)
        while slot.filled < size:
            end = min(size, slot.filled + READ_BYTES)
            got = os.preadv(fd, [slot.buffer[slot.filled : end]], offset + slot.filled)
            if got == 0:
                # A sealed memory file cannot shrink: only a file gets here.
                raise InvalidRequestError(
                    f"{field}.shared_memory: the file {name!r} ended after "
                    f"{offset + slot.filled} bytes while being read; it needs "
                    f"{offset + size} (was it truncated?). Leave it unchanged "
                    "until the answer comes"
                )
            slot.filled += got
            self._landed()
            if after_chunk is not None:
                after_chunk()


def _close_all(descriptors: dict[str, tuple[int, int]]) -> None:
    for fd, _ in descriptors.values():
        os.close(fd)
    descriptors.clear()


def _hand_over(
    tensors: dict[str, query_pb2.Tensor],
    sizes: dict[str, int],
    directory: SharedMemoryDir | None,
    remaining: float | None,
) -> sealed_fd.Handed:
    """Receive the memory files of the references that name a socket,
    waiting no longer than the call's ``remaining`` seconds (None: no
    deadline) nor ``sealed_fd.MAX_WAIT_SECONDS``."""
    if remaining is None or remaining > sealed_fd.MAX_WAIT_SECONDS:
        seconds, deadline_bound = sealed_fd.MAX_WAIT_SECONDS, False
    else:
        seconds, deadline_bound = max(0.0, remaining), True
    return sealed_fd.Handed(
        tensors, sizes, -1 if directory is None else directory.fd, seconds,
        deadline_bound,
    )
