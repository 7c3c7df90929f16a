"""RefreshingSession: a requests.Session whose API requests carry a self-refreshing token."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Self, Unpack

import requests
from urllib3.util.retry import Retry

from .adapter import BearerAdapter, token_withheld, withhold_token
from .exchange import skip_netrc
from .flow import shallow_copy
from .options import Options, TokenArguments, profile_arguments
from .refreshers import UsesNetwork
from .shadowed import ShadowedToken
from .token import Token
from .urls import Prefixes, steered_in

if TYPE_CHECKING:
    from collections.abc import Iterable

    from requests.models import Request


class RefreshingSession(requests.Session):
    """A drop-in :class:`requests.Session` that sends a bearer token to the API's URLs.

    :param prefixes: the API's URL prefix, or several; only URLs under them get the token.
    :param token_file: the JSON token file that every process and thread on this machine
        shares.
    :param store: instead of ``token_file``, another :class:`TokenStore`, such as a
        ``RedisTokenStore`` shared by several machines.
    :param refresher: what renews the token, such as :class:`OAuth2Refresher`; without one, a
        token that expires raises :class:`LoginRequired` (for files refreshed by another tool).
    :param leeway: refresh this many seconds before expiry, but never earlier than halfway
        through the token's lifetime.
    :param lock_timeout: the longest wait, in seconds, for another thread or process to finish
        a refresh.
    :param max_retries: passed to the adapter mounted on the prefixes, as with HTTPAdapter.
    :param refresh_on: the statuses that mean the token may have died, answered with a refresh
        and one replay: ``(401,)``; ``(401, 403)`` for APIs that answer 403 to an expired
        token. The 401 rules apply to each (a Bearer challenge's insufficient_scope is never
        refreshed for; a path where a refresh did not help gets no more).
    :param on_refresh: called with each new token this process obtains (not with tokens
        adopted from siblings), under the token lock: keep it quick. Exceptions are logged and
        ignored. For users who also keep the token elsewhere, or count refreshes.
    :param allow_insecure_http: accept plain http prefixes on hosts other than the loopback
        interface, where anyone on the network path can read the token.
    :param login_command: the command your users run to log in (``myapp login``, say), named
        by the errors that ask for a login; without it they point at ``refreshing-session
        login``. :meth:`from_profile` names the profile's own.

    The token is first read at the first request, so a session may be built before anyone
    has logged in. Everything else behaves as in :class:`requests.Session`: for URLs outside the
    prefixes nothing changes, and an Authorization the caller sets always wins.

    Redirects: each hop gets the token only if its URL is under a prefix. A request the caller
    authenticates (``auth=``, ``session.auth``, an Authorization header) gets no token on any
    hop, and neither does one that a redirect brings into the prefixes, from outside them or
    from another origin, with a method other than GET or HEAD.
    """

    __attrs__: list[str] = [*requests.Session.__attrs__, "token_options", "keeper"]  # noqa: RUF012 (typed as in requests)

    def __init__(
        self,
        prefixes: str | Iterable[str],
        *,
        max_retries: int | Retry = 0,
        **options: Unpack[TokenArguments],
    ) -> None:
        super().__init__()
        self.token_options = Options.of(prefixes, **options)
        self.keeper = self.token_options.keeper()
        adapter = BearerAdapter(
            self.prefixes,
            self.keeper,
            self.token_options.credentials(),
            max_retries=max_retries,
        )
        for url in self.prefixes.mount_points:
            self.mount(url, adapter)
        self._shadowed = ShadowedToken(self.prefixes)
        self._hand_network()

    @property
    def prefixes(self) -> Prefixes:
        """The URL prefixes that receive the token."""
        return self.token_options.prefixes

    def _hand_network(self) -> None:
        """Let the refresher reach its token endpoint with this session's ``verify``, ``cert``,
        ``proxies`` and ``trust_env`` (as they are at each refresh), never its auth or headers."""
        if isinstance(self.keeper.refresher, UsesNetwork):
            self.keeper.refresher.use_network_of(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._shadowed = ShadowedToken(self.prefixes)
        self._hand_network()

    @classmethod
    def from_profile(
        cls, name: str, *, config: str | os.PathLike[str] | None = None, **options: Any
    ) -> Self:
        """Return a session for profile ``name`` of the profile file (``config``, or the
        default one): its prefixes, token store and refresher. ``options`` are passed on to the
        constructor and win over the profile's (``prefixes=``, ``store=``, ``leeway=``, ...).
        A missing or refused login says which ``refreshing-session login`` command to run.
        Raises ProfileError when the profile cannot be used."""
        return cls(**profile_arguments(name, config, options))

    @property
    def token(self) -> Token:
        """The token the next API request will carry (refreshed first if it is due)."""
        return self.keeper.current()

    def prepare_request(self, request: Request) -> requests.PreparedRequest:
        """As in requests, except that ``~/.netrc`` is not consulted for URLs under a prefix:
        there the bearer token, not a netrc password, is the credential. A request the caller
        authenticates (``auth=``, ``session.auth``, or an Authorization header, which the
        adapter sees for itself) gets no token, on any hop."""
        url = request.url
        if request.auth or self.auth:
            if self.auth and not request.auth and isinstance(url, str):
                self._shadowed.check(url, "session.auth")
            prepared = super().prepare_request(request)
            withhold_token(prepared)
            return prepared
        if "Authorization" in self.headers and isinstance(url, str):
            self._shadowed.check(url, 'session.headers["Authorization"]')
        if self.trust_env and isinstance(url, str) and self.prefixes.match(url):
            request = shallow_copy(request)
            request.auth = skip_netrc
        return super().prepare_request(request)

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        """As in requests, except that a hop under a prefix gets no ``~/.netrc`` credentials, and
        no hop gets the token when the hop before it got none for good (its caller
        authenticates it, say), or when the redirect brings an unsafe method in from outside the
        prefixes or from another origin."""
        url = prepared_request.url or ""
        previous = response.request
        origin = (previous.url if previous is not None else None) or ""
        if (previous is not None and token_withheld(previous)) or steered_in(
            self.prefixes, prepared_request.method or "GET", origin, url
        ):
            withhold_token(prepared_request)
        if not self.prefixes.match(url):
            super().rebuild_auth(prepared_request, response)
            return
        if "Authorization" in prepared_request.headers and self.should_strip_auth(origin, url):
            del prepared_request.headers["Authorization"]

    def __repr__(self) -> str:
        return f"<RefreshingSession {list(self.prefixes.urls)!r} {self.keeper.store!r}>"
