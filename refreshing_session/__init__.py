"""refreshing_session: a drop-in requests.Session that keeps an OAuth2 bearer token fresh.

Every thread and process that uses a grant shares one token store: a token file on one
machine (:class:`TokenFile`, with a file lock beside it), or a Redis key for a fleet of
machines (``RedisTokenStore``, in ``refreshing_session.redis_store``; ``pip install
".[redis]"`` from a checkout). A refresh runs under the store's lock, and whoever takes it
first refreshes for everyone, so identity providers that rotate refresh tokens never see one
presented twice.

>>> session = RefreshingSession(                                    # doctest: +SKIP
...     "https://api.example.com/",
...     token_file="token.json",
...     refresher=OAuth2Refresher("https://auth.example.com/oauth/token", client_id="my-client"),
... )
>>> session.get("https://api.example.com/v1/items")               # doctest: +SKIP

Or, with a profile that ``refreshing-session login --profile prod`` logged in to:

>>> session = RefreshingSession.from_profile("prod")                # doctest: +SKIP

Errors are :class:`TokenError` subclasses (and so ``requests.RequestException``): log in
again on :class:`LoginRequired`, try later on :class:`RefreshFailed`, fix the configuration on
:class:`ClientRejected`. The command line: ``refreshing-session --help``.
"""

from typing import TYPE_CHECKING

# The one place the version is written: setup.cfg reads it (version = attr: ...).
__version__ = "0.1.0"

from .errors import (
    AnswerUnderway,
    ClientRejected,
    LockTimeout,
    LoginRequired,
    ProfileError,
    RefreshFailed,
    TokenError,
    TokenFileError,
    TokenStoreError,
)
from .profiles import Profile, load_profile
from .refreshers import ClientCredentialsRefresher, OAuth2Refresher, Refresher, TokenSource
from .session import RefreshingSession
from .store import Snapshot, TokenFile, TokenStore
from .token import Token

if TYPE_CHECKING:  # so that type checkers see the class the lazy import below returns
    from .redis_store import RedisTokenStore as RedisTokenStore


def __getattr__(name: str) -> object:
    # RedisTokenStore needs the optional redis package: imported only when asked for.
    if name == "RedisTokenStore":
        from .redis_store import RedisTokenStore

        return RedisTokenStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AnswerUnderway",
    "ClientCredentialsRefresher",
    "ClientRejected",
    "LockTimeout",
    "LoginRequired",
    "OAuth2Refresher",
    "Profile",
    "ProfileError",
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
    "load_profile",
]
