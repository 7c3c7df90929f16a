"""The httpx clients under test, sync and async, each built the way its documentation shows.

Like the requests clients of :mod:`benchmarks.clients`, every builder takes an
:class:`~benchmarks.clients.Endpoint` whose token file holds the grant. The peers load it when
they are built and save every new token through their own hook or cache; none re-reads the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx

from refreshing_session import OAuth2Refresher
from refreshing_session.httpx import RefreshingAsyncClient, RefreshingAuth, RefreshingClient

from .clients import Endpoint, load_token, save_token

# httpx-auth's authorization-code flow opens this page in a browser only when it has no token
# it can refresh; the benchmarks always give it one, so the page is never fetched.
_AUTHORIZE_PATH = "authorize"
_PEER_TIMEOUT = 10.0  # httpx-auth's wait for a token (its default is a minute)


@dataclass(frozen=True)
class HttpxClient:
    """One httpx client under test: a sync builder for the common path, an async one for the
    async storm (with its own label), and how it is used, for the report."""

    key: str
    label: str
    usage: str
    sync: Callable[[Endpoint], httpx.Client]
    asynchronous: Callable[[Endpoint, httpx.Limits], httpx.AsyncClient] | None
    async_label: str
    modules: tuple[str, ...]  # imported before a measurement starts


def _refresher(endpoint: Endpoint) -> OAuth2Refresher:
    return OAuth2Refresher(endpoint.token_url, endpoint.client_id, endpoint.client_secret)


def plain(endpoint: Endpoint) -> httpx.Client:
    """A plain httpx.Client with a fixed Authorization header: the floor for the cost."""
    token = load_token(endpoint.token_file)["access_token"]
    return httpx.Client(headers={"Authorization": f"Bearer {token}"})


def ours(endpoint: Endpoint) -> httpx.Client:
    """RefreshingClient with its defaults."""
    return RefreshingClient(
        endpoint.api_url, store=endpoint.store(), refresher=_refresher(endpoint)
    )


def ours_as_auth(endpoint: Endpoint) -> httpx.Client:
    """A plain httpx.Client with ``auth=RefreshingAuth(...)``."""
    return httpx.Client(
        auth=RefreshingAuth(
            endpoint.api_url, store=endpoint.store(), refresher=_refresher(endpoint)
        )
    )


def ours_async(endpoint: Endpoint, limits: httpx.Limits) -> httpx.AsyncClient:
    """RefreshingAsyncClient with its defaults."""
    return RefreshingAsyncClient(
        endpoint.api_url, store=endpoint.store(), refresher=_refresher(endpoint), limits=limits
    )


def httpx_auth_flow(endpoint: Endpoint) -> httpx.Auth:
    """httpx-auth's ``OAuth2AuthorizationCode`` with ``early_expiry`` set to the margin, its
    process-wide token cache a ``JsonTokenFileCache`` that holds the grant, as a past login
    would have left it."""
    import httpx_auth

    authorize_url = endpoint.token_url.rsplit("/", 1)[0] + "/" + _AUTHORIZE_PATH
    flow = httpx_auth.OAuth2AuthorizationCode(
        authorize_url,
        endpoint.token_url,
        client_id=endpoint.client_id,
        client_secret=endpoint.client_secret,
        early_expiry=endpoint.margin,
        timeout=_PEER_TIMEOUT,
    )
    grant = load_token(endpoint.token_file)
    cache = endpoint.token_file + ".httpx-auth.json"
    with open(cache, "w", encoding="utf-8") as file:
        json.dump(
            {flow.state: [grant["access_token"], grant["expires_at"], grant["refresh_token"]]}, file
        )
    httpx_auth.OAuth2.token_cache = httpx_auth.JsonTokenFileCache(cache)
    return flow


def httpx_auth_client(endpoint: Endpoint) -> httpx.Client:
    """A plain httpx.Client with httpx-auth's flow as its auth."""
    return httpx.Client(auth=httpx_auth_flow(endpoint))


def httpx_auth_async(endpoint: Endpoint, limits: httpx.Limits) -> httpx.AsyncClient:
    """A plain httpx.AsyncClient with httpx-auth's flow as its auth."""
    return httpx.AsyncClient(auth=httpx_auth_flow(endpoint), limits=limits)


def _authlib_options(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "client_id": endpoint.client_id,
        "client_secret": endpoint.client_secret,
        "token": load_token(endpoint.token_file),
        "token_endpoint": endpoint.token_url,
        "leeway": endpoint.margin,
    }


def authlib(endpoint: Endpoint) -> httpx.Client:
    """Authlib's httpx ``OAuth2Client`` with token_endpoint, update_token and the margin as
    its leeway."""
    from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]

    client: httpx.Client = OAuth2Client(
        **_authlib_options(endpoint), update_token=partial(save_token, endpoint.token_file)
    )
    return client


def authlib_async(endpoint: Endpoint, limits: httpx.Limits) -> httpx.AsyncClient:
    """Authlib's ``AsyncOAuth2Client`` (it refreshes under an asyncio lock of its own), set up
    as :func:`authlib`."""
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    async def update_token(token: dict[str, Any], *_: Any, **__: Any) -> None:
        save_token(endpoint.token_file, token)

    client: httpx.AsyncClient = AsyncOAuth2Client(
        **_authlib_options(endpoint), update_token=update_token, limits=limits
    )
    return client


PLAIN = HttpxClient(
    "httpx_plain",
    "plain httpx.Client, fixed header",
    "a fixed `Authorization` header; cannot refresh (common path only)",
    plain,
    None,
    "",
    ("httpx",),
)
OURS = HttpxClient(
    "ours_httpx",
    "RefreshingClient",
    "defaults (`leeway=30`, capped at half the token's life); `OAuth2Refresher`",
    ours,
    ours_async,
    "RefreshingAsyncClient",
    ("refreshing_session.httpx",),
)
HTTPX_CLIENTS = (
    PLAIN,
    OURS,
    HttpxClient(
        "ours_httpx_auth",
        "RefreshingAuth on httpx.Client",
        "`httpx.Client(auth=RefreshingAuth(...))`, defaults (common path only)",
        ours_as_auth,
        None,
        "",
        ("refreshing_session.httpx",),
    ),
    HttpxClient(
        "httpx_auth",
        "httpx-auth",
        "`OAuth2AuthorizationCode(..., early_expiry=half the token life)` as the "
        "client's auth; `OAuth2.token_cache = JsonTokenFileCache(path)` holding the "
        "grant; its refresh is a blocking call, also on an event loop",
        httpx_auth_client,
        httpx_auth_async,
        "httpx-auth on httpx.AsyncClient",
        ("httpx_auth",),
    ),
    HttpxClient(
        "authlib_httpx",
        "Authlib OAuth2Client",
        "`OAuth2Client` / `AsyncOAuth2Client(..., token_endpoint=..., "
        "update_token=save, leeway=half the token life)`",
        authlib,
        authlib_async,
        "Authlib AsyncOAuth2Client",
        ("authlib.integrations.httpx_client",),
    ),
)
HTTPX_BY_KEY = {client.key: client for client in HTTPX_CLIENTS}
