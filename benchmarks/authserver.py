"""The local authorization server as the benchmarks use it.

:class:`TimedAuthServer` records when each token request arrived and was answered, so that the
storm benchmark can tell which API requests were waiting for a refresh. :func:`api_server` runs a
server in a separate process, so that its CPU time is not charged to the client being measured.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from refreshing_session import Token, TokenFile
from refreshing_session.testing import LocalAuthServer

# The server process stops by itself after this long, even if the benchmark died.
_SERVE_LIMIT = 900.0
_STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class TokenCall:
    """One request to the token endpoint, timed on the server (``time.perf_counter``)."""

    started: float
    answered: float
    status: int  # 0: the connection was dropped without an answer


class TimedAuthServer(LocalAuthServer):
    """A :class:`LocalAuthServer` that also keeps the timing of every token request."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._calls_lock = threading.Lock()
        self._calls: list[TokenCall] = []

    def _token_endpoint(self, request: Any) -> Any:
        started = time.perf_counter()
        response = super()._token_endpoint(request)
        call = TokenCall(started, time.perf_counter(), getattr(response, "status", 0))
        with self._calls_lock:
            self._calls.append(call)
        return response

    def token_calls(self) -> list[TokenCall]:
        """Return the token requests answered so far, oldest first."""
        with self._calls_lock:
            return sorted(self._calls, key=lambda call: call.started)


def write_grant(token_file: str | Path, grant: dict[str, object]) -> Token:
    """Log in: write the server's token response ``grant`` to ``token_file`` as our token file."""
    token = Token.from_response(grant, requested_at=time.time())
    TokenFile(token_file).write(token)
    return token


@dataclass(frozen=True)
class RunningServer:
    """Where a server started by :func:`api_server` listens, and the grant it issued."""

    api_url: str
    token_url: str
    grant: dict[str, object]


@contextmanager
def api_server(access_ttl: float) -> Iterator[RunningServer]:
    """Run a :class:`LocalAuthServer` in a spawned process; stop it on exit."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve, args=(theirs, access_ttl), daemon=True)
    process.start()
    try:
        if not ours.poll(60):
            raise RuntimeError("the benchmark's API server did not start within 60 s")
        api_url, token_url, grant = ours.recv()
        yield RunningServer(api_url, token_url, grant)
    finally:
        ours.send("stop")
        process.join(_STOP_TIMEOUT)
        if process.is_alive():
            process.terminate()
            process.join(_STOP_TIMEOUT)


def _serve(connection: Connection, access_ttl: float) -> None:
    with LocalAuthServer(access_ttl=access_ttl) as server:
        connection.send((server.api_url, server.token_url, server.issue_token()))
        connection.poll(_SERVE_LIMIT)
