"""Hand sealed memory files to a server on this host through Unix sockets.

The client's half of ``SharedMemoryRef.socket``: for each memory file a
call references, ``Handover.offer`` listens on a new Unix socket in the
shared-memory directory and returns its name; one background thread
accepts every connection the server makes and sends the file's descriptor
on it (SCM_RIGHTS), until ``close``. A server may connect more than once
(once per attempt of the call); each connection gets the descriptor again.
The descriptor sent is a read-only one, opened anew: whoever connects can
read the file, never write it (in a group directory, any member of the
group can connect).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import selectors
import socket
import threading

logger = logging.getLogger("alquery.client.handover")

SEND_TIMEOUT_SECONDS = 5.0
"""How long the thread waits to send a descriptor to a connected server."""


class Handover:
    """Listening sockets in ``directory``, each offering one descriptor.

    Parameters
    ----------
    directory : str
        The shared-memory directory.
    socket_mode : int
        Mode of the socket files: the server needs write access to connect
        (0o660 when it runs as another user of the directory's group).
    """

    def __init__(self, directory: str, socket_mode: int) -> None:
        self._directory_fd = os.open(
            directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        )
        self._socket_mode = socket_mode
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._names: list[str] = []
        self._descriptors: list[int] = []
        self._thread: threading.Thread | None = None

    def offer(self, fd: int) -> str:
        """Listen on a new socket that sends a read-only descriptor of
        ``fd``'s file to whoever connects; return the socket's name in the
        directory."""
        name = f"alquery-{os.getpid()}-{secrets.token_hex(12)}.sock"
        # Whoever may connect gets a descriptor that cannot write the file,
        # even when ``fd`` can (a shared_array's).
        read_only = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        self._descriptors.append(read_only)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Through the directory's descriptor: the path may be too long
            # for a socket address (107 bytes).
            listener.bind(f"/proc/self/fd/{self._directory_fd}/{name}")
            self._names.append(name)
            os.chmod(name, self._socket_mode, dir_fd=self._directory_fd)
            listener.listen(8)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        self._selector.register(listener, selectors.EVENT_READ, read_only)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, name="alquery-handover", daemon=True
            )
            self._thread.start()
        return name

    def _serve(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    return
                try:
                    connection, _ = key.fileobj.accept()
                except BlockingIOError:
                    continue
                except OSError as error:
                    # Out of descriptors, say: stop offering this file, so
                    # the server hears "nobody listens" at once instead of
                    # waiting for a descriptor that cannot come.
                    logger.warning(
                        "memory file hand-over stopped: accept failed (%s)", error
                    )
                    self._selector.unregister(key.fileobj)
                    key.fileobj.close()
                    continue
                with connection:
                    self._send(connection, key.data)

    @staticmethod
    def _send(connection: socket.socket, fd: int) -> None:
        connection.settimeout(SEND_TIMEOUT_SECONDS)
        try:
            socket.send_fds(connection, [b"\0"], [fd])
        except OSError as error:
            # The server reports the call's failure; this thread goes on.
            logger.debug("sending a memory file failed: %s", error)

    def close(self) -> None:
        """Stop serving; remove the sockets and close the read-only
        descriptors (the files offered stay open)."""
        if self._thread is not None:
            self._wake_write.send(b"\0")
            self._thread.join()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()
        self._wake_write.close()
        for name in self._names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self._directory_fd)
        for fd in self._descriptors:
            os.close(fd)
        os.close(self._directory_fd)

    def __enter__(self) -> Handover:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
