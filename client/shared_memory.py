"""Pass large tensors to a server on the same host as files in a shared directory.

With ``AlqueryClient(..., shared_memory_dir=DIR)``, ``rank`` writes each
tensor above ``DEFAULT_THRESHOLD_BYTES`` into a new file in DIR and sends
its name instead of its bytes (``Tensor.shared_memory``); the server, started
with ``--shared-memory-dir`` on the same directory, copies the bytes from
the file. The files are removed once the call has ended, however it ended.
An array made by ``SharedMemory.shared_array`` already lives in such a file:
it is referenced where it is, without being copied at all.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import secrets
import stat
from collections.abc import Iterator, MutableMapping
import numpy as np
from numpy.typing import DTypeLike, NDArray

from alquery.client.streaming import tensor_at
from alquery.v1 import query_pb2

DEFAULT_THRESHOLD_BYTES = 64 << 10
"""Tensors larger than this go through a file; smaller ones inline."""
MAX_FILE_BYTES = 2**63 - 1
"""The largest file a ``shared_array`` can ask for (a signed 64-bit size)."""

WIRE_DTYPES = tuple(np.dtype(code) for code in ("<f4", "<f8", "<i4", "<i8"))
_WRITE_BYTES = 1 << 30
"""Most bytes handed to one write call (Linux writes at most ~2 GiB)."""
_CREATE_FLAGS = (
    os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
)


class SharedMemory:
    """The client's side of a shared-memory directory.

    Parameters
    ----------
    directory : str or path
        The directory the server was started with (``--shared-memory-dir``),
        as this process sees it.
    threshold_bytes : int, default=64 KiB
        Tensors holding more bytes than this are written to a file; the
        rest travel inside the request.

    Raises
    ------
    ValueError
        When ``directory`` is not a directory.

    Notes
    -----
    Files are created with mode 0600, or 0640 when the directory grants its
    group any access (a server running as another user of that group reads
    them). Their names start with "alquery-" and a random part, so several
    clients can share one directory. A client killed during a call leaves
    its files behind; nothing else removes them.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        threshold_bytes: int = DEFAULT_THRESHOLD_BYTES,
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
        self.file_mode = 0o640 if mode & 0o070 else 0o600
        self.threshold_bytes = threshold_bytes
        # (start address, size) -> file name, for arrays of shared_array.
        self._regions: dict[tuple[int, int], str] = {}

    @contextlib.contextmanager
    def shared_array(
        self, shape: int | tuple[int, ...], dtype: DTypeLike = np.float32
    ) -> Iterator[NDArray]:
        """Yield a zeroed array that lives in a new file of the directory.

        Fill it in place and pass it (or a C-contiguous slice of its rows)
        to ``rank``: its bytes are referenced where they are, not copied.
        The file is removed when the ``with`` block ends; the memory goes
        once the array and its views are no longer referenced.

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
        name, fd = self._create()
        try:
            os.ftruncate(fd, nbytes)
            mapped = mmap.mmap(fd, nbytes)
        except BaseException:
            os.close(fd)
            self._remove(name)
            raise
        os.close(fd)
        array = np.frombuffer(mapped, dtype=dtype).reshape(shape)
        region = (array.ctypes.data, nbytes)
        self._regions[region] = name
        try:
            yield array
        finally:
            del self._regions[region]
            self._remove(name)

    @contextlib.contextmanager
    def place(
        self,
        request: query_pb2.RankRequest,
        deferred: MutableMapping[str, NDArray],
    ) -> Iterator[bool]:
        """Reference the large arrays of ``deferred`` from ``request``.

        Arrays of ``shared_array`` are referenced where they are; others
        above the threshold are written to new files. Their fields leave
        ``deferred``; the rest stay, to be sent inline. Yields whether any
        tensor was placed; the files written are removed when the block
        ends, whether the call succeeded or not.

        Raises
        ------
        OSError
            When a file cannot be written (e.g. the directory is full); the
            files already written are removed.
        """
        written, placed = [], False
        try:
            for field in list(deferred):
                array = deferred[field]
                ref = self._reference(array)
                if ref is None and array.nbytes > self.threshold_bytes:
                    ref = query_pb2.SharedMemoryRef(name=self._write(array))
                    written.append(ref.name)
                if ref is not None:
                    tensor_at(request, field).shared_memory.CopyFrom(ref)
                    del deferred[field]
                    placed = True
            yield placed
        finally:
            for name in written:
                self._remove(name)

    def _reference(self, array: NDArray) -> query_pb2.SharedMemoryRef | None:
        """The reference to ``array`` when it lies in a ``shared_array``."""
        if not array.flags.c_contiguous or not self._regions:
            return None
        address = array.ctypes.data
        # A copy: other threads may add or remove regions meanwhile.
        for (start, size), name in list(self._regions.items()):
            if start <= address and address + array.nbytes <= start + size:
                return query_pb2.SharedMemoryRef(name=name, offset=address - start)
        return None

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
            data = memoryview(array).cast("B")
            written = 0
            while written < len(data):
                written += os.write(fd, data[written : written + _WRITE_BYTES])
        except BaseException:
            os.close(fd)
            self._remove(name)
            raise
        os.close(fd)
        return name

    def _remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.directory, name))

