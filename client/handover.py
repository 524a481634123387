"""Hand sealed memory files to a server on this host through Unix sockets.

The client's half of ``SharedMemoryRef.socket``: for each memory file a
call references, ``Handover.offer`` listens on a new Unix socket in the
shared-memory directory and returns its name; one background thread
accepts every connection the server makes and sends the file's descriptor
on it (SCM_RIGHTS), until ``close``. A server may connect more than once
(once per attempt of the call); each connection gets the descriptor again.
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
        self._thread: threading.Thread | None = None

    def offer(self, fd: int) -> str:
        """Listen on a new socket that sends ``fd`` to whoever connects;
        return the socket's name in the directory. ``fd`` must stay open
        until ``close``."""
        name = f"alquery-{os.getpid()}-{secrets.token_hex(12)}.sock"
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
        self._selector.register(listener, selectors.EVENT_READ, fd)
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
                with contextlib.suppress(BlockingIOError):
                    connection, _ = key.fileobj.accept()
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
        """Stop serving; remove the sockets. The descriptors stay open."""
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
        os.close(self._directory_fd)

    def __enter__(self) -> Handover:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
