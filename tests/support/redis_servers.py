"""Real ``redis-server`` processes for the tests, on free loopback ports, in a temporary folder.

Each :class:`RedisServer` runs ``redis-server`` in the foreground with its own folder, log and
configuration (no snapshots unless asked for; an ACL file when a user is given), waits until it
answers PING, and is stopped by its own pid. Without ``redis-server`` on PATH, the tests that
need one are skipped, or fail when the ``CI`` environment variable is set.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .processes import unavailable

START_TIMEOUT = 10.0  # seconds for a server to answer PING
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class RedisUser:
    """An ACL user that may do anything, with a password; the default user is then off."""

    name: str
    password: str


class RedisServer:
    """One ``redis-server`` on 127.0.0.1; ``start()`` it again after ``stop()`` to restart it
    on the same port with the same data folder."""

    def __init__(
        self, folder: Path, *, persistent: bool = False, user: RedisUser | None = None
    ) -> None:
        self.folder = folder
        self.persistent = persistent
        self.user = user
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, without credentials."""
        return f"redis://127.0.0.1:{self.port}/0"

    def url_for(self, name: str, password: str) -> str:
        """The URL with a user name and password."""
        return f"redis://{name}:{password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING; fail the test, quoting its log,
        if it does not within START_TIMEOUT seconds."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "redis.log"
        self._process = subprocess.Popen(
            [_executable(), *self._options()],
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers_ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                pytest.fail(
                    f"redis-server did not start on port {self.port}; its log:\n{text}",
                    pytrace=False,
                )
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (SIGTERM: a persistent one writes its data first), by its pid."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze the server (SIGSTOP) for the block: it keeps its connections open and
        answers nothing, as a hung server does; then let it go on (SIGCONT)."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self._process.pid, signal.SIGCONT)

    def _options(self) -> list[str]:
        options = [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "no",
            "--dir",
            str(self.folder),
            "--logfile",
            "redis.log",
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
        ]
        if self.persistent:
            options += ["--appendfsync", "always"]
        if self.user is not None:
            acl = self.folder / "users.acl"
            acl.write_text(
                f"user default off\nuser {self.user.name} on >{self.user.password} ~* &* +@all\n"
            )
            options += ["--aclfile", str(acl)]
        return options

    def _answers_ping(self) -> bool:
        """Whether the server answers PING (a NOAUTH error counts: it is up)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as connection:
                connection.sendall(b"PING\r\n")
                reply = connection.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _executable() -> str:
    found = shutil.which("redis-server")
    if found is None:
        unavailable(
            "the Redis tests need redis-server on PATH (Debian: apt-get install redis-server)"
        )
    return found
