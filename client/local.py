"""Run ``alquery serve`` as a child process on a free loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

_SERVING = re.compile(r"serving port=(\d+)")


class LocalServer:
    """A server in a child process, stopped (SIGTERM) when the block ends.

    Parameters
    ----------
    extra_args : sequence of str
        More ``alquery serve`` flags, e.g. ``["--grace-seconds", "5"]``.
    startup_timeout : float, default=60
        Seconds to wait for the server to report its port.

    Examples
    --------
    >>> with LocalServer() as server:  # doctest: +SKIP
    ...     client = AlqueryClient(server.target)
    """

    def __init__(
        self, extra_args: Sequence[str] = (), *, startup_timeout: float = 60.0
    ) -> None:
        self._args = [
            sys.executable, "-m", "alquery.client.cli", "serve",
            "--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1",
            *extra_args,
        ]
        self._startup_timeout = startup_timeout
        self.log: list[str] = []
        self.port: int | None = None
        self._process: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None
        self._ready = threading.Event()
        self._terminated = False

    @property
    def target(self) -> str:
        """The address to connect to, "127.0.0.1:PORT"."""
        return f"127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen[str]:
        assert self._process is not None, "the server is not started"
        return self._process

    def start(self) -> LocalServer:
        """Start the child and wait until it serves; raise RuntimeError if not."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._process = subprocess.Popen(
            self._args, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=env,
        )
        self._drain = threading.Thread(target=self._read_log, daemon=True)
        self._drain.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._ready.wait(0.05):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    "alquery serve did not start:\n" + "".join(self.log[-20:])
                )
        return self

    def terminate(self) -> None:
        """Send SIGTERM once; the server then shuts down gracefully.

        A second SIGTERM could land while the interpreter is exiting, when
        Python has put back the default handler, and kill it.
        """
        if not self._terminated and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self._terminated = True

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait for the exit (kill after ``timeout``); return its code."""
        process = self.process
        if process.poll() is None:
            self.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._drain is not None:
            self._drain.join(timeout)
        return process.returncode

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)
            match = _SERVING.search(line)
            if match and self.port is None:
                self.port = int(match.group(1))
                self._ready.set()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
