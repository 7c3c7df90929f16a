"""Getting a grant and ending it: the RFC 8628 device authorization grant, the import of a
token saved by another tool, and RFC 7009 revocation.

Each talks to the authorization server through an :class:`OAuthClient` (a refresher's own, or
one built for the login), so the client authentication, network, timeouts, retries, typed errors
and redaction are the refreshers' own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from .arguments import seconds
from .dpop import DPoPKey
from .errors import ClientRejected, LoginRequired, RefreshFailed
from .oauth_client import OAuthClient, error_code, json_object
from .store import decode
from .token import Token
from .urls import check_endpoint_url

logger = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 section 3.5: after slow_down, every later poll waits this much longer.
SLOW_DOWN_STEP = 5.0
_DEFAULT_INTERVAL = 5.0  # RFC 8628 section 3.2, when the server names none
_PENDING = frozenset({"authorization_pending", "slow_down"})


class HoldsClient(Protocol):
    """Anything that holds a client of the authorization server, such as a refresher."""

    @property
    def client(self) -> OAuthClient:
        """The client of the authorization server."""
        ...


def client_of(given: OAuthClient | HoldsClient) -> OAuthClient:
    """The client ``given`` is, or holds."""
    return given if isinstance(given, OAuthClient) else given.client


@dataclass(frozen=True)
class DeviceAuthorization:
    """A device authorization in progress: what to show the user (``user_code`` and
    ``verification_uri``, or ``verification_uri_complete`` that includes the code), how long
    it lasts and how often to poll. The ``device_code`` is a secret, absent from the repr."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float
    device_code: str = field(repr=False)


class DeviceLogin:
    """The RFC 8628 device authorization grant for the client ``client`` (an OAuthClient, or a
    refresher holding one): ask for a code, let :meth:`wait` poll the token endpoint until a
    person approved it.

    ``sleep`` and ``clock`` (seconds, monotonic) are parameters so that tests can see the
    waits the client chooses without spending them.
    """

    def __init__(
        self,
        client: OAuthClient | HoldsClient,
        device_authorization_url: str,
        *,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client_of(client)
        check_endpoint_url(
            "device_authorization_url", device_authorization_url, self.client.allow_insecure_http
        )
        self.url = device_authorization_url
        self._sleep = sleep
        self._clock = clock

    def __call__(self, show: Callable[[DeviceAuthorization], object]) -> Token:
        """Start an authorization, pass it to ``show`` (which tells the user where to go and
        which code to enter), and return the token once it is approved."""
        authorization = self.start()
        show(authorization)
        return self.wait(authorization)

    def start(self) -> DeviceAuthorization:
        """Ask the device authorization endpoint for a device code and a user code."""
        form = dict(self.client.extra_params)
        if self.client.scope:
            form["scope"] = self.client.scope

        def attempt() -> DeviceAuthorization:
            response = self.client.post(form, self.url)
            if not response.ok:
                raise self.client.refusal(response, form)
            return _authorization(response, self.url, self.client)

        return self.client.retrying(attempt, resend_safe=True)

    def wait(self, authorization: DeviceAuthorization) -> Token:
        """Poll the token endpoint at the server's interval (5 s longer after each
        ``slow_down``) until the user decides; return the token. With a DPoP client, every
        poll signs with one key, which the token comes bound to and carries. Raises
        LoginRequired when the user refused or the code expired."""
        deadline = self._clock() + authorization.expires_in
        interval = authorization.interval
        form = {
            **self.client.extra_params,
            "grant_type": DEVICE_GRANT,
            "device_code": authorization.device_code,
        }
        # One key for every poll: the server binds the token to the key of the poll it answers.
        key = self.client.proof_key()
        while self._clock() < deadline:
            self._sleep(min(interval, max(0.0, deadline - self._clock())))
            outcome = self.client.retrying(lambda: self._poll(form, key), resend_safe=True)
            if isinstance(outcome, Token):
                return outcome
            logger.debug("device login: %s", outcome)
            if outcome == "slow_down":
                interval += SLOW_DOWN_STEP
        raise _expired()

    def _poll(self, form: Mapping[str, str], key: DPoPKey | None) -> Token | str:
        """One poll, with a DPoP proof signed by ``key`` if given: the token, or the error code
        that says to keep polling."""
        requested_at = time.time()
        response = self.client.post(form, proof_key=key)
        code = "" if response.ok else error_code(response)
        if code in _PENDING:
            return code
        if code == "access_denied":
            raise LoginRequired(
                "the sign-in was refused on the verification page; run the "
                "login again to get a new code",
                response=self.client.kept_for_error(response, form),
            )
        if code == "expired_token":
            raise _expired()
        return self.client.token_answer(response, requested_at, form, proof_key=key)


def _expired() -> LoginRequired:
    return LoginRequired(
        "the code expired before anyone approved it; run the login again to get a new code"
    )


def _authorization(
    response: requests.Response, url: str, client: OAuthClient
) -> DeviceAuthorization:
    data = json_object(response)
    try:
        if data is None:
            raise ValueError("not a JSON object")
        return DeviceAuthorization(
            user_code=_field(data, "user_code"),
            # Google's endpoint says verification_url.
            verification_uri=_field(data, "verification_uri", "verification_url"),
            verification_uri_complete=_optional_field(data, "verification_uri_complete"),
            expires_in=seconds("expires_in", data.get("expires_in"), allow_zero=False),
            interval=seconds("interval", data.get("interval", _DEFAULT_INTERVAL), allow_zero=False),
            device_code=_field(data, "device_code"),
        )
    except (TypeError, ValueError) as error:
        problem = str(error)
    # Raised outside the except clause, so that the error keeps no context.
    raise RefreshFailed(
        f"the device authorization endpoint {url} answered without a usable code ({problem})",
        response=client.kept_for_error(response, {}),
    )


def _field(data: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    raise ValueError(f"no {names[0]!r}")


def _optional_field(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name!r} is not a string")
    return value or None


def import_token(raw: bytes, *, source: str, written_at: float | None) -> tuple[Token, list[str]]:
    """Read a token saved by another tool (requests-oauthlib's or Authlib's token dict, an
    identity provider's JSON answer, a token file) from ``raw``; return it and the warnings
    the user should see. ``written_at`` is when it was saved (a file's modification time):
    an ``expires_in`` without ``expires_at`` counts from then; None (standard input) counts
    from now, with a warning. Raises ValueError, naming ``source``, when it holds no token."""
    now = time.time()
    try:
        token, _notes = decode(raw, written_at=now if written_at is None else written_at)
    except ValueError as error:
        raise ValueError(f"{source} {error}") from None
    warnings = []
    if written_at is None and "expires_at" not in json.loads(raw) and token.lifetime is not None:
        warnings.append(
            "it says how long it lives (expires_in) but not since when; its "
            "expiry is counted from now, so it may have expired already: a 401 "
            "then triggers a refresh"
        )
    if not token.refresh_token:
        warnings.append(
            "it has no refresh token: it can be used until it expires, then a new login is needed"
        )
    if token.expires_at is not None and token.expires_at <= now:
        warnings.append(f"it expired {now - token.expires_at:.0f} s ago")
    return token, warnings


def revoke(given: OAuthClient | HoldsClient, revocation_url: str, token: Token) -> None:
    """Ask the server to revoke ``token`` (RFC 7009) through the client ``given`` (or the one
    it holds): its refresh token, which ends the whole grant, or else (or when the server
    revokes no refresh tokens) its access token. Raises ClientRejected or RefreshFailed when
    the server did not confirm it."""
    client = client_of(given)
    check_endpoint_url("revocation_url", revocation_url, client.allow_insecure_http)
    for hint, value in (
        ("refresh_token", token.refresh_token),
        ("access_token", token.access_token),
    ):
        if value and _revoked(client, revocation_url, {"token": value, "token_type_hint": hint}):
            logger.info("revoked the %s of token %s", hint.replace("_", " "), token.fingerprint)
            return
    raise ClientRejected(
        f"{revocation_url} revokes none of this token's kinds "
        "(unsupported_token_type); log out without revoking",
        error="unsupported_token_type",
    )


def _revoked(client: OAuthClient, url: str, form: Mapping[str, str]) -> bool:
    """Revoke one token; return False when the server revokes no tokens of its kind."""

    def attempt() -> None:
        response = client.post(form, url)
        if not response.ok:
            raise client.refusal(response, form)

    try:
        client.retrying(attempt, resend_safe=True)
    except RefreshFailed as error:
        if error.response is None or error_code(error.response) != "unsupported_token_type":
            raise
        logger.info("%s revokes no %ss", url, form["token_type_hint"])
        return False
    return True
