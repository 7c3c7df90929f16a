"""The front ends under one face, so that one behaviour test runs over each of them: requests
(RefreshingSession), httpx sync (RefreshingClient), httpx async (RefreshingAsyncClient, run on
an event loop in a portal thread), and RefreshingAuth on plain httpx clients, sync and async.

Each test asks a :class:`Client` for a request and gets an :class:`Answer`; what the token did
is read from the servers' side (their answers and their counts), never from the client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal

from refreshing_session import RefreshingSession
from refreshing_session.httpx import RefreshingAsyncClient, RefreshingAuth, RefreshingClient

TIMEOUT = 5
# The front ends that decide on every hop of a redirect; RefreshingAuth on a plain httpx client
# sees only the first (httpx carries its header on within the origin).
HOP_BY_HOP = ["requests", "httpx", "httpx-async"]
ALL = [*HOP_BY_HOP, "httpx-auth", "httpx-async-auth"]


@dataclass(frozen=True)
class Answer:
    """What the caller got: the final status, the body, the statuses of the redirects."""

    status: int
    text: str
    redirects: list[int]

    def json(self) -> Any:
        return json.loads(self.text)


class Client:
    """One client of a front end; ``request`` sends as the front end's users would, following
    redirects. ``chunks`` sends a streamed body (a generator, which cannot be sent twice)."""

    def __init__(self, kind: str, prefixes: Any, portal: BlockingPortal, **options: Any) -> None:
        self.kind = kind
        self.portal = portal
        self.caller_auth = options.pop("caller_auth", None)
        if kind == "requests":
            self.native: Any = RefreshingSession(prefixes, **options)
            self.native.auth = self.caller_auth
        elif kind in ("httpx", "httpx-async"):
            kind_class = RefreshingClient if kind == "httpx" else RefreshingAsyncClient
            self.native = kind_class(prefixes, auth=self.caller_auth, timeout=TIMEOUT, **options)
        else:
            assert self.caller_auth is None, "a plain client's auth is the RefreshingAuth"
            plain_class = httpx.Client if kind == "httpx-auth" else httpx.AsyncClient
            self.native = plain_class(auth=RefreshingAuth(prefixes, **options), timeout=TIMEOUT)

    @property
    def is_async(self) -> bool:
        return self.kind.startswith("httpx-async")

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        chunks: list[bytes] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Answer:
        if self.kind == "requests":
            data = body if chunks is None else iter(chunks)
            response = self.native.request(
                method, url, data=data, headers=headers, auth=auth, timeout=TIMEOUT
            )
            return Answer(
                response.status_code, response.text, [r.status_code for r in response.history]
            )
        options: dict[str, Any] = {"headers": headers, "follow_redirects": True}
        if auth is not None:
            options["auth"] = auth
        if not self.is_async:
            content = body if chunks is None else iter(chunks)
            return _answer(self.native.request(method, url, content=content, **options))
        answer: Answer = self.portal.call(self._async_request, method, url, body, chunks, options)
        return answer

    async def _async_request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        chunks: list[bytes] | None,
        options: dict[str, Any],
    ) -> Answer:
        content = body if chunks is None else _streamed(chunks)
        return _answer(await self.native.request(method, url, content=content, **options))

    def close(self) -> None:
        if self.is_async:
            self.portal.call(self.native.aclose)
        else:
            self.native.close()

    def __repr__(self) -> str:
        return repr(self.native)


async def _streamed(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _answer(response: httpx.Response) -> Answer:
    return Answer(response.status_code, response.text, [r.status_code for r in response.history])


ClientFactory = Callable[..., Client]


def client_factory(
    kind: str, portal: BlockingPortal, defaults: dict[str, Any]
) -> Iterator[ClientFactory]:
    """Yield a function that builds clients of ``kind`` (``prefixes=`` and the front end's
    options, ``defaults`` filling in the rest); closes them afterwards."""
    clients: list[Client] = []

    def build(**options: Any) -> Client:
        prefixes = options.pop("prefixes", defaults["prefixes"])
        for name, value in defaults.items():
            if name != "prefixes" and not (name == "token_file" and "store" in options):
                options.setdefault(name, value)
        client = Client(kind, prefixes, portal, **options)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()
