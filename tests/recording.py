"""A token endpoint on 127.0.0.1 that records what each request carried, for tests that check
what the client sends."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from .hostile import LoopbackServer

Answer = Callable[[dict[str, str]], tuple[int, dict[str, Any]]]


class RecordingEndpoint(LoopbackServer):
    """A token endpoint that records each request's headers and form and answers with
    ``answer(form)``."""

    def __init__(self, answer: Answer) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, str]]] = []
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

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.origin + "/token"
