"""refreshing_session: a drop-in requests.Session that keeps an OAuth2 bearer token fresh.

One token file is shared by every thread and process; a file lock makes sure each token is
refreshed once, so identity providers that rotate refresh tokens never see one presented twice.

>>> session = RefreshingSession(                                    # doctest: +SKIP
...     "https://api.example.com/",
...     token_file="token.json",
...     refresher=OAuth2Refresher("https://auth.example.com/oauth/token", client_id="my-client"),
... )
>>> session.get("https://api.example.com/v1/items")               # doctest: +SKIP
"""

from .errors import (
    ClientRejected,
    LockTimeout,
    LoginRequired,
    RefreshFailed,
    TokenError,
    TokenFileError,
    TokenStoreError,
)
from .refreshers import ClientCredentialsRefresher, OAuth2Refresher, Refresher, TokenSource
from .session import RefreshingSession
from .store import Snapshot, TokenFile, TokenStore
from .token import Token


def __getattr__(name: str) -> object:
    # RedisTokenStore needs the optional redis package: imported only when asked for.
    if name == "RedisTokenStore":
        from .redis_store import RedisTokenStore

        return RedisTokenStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ClientCredentialsRefresher",
    "ClientRejected",
    "LockTimeout",
    "LoginRequired",
    "OAuth2Refresher",
    "RedisTokenStore",
    "RefreshFailed",
    "Refresher",
    "RefreshingSession",
    "Snapshot",
    "Token",
    "TokenError",
    "TokenFile",
    "TokenFileError",
    "TokenSource",
    "TokenStore",
    "TokenStoreError",
]
