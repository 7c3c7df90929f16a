"""HTTP plumbing of the local server: request framing, the handler and the threaded server.

It reads each request whole (Content-Length or chunked, with limits), hands it
to a route function as a :class:`~.messages.Request` and writes back the
:class:`~.messages.Response`; it knows nothing of OAuth.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import cast

from .messages import Request, Response, error_response

_MAX_BODY = 16 * 1024 * 1024
_MAX_LINE = 65536
_MAX_TRAILERS = 100
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")

Route = Callable[[Request], Response | None]


class HTTPError(Exception):
    """A request the server rejects before routing (malformed framing)."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.response = error_response(
            status, "invalid_request", description, headers=(("Connection", "close"),)
        )


def _read_line(rfile: BufferedIOBase) -> bytes:
    line = rfile.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE or not line.endswith(b"\n"):
        raise HTTPError(400, "malformed chunked body")
    return line.rstrip(b"\r\n")


def _read_exact(rfile: BufferedIOBase, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) != size:
        raise HTTPError(400, "request body shorter than announced")
    return data


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()
    if not digits or len(digits) > 16 or not set(digits) <= _HEX_DIGITS:
        raise HTTPError(400, "malformed chunk size")
    return int(digits, 16)


def _read_chunked(rfile: BufferedIOBase) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while size := _chunk_size(_read_line(rfile)):
        total += size
        if total > _MAX_BODY:
            raise HTTPError(413, "request body too large")
        chunks.append(_read_exact(rfile, size))
        if _read_line(rfile):
            raise HTTPError(400, "missing CRLF after chunk")
    for _ in range(_MAX_TRAILERS):
        if not _read_line(rfile):
            return b"".join(chunks)
    raise HTTPError(400, "too many trailer fields")


def _read_body(rfile: BufferedIOBase, headers: Message) -> bytes:
    """Read the whole request body so the connection can be kept alive."""
    transfer_encoding = headers.get("Transfer-Encoding")
    if transfer_encoding is not None:
        # RFC 9112 6.3: a request whose final coding is not chunked is unframeable.
        if transfer_encoding.split(",")[-1].strip().lower() != "chunked":
            raise HTTPError(400, "unsupported transfer coding")
        return _read_chunked(rfile)
    length = headers.get("Content-Length")
    if length is None:
        return b""
    length = length.strip()
    if not (length.isascii() and length.isdigit()):
        raise HTTPError(400, "invalid Content-Length")
    if int(length) > _MAX_BODY:
        raise HTTPError(413, "request body too large")
    return _read_exact(rfile, int(length))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalAuthServer"
    # Idle keep-alive connections must not pin a thread forever.
    timeout = 30.0
    # Headers and body go out in two writes; Nagle would delay the second one.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        """Discard request logging: request lines and errors may carry secrets."""

    def _dispatch(self) -> None:
        try:
            body = _read_body(self.rfile, self.headers)
        except HTTPError as exc:
            self._send(exc.response)
            return
        target = urllib.parse.urlsplit(self.path)
        request = Request(self.command, target.path, target.query, self.headers, body)
        response = cast(HTTPServer, self.server).route(request)
        if response is None:
            self.close_connection = True
        else:
            self._send(response)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)


class HTTPServer(ThreadingHTTPServer):
    """A threaded HTTP/1.1 server on a free port of ``host`` that answers with ``route``
    (None from ``route``: drop the connection without an answer)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: str, route: Route) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.route = route
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((host, 0), _Handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        """Remember the connection so :meth:`close_connections` can end it."""
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        """Forget the connection, then close it."""
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End every open keep-alive connection so none is served after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # OSError: the peer may already have closed it.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        """Ignore peers that hang up mid-request; report real handler bugs."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)
