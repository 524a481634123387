"""Read tensors that a client on the same host left in a shared-memory directory.

A ``Tensor`` may carry a ``SharedMemoryRef`` (a file name and a byte offset)
instead of its ``data``. A server started with ``--shared-memory-dir DIR``
opens DIR once, at start (``SharedMemoryDir``), and for each ``Rank`` call
that references files there (``SharedMemoryReads``) checks every reference,
reserves memory, then copies the bytes into buffers of its own. The buffers
then go to ``edge.build_query`` as a ``RankStream`` call's do, and the ONNX
runner may start on the first rows while later ones are still being read
(``models.streamed``).

Notes
-----
The server copies rather than maps the files: a client that truncates a
mapped file would kill the server with SIGBUS on the next access, while a
short read is just an error to report. Files are opened relative to the
directory's descriptor, without following symbolic links, and must be
regular files with one hard link; the name is one path component from a
small character set.
The server never writes or deletes a file: they are the client's.

A missing file is INVALID_ARGUMENT, not NOT_FOUND: clients already read
NOT_FOUND as "the server no longer holds that model, send it again".
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alquery.server.errors import InvalidRequestError, SharedMemoryDisabledError
from alquery.server.streaming import STREAMABLE, Arrivals, Slot, tensor_bytes
from alquery.v1 import query_pb2

logger = logging.getLogger("alquery.server.shared_memory")

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
"""A file name a reference may use: one path component, 1 to 128
characters, not starting with '.' (so never '.' or '..')."""
READ_BYTES = 8 << 20
"""Bytes read per system call; the model runner may start on rows once
they have been read."""
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symbolic link",
}


class SharedMemoryConfigError(OSError):
    """``--shared-memory-dir`` names a directory the server refuses to use."""


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
    does not change the directory this process reads from (but a
    ``--workers`` worker started again opens the path anew). ``check``
    runs on every request that uses it.
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


def _refuse(path: str, problem: str) -> SharedMemoryConfigError:
    return SharedMemoryConfigError(f"--shared-memory-dir {path}: {problem}")


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

    Raises
    ------
    SharedMemoryDisabledError
        When ``directory`` is None.
    InvalidRequestError
        Naming the field: a bad name, a file that is missing, not a regular
        file (a symbolic link, a FIFO, a directory) or too short, a bad
        dtype or shape, or both ``data`` and ``shared_memory`` set.

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
        self._refs = {
            field: _checked_ref(tensor, field, directory)
            for field, tensor in tensors.items()
        }
        if admit is not None:
            admit(request)
        super().__init__(
            {field: Slot(field, nbytes) for field, (_, nbytes) in self._refs.items()}
        )

    def read(
        self, after_chunk: Callable[[], None] | None = None
    ) -> dict[str, NDArray[np.uint8]]:
        """Copy every referenced file's bytes; return them by field, read-only.

        ``after_chunk`` runs after each read; an error it raises ends the
        reading (a model run that failed ends the call early).

        Raises
        ------
        InvalidRequestError
            When a file changed since it was checked: it was removed,
            replaced by something that is not a regular file, or truncated
            (the read came up short).
        """
        start = time.perf_counter()
        try:
            for field, (ref, _) in self._refs.items():
                self._read_file(field, ref, self._slots[field], after_chunk)
            payloads = {field: slot.finish() for field, slot in self._slots.items()}
        except BaseException:
            self._fail()
            raise
        logger.debug(
            "shared memory read tensors=%d bytes=%d seconds=%.3f",
            len(payloads), sum(len(p) for p in payloads.values()),
            time.perf_counter() - start,
        )
        return payloads

    def _read_file(
        self,
        field: str,
        ref: query_pb2.SharedMemoryRef,
        slot: Slot,
        after_chunk: Callable[[], None] | None,
    ) -> None:
        fd = _open_checked(ref, field, self._directory)
        try:
            size = len(slot.buffer)
            while slot.filled < size:
                end = min(size, slot.filled + READ_BYTES)
                got = os.preadv(
                    fd, [slot.buffer[slot.filled : end]], ref.offset + slot.filled
                )
                if got == 0:
                    raise InvalidRequestError(
                        f"{field}.shared_memory: the file {ref.name!r} ended "
                        f"after {ref.offset + slot.filled} bytes while being "
                        f"read; it needs {ref.offset + size} (was it "
                        "truncated?). Leave it unchanged until the answer comes"
                    )
                slot.filled += got
                self._landed()
                if after_chunk is not None:
                    after_chunk()
        finally:
            os.close(fd)


def _checked_ref(
    tensor: query_pb2.Tensor, field: str, directory: SharedMemoryDir
) -> tuple[query_pb2.SharedMemoryRef, int]:
    """Check a reference and return it with the tensor's byte count; the
    file is opened and closed again (``read`` opens it anew)."""
    ref = tensor.shared_memory
    nbytes = tensor_bytes(tensor, field)
    os.close(_open_checked(ref, field, directory, nbytes))
    return ref, nbytes


def _open_checked(
    ref: query_pb2.SharedMemoryRef,
    field: str,
    directory: SharedMemoryDir,
    nbytes: int | None = None,
) -> int:
    """Open ``ref``'s file in ``directory`` and return its descriptor, once
    it is known to be a regular file holding ``offset + nbytes`` bytes."""
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
