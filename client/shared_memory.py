"""Pass large tensors to a server on the same host through shared memory.

With ``AlqueryClient(..., shared_memory_dir=DIR)``, ``rank`` puts each
tensor above ``DEFAULT_THRESHOLD_BYTES`` in shared memory and sends where
it is instead of its bytes (``Tensor.shared_memory``), to a server started
with ``--shared-memory-dir`` on the same directory. Two ways:

- sealed memory files (the default on Linux): each tensor goes into a
  memory file (``memfd_create``) sealed so that it can never shrink, or
  change at all; the client listens on a Unix socket in DIR and hands the
  file's descriptor to the server when it connects (``client.handover``).
  The server maps the file and reads it in place: no copy on its side.
- files in DIR (``sealed=False``): each tensor goes into a new file there,
  which the server copies.

Either way nothing is left once the call has ended, however it ended. An
array made by ``SharedMemory.shared_array`` already lives in such a file: it
is referenced where it is, without being copied by the client at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import mmap
import os
import secrets
import socket
import stat
from collections.abc import Iterator, MutableMapping

import numpy as np
from numpy.typing import DTypeLike, NDArray

from alquery.client.handover import Handover
from alquery.client.streaming import tensor_at
from alquery.v1 import query_pb2

DEFAULT_THRESHOLD_BYTES = 64 << 10
"""Tensors larger than this go through a file; smaller ones inline."""
MAX_FILE_BYTES = 2**63 - 1
"""The largest file a ``shared_array`` can ask for (a signed 64-bit size)."""

WIRE_DTYPES = tuple(np.dtype(code) for code in ("<f4", "<f8", "<i4", "<i8"))
_WRITE_BYTES = 1 << 30
"""Most bytes handed to one write call (Linux writes at most ~2 GiB)."""
try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None

_CREATE_FLAGS = (
    os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
)


def sealing_supported() -> bool:
    """Whether this platform can make and hand over sealed memory files."""
    return (
        hasattr(os, "memfd_create")
        and hasattr(fcntl, "F_ADD_SEALS")
        and hasattr(socket, "send_fds")
        and os.path.isdir("/proc/self/fd")
    )


def _memory_file(nbytes: int) -> int:
    """A new memory file of ``nbytes`` zero bytes, open for writing, that
    may be sealed."""
    fd = os.memfd_create("alquery", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, nbytes)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _seal(fd: int, *, frozen: bool) -> None:
    """Seal a memory file: its size fixed for good (a shared_array's, whose
    bytes stay writable through the array), or, ``frozen``, nothing about
    it may change (one written for a call)."""
    seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
    if frozen:
        seals |= fcntl.F_SEAL_WRITE
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals | fcntl.F_SEAL_SEAL)


@dataclasses.dataclass(frozen=True)
class _Region:
    """Where a ``shared_array`` lives: a file of the directory (``name``)
    or a sealed memory file (``fd``)."""

    name: str | None = None
    fd: int | None = None


class SharedMemory:
    """The client's side of a shared-memory directory.

    Parameters
    ----------
    directory : str or path
        The directory the server was started with (``--shared-memory-dir``),
        as this process sees it.
    threshold_bytes : int, default=64 KiB
        Tensors holding more bytes than this go through shared memory; the
        rest travel inside the request.
    sealed : bool or None, default=None
        Hand tensors over as sealed memory files (see the module's
        docstring) rather than as files in the directory; None: when this
        platform can (``sealing_supported``, Linux).

    Raises
    ------
    ValueError
        When ``directory`` is not a directory, or ``sealed`` is True on a
        platform without memory files.

    Notes
    -----
    Files and sockets are created with mode 0600, or 0640 (files) and 0660
    (sockets, which a server must be able to write to connect) when the
    directory grants its group any access, so that a server running as
    another user of that group can use them. Their names start with
    "alquery-" and a random part, so several clients can share one
    directory. A client killed during a call leaves its files and sockets
    behind; nothing else removes them (memory files go with the process).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        threshold_bytes: int = DEFAULT_THRESHOLD_BYTES,
        sealed: bool | None = None,
    ) -> None:
        self.directory = os.fspath(directory)
        try:
            mode = os.stat(self.directory).st_mode
        except OSError as error:
            raise ValueError(
                f"shared_memory_dir {self.directory}: {error.strerror}"
            ) from None
        if not stat.S_ISDIR(mode):
            raise ValueError(f"shared_memory_dir {self.directory}: not a directory")
        if sealed is None:
            sealed = sealing_supported()
        elif sealed and not sealing_supported():
            raise ValueError(
                "sealed: this platform cannot make sealed memory files (Linux "
                "only); use sealed=False to pass files"
            )
        self.sealed = sealed
        group = bool(mode & 0o070)
        self.file_mode = 0o640 if group else 0o600
        self.socket_mode = 0o660 if group else 0o600
        self.threshold_bytes = threshold_bytes
        # (start address, size) -> where it lives, for arrays of shared_array.
        self._regions: dict[tuple[int, int], _Region] = {}

    @contextlib.contextmanager
    def shared_array(
        self, shape: int | tuple[int, ...], dtype: DTypeLike = np.float32
    ) -> Iterator[NDArray]:
        """Yield a zeroed array that lives in shared memory.

        Fill it in place and pass it (or a C-contiguous slice of its rows)
        to ``rank``: its bytes are referenced where they are, not copied.
        A sealed memory file's pages are written (zeroed) at once, so its
        memory is taken when it is made, not as it is filled.
        Its memory file (sealed: its size can never change) or its file in
        the directory is closed or removed when the ``with`` block ends; the
        memory goes once the array and its views are no longer referenced.

        Parameters
        ----------
        shape : int or tuple of int
            The array's shape; every axis at least 1.
        dtype : dtype, default=float32
            float32, float64, int32 or int64 (little-endian).

        Raises
        ------
        ValueError
            On another dtype, an axis below 1, or more than
            ``MAX_FILE_BYTES``.
        """
        shape = tuple(int(axis) for axis in np.atleast_1d(shape))
        dtype = np.dtype(dtype)
        if dtype not in WIRE_DTYPES:
            raise ValueError(
                f"dtype: {dtype} cannot be sent; expected float32, float64, "
                "int32 or int64"
            )
        if not shape or min(shape) < 1:
            raise ValueError(f"shape: {shape}; every axis must be at least 1")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > MAX_FILE_BYTES:
            raise ValueError(
                f"shape: {shape} of {dtype} is {nbytes} bytes; a file holds at "
                f"most {MAX_FILE_BYTES}"
            )
        if self.sealed:
            fd, name = _memory_file(nbytes), None
        else:
            name, fd = self._create()
        try:
            if name is not None:
                os.ftruncate(fd, nbytes)
            mapped = mmap.mmap(fd, nbytes)
            if name is None:
                _seal(fd, frozen=False)
        except BaseException:
            os.close(fd)
            self._remove(name)
            raise
        if name is not None:
            os.close(fd)
        array = np.frombuffer(mapped, dtype=dtype).reshape(shape)
        if name is None:
            # Write every page now: the server refuses a memory file with
            # holes, since reading them would allocate memory on its side.
            array.reshape(-1).view(np.uint8)[:] = 0
        region = (array.ctypes.data, nbytes)
        self._regions[region] = _Region(name=name, fd=None if name else fd)
        try:
            yield array
        finally:
            del self._regions[region]
            if name is None:
                os.close(fd)
            self._remove(name)

    @contextlib.contextmanager
    def place(
        self,
        request: query_pb2.RankRequest,
        deferred: MutableMapping[str, NDArray],
    ) -> Iterator[bool]:
        """Reference the large arrays of ``deferred`` from ``request``.

        Arrays of ``shared_array`` are referenced where they are; others
        above the threshold are written to new memory files or files. Their
        fields leave ``deferred``; the rest stay, to be sent inline. Yields
        whether any tensor was placed. When the block ends, whether the
        call succeeded or not, the sockets and files are removed and the
        memory files written closed.

        Raises
        ------
        OSError
            When a file cannot be written (e.g. the directory is full); the
            files already written are removed.
        """
        written, frozen, placed = [], [], False
        handover: Handover | None = None
        sockets: dict[int, str] = {}
        try:
            for field in list(deferred):
                array = deferred[field]
                region, offset = self._region_of(array)
                if region is None and array.nbytes <= self.threshold_bytes:
                    continue
                if self.sealed:
                    if region is None:
                        frozen.append(_frozen_copy(array))
                    fd = frozen[-1] if region is None else region.fd
                    if handover is None:
                        handover = Handover(self.directory, self.socket_mode)
                    if fd not in sockets:
                        sockets[fd] = handover.offer(fd)
                    ref = query_pb2.SharedMemoryRef(socket=sockets[fd], offset=offset)
                else:
                    if region is None:
                        written.append(self._write(array))
                    name = written[-1] if region is None else region.name
                    ref = query_pb2.SharedMemoryRef(name=name, offset=offset)
                tensor_at(request, field).shared_memory.CopyFrom(ref)
                del deferred[field]
                placed = True
            yield placed
        finally:
            if handover is not None:
                handover.close()
            for fd in frozen:
                os.close(fd)
            for name in written:
                self._remove(name)

    def _region_of(self, array: NDArray) -> tuple[_Region | None, int]:
        """The region holding ``array`` when it lies in a ``shared_array``,
        and its byte offset there; (None, 0) otherwise."""
        if not array.flags.c_contiguous or not self._regions:
            return None, 0
        address = array.ctypes.data
        # A copy: other threads may add or remove regions meanwhile.
        for (start, size), region in list(self._regions.items()):
            if start <= address and address + array.nbytes <= start + size:
                return region, address - start
        return None, 0

    def _create(self) -> tuple[str, int]:
        # Random, so clients and threads sharing the directory never clash
        # (O_EXCL refuses a name that exists).
        name = f"alquery-{os.getpid()}-{secrets.token_hex(12)}"
        path = os.path.join(self.directory, name)
        fd = os.open(path, _CREATE_FLAGS, self.file_mode)
        # The umask may have taken bits the server needs: set them anyway.
        os.fchmod(fd, self.file_mode)
        return name, fd

    def _write(self, array: NDArray) -> str:
        name, fd = self._create()
        try:
            _write_all(fd, array)
        except BaseException:
            os.close(fd)
            self._remove(name)
            raise
        os.close(fd)
        return name

    def _remove(self, name: str | None) -> None:
        if name is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.directory, name))


def _write_all(fd: int, array: NDArray) -> None:
    data = memoryview(np.ascontiguousarray(array)).cast("B")
    written = 0
    while written < len(data):
        written += os.write(fd, data[written : written + _WRITE_BYTES])


def _frozen_copy(array: NDArray) -> int:
    """A memory file holding ``array``'s bytes, sealed against any change;
    return its descriptor."""
    fd = _memory_file(0)
    try:
        _write_all(fd, array)
        _seal(fd, frozen=True)
    except BaseException:
        os.close(fd)
        raise
    return fd
