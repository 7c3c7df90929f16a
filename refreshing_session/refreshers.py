"""Refreshers: what turns a token that is expiring or was refused into a new one.

A refresher is any callable that takes the current :class:`Token` and returns the new token,
as a :class:`Token` or as a token-endpoint-style mapping (``access_token``, ``expires_in``, ...).
It runs under the token lock, so only one runs at a time for a given token file. Two are
provided: :class:`OAuth2Refresher` (the RFC 6749 refresh_token grant) and
:class:`ClientCredentialsRefresher` (a new client_credentials grant).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote_plus, urlsplit

import requests

from . import exchange
from .arguments import seconds
from .errors import ClientRejected, LoginRequired, RefreshFailed, TokenError, excerpt
from .exchange import skip_netrc as skip_netrc  # session.py uses it too
from .token import Token

logger = logging.getLogger(__name__)

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
# RFC 6749 section 5.2 codes that mean the client's configuration is wrong.
_CLIENT_ERRORS = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_scope", "unsupported_grant_type",
     "invalid_request"}
)
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable"})
_LONGEST_BACKOFF = 10.0
# Form parameters whose values are secrets: redacted from every error message.
_SECRET_PARAMETERS = ("refresh_token", "device_code", "token")
_T = TypeVar("_T")


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


class TokenEndpoint:
    """A client of one authorization server: its client authentication (RFC 6749 section
    2.3), timeouts, retries of the failures that are safe to retry, and typed errors with the
    secrets redacted. The refreshers send their grants to its token endpoint; the command
    line's login and logout send device authorization and revocation requests through it too.
    """

    # Whether a grant that may have been processed can be sent again without harm.
    _resend_safe: ClassVar[bool]

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        auth_method: str | None = None,
        scope: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        allow_insecure_http: bool = False,
    ) -> None:
        """Check and keep the client's configuration; raises ValueError or TypeError saying
        what to fix. See the class for what each argument means."""
        check_endpoint_url("token_url", token_url, allow_insecure_http)
        if not isinstance(client_id, str) or not client_id:
            raise TypeError("client_id must be a non-empty string")
        method = auth_method or ("client_secret_basic" if client_secret else "none")
        if method not in AUTH_METHODS:
            raise ValueError(
                f"auth_method must be one of {', '.join(AUTH_METHODS)}, got {method!r}")
        if method != "none" and not client_secret:
            raise ValueError(f"auth_method {method!r} needs a client_secret")
        if method == "none" and client_secret:
            raise ValueError("auth_method 'none' never sends the client_secret given; choose "
                             "client_secret_basic or client_secret_post, or drop the secret")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries!r}")
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.auth_method = method
        self.scope = scope
        self.timeout = seconds("timeout", timeout, allow_zero=False)
        self.retries = retries
        self.allow_insecure_http = allow_insecure_http
        # The HTTP Basic credentials, sent with client_secret_basic and redacted from errors.
        self._basic = _basic_credentials(client_id, client_secret or "")

    def _grant(self, form: dict[str, str], previous: Token | None = None) -> Token:
        """Post a grant, retrying transient failures; return the token it gave."""
        def attempt() -> Token:
            requested_at = time.time()
            return self.token_answer(self.post(form), requested_at, form, previous)
        return self.retrying(attempt, resend_safe=self._resend_safe)

    def retrying(self, attempt: Callable[[], _T], *, resend_safe: bool) -> _T:
        """Return what ``attempt()`` returns, calling it again (up to ``retries`` times, with
        backoff) after a RefreshFailed that says the request was not processed, or after any
        transient failure when the request is ``resend_safe``."""
        count = 0
        while True:
            try:
                return attempt()
            except RefreshFailed as failure:
                delay = self._backoff(failure, count, resend_safe)
                if delay is None:
                    raise
                logger.info("%s; retrying in %.1f s", failure, delay)
                time.sleep(delay)
                count += 1

    def post(self, form: Mapping[str, str], url: str | None = None) -> requests.Response:
        """POST ``form`` to ``url`` (the token endpoint by default) with the client's
        authentication and no redirects; return the answer, whatever its status, read within
        the timeout in all and at most 1 MiB (see :func:`exchange.post`). Raises RefreshFailed
        when no complete answer came. The answer's request holds only the method and URL."""
        url = url or self.token_url
        form = dict(form)
        headers = {"Accept": "application/json"}
        if self.auth_method == "client_secret_basic":
            headers["Authorization"] = self._basic
        else:
            form["client_id"] = self.client_id
        if self.auth_method == "client_secret_post":
            form["client_secret"] = self._client_secret or ""
        return exchange.post(url, form, headers, timeout=self.timeout,
                             endpoint=self._endpoint(url), secrets=self._secrets(form))

    def token_answer(self, response: requests.Response, requested_at: float,
                     form: Mapping[str, str], previous: Token | None = None) -> Token:
        """Return the token in the token endpoint's ``response`` to ``form``, or raise the
        typed error its refusal means (see :meth:`refusal`)."""
        if not response.ok:
            raise self.refusal(response, form)
        try:
            return Token.from_response(json_object(response) or {}, requested_at=requested_at,
                                       previous=previous)
        except ValueError as error:
            problem = str(error)
        # Raised outside the except clause, so that the error keeps no context.
        raise self._failure(response, f"no usable token: {problem}", form)

    def kept_for_error(self, response: requests.Response,
                       form: Mapping[str, str]) -> requests.Response:
        """The copy of ``response`` (the answer to ``form``) that an error may keep: no
        credential, token or code in it (see :func:`exchange.kept_for_error`)."""
        return exchange.kept_for_error(response, self._secrets(form))

    def refusal(self, response: requests.Response, form: Mapping[str, str]) -> TokenError:
        """The typed error for an error answer to ``form``: LoginRequired for invalid_grant,
        ClientRejected for a bad client configuration, else RefreshFailed. Its message quotes
        the server's error and never a secret."""
        data = json_object(response)
        code = error_code(response)
        description = str(data.get("error_description", "")) if data else ""
        said = excerpt(f"{code}: {description}" if description else code, self._secrets(form))
        if code == "invalid_grant":
            grant = "the refresh token" if "refresh_token" in form else "the grant"
            return LoginRequired(
                f"the authorization server rejected {grant} ({said}); log in again",
                response=self.kept_for_error(response, form))
        if code in _CLIENT_ERRORS or (response.status_code == 401 and not code):
            return ClientRejected(
                f"{self._endpoint(response.url)} rejected the client {self.client_id!r} "
                f"({said or response.status_code}); check client_id, client_secret, "
                f"auth_method and scope", response=self.kept_for_error(response, form),
                error=code)
        return self._failure(response, said, form)

    def _failure(self, response: requests.Response, said: str,
                 form: Mapping[str, str]) -> RefreshFailed:
        body = excerpt(response.content, self._secrets(form)) or "an empty body"
        reason = f"{said}; " if said else ""
        return RefreshFailed(
            f"{self._endpoint(response.url)} answered {response.status_code} "
            f"({reason}body: {body}); try again later",
            response=self.kept_for_error(response, form))

    def _secrets(self, form: Mapping[str, str]) -> tuple[str | None, ...]:
        """What must never appear in an error: the client's credentials (the Basic ones too:
        an error page may echo the request's headers) and the form's tokens and codes."""
        return (self._client_secret, self._basic.split()[-1],
                *(form.get(name) for name in _SECRET_PARAMETERS))

    def _endpoint(self, url: str) -> str:
        return f"the token endpoint {url}" if url == self.token_url else f"the endpoint {url}"

    def _backoff(self, failure: RefreshFailed, attempt: int, resend_safe: bool) -> float | None:
        """Seconds to wait before retrying ``failure``, or None if it is not worth a retry."""
        if attempt >= self.retries or not _transient(failure, resend_safe):
            return None
        delay = 0.2 * 2 ** attempt
        response = failure.response
        retry_after = "" if response is None else response.headers.get("Retry-After", "").strip()
        if retry_after.isascii() and retry_after.isdigit():
            delay = float(retry_after)
        return delay if delay <= _LONGEST_BACKOFF else None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.token_url!r}, client_id={self.client_id!r}, "
                f"auth_method={self.auth_method!r})")


class OAuth2Refresher(TokenEndpoint):
    """The RFC 6749 section 6 refresh_token grant.

    ``auth_method`` is ``"client_secret_basic"`` (the default with a secret),
    ``"client_secret_post"`` or ``"none"`` (the default without one). ``scope`` narrows the
    refreshed token. Failures that say the request was not processed (503, 429,
    ``temporarily_unavailable``, a connection that could not be opened) are retried ``retries``
    times with backoff; a request that may have been processed (a 500, 502 or 504, a reset or
    a read timeout) is never sent again, since the server may have spent the refresh token.
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
            raise LoginRequired("the token has no refresh token, so it cannot be refreshed; "
                                "log in again")
        if token.refresh_expires_at is not None and time.time() >= token.refresh_expires_at:
            # The server said when it expires: calling it now could only be refused.
            raise LoginRequired("the refresh token expired "
                                f"{time.time() - token.refresh_expires_at:.0f} s ago; log in again")
        form = {"grant_type": "refresh_token", "refresh_token": token.refresh_token}
        if self.scope:
            form["scope"] = self.scope
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
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        return self._grant(form)


def _basic_credentials(client_id: str, client_secret: str) -> str:
    # RFC 6749 section 2.3.1: each part is form-urlencoded before it is joined and encoded.
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def json_object(response: requests.Response) -> dict[str, Any] | None:
    """The JSON object ``response`` holds, or None when it holds anything else (not JSON, not
    an object, or nested too deeply to parse)."""
    try:
        data = response.json()
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _transient(failure: RefreshFailed, resend_safe: bool) -> bool:
    """Whether a retry may succeed, and is safe. A refresh grant that may have been processed
    must not be sent again: the server may have spent the refresh token, and a second
    redemption revokes the grant. 503, 429 and temporarily_unavailable say the request was not
    processed; a 500, 502 or 504 (from a gateway) does not."""
    response = failure.response
    if response is None:
        return resend_safe or isinstance(failure.__cause__, exchange.NotConnected)
    if response.status_code in (429, 503) or error_code(response) in _TRANSIENT_ERRORS:
        return True
    return resend_safe and response.status_code >= 500


def error_code(response: requests.Response) -> str:
    """The OAuth error code of an error answer (RFC 6749 section 5.2), or "" when it has none."""
    data = json_object(response)
    return str(data.get("error", "")) if data else ""


def check_endpoint_url(name: str, url: object, allow_insecure_http: bool) -> None:
    """Raise TypeError or ValueError, naming ``name``, unless ``url`` is an absolute https URL
    (or http on the loopback interface, or anywhere with ``allow_insecure_http``)."""
    if not isinstance(url, str):
        raise TypeError(f"{name} must be a string, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an absolute http(s) URL, got {url!r}")
    if parts.scheme == "http" and not (allow_insecure_http or _is_loopback(parts.hostname)):
        raise ValueError(
            f"{name} {url!r} is plain http: secrets would cross the network unencrypted. "
            "Use https, or pass allow_insecure_http=True if this is deliberate")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

