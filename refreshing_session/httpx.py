"""httpx front ends on the same keeper and stores: one token for requests and httpx, sync and
async, refreshed once for every client and process that shares the store.

:class:`RefreshingClient` and :class:`RefreshingAsyncClient` are :class:`httpx.Client` and
:class:`httpx.AsyncClient` subclasses that decide on every hop, redirects included, as
:class:`~refreshing_session.RefreshingSession` does: the token only under the prefixes, never
when the caller authenticates the request, never on a hop that a redirect brings into the
prefixes with a method other than GET or HEAD from outside them or from another origin. They
follow redirects themselves, through httpx's public ``send`` one hop at a time, so the
transports httpx chooses are its own. :class:`RefreshingAuth` is the same token as an
:class:`httpx.Auth` for clients of your own; there httpx follows redirects itself, and its rule
applies to the later hops: the header follows a redirect within the origin (under a prefix or
not) and is dropped across origins.

In async code a keeper call that may block (the lock, the file, the refresh) runs in a worker
thread (see :mod:`refreshing_session.async_flow`). Works under asyncio and trio.

Install with ``pip install ".[httpx]"`` from a checkout.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Self, TypeVar, Unpack

try:
    import anyio
    import anyio.lowlevel
    import httpx
except ModuleNotFoundError as missing:  # pragma: no cover - depends on the installation
    raise ModuleNotFoundError(
        'refreshing_session.httpx needs httpx and anyio: pip install ".[httpx]" from a checkout'
    ) from missing

from .async_flow import OffLoop, async_drive, async_exchanges
from .credentials import Credentials
from .flow import Call, Flow, Hop, Seen, bearer_flow, drive, exchanges, with_headers
from .keeper import TokenKeeper
from .options import TOKEN_ARGUMENTS, Options, TokenArguments, profile_arguments
from .shadowed import ShadowedToken
from .token import Token
from .urls import Prefixes, steered_in

__all__ = ["RefreshingAsyncClient", "RefreshingAuth", "RefreshingClient"]

_R = TypeVar("_R")
# httpx's default Limits(max_connections=...).
_HTTPX_POOL_SIZE = 100


class RefreshingAuth(httpx.Auth):
    """An :class:`httpx.Auth` that sends the keeper's bearer token to URLs under ``prefixes``,
    for sync and async clients alike.

    The arguments, and what they mean, are :class:`~refreshing_session.RefreshingSession`'s
    (``refresh_on`` included). A request that already carries an Authorization header passes as
    it is. A 401 that a new token may cure gets one refresh (or a sibling's newer token) and
    one replay, unless the body is a stream, which cannot be sent twice: then the 401 is
    returned.

    httpx follows redirects itself, after the auth flow: it drops the Authorization header
    across origins but copies every other header, a DPoP proof included. With DPoP tokens and
    ``follow_redirects=True``, use :class:`RefreshingClient` or :class:`RefreshingAsyncClient`,
    which give each hop its own proof and none outside the prefixes.
    """

    def __init__(self, prefixes: str | Iterable[str], **options: Unpack[TokenArguments]) -> None:
        self.token_options = Options.of(prefixes, **options)
        self.keeper = self.token_options.keeper()
        self._credentials = self.token_options.credentials()
        self._off_loop = OffLoop()

    @classmethod
    def from_profile(
        cls, name: str, *, config: str | os.PathLike[str] | None = None, **options: Any
    ) -> Self:
        """Return the auth for profile ``name``, as ``RefreshingSession.from_profile`` does."""
        return cls(**profile_arguments(name, config, options))

    @property
    def prefixes(self) -> Prefixes:
        """The URL prefixes that receive the token."""
        return self.token_options.prefixes

    @property
    def token(self) -> Token:
        """The token the next API request will carry, refreshed first if it is due. Blocks
        while it refreshes: in async code, call it in a worker thread."""
        return self.keeper.current()

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """The httpx auth flow of a sync client: the token under the prefixes, and the 401
        flow; keeper calls run in this thread."""
        flow = self._flow(request)
        if flow is None:
            yield request
            return
        pump = exchanges(flow, _seen)
        try:
            headers = next(pump)
            while True:
                headers = pump.send((yield with_headers(request, headers)))
        except StopIteration:
            return
        finally:
            pump.close()

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The httpx auth flow of an async client: as :meth:`sync_auth_flow`, with the keeper
        calls that may block in a worker thread."""
        flow = self._flow(request)
        if flow is None:
            yield request
            return
        pump = async_exchanges(flow, _seen, self._off_loop)
        try:
            headers = await anext(pump)
            while True:
                headers = await pump.asend((yield with_headers(request, headers)))
        except StopAsyncIteration:
            return
        finally:
            await pump.aclose()

    def _flow(self, request: httpx.Request) -> Flow | None:
        """The 401 flow of ``request``, or None when it passes as it is: it carries an
        Authorization header, or its URL is not under a prefix."""
        url = str(request.url)
        if "Authorization" in request.headers or not self.prefixes.match(url):
            return None
        return _flow(self.keeper, self._credentials, request, url)

    def __repr__(self) -> str:
        return f"<RefreshingAuth {list(self.prefixes.urls)!r} {self.keeper.store!r}>"


class _TokenClient:
    """What the refreshing clients add to their httpx client class: the token's options and
    keeper, built from the token's arguments (the others go to httpx), and the rules that say
    which hops of a request get the token."""

    def __init__(self, prefixes: str | Iterable[str], **arguments: Any) -> None:
        token_arguments = {name: arguments.pop(name) for name in TOKEN_ARGUMENTS & arguments.keys()}
        self.token_options = Options.of(prefixes, **token_arguments)
        self.keeper = self.token_options.keeper()
        self._credentials = self.token_options.credentials()
        self._shadowed = ShadowedToken(self.token_options.prefixes)
        super().__init__(**arguments)

    @classmethod
    def from_profile(
        cls, name: str, *, config: str | os.PathLike[str] | None = None, **options: Any
    ) -> Self:
        """Return a client for profile ``name``, as ``RefreshingSession.from_profile`` does;
        ``options`` may also hold the httpx client's arguments."""
        return cls(**profile_arguments(name, config, options))

    @property
    def prefixes(self) -> Prefixes:
        """The URL prefixes that receive the token."""
        return self.token_options.prefixes

    def _authenticated_by_caller(self, request: httpx.Request, auth: Any) -> bool:
        """Whether the caller authenticates ``request`` (``auth=`` here or on the client, an
        Authorization header, or credentials in the URL): then no hop gets the token. A
        client-wide credential under the prefixes is warned about, once per prefix."""
        client_auth = getattr(self, "auth", None)
        callers_auth = client_auth if auth is httpx.USE_CLIENT_DEFAULT else auth
        header = request.headers.get("Authorization")
        if callers_auth is None and header is None:  # the common path: no credential of theirs
            return bool(request.url.username or request.url.password)
        if callers_auth is not None and callers_auth is client_auth:
            self._shadowed.check(str(request.url), "the client's auth=")
        elif header is not None and header == getattr(self, "headers", {}).get("Authorization"):
            self._shadowed.check(str(request.url), "the client's headers['Authorization']")
        return True

    def _hops(self, follow_redirects: Any) -> _Hops:
        """The hops of a new request, following redirects as the caller asks (or the client)."""
        if follow_redirects is httpx.USE_CLIENT_DEFAULT:
            follow_redirects = getattr(self, "follow_redirects", False)
        return _Hops(self.prefixes, bool(follow_redirects), getattr(self, "max_redirects", 20))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {list(self.prefixes.urls)!r} {self.keeper.store!r}>"


class RefreshingClient(_TokenClient, httpx.Client):
    """An :class:`httpx.Client` that sends a self-refreshing bearer token to URLs under
    ``prefixes``, deciding on every hop as :class:`~refreshing_session.RefreshingSession` does.

    The token's arguments are :class:`RefreshingAuth`'s; other keyword arguments go to
    httpx.Client (``timeout=``, ``base_url=``, ``transport=``, ...).
    """

    @property
    def token(self) -> Token:
        """The token the next API request will carry (refreshed first if it is due)."""
        return self.keeper.current()

    def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """As in httpx; a request the caller authenticates (``auth=`` here or on the client)
        gets no token on any hop."""
        if self._authenticated_by_caller(request, auth):
            return super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        hops = self._hops(follow_redirects)
        hop: httpx.Request | None = request
        while hop is not None:
            response = self._send_hop(hops.counted(hop), hops)
            try:
                hop = hops.after(response)
                if hop is not None or not stream:
                    response.read()
            except BaseException:
                response.close()
                raise
        return response

    def _send_hop(self, hop: httpx.Request, hops: _Hops) -> httpx.Response:
        url = str(hop.url)
        if not hops.gets_token(hop.method, url):
            return self._send_one(hop)
        send = _sender(self._send_one, hops, hop)
        return drive(_flow(self.keeper, self._credentials, hop, url), send, _seen, _release)

    def _send_one(self, hop: httpx.Request) -> httpx.Response:
        return super().send(hop, stream=True, auth=None, follow_redirects=False)


class RefreshingAsyncClient(_TokenClient, httpx.AsyncClient):
    """An :class:`httpx.AsyncClient` that does what :class:`RefreshingClient` does, without
    ever blocking the event loop: keeper calls that may block run in a worker thread. Same
    arguments."""

    def __init__(self, prefixes: str | Iterable[str], **arguments: Any) -> None:
        limits = arguments.get("limits")
        self._gate = _Gate(_HTTPX_POOL_SIZE if limits is None else limits.max_connections)
        self._off_loop = OffLoop()
        super().__init__(prefixes, **arguments)

    async def token(self) -> Token:
        """The token the next API request will carry (refreshed first, off the loop, if it
        is due)."""
        call = Call(self.keeper.current, shareable=True, at_once=self.keeper.current_at_once)
        result: Token = await self._off_loop.run(call)
        return result

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """As in httpx; a request the caller authenticates (``auth=`` here or on the client)
        gets no token on any hop."""
        if self._authenticated_by_caller(request, auth):
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        hops = self._hops(follow_redirects)
        hop: httpx.Request | None = request
        while hop is not None:
            response = await self._send_hop(hops.counted(hop), hops)
            try:
                hop = hops.after(response)
                if hop is not None or not stream:
                    await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response

    async def _send_hop(self, hop: httpx.Request, hops: _Hops) -> httpx.Response:
        url = str(hop.url)
        if not hops.gets_token(hop.method, url):
            return await self._send_one(hop)
        send = _sender(self._send_one, hops, hop)
        flow = _flow(self.keeper, self._credentials, hop, url)
        async with self._gate():
            return await async_drive(flow, send, _seen, _async_release, self._off_loop)

    async def _send_one(self, hop: httpx.Request) -> httpx.Response:
        return await super().send(hop, stream=True, auth=None, follow_redirects=False)


class _Gate:
    """Lets at most ``size`` requests of a client that carry the token (None: any number) go
    to the connection pool at once, per event loop. The others wait here before they take a
    token, not in the pool with one: under a burst, a token can wait there for seconds and die
    before it is sent."""

    def __init__(self, size: int | None) -> None:
        self.size = size
        self._semaphores: dict[object, anyio.Semaphore] = {}

    def __call__(self) -> AbstractAsyncContextManager[object]:
        if self.size is None:
            return nullcontext()
        loop = anyio.lowlevel.current_token()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            # fast_acquire: an uncontended acquire does not yield to the loop (the send that
            # follows does): one scheduling round less per request.
            semaphore = self._semaphores[loop] = anyio.Semaphore(self.size, fast_acquire=True)
        return semaphore


class _Hops:
    """The hops of one request, as httpx follows them (``follow``, at most ``max_redirects``):
    the answers so far (``history``), whether the token is withheld from them for good (a
    redirect steered an unsafe method into the prefixes), the URL of the last hop (where a
    redirect comes from), and the headers the token was last sent with."""

    def __init__(self, prefixes: Prefixes, follow: bool, max_redirects: int) -> None:
        self.prefixes = prefixes
        self.follow = follow
        self.max_redirects = max_redirects
        self.history: list[httpx.Response] = []
        self.withheld = False
        self.url: str | None = None
        self.sent: Mapping[str, str] = {}

    def counted(self, hop: httpx.Request) -> httpx.Request:
        """Return ``hop``, or raise TooManyRedirects as httpx does past ``max_redirects``."""
        if len(self.history) > self.max_redirects:
            raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=hop)
        return hop

    def gets_token(self, method: str, url: str) -> bool:
        """Whether the next hop, a ``method`` request to ``url``, gets the token: under a
        prefix, and neither it nor an earlier hop was withheld."""
        previous, self.url = self.url, url
        if previous is not None and steered_in(self.prefixes, method, previous, url):
            self.withheld = True
        return not self.withheld and self.prefixes.match(url)

    def after(self, response: httpx.Response) -> httpx.Request | None:
        """Record ``response`` and return the redirect hop to send next: the one httpx built
        from it, without the token's headers it copied from the hop before (the next hop
        decides for itself). None when there is none, or redirects are not followed (then the
        caller finds it, without the token, as ``response.next_request``)."""
        response.history = list(self.history)
        hop = response.next_request
        if hop is None:
            return None
        for name, value in self.sent.items():
            if hop.headers.get(name) == value:
                del hop.headers[name]
        if not self.follow:
            return None
        self.history.append(response)
        return hop


def _sender(
    send_one: Callable[[httpx.Request], _R], hops: _Hops, hop: httpx.Request
) -> Callable[[Mapping[str, str]], _R]:
    """The flow's send for ``hop``: send a copy with the token's headers, noting them."""

    def send(headers: Mapping[str, str]) -> _R:
        hops.sent = headers
        return send_one(with_headers(hop, headers))

    return send


def _flow(keeper: TokenKeeper, credentials: Credentials, request: httpx.Request, url: str) -> Flow:
    # ``url``: the request's URL as sent (httpx's URL.path is decoded): the guard's key for its
    # path is the one the requests front end uses, so their processes share what it learnt.
    hop = Hop(request.method, url, isinstance(request.stream, httpx.ByteStream))
    return bearer_flow(keeper, credentials, hop)


def _seen(response: httpx.Response) -> Seen:
    return response.status_code, response.headers


def _release(response: httpx.Response) -> None:
    response.read()  # the 401 goes; its connection returns to the pool
    response.close()


async def _async_release(response: httpx.Response) -> None:
    await response.aread()
    await response.aclose()
