"""Servers of the tests' own on 127.0.0.1: :class:`LoopbackServer`, the base they build on;
:func:`served`, a fixture that runs one while its test lasts; and :class:`HostileTokenEndpoint`,
a hostile token endpoint for the attack tests that answers every request with the status and
body it is told to, and counts the requests. Real HTTP servers, so the client's whole stack
(requests, urllib3, the refresher) reads what a hostile server would send."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

import pytest

from .handlers import QuietHandler

TIMEOUT = 5.0
Server = TypeVar("Server")


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 with ``handler``, serving while the ``with`` block
    lasts."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(TIMEOUT)


def served(
    server_class: Callable[[], AbstractContextManager[Server]],
) -> Callable[[], Iterator[Server]]:
    """A pytest fixture that gives its test a running ``server_class()``, stopped when the test
    ends; the module's name it is assigned to is the fixture's name (``hostile =
    served(HostileServer)``)."""

    def running() -> Iterator[Server]:
        with server_class() as server:
            yield server

    fixture: Callable[[], Iterator[Server]] = pytest.fixture(running)
    return fixture


class HostileTokenEndpoint(LoopbackServer):
    """Answers every POST (and GET) with ``status`` and ``body``, as JSON unless it is bytes."""

    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.status = status
        self.body: Any = body
        self.calls = 0
        super().__init__(_handler_for(self))

    @property
    def url(self) -> str:
        """The token endpoint's URL."""
        return self.origin + "/token"

    def answer(self, status: int, body: Any) -> None:
        """Answer the next requests with ``status`` and ``body``."""
        with self._lock:
            self.status, self.body = status, body

    def next_answer(self) -> tuple[int, bytes]:
        with self._lock:
            self.calls += 1
            body = self.body
            status = self.status
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        return status, raw


def _handler_for(endpoint: HostileTokenEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def reply(self) -> None:
            self.read_body()
            status, raw = endpoint.next_answer()  # raw: the body may be no JSON at all
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = reply

    return Handler
