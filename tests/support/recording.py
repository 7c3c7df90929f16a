"""A token endpoint on 127.0.0.1 that records what each request carried, for tests that check
what the client sends."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

from .handlers import QuietHandler
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

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                form = self.read_form()
                endpoint.requests.append((dict(self.headers.items()), form))
                self.send_json(*answer(form))
                if close_after_answer:  # as a server dropping an idle keep-alive connection
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_WR)  # the FIN goes out now
                    endpoint.closed.release()

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.origin + "/token"
