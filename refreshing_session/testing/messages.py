"""The request and response values passed between the HTTP plumbing and the OAuth state.

Plain values, no sockets: the OAuth state answers a :class:`Request` with a
:class:`Response` without knowing how either travels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message

Headers = tuple[tuple[str, str], ...]

NO_STORE: Headers = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


@dataclass(frozen=True)
class Response:
    """An answer to send: status, body, content type and extra headers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Headers = ()


@dataclass(frozen=True)
class Request:
    """A request as read off the wire, its body complete."""

    method: str
    path: str
    query: str
    headers: Message
    body: bytes


def json_response(status: int, payload: Mapping[str, object], headers: Headers = ()) -> Response:
    """Return a response whose body is ``payload`` as JSON."""
    return Response(status, json.dumps(payload).encode(), headers=headers)


def error_response(status: int, error: str, description: str, headers: Headers = ()) -> Response:
    """Return an OAuth-style JSON error answer (``error`` and ``error_description``)."""
    return json_response(status, {"error": error, "error_description": description}, headers)
