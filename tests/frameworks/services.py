"""A framework's command (a Celery worker, an RQ worker, gunicorn) run in the background for
one test: in a process group of its own, its output in a log file, ended by the test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from ..support.processes import ROOT

WARM_SHUTDOWN = 15.0  # seconds a command may take to stop on SIGTERM before it is killed
REAP_TIMEOUT = 10.0  # seconds for a killed command to be reaped


@contextmanager
def running(
    name: str,
    argv: list[str],
    log: Path,
    env: Mapping[str, str],
    pass_fds: tuple[int, ...] = (),
    warm_shutdown: float = WARM_SHUTDOWN,
) -> Iterator[Service]:
    """Run ``python argv`` from the repository's root with ``env`` added to the environment
    (and the root on PYTHONPATH, so that the command imports ``tests.frameworks``) and the file
    descriptors ``pass_fds`` left open; stop it on leaving the block, however it is left,
    allowing it ``warm_shutdown`` seconds (0: none) to stop on SIGTERM."""
    environment = {**os.environ, **env}
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), environment.get("PYTHONPATH")])
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
            start_new_session=True,  # its own process group: the children it forks end with it
        )
    service = Service(name, process, log, warm_shutdown)
    try:
        yield service
    finally:
        service.stop()


class Service:
    """A command started by :func:`running`."""

    def __init__(
        self, name: str, process: subprocess.Popen[bytes], log: Path, warm_shutdown: float
    ) -> None:
        self.name = name
        self.process = process
        self.log = log
        self.warm_shutdown = warm_shutdown

    def report(self) -> str:
        """Whether the command is still running, and the end of its log: for failure
        messages."""
        state = "ended" if self.ended() else "running"
        text = self.log.read_text(errors="replace")[-4000:]
        return f"{self.name} ({state}); the end of its log:\n{text}"

    def ended(self) -> bool:
        """Whether the command has exited. It is not reaped (``Popen.poll`` would reap it), so
        that its pid, which names its process group, is not reused before :meth:`stop`."""
        return _exited(self.process.pid)

    def stop(self) -> None:
        """A warm shutdown, if the command is allowed one (SIGTERM: Celery and gunicorn finish
        the work in hand and end their children), then SIGKILL to whatever is left of its
        process group. The leader is reaped last, so that its pid, which names the group,
        cannot be reused meanwhile."""
        pid = self.process.pid
        if self.warm_shutdown and not self.ended():
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.warm_shutdown
            while not self.ended() and time.monotonic() < deadline:
                time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):  # the group has ended: nothing is left
            os.killpg(pid, signal.SIGKILL)
        self.process.wait(timeout=REAP_TIMEOUT)


def wait_until(
    services: list[Service], condition: Callable[[], bool], what: str, timeout: float
) -> None:
    """Poll ``condition`` until it holds; fail the test, quoting the logs of ``services``, if
    one of them ends first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if any(service.ended() for service in services) or time.monotonic() > deadline:
            logs = "\n".join(service.report() for service in services)
            pytest.fail(f"no {what} within {timeout:.0f} s: {logs}", pytrace=False)
        time.sleep(0.01)


def _exited(pid: int) -> bool:
    """Whether the child ``pid`` has exited, leaving it unreaped."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
