"""Refreshers: what turns a token that is expiring or was refused into a new one.

A refresher is any callable that takes the current :class:`Token` and returns the new token,
as a :class:`Token` or as a token-endpoint-style mapping (``access_token``, ``expires_in``, ...).
It runs under the token lock, so only one runs at a time for a given token file. Two are
provided: :class:`OAuth2Refresher` (the RFC 6749 refresh_token grant) and
:class:`ClientCredentialsRefresher` (a new client_credentials grant).

This module is also the refreshers' error boundary: :func:`refreshed` and :func:`first_token`
call a refresher and turn whatever it raises into the documented errors, so the keeper's rules
(the cool-down, a valid token kept through a failed early refresh) hold for every refresher.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, ClassVar, Protocol, Self, Unpack, runtime_checkable

import requests

from .discovery import discover
from .errors import LoginRequired, RefreshFailed, TokenError
from .exchange import kept_for_error
from .oauth_client import ClientOptions, OAuthClient
from .token import Token


class Refresher(Protocol):
    """The refresher contract: given the current token, return the new one."""

    def __call__(self, token: Token, /) -> Token | Mapping[str, Any]:
        """Return the token that replaces ``token``: a Token, or a token endpoint's answer."""
        ...


@runtime_checkable
class TokenSource(Protocol):
    """A refresher that can also get a first token from nothing (so no login is needed)."""

    def new_token(self) -> Token:
        """Return a first token, obtained with the client's own credentials."""
        ...


@runtime_checkable
class UsesNetwork(Protocol):
    """A refresher that can reach its server with a session's network settings."""

    def use_network_of(self, session: requests.Session) -> None:
        """Use ``session``'s ``verify``, ``cert``, ``proxies`` and ``trust_env`` from now on,
        as they are at each request."""
        ...


class TokenEndpoint:
    """What the two refreshers share: they hold an :class:`OAuthClient` (``client``), built
    from the arguments below, and send their grant to its token endpoint.

    :param token_url: the token endpoint.
    :param client_id: the client's id.
    :param client_secret: its secret, for ``client_secret_basic`` (the default with a secret),
        ``client_secret_post`` or ``client_secret_jwt``.
    :param auth_method: how the client authenticates: one of ``AUTH_METHODS``; by default
        ``private_key_jwt`` with a ``private_key``, ``tls_client_auth`` with a
        ``client_cert``, ``client_secret_basic`` with a secret, else ``none``.
    :param private_key: for ``private_key_jwt``: a PEM text or a ``cryptography`` key object
        (RSA, or EC on P-256), signed with ``algorithm`` (RS256 by default for RSA, or PS256;
        ES256 for EC) under the key id ``key_id``; with ``key_certificate`` (the key's PEM
        certificate), the assertions also name its ``x5t`` and ``x5t#S256`` thumbprints, as
        Microsoft Entra ID requires. Needs ``pip install ".[jwt]"`` from a checkout.
    :param client_cert: for ``tls_client_auth`` and ``self_signed_tls_client_auth``: the
        client certificate, as requests' ``cert=`` (a PEM path, or a (certificate, key) pair).
    :param scope: the scope asked for with each grant.
    :param extra_params: form parameters sent with each grant, such as ``{"audience": ...}``
        or ``{"resource": ...}``.
    :param headers: extra request headers for the token endpoint.
    :param session: a :class:`requests.Session` whose pool and network settings carry the
        requests (see :class:`OAuthClient`). Without it, a RefreshingSession hands its own
        ``verify``, ``cert``, ``proxies`` and ``trust_env``, as they are at each refresh.
    :param timeout: the longest one exchange with the token endpoint may take, in seconds.
    :param retries: how often a failure that is safe to retry is retried.
    :param allow_insecure_http: accept a plain-http token URL outside the loopback interface.
    """

    # Whether a grant that may have been processed can be sent again without harm.
    _resend_safe: ClassVar[bool]

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        """Build the client (raising ValueError or TypeError saying what to fix)."""
        self.client = OAuthClient(token_url, client_id, client_secret, **options)

    @classmethod
    def from_issuer(
        cls,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> Self:
        """A refresher for the authorization server ``issuer``, its endpoints read now from its
        discovery document (RFC 8414 or OpenID Connect Discovery), whose ``issuer`` must be
        the one asked for. The document is read through ``session`` (for a private CA or a
        proxy: no RefreshingSession has handed its settings yet). Raises ClientRejected when
        the document names another issuer or cannot be used, RefreshFailed when it cannot be
        read."""
        found = discover(
            issuer,
            session=options.get("session"),
            timeout=options.get("timeout", 10.0),
            allow_insecure_http=options.get("allow_insecure_http", False),
        )
        options["endpoints"] = found
        return cls(found["token_endpoint"], client_id, client_secret, **options)

    @property
    def token_url(self) -> str:
        """The token endpoint."""
        return self.client.token_url

    @property
    def client_id(self) -> str:
        """The client's id."""
        return self.client.client_id

    @property
    def auth_method(self) -> str:
        """How the client authenticates."""
        return self.client.auth_method

    @property
    def scope(self) -> str | None:
        """The scope asked for with each grant."""
        return self.client.scope

    @property
    def timeout(self) -> float:
        """The longest one exchange may take, in seconds."""
        return self.client.timeout

    @property
    def retries(self) -> int:
        """How often a failure that is safe to retry is retried."""
        return self.client.retries

    def use_network_of(self, session: requests.Session) -> None:
        """Reach the token endpoint with ``session``'s network settings (see
        :meth:`OAuthClient.use_network_of`)."""
        self.client.use_network_of(session)

    def _grant(self, form: dict[str, str], previous: Token | None = None) -> Token:
        return self.client.grant(form, resend_safe=self._resend_safe, previous=previous)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.token_url!r}, client_id={self.client_id!r}, "
            f"auth_method={self.auth_method!r})"
        )


class OAuth2Refresher(TokenEndpoint):
    """The RFC 6749 section 6 refresh_token grant.

    ``auth_method`` is ``"client_secret_basic"`` (the default with a secret),
    ``"client_secret_post"``, ``"client_secret_jwt"``, ``"private_key_jwt"`` (the default with
    a ``private_key``), ``"tls_client_auth"`` or ``"self_signed_tls_client_auth"`` (the
    default with a ``client_cert``), or ``"none"`` (the default without any). ``scope`` narrows
    the refreshed token; ``extra_params`` (``audience``, ``resource``) and ``headers`` go with
    each grant; ``session`` carries the requests (else a RefreshingSession hands its own
    ``verify``, ``cert``, ``proxies`` and ``trust_env``); ``from_issuer`` reads the
    endpoints from the issuer's discovery document. Failures that say the request was not
    processed (503, 429, ``temporarily_unavailable``, a connection that could not be opened)
    are retried ``retries`` times with backoff; a request that may have been processed (a 500,
    502 or 504, a reset or a read timeout) is never sent again, since the server may have spent
    the refresh token.
    Each attempt ends within ``timeout`` seconds in all (connecting, sending and reading,
    however slowly the server answers), while holding the token lock, and reads at most 1 MiB.
    A plain-http token URL is refused unless it is on the loopback interface or
    ``allow_insecure_http`` is set.
    """

    _resend_safe = False

    def __call__(self, token: Token, /) -> Token:
        """Redeem ``token``'s refresh token; return the new token (keeping the refresh token
        when the server sends none). Raises LoginRequired when there is none or it is refused."""
        if not token.refresh_token:
            raise LoginRequired(
                "the token has no refresh token, so it cannot be refreshed; log in again"
            )
        if token.refresh_expires_at is not None and time.time() >= token.refresh_expires_at:
            # The server said when it expires: calling it now could only be refused.
            raise LoginRequired(
                "the refresh token expired "
                f"{time.time() - token.refresh_expires_at:.0f} s ago; log in again"
            )
        form = {"grant_type": "refresh_token", "refresh_token": token.refresh_token}
        return self._grant(form, previous=token)


class ClientCredentialsRefresher(TokenEndpoint):
    """A new RFC 6749 section 4.4 client_credentials grant each time, for machine clients.

    No login is needed: with no token file, the first request creates it. Sending the grant
    twice is harmless, so connection errors and any 5xx are retried ``retries`` times. The
    other arguments are as for :class:`OAuth2Refresher`.
    """

    _resend_safe = True

    def __call__(self, token: Token, /) -> Token:
        """Return a new token; the current one is not needed."""
        return self.new_token()

    def new_token(self) -> Token:
        """Ask the token endpoint for a new token with the client's own credentials."""
        return self._grant({"grant_type": "client_credentials"})


def refreshed(refresher: Refresher, old: Token, clock: Callable[[], float]) -> Token:
    """Call ``refresher`` for ``old`` and return the new token (keeping ``old``'s refresh
    token when the answer has none). Whatever the refresher raises leaves as a TokenError: see
    :func:`_answer_of`."""
    return _answer_of(lambda: refresher(old), old, clock)


def first_token(source: TokenSource, clock: Callable[[], float]) -> Token:
    """Ask ``source`` for a first token; its errors leave as :func:`refreshed`'s do."""
    return _answer_of(source.new_token, None, clock)


def _answer_of(
    call: Callable[[], Token | Mapping[str, Any]], old: Token | None, clock: Callable[[], float]
) -> Token:
    """Return the token ``call`` answers with. A TokenError (LoginRequired, ClientRejected,
    RefreshFailed, ...) passes as it is; any other exception becomes RefreshFailed: a requests
    error keeps only a redacted copy of the answer, and another error is kept as the
    ``__cause__`` unless its text holds one of ``old``'s secrets."""
    requested_at = clock()
    secrets = () if old is None else (old.access_token, old.refresh_token)
    try:
        answer = call()
    except TokenError:
        raise
    except Exception as error:  # whatever a custom refresher raises: see the docstring
        failure, cause = _failure(error, secrets)
    else:
        return _as_token(answer, old, requested_at)
    # Raised outside the except block, so that no context holds the refresher's request.
    raise failure from cause


def _failure(
    error: Exception, secrets: Iterable[str | None]
) -> tuple[RefreshFailed, Exception | None]:
    """The RefreshFailed that stands for a refresher's ``error``, and the cause it may keep."""
    name = type(error).__name__
    if isinstance(error, requests.RequestException):
        # The refresher's own request may hold its credentials: keep a redacted copy of the
        # answer only.
        kept = None if error.response is None else kept_for_error(error.response, secrets)
        return RefreshFailed(f"the refresher failed ({name}); try again later", response=kept), None
    if any(secret and secret in f"{error} {error.args!r}" for secret in secrets):
        return RefreshFailed(
            f"the refresher raised {name}, whose message held a secret and is not kept; "
            "try again later"
        ), None
    return RefreshFailed(f"the refresher raised {name} (the cause); try again later"), error


def _as_token(answer: Token | Mapping[str, Any], old: Token | None, requested_at: float) -> Token:
    """Turn a refresher's answer into a token, keeping the old refresh token if none came."""
    if isinstance(answer, Token):
        if answer.refresh_token or old is None:
            return answer
        return replace(answer, refresh_token=old.refresh_token)
    if not isinstance(answer, Mapping):
        raise RefreshFailed(
            f"the refresher returned a {type(answer).__name__}, not a Token or a mapping"
        )
    try:
        return Token.from_response(answer, requested_at=requested_at, previous=old)
    except ValueError as error:
        raise RefreshFailed(f"the refresher's answer is not a usable token: {error}") from None
