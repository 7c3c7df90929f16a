"""The clients under test, each built the way its documentation recommends.

Every factory takes an :class:`Endpoint` and returns a ``requests.Session`` (or subclass) that
sends the bearer token to the API. Peers load the shared token file when they are built and save
every new token to it through their token-update hook, as their documentation shows; none of
them re-reads the file afterwards, because none of them offers a way to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, cast

import requests

from refreshing_session import OAuth2Refresher, RefreshingSession, TokenFile, TokenStore

_TIMEOUT = 10.0
REDIS_KEY = "refreshing-session:bench"


@dataclass(frozen=True)
class Endpoint:
    """The local server and the shared token file (or Redis) a client works against."""

    api_url: str
    token_url: str
    token_file: str
    # Peers with a configurable refresh margin refresh this many seconds before expiry; it is
    # set to what RefreshingSession does by default for the storm's tokens (half their life).
    margin: float
    client_id: str = "client"
    client_secret: str = "secret"
    redis_url: str | None = None  # set: RefreshingSession keeps the token in Redis instead

    def store(self) -> TokenStore:
        """Where RefreshingSession keeps the token: :data:`REDIS_KEY` on ``redis_url`` when
        that is set (the processes then share only Redis), else ``token_file``."""
        if self.redis_url is None:
            return TokenFile(self.token_file)
        # Imported here: only the Redis storm needs the redis extra.
        from refreshing_session.redis_store import RedisTokenStore

        return RedisTokenStore(self.redis_url, REDIS_KEY)


Factory = Callable[[Endpoint], requests.Session]


@dataclass(frozen=True)
class Library:
    """One client library under test."""

    key: str
    label: str
    factory: Factory
    modules: tuple[str, ...]  # imported before a measurement starts
    refreshes_early: bool  # refreshes ``margin`` seconds before expiry, else at or after it
    usage: str  # how the benchmark uses it, for the report
    on_redis: bool = False  # keeps the token in Redis: the storm starts a redis-server for it
    refreshes: bool = True  # False: sends one token all along, which must outlive the run


def load_token(path: str) -> dict[str, Any]:
    """Read the shared token file the way the peers' documentation does: ``json.load``."""
    with open(path, encoding="utf-8") as file:
        return cast(dict[str, Any], json.load(file))


def save_token(path: str, token: dict[str, Any], *_: Any, **__: Any) -> None:
    """Write a token to the shared file the way the peers' documentation does: a plain write.

    Extra arguments (Authlib passes ``refresh_token=`` and ``access_token=``) are ignored.
    """
    with open(path, "w", encoding="utf-8") as file:
        json.dump(dict(token), file)


def ours(endpoint: Endpoint) -> requests.Session:
    """RefreshingSession with its defaults (it refreshes at half the token's life here), on
    the endpoint's store."""
    refresher = OAuth2Refresher(endpoint.token_url, endpoint.client_id, endpoint.client_secret)
    return RefreshingSession(endpoint.api_url, store=endpoint.store(), refresher=refresher)


def ours_at_expiry(endpoint: Endpoint) -> requests.Session:
    """RefreshingSession with ``leeway=0``: no early refresh, so every caller waits for it."""
    refresher = OAuth2Refresher(endpoint.token_url, endpoint.client_id, endpoint.client_secret)
    return RefreshingSession(
        endpoint.api_url, store=endpoint.store(), refresher=refresher, leeway=0.0
    )


def plain(endpoint: Endpoint) -> requests.Session:
    """A plain requests.Session with a fixed Authorization header: the floor for the cost."""
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + load_token(endpoint.token_file)["access_token"]
    return session


def requests_oauthlib(endpoint: Endpoint) -> requests.Session:
    """requests-oauthlib's OAuth2Session with auto_refresh_url and a token_updater."""
    # oauthlib refuses plain http unless told that this is a local test.
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    from requests_oauthlib import OAuth2Session  # type: ignore[import-untyped]

    credentials = {"client_id": endpoint.client_id, "client_secret": endpoint.client_secret}
    session = OAuth2Session(
        endpoint.client_id,
        token=load_token(endpoint.token_file),
        auto_refresh_url=endpoint.token_url,
        auto_refresh_kwargs=credentials,
        token_updater=partial(save_token, endpoint.token_file),
    )
    return cast(requests.Session, session)


def authlib(endpoint: Endpoint) -> requests.Session:
    """Authlib's requests OAuth2Session with token_endpoint, update_token and a scaled leeway."""
    from authlib.integrations.requests_client import (  # type: ignore[import-untyped]
        OAuth2Session,
    )

    session = OAuth2Session(
        endpoint.client_id,
        endpoint.client_secret,
        token=load_token(endpoint.token_file),
        token_endpoint=endpoint.token_url,
        update_token=partial(save_token, endpoint.token_file),
        leeway=endpoint.margin,
    )
    return cast(requests.Session, session)


def google_auth(endpoint: Endpoint) -> requests.Session:
    """google-auth's AuthorizedSession over user Credentials, saved by a response hook.

    google-auth has no token-update hook, so a response hook writes the token whenever it
    changed. Its refresh threshold (3 min 45 s, for hour-long tokens) is a module constant;
    it is scaled to ``margin`` so that 2-second tokens are not refreshed before every request.
    """
    from google.auth import _helpers
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2.credentials import Credentials

    _helpers.REFRESH_THRESHOLD = timedelta(seconds=endpoint.margin)
    data = load_token(endpoint.token_file)
    expiry = datetime.fromtimestamp(data["expires_at"], UTC).replace(tzinfo=None)
    credentials = Credentials(
        data["access_token"],
        refresh_token=data["refresh_token"],
        token_uri=endpoint.token_url,
        client_id=endpoint.client_id,
        client_secret=endpoint.client_secret,
        expiry=expiry,
    )  # type: ignore[no-untyped-call]
    session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    saved = [credentials.token]

    def save_if_changed(response: requests.Response, *_: Any, **__: Any) -> None:
        if credentials.token != saved[-1]:
            saved.append(credentials.token)
            save_token(endpoint.token_file, _google_token(credentials))

    session.hooks["response"].append(save_if_changed)
    return session


def _google_token(credentials: Any) -> dict[str, Any]:
    expires_at = credentials.expiry.replace(tzinfo=UTC).timestamp()
    return {
        "access_token": credentials.token,
        "refresh_token": credentials.refresh_token,
        "token_type": "Bearer",
        "expires_at": expires_at,
    }


class BlogPostSession(requests.Session):
    """A hand-written interceptor, as a typical blog post has it: set the header, and on a 401
    refresh the token, save it to the file with a plain write and retry once."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.token = load_token(endpoint.token_file)
        self.headers["Authorization"] = "Bearer " + self.token["access_token"]

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        """Send the request; after a 401, refresh and send it once more."""
        response = super().request(method, url, *args, **kwargs)
        if response.status_code == 401:
            self.refresh()
            response = super().request(method, url, *args, **kwargs)
        return response

    def refresh(self) -> None:
        """Redeem the refresh token and store the answer."""
        answer = requests.post(
            self.endpoint.token_url,
            timeout=_TIMEOUT,
            data={
                "grant_type": "refresh_token",
                "refresh_token": self.token["refresh_token"],
                "client_id": self.endpoint.client_id,
                "client_secret": self.endpoint.client_secret,
            },
        )
        answer.raise_for_status()
        self.token = answer.json()
        save_token(self.endpoint.token_file, self.token)
        self.headers["Authorization"] = "Bearer " + self.token["access_token"]


PLAIN = Library(
    "plain",
    "requests.Session + fixed header",
    plain,
    ("requests",),
    False,
    "a fixed `Authorization` header; cannot refresh (the common path, and the "
    "storm's static baseline, with a token that outlives the run)",
    refreshes=False,
)

OURS = Library(
    "ours",
    "RefreshingSession",
    ours,
    ("refreshing_session",),
    True,
    "defaults (`leeway=30`, capped at half the token's life); `OAuth2Refresher`",
)

LIBRARIES = (
    OURS,
    Library(
        "requests_oauthlib",
        "requests-oauthlib",
        requests_oauthlib,
        ("requests_oauthlib",),
        False,
        "`OAuth2Session(token=..., auto_refresh_url=..., auto_refresh_kwargs=..., "
        "token_updater=save)`; refreshes when the token has expired",
    ),
    Library(
        "authlib",
        "Authlib",
        authlib,
        ("authlib.integrations.requests_client",),
        True,
        "`OAuth2Session(..., token_endpoint=..., update_token=save, leeway=half the token life)`",
    ),
    Library(
        "google_auth",
        "google-auth",
        google_auth,
        ("google.auth.transport.requests", "google.oauth2.credentials"),
        True,
        "`AuthorizedSession(Credentials(...))`; no token-update hook, so a response hook "
        "saves; `REFRESH_THRESHOLD` scaled to half the token life",
    ),
    Library(
        "interceptor",
        "hand-written interceptor",
        BlogPostSession,
        ("requests",),
        False,
        "`requests.Session` subclass: refresh on 401, plain write to the file, retry once",
    ),
)

AT_EXPIRY = Library(
    "ours_at_expiry",
    "RefreshingSession, leeway=0",
    ours_at_expiry,
    ("refreshing_session",),
    False,
    "`leeway=0`: refreshes only once the token has expired, so every request "
    "that arrives meanwhile waits for the refresh (storm latency only)",
)

OURS_ON_REDIS = Library(
    "ours_redis",
    "RefreshingSession, Redis store",
    ours,
    ("refreshing_session.redis_store",),
    True,
    "defaults, `store=RedisTokenStore(url, key)` on a local redis-server "
    "started for each cell: the processes share no file (Redis storm only)",
    on_redis=True,
)

BY_KEY = {library.key: library for library in (PLAIN, *LIBRARIES, AT_EXPIRY, OURS_ON_REDIS)}
