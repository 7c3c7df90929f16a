"""The base of the request handlers that the tests' loopback servers define: HTTP/1.1 with
keep-alive, as real servers speak, no access log, and the steps most of them take (read the
request's form, answer with JSON or with an empty body)."""

from __future__ import annotations

import json
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and speaks HTTP/1.1; subclasses add the ``do_*``
    methods."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Silent: requests carry tokens, codes and client secrets."""

    def read_body(self) -> bytes:
        """Read the request's body, as long as its Content-Length says."""
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def read_form(self) -> dict[str, str]:
        """Read the request's body as a form (application/x-www-form-urlencoded)."""
        return dict(urllib.parse.parse_qsl(self.read_body().decode()))

    def send_json(self, status: int, body: Any) -> None:
        """Answer with ``status`` and ``body`` written as JSON."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer with ``status``, ``headers`` and no body."""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()
