"""A token endpoint on 127.0.0.1 that records what each request carried, for tests that check
what the client sends."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from .hostile import LoopbackServer

Answer = Callable[[dict[str, str]], tuple[int, dict[str, Any]]]


class RecordingEndpoint(LoopbackServer):
    """A token endpoint that records each request's headers and form and answers with
    ``answer(form)``; with ``close_after_answer``, it closes each connection after answering
    (without saying so, as a server dropping idle connections does)."""

    def __init__(self, answer: Answer, *, close_after_answer: bool = False) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, str]]] = []
        self.closed = threading.Semaphore(0)  # released as each connection is closed
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Silent: requests carry the client's credentials."""

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = dict(urllib.parse.parse_qsl(raw.decode()))
                endpoint.requests.append((dict(self.headers.items()), form))
                status, body = answer(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if close_after_answer:  # as a server dropping an idle keep-alive connection
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_WR)  # the FIN goes out now
                    endpoint.closed.release()

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.origin + "/token"
