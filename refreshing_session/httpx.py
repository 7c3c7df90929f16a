"""httpx front ends on the same keeper and stores: one token for requests and httpx, sync and
async, refreshed once for every client and process that shares the store.

:class:`RefreshingClient` and :class:`RefreshingAsyncClient` are :class:`httpx.Client` and
:class:`httpx.AsyncClient` subclasses that decide on every hop, redirects included, as
:class:`~refreshing_session.RefreshingSession` does: the token only under the prefixes, never
when the caller authenticates the request, never on a hop that a redirect brings into the
prefixes with a method other than GET or HEAD from outside them or from another origin.
:class:`RefreshingAuth` is the same token as an :class:`httpx.Auth` for clients of your own;
there httpx follows redirects itself, and its rule applies to the later hops: the header
follows a redirect within the origin (under a prefix or not) and is dropped across origins.

In async code every keeper call that may block (the lock, the file, the refresh) runs in a
worker thread, so the event loop never waits for it; a task cancelled meanwhile is cancelled
once the call returns, so a refresh it started is always completed and stored, and no lock is
left held. Works under asyncio and trio.

Install with ``pip install "refreshing-session[httpx]"``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from contextlib import AbstractAsyncContextManager, aclosing, nullcontext
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

try:
    import anyio
    import anyio.lowlevel
    import anyio.to_thread
    import httpx
except ModuleNotFoundError as missing:  # pragma: no cover - depends on the installation
    raise ModuleNotFoundError(
        "refreshing_session.httpx needs httpx and anyio: pip install 'refreshing-session[httpx]'"
    ) from missing

from .adapter import Prefixes, shallow_copy
from .errors import TokenError
from .flow import Call, Flow, bearer_flow
from .guard import refresh_may_cure, refresh_statuses
from .keeper import TokenKeeper
from .redirects import steered_in
from .refreshers import Refresher
from .session import profile_arguments, token_parts
from .store import TokenStore
from .token import Token

__all__ = ["RefreshingAsyncClient", "RefreshingAuth", "RefreshingClient"]

# The redirect hops of one request share its extensions: they carry the hops' state along.
_HOPS = "refreshing_session.hops"
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
    """

    def __init__(
        self,
        prefixes: str | Iterable[str],
        *,
        token_file: str | os.PathLike[str] | None = None,
        store: TokenStore | None = None,
        refresher: Refresher | None = None,
        leeway: float = 30.0,
        lock_timeout: float = 30.0,
        on_refresh: Callable[[Token], object] | None = None,
        login_command: str | None = None,
        allow_insecure_http: bool = False,
        refresh_on: Iterable[int] = (401,),
    ) -> None:
        self.prefixes, self.keeper = token_parts(
            prefixes,
            token_file=token_file,
            store=store,
            refresher=refresher,
            leeway=leeway,
            lock_timeout=lock_timeout,
            on_refresh=on_refresh,
            login_command=login_command,
            allow_insecure_http=allow_insecure_http,
        )
        self.refresh_on = refresh_statuses(refresh_on)
        self._off_loop = _OffLoop()

    @classmethod
    def from_profile(
        cls, name: str, *, config: str | os.PathLike[str] | None = None, **options: Any
    ) -> Self:
        """Return the auth for profile ``name``, as ``RefreshingSession.from_profile`` does."""
        return cls(**profile_arguments(name, config, options))

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
        if "Authorization" in request.headers or not self.prefixes.match(str(request.url)):
            yield request
            return
        yield from self.token_flow(request)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The httpx auth flow of an async client: as :meth:`sync_auth_flow`, with the keeper
        calls in a worker thread."""
        if "Authorization" in request.headers or not self.prefixes.match(str(request.url)):
            yield request
            return
        async with aclosing(self.async_token_flow(request)) as flow:
            hop = await anext(flow)
            while True:
                response = yield hop
                try:
                    hop = await flow.asend(response)
                except StopAsyncIteration:
                    return

    def token_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send ``request`` with the token, and replay it after a curable 401: yield the
        copies to send (the caller's request never holds the token), receive their answers."""
        flow = self._flow(request)
        step = next(flow)
        while True:
            if isinstance(step, Call):
                result = step.function()
            else:
                result = self._refused((yield _with_token(request, step.token)))
            try:
                step = flow.send(result)
            except StopIteration:
                return

    async def async_token_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """:meth:`token_flow` for async code: the keeper calls run in a worker thread, and a
        cancellation waits for the call to return (a refresh is completed and stored)."""
        flow = self._flow(request)
        step = next(flow)
        while True:
            if isinstance(step, Call):
                result = await self._off_loop.run(step)
            else:
                result = self._refused((yield _with_token(request, step.token)))
            try:
                step = flow.send(result)
            except StopIteration:
                return

    def _refused(self, response: httpx.Response) -> bool:
        """Was the token refused in a way that a new token may cure?"""
        return refresh_may_cure(response.status_code, response.headers, self.refresh_on)

    def _flow(self, request: httpx.Request) -> Flow:
        # The path as sent (httpx's URL.path is decoded): the guard's key for it is the one
        # the requests front end uses, so their processes share what it learnt about the path.
        return bearer_flow(
            self.keeper,
            urlsplit(str(request.url)).path,
            isinstance(request.stream, httpx.ByteStream),
        )

    def hop_gets_token(self, request: httpx.Request) -> bool:
        """Whether this hop of a request sent by a refreshing client gets the token: it is
        under a prefix, and neither it nor an earlier hop of the same request was withheld (its
        caller authenticates it, or a redirect steered an unsafe method into the prefixes)."""
        hops = request.extensions.get(_HOPS)
        if not isinstance(hops, _Hops):
            hops = _Hops(withheld=False)
        url = str(request.url)
        previous, hops.url = hops.url, url
        if "Authorization" in request.headers or (
            previous is not None and steered_in(self.prefixes, request.method, previous, url)
        ):
            hops.withheld = True
        return not hops.withheld and self.prefixes.match(url)

    def __repr__(self) -> str:
        return f"<RefreshingAuth {list(self.prefixes.urls)!r} {self.keeper.store!r}>"


class _TokenClient:
    """What the refreshing clients add to their httpx client class: the token's arguments, the
    parts built from them (and the gate sized to the connection pool, which the async client's
    requests pass), and the caller's own auth noted on each request."""

    def __init__(
        self,
        prefixes: str | Iterable[str],
        *,
        token_file: str | os.PathLike[str] | None = None,
        store: TokenStore | None = None,
        refresher: Refresher | None = None,
        leeway: float = 30.0,
        lock_timeout: float = 30.0,
        on_refresh: Callable[[Token], object] | None = None,
        login_command: str | None = None,
        allow_insecure_http: bool = False,
        refresh_on: Iterable[int] = (401,),
        **options: Any,
    ) -> None:
        self.bearer = RefreshingAuth(
            prefixes,
            token_file=token_file,
            store=store,
            refresher=refresher,
            leeway=leeway,
            lock_timeout=lock_timeout,
            on_refresh=on_refresh,
            login_command=login_command,
            allow_insecure_http=allow_insecure_http,
            refresh_on=refresh_on,
        )
        limits = options.get("limits")
        self._gate = _Gate(_HTTPX_POOL_SIZE if limits is None else limits.max_connections)
        super().__init__(**options)

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
        return self.bearer.prefixes

    @property
    def keeper(self) -> TokenKeeper:
        """The keeper of the token: the store, the refresher and the single flight."""
        return self.bearer.keeper

    def _note_callers_auth(self, request: httpx.Request, auth: object) -> None:
        """Start the request's hops; with the caller's own auth (``auth=`` on the request or
        the client), none of them gets the token."""
        callers_auth = getattr(self, "auth", None) if auth is httpx.USE_CLIENT_DEFAULT else auth
        request.extensions = {**request.extensions, _HOPS: _Hops(withheld=callers_auth is not None)}

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
        return self.bearer.token

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
        self._note_callers_auth(request, auth)
        return super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)

    def _transport_for_url(self, url: httpx.URL) -> httpx.BaseTransport:
        # Every hop passes here, redirects included: each is decided on its own.
        return _BearerTransport(super()._transport_for_url(url), self.bearer)


class RefreshingAsyncClient(_TokenClient, httpx.AsyncClient):
    """An :class:`httpx.AsyncClient` that does what :class:`RefreshingClient` does, without
    ever blocking the event loop: keeper calls run in a worker thread. Same arguments."""

    async def token(self) -> Token:
        """The token the next API request will carry (refreshed first, off the loop, if it
        is due)."""
        result: Token = await anyio.to_thread.run_sync(self.keeper.current)
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
        self._note_callers_auth(request, auth)
        return await super().send(
            request, stream=stream, auth=auth, follow_redirects=follow_redirects
        )

    def _transport_for_url(self, url: httpx.URL) -> httpx.AsyncBaseTransport:
        return _AsyncBearerTransport(super()._transport_for_url(url), self.bearer, self._gate)


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
            semaphore = self._semaphores[loop] = anyio.Semaphore(self.size)
        return semaphore


class _OffLoop:
    """Runs the flow's keeper calls in worker threads. A shareable call (the current token) is
    made once for all the tasks of an event loop that ask while it runs: a burst of requests
    costs one thread hop, not one each, and they enter the connection pool together."""

    def __init__(self) -> None:
        self._running: dict[tuple[object, Callable[[], Any]], _Running] = {}

    async def run(self, call: Call) -> Any:
        """Return what ``call`` returns, run in a worker thread; a cancellation waits for the
        call to return. A shared call's TokenError reaches every task that waited for it (a
        copy each), as it would have reached each of them: a lock held elsewhere costs the
        tasks one ``lock_timeout``, not one each in turn."""
        if not call.shareable:
            return await anyio.to_thread.run_sync(call.function)
        key = (anyio.lowlevel.current_token(), call.function)
        while True:
            running = self._running.get(key)
            if running is None:
                return await self._lead(key, call.function)
            await running.done.wait()
            if running.error is not None:
                raise running.error.restated(str(running.error))
            if running.succeeded:
                return running.result
            # The leading task was cancelled before its call started: ask again.

    async def _lead(
        self, key: tuple[object, Callable[[], Any]], function: Callable[[], Any]
    ) -> Any:
        running = self._running[key] = _Running(anyio.Event())
        try:
            running.result = await anyio.to_thread.run_sync(function)
            running.succeeded = True
            return running.result
        except TokenError as error:
            running.error = error
            raise
        finally:
            del self._running[key]
            running.done.set()


@dataclass
class _Running:
    """A shared call in flight, and once ``done`` is set, its outcome."""

    done: anyio.Event
    succeeded: bool = False
    result: Any = None
    error: TokenError | None = None


@dataclass
class _Hops:
    """The state of one request's hops: whether the token is withheld from them for good, and
    the URL of the last hop (where a redirect comes from)."""

    withheld: bool
    url: str | None = None


class _BearerTransport(httpx.BaseTransport):
    """One hop of a RefreshingClient: the inner transport, with the token when the hop gets it.
    Closing is left to the client, which owns the inner transport."""

    def __init__(self, inner: httpx.BaseTransport, bearer: RefreshingAuth) -> None:
        self.inner = inner
        self.bearer = bearer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self.bearer.hop_gets_token(request):
            return self.inner.handle_request(request)
        flow = self.bearer.token_flow(request)
        hop = next(flow)
        while True:
            response = self.inner.handle_request(hop)
            try:
                hop = flow.send(response)
            except StopIteration:
                return response
            except BaseException:
                response.close()
                raise
            response.read()  # the 401 goes; its connection returns to the pool
            response.close()


class _AsyncBearerTransport(httpx.AsyncBaseTransport):
    """One hop of a RefreshingAsyncClient, as :class:`_BearerTransport`."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, bearer: RefreshingAuth, gate: _Gate
    ) -> None:
        self.inner = inner
        self.bearer = bearer
        self.gate = gate

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.bearer.hop_gets_token(request):
            return await self.inner.handle_async_request(request)
        async with self.gate(), aclosing(self.bearer.async_token_flow(request)) as flow:
            hop = await anext(flow)
            while True:
                response = await self.inner.handle_async_request(hop)
                try:
                    hop = await flow.asend(response)
                except StopAsyncIteration:
                    return response
                except BaseException:
                    await response.aclose()
                    raise
                await response.aread()
                await response.aclose()


def _with_token(request: httpx.Request, token: Token) -> httpx.Request:
    """A copy of ``request`` with ``token``: the caller's request (which httpx reuses for
    redirects) never holds the token."""
    authorized = shallow_copy(request)
    authorized.headers = request.headers.copy()
    authorized.headers["Authorization"] = token.authorization
    return authorized
