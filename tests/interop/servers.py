"""Starting and stopping the real authorization servers the interop tests run."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

READY_TIMEOUT = 30.0  # seconds for a server to print READY


@dataclass(frozen=True)
class RealServer:
    """A running server with a protected resource under ``/api/``."""

    base_url: str

    @property
    def api_url(self) -> str:
        """The protected resource's prefix, for RefreshingSession."""
        return self.base_url + "/api/"

    @property
    def items_url(self) -> str:
        return self.api_url + "items"


def start_server(
    command: Sequence[str], *, name: str, cwd: Path, log: Path, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """Start ``command``, a server told to listen on port 0 that prints ``READY <port>`` once
    it listens; return the process and its port. Fails the test, quoting the server's log, if
    it exits or stays silent for READY_TIMEOUT seconds."""
    with log.open("a") as errors:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            env={**os.environ, **(env or {})},
        )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_drain, args=(process.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is not None and line.startswith("READY "):
            return process, int(line.split()[1])
        if line is None:
            stop_server(process)
            pytest.fail(
                f"{name} did not start (no READY within {READY_TIMEOUT:.0f} s, or it "
                f"exited); its log:\n{log.read_text(errors='replace')[-3000:]}",
                pytrace=False,
            )


def stop_server(process: subprocess.Popen[str]) -> None:
    """Stop a server this test session started, by its own pid."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _drain(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)
