"""The token's options: what every front end is built from, written once.

:class:`TokenArguments` names the keyword arguments that :class:`RefreshingSession`, the httpx
clients and :class:`RefreshingAuth` share; :meth:`Options.of` checks them and returns one
frozen :class:`Options` value, from which a front end takes its prefixes, its keeper and the
statuses that call for a refresh. Profiles give their arguments through
:func:`profile_arguments`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypedDict, Unpack

from .arguments import seconds
from .credentials import Credentials
from .dpop import DPoPKey, Nonces
from .guard import refresh_statuses
from .keeper import TokenKeeper
from .profiles import load_profile
from .refreshers import Refresher
from .store import TokenFile, TokenStore
from .token import Token
from .urls import Prefixes


class TokenArguments(TypedDict, total=False):
    """The keyword arguments of every front end; :class:`RefreshingSession` says what each
    means. Give ``token_file`` or ``store``, not both."""

    token_file: str | os.PathLike[str]
    store: TokenStore
    refresher: Refresher | None
    leeway: float
    lock_timeout: float
    refresh_on: Iterable[int]
    on_refresh: Callable[[Token], object] | None
    login_command: str | None
    allow_insecure_http: bool


#: The names of :class:`TokenArguments`, for front ends that take other keyword arguments too.
TOKEN_ARGUMENTS = frozenset(TokenArguments.__optional_keys__)


@dataclass(frozen=True)
class Options:
    """The checked options of one front end: its prefixes and store, and how the token is
    kept (see :class:`RefreshingSession` for each)."""

    prefixes: Prefixes
    store: TokenStore
    refresher: Refresher | None = None
    leeway: float = 30.0
    lock_timeout: float = 30.0
    refresh_on: frozenset[int] = frozenset({401})
    on_refresh: Callable[[Token], object] | None = None
    login_command: str | None = None

    @classmethod
    def of(cls, prefixes: str | Iterable[str], **arguments: Unpack[TokenArguments]) -> Options:
        """Check the arguments and return the options; raises TypeError or ValueError saying
        what to fix."""
        given: dict[str, Any] = dict(arguments)
        unknown = sorted(set(given) - TOKEN_ARGUMENTS)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
        store = _store(given.pop("token_file", None), given.pop("store", None))
        allow_insecure_http = given.pop("allow_insecure_http", False)
        _check_callable(
            "refresher",
            given.get("refresher"),
            "(Token) -> Token | Mapping, such as an OAuth2Refresher",
        )
        _check_callable("on_refresh", given.get("on_refresh"), "(Token) -> None")
        if "leeway" in given:
            given["leeway"] = seconds("leeway", given["leeway"], allow_zero=True)
        if "lock_timeout" in given:
            given["lock_timeout"] = seconds("lock_timeout", given["lock_timeout"], allow_zero=False)
        if "refresh_on" in given:
            given["refresh_on"] = refresh_statuses(given["refresh_on"])
        return cls(Prefixes(prefixes, allow_insecure_http=allow_insecure_http), store, **given)

    def credentials(self) -> Credentials:
        """New credentials for a front end: ``refresh_on``, the refresher's ``dpop_key`` for a
        DPoP token stored without its key, and the refresher's memory of DPoP nonces."""
        client = getattr(self.refresher, "client", None)
        nonces = getattr(client, "nonces", None)
        return Credentials(
            self.refresh_on,
            partial(_dpop_key_of, self.refresher),
            nonces if isinstance(nonces, Nonces) else None,
        )

    def keeper(self) -> TokenKeeper:
        """A new keeper of the token with these options."""
        return TokenKeeper(
            self.store,
            self.refresher,
            leeway=self.leeway,
            lock_timeout=self.lock_timeout,
            on_refresh=self.on_refresh,
            login_command=self.login_command,
        )


def profile_arguments(
    name: str, config: str | os.PathLike[str] | None, arguments: Mapping[str, Any]
) -> dict[str, Any]:
    """Return a front end's arguments for profile ``name`` of the profile file ``config`` (or
    the default one): its prefixes, token store and refresher, with ``arguments`` winning.
    Raises ProfileError when the profile cannot be used."""
    profile = load_profile(name, config)
    merged = dict(arguments)
    merged.setdefault("prefixes", profile.prefixes)
    merged.setdefault("refresher", profile.refresher())
    merged.setdefault("login_command", profile.login_command)
    merged.setdefault("allow_insecure_http", profile.allow_insecure_http)
    if "store" not in merged and "token_file" not in merged:
        merged["store"] = profile.token_store()
    return merged


def _store(token_file: object, store: object) -> TokenStore:
    if (token_file is None) == (store is None):
        raise TypeError(
            "pass either token_file= (a path) or store= (a TokenStore), not "
            f"{'both' if store is not None else 'neither'}"
        )
    if store is not None:
        if not isinstance(store, TokenStore):
            raise TypeError(
                "store must be a TokenStore, such as TokenFile(path) or "
                f"RedisTokenStore(...); got {type(store).__name__}"
            )
        return store
    if not isinstance(token_file, (str, os.PathLike)):
        raise TypeError(f"token_file must be a str or os.PathLike, got {type(token_file).__name__}")
    return TokenFile(token_file)


def _dpop_key_of(refresher: Refresher | None) -> DPoPKey | None:
    """The key of the refresher's ``dpop_key`` file (an :class:`OAuthClient`'s), if any."""
    key = getattr(getattr(refresher, "client", None), "dpop_key", None)
    return key if isinstance(key, DPoPKey) else None


def _check_callable(name: str, value: object, signature: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable {signature}; got {type(value).__name__}")
