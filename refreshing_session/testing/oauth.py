"""The OAuth state of the local server: clients, grants, rotating refresh tokens with reuse
detection, access tokens and their expiry, device codes and revocation.

It answers :class:`~.messages.Request` values with :class:`~.messages.Response`
values and opens no socket, so the protocol rules can be read apart from the
HTTP plumbing. Every method is safe to call from any thread.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import math
import random
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message

from .checks import check_finite, check_non_negative
from .messages import NO_STORE, Request, Response, error_response, json_response

_DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 section 6.1: no vowels (no words), no easily confused characters.
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_MAX_FORM_FIELDS = 100
_FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class ServerStats:
    """Snapshot of the server's request counters, returned by :meth:`LocalAuthServer.stats`.

    ``token_requests`` counts every POST to the token endpoint (faulted ones
    included); ``refreshes`` and ``client_credentials`` count successful grants
    of that type; ``invalid_grants`` counts ``invalid_grant`` answers;
    ``reuse_detections`` counts consumed refresh tokens presented again, and
    ``grace_reuses`` those accepted within the grace period;
    ``revoked_grants`` counts grants revoked (by reuse detection or
    :meth:`LocalAuthServer.revoke_all`); ``api_ok``/``api_unauthorized`` count
    protected API answers; ``echo_requests``/``echo_with_authorization`` count
    ``/echo`` requests and those among them carrying an Authorization header;
    ``device_authorizations`` counts device codes issued, ``device_grants``
    device codes redeemed for a token, ``slow_downs`` polls answered
    ``slow_down``; ``revocations`` counts known tokens revoked at the
    revocation endpoint; ``revoked_access_tokens`` counts live access tokens
    killed by :meth:`LocalAuthServer.revoke_access_tokens`.
    """

    token_requests: int = 0
    refreshes: int = 0
    client_credentials: int = 0
    invalid_grants: int = 0
    reuse_detections: int = 0
    grace_reuses: int = 0
    revoked_grants: int = 0
    api_ok: int = 0
    api_unauthorized: int = 0
    echo_requests: int = 0
    echo_with_authorization: int = 0
    device_authorizations: int = 0
    device_grants: int = 0
    slow_downs: int = 0
    revocations: int = 0
    revoked_access_tokens: int = 0


@dataclass
class _Grant:
    client_id: str
    scope: str | None
    revoked: bool = False
    current_refresh: str | None = None


@dataclass
class _RefreshToken:
    grant: _Grant
    expires_at: float | None
    consumed_at: float | None = None
    successor: str | None = None
    grace_used: bool = False


@dataclass
class _AccessToken:
    grant: _Grant
    expires_at: float  # on the server's clock
    revoked: bool = False


@dataclass
class _DeviceCode:
    client_id: str
    scope: str | None
    user_code: str
    expires_at: float
    last_poll: float  # issuing counts as a poll: the first one must wait the interval too
    decision: str = "pending"  # "approved", "denied", or "used" once redeemed


class _OAuthError(Exception):
    """An RFC 6749 section 5.2 error answer from the token endpoint."""

    def __init__(
        self, status: int, error: str, description: str, *, basic_challenge: bool = False
    ) -> None:
        super().__init__(description)
        self.error = error
        challenge = (("WWW-Authenticate", 'Basic realm="token"'),) if basic_challenge else ()
        self.response = error_response(status, error, description, headers=NO_STORE + challenge)


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def _expires_in(ttl: float) -> int | float:
    return int(ttl) if float(ttl).is_integer() else ttl


def _new_user_code() -> str:
    letters = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


def _normal_user_code(user_code: str) -> str:
    """RFC 8628 section 6.1: what the user types is compared without case or dashes."""
    return user_code.replace("-", "").replace(" ", "").upper()


def _parse_basic(header: str) -> tuple[str, str] | None:
    """Decode RFC 6749 2.3.1 Basic credentials (each part form-urlencoded)."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("ascii")
    except ValueError:
        return None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return None
    return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)


def _parse_form(request: Request) -> dict[str, str]:
    if not request.body:
        return {}  # e.g. a device authorization with Basic client auth and no scope
    media_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media_type != _FORM_TYPE:
        raise _OAuthError(400, "invalid_request", f"request body must be {_FORM_TYPE}")
    try:
        pairs = urllib.parse.parse_qsl(
            request.body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except ValueError:
        raise _OAuthError(400, "invalid_request", "malformed form body") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        # RFC 6749 3.2: parameters must not be included more than once.
        raise _OAuthError(400, "invalid_request", "repeated request parameter")
    return form


def _narrow_scope(granted: str | None, requested: str | None) -> str | None:
    """Return the scope for a refreshed token; a request may only narrow it (RFC 6749 6)."""
    if not requested:
        return granted
    if not set(requested.split()) <= set((granted or "").split()):
        raise _OAuthError(400, "invalid_scope", "requested scope exceeds the granted scope")
    return requested


def _unauthorized(error: str, description: str) -> Response:
    challenge = f'Bearer error="{error}", error_description="{description}"'
    return error_response(401, error, description, (("WWW-Authenticate", challenge),))


def _api_echo(request: Request, client_id: str) -> Response:
    return json_response(
        200,
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "body": request.body.decode("latin-1"),
            "body_length": len(request.body),
            "client_id": client_id,
        },
    )


class OAuthState:
    """The authorization server's clients, grants and tokens, and the rules that govern them.

    The arguments are those of :class:`~refreshing_session.testing.LocalAuthServer`, checked
    there.
    """

    def __init__(
        self,
        *,
        access_ttl: float,
        refresh_ttl: float | None,
        clients: Mapping[str, str | None],
        grace_period: float,
        device_interval: float,
        device_code_ttl: float,
        revokes_refresh_tokens: bool,
        whole_second_expiry: bool,
        clock_offset: float,
        early_death: random.Random | None,
    ) -> None:
        self._access_ttl = access_ttl
        self._refresh_ttl = refresh_ttl
        self._clients: dict[str, str | None] = dict(clients)
        self._grace_period = grace_period
        self._device_interval = device_interval
        self._revokes_refresh_tokens = revokes_refresh_tokens
        self._device_code_ttl = device_code_ttl
        self._device_codes: dict[str, _DeviceCode] = {}
        self._lock = threading.Lock()
        self._stats = ServerStats()
        self._grants: list[_Grant] = []
        self._access_tokens: dict[str, _AccessToken] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._whole_second_expiry = whole_second_expiry
        self._clock_offset = clock_offset
        self._early_death = early_death

    def issue_token(
        self, client_id: str, *, scope: str | None, access_ttl: float | None
    ) -> dict[str, object]:
        """Mint a new grant as if a user just logged in and return its token response.

        Raises ValueError for an unknown client or a negative ``access_ttl``.
        """
        check_non_negative("access_ttl", access_ttl)
        if client_id not in self._clients:
            raise ValueError(f"unknown client {client_id!r}")
        ttl = self._access_ttl if access_ttl is None else access_ttl
        with self._lock:
            grant = _Grant(client_id, scope)
            self._grants.append(grant)
            refresh_token = self._new_refresh_token(grant, self._now())
            return self._mint(grant, scope, refresh_token, ttl)

    def stats(self) -> ServerStats:
        """Return a snapshot of the request counters."""
        with self._lock:
            return self._stats

    def count(self, *counters: str) -> None:
        """Add one to each named counter of :class:`ServerStats`."""
        with self._lock:
            for counter in counters:
                self._bump(counter)

    def pending_user_codes(self) -> list[str]:
        """Return the user codes of device authorizations awaiting a decision, oldest first."""
        with self._lock:
            return [
                code.user_code for code in self._device_codes.values() if code.decision == "pending"
            ]

    def decide(self, user_code: str, decision: str) -> None:
        """Record the user's ``decision`` ("approved" or "denied") on the pending device
        authorization showing ``user_code``; raises ValueError when there is none."""
        wanted = _normal_user_code(user_code)
        with self._lock:
            for code in self._device_codes.values():
                if _normal_user_code(code.user_code) == wanted and code.decision == "pending":
                    code.decision = decision
                    return
        raise ValueError("no pending device authorization has that user code")

    def revoke_all(self) -> None:
        """Revoke every grant: refreshes get invalid_grant and the API answers 401."""
        with self._lock:
            for grant in self._grants:
                self._revoke(grant)

    def revoke_access_tokens(self) -> int:
        """Kill every live access token, keeping grants and refresh tokens; return how many."""
        with self._lock:
            now = self._now()
            live = [
                record
                for record in self._access_tokens.values()
                if not record.revoked and now < record.expires_at
            ]
            for record in live:
                record.revoked = True
            self._bump("revoked_access_tokens", len(live))
            return len(live)

    def expiry_of(self, access_token: str) -> float | None:
        """When ``access_token`` expires on the server's clock; None for an unknown token."""
        with self._lock:
            record = self._access_tokens.get(access_token)
            return None if record is None else record.expires_at

    def now(self) -> float:
        """The server's idea of now, in epoch seconds: ``time.time()`` plus the clock offset."""
        with self._lock:
            return self._now()

    def set_clock_offset(self, seconds: float) -> None:
        """Set the server's clock to run ``seconds`` ahead of ``time.time()`` (negative:
        behind), from now on; raises ValueError for a value that is not a finite number."""
        check_finite("clock_offset", seconds)
        with self._lock:
            self._clock_offset = seconds

    # ------------------------------------------------------------ endpoints

    def api(self, request: Request) -> Response:
        """Answer a request to the protected API: an echo for a live token, else a 401."""
        with self._lock:
            response, client_id = self._authorize_api(request)
            self._bump("api_unauthorized" if client_id is None else "api_ok")
        return response

    def token_request(self, request: Request) -> Response:
        """Answer a POST to the token endpoint (refresh, client credentials or device grant)."""
        try:
            form = _parse_form(request)
            client_id = self._authenticate(request.headers, form)
            with self._lock:
                payload = self._grant(client_id, form)
        except _OAuthError as exc:
            if exc.error == "invalid_grant":
                with self._lock:
                    self._bump("invalid_grants")
            return exc.response
        return json_response(200, payload, NO_STORE)

    def device_authorization(self, request: Request, verification_url: str) -> Response:
        """Answer a request to the RFC 8628 device authorization endpoint; users are sent to
        ``verification_url``."""
        return self._form_endpoint(
            request, functools.partial(self._device_authorization, verification_url)
        )

    def revocation(self, request: Request) -> Response:
        """Answer a request to the RFC 7009 revocation endpoint."""
        return self._form_endpoint(request, self._revocation)

    # ------------------------------------------------------------ rules (lock held)

    def _authorize_api(self, request: Request) -> tuple[Response, str | None]:
        header = request.headers.get("Authorization")
        if header is None:
            challenge = (("WWW-Authenticate", 'Bearer realm="api"'),)
            return error_response(401, "unauthorized", "bearer token required", challenge), None
        scheme, _, token = header.strip().partition(" ")
        problem = (
            self._access_token_problem(token.strip())
            if scheme.lower() == "bearer"
            else "authorization scheme must be Bearer"
        )
        if problem is None and (request.path + "/").startswith("/api/always401/"):
            problem = "this endpoint rejects every token"
        if problem is not None:
            return _unauthorized("invalid_token", problem), None
        if request.path == "/api/forbidden-scope":
            return _unauthorized("insufficient_scope", "token lacks the required scope"), None
        client_id = self._access_tokens[token.strip()].grant.client_id
        return _api_echo(request, client_id), client_id

    def _access_token_problem(self, token: str) -> str | None:
        record = self._access_tokens.get(token)
        if record is None:
            return "unknown access token"
        if record.grant.revoked or record.revoked:
            return "access token revoked"
        if self._now() >= record.expires_at:
            return "access token expired"
        return None

    def _form_endpoint(
        self, request: Request, answer: Callable[[str, Mapping[str, str]], Response]
    ) -> Response:
        """Serve a POST endpoint that authenticates the client as the token endpoint does."""
        if request.method != "POST":
            return error_response(
                405, "invalid_request", "this endpoint only accepts POST", (("Allow", "POST"),)
            )
        try:
            form = _parse_form(request)
            client_id = self._authenticate(request.headers, form)
            with self._lock:
                return answer(client_id, form)
        except _OAuthError as exc:
            return exc.response

    def _device_authorization(
        self, verification_url: str, client_id: str, form: Mapping[str, str]
    ) -> Response:
        """RFC 8628 section 3.2: a device code for the client to poll with, and a user code."""
        device_code = _new_token()
        user_code = _new_user_code()
        now = self._now()
        self._device_codes[device_code] = _DeviceCode(
            client_id, form.get("scope") or None, user_code, now + self._device_code_ttl, now
        )
        self._bump("device_authorizations")
        payload = {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_url,
            "verification_uri_complete": f"{verification_url}?user_code={user_code}",
            "expires_in": _expires_in(self._device_code_ttl),
            "interval": _expires_in(self._device_interval),
        }
        return json_response(200, payload, NO_STORE)

    def _revocation(self, client_id: str, form: Mapping[str, str]) -> Response:
        """RFC 7009: revoke a refresh token's whole grant, or one access token. Unknown
        tokens are answered 200 too (section 2.2)."""
        token = form.get("token")
        if not token:
            raise _OAuthError(400, "invalid_request", "missing token parameter")
        refresh = self._refresh_tokens.get(token)
        if refresh is not None and not self._revokes_refresh_tokens:
            raise _OAuthError(
                400, "unsupported_token_type", "this server revokes access tokens only"
            )
        access = self._access_tokens.get(token)
        grant = refresh.grant if refresh is not None else access.grant if access else None
        if grant is not None:
            if grant.client_id != client_id:
                raise _OAuthError(400, "unauthorized_client", "the token belongs to another client")
            if refresh is not None:
                self._revoke(grant)
            else:
                del self._access_tokens[token]
            self._bump("revocations")
        return Response(200, content_type="text/plain", headers=NO_STORE)

    def _authenticate(self, headers: Message, form: Mapping[str, str]) -> str:
        """Return the authenticated client id (client_secret_basic, _post or public)."""
        header = headers.get("Authorization")
        if header is None:
            return self._check_client(form.get("client_id"), form.get("client_secret"), basic=False)
        if "client_secret" in form:
            raise _OAuthError(400, "invalid_request", "use only one client authentication method")
        credentials = _parse_basic(header)
        if credentials is None:
            raise _OAuthError(
                401,
                "invalid_client",
                "unsupported or malformed client credentials",
                basic_challenge=True,
            )
        client_id, secret = credentials
        if form.get("client_id", client_id) != client_id:
            raise _OAuthError(400, "invalid_request", "client_id does not match the credentials")
        return self._check_client(client_id, secret, basic=True)

    def _check_client(self, client_id: str | None, secret: str | None, *, basic: bool) -> str:
        if client_id is None:
            raise _OAuthError(401, "invalid_client", "client authentication required")
        if client_id not in self._clients:
            raise _OAuthError(401, "invalid_client", "unknown client", basic_challenge=basic)
        expected = self._clients[client_id]
        if expected is None:
            # A public client has nothing to prove; an empty Basic password is tolerated.
            ok = not secret
        else:
            ok = secret is not None and secrets.compare_digest(secret.encode(), expected.encode())
        if not ok:
            raise _OAuthError(
                401, "invalid_client", "client authentication failed", basic_challenge=basic
            )
        return client_id

    def _grant(self, client_id: str, form: Mapping[str, str]) -> dict[str, object]:
        grant_type = form.get("grant_type")
        if grant_type == "refresh_token":
            return self._refresh(client_id, form)
        if grant_type == "client_credentials":
            return self._client_credentials(client_id, form.get("scope"))
        if grant_type == _DEVICE_GRANT:
            return self._device_token(client_id, form.get("device_code"))
        if not grant_type:
            raise _OAuthError(400, "invalid_request", "missing grant_type parameter")
        raise _OAuthError(400, "unsupported_grant_type", "grant_type is not supported")

    def _client_credentials(self, client_id: str, scope: str | None) -> dict[str, object]:
        if self._clients[client_id] is None:
            raise _OAuthError(
                400, "unauthorized_client", "public clients cannot use client_credentials"
            )
        grant = _Grant(client_id, scope or None)
        self._grants.append(grant)
        self._bump("client_credentials")
        return self._mint(grant, grant.scope, None, self._access_ttl)

    def _device_token(self, client_id: str, device_code: str | None) -> dict[str, object]:
        """RFC 8628 section 3.5: answer a poll with the token once the user approved."""
        if not device_code:
            raise _OAuthError(400, "invalid_request", "missing device_code parameter")
        code = self._device_codes.get(device_code)
        if code is None or code.client_id != client_id or code.decision == "used":
            raise _OAuthError(400, "invalid_grant", "unknown or already used device code")
        now = self._now()
        if now >= code.expires_at:
            raise _OAuthError(400, "expired_token", "the device code has expired")
        if code.decision == "denied":
            raise _OAuthError(400, "access_denied", "the user denied the authorization")
        if code.decision == "pending":
            too_soon = now - code.last_poll < self._device_interval
            code.last_poll = now
            if too_soon:
                self._bump("slow_downs")
                raise _OAuthError(400, "slow_down", "polling faster than the interval")
            raise _OAuthError(400, "authorization_pending", "the user has not decided yet")
        code.decision = "used"
        grant = _Grant(client_id, code.scope)
        self._grants.append(grant)
        self._bump("device_grants")
        return self._mint(grant, code.scope, self._new_refresh_token(grant, now), self._access_ttl)

    def _refresh(self, client_id: str, form: Mapping[str, str]) -> dict[str, object]:
        presented = form.get("refresh_token")
        if not presented:
            raise _OAuthError(400, "invalid_request", "missing refresh_token parameter")
        now = self._now()
        record = self._usable_refresh_token(presented, client_id, now)
        if record.consumed_at is not None and not self._in_grace(record, now):
            self._bump("reuse_detections")
            self._revoke(record.grant)
            raise _OAuthError(400, "invalid_grant", "refresh token already used")
        scope = _narrow_scope(record.grant.scope, form.get("scope"))
        if record.consumed_at is None:
            record.consumed_at = now
            record.successor = self._new_refresh_token(record.grant, now)
        else:
            # Grace reuse: hand out the current refresh token again instead of rotating twice.
            record.grace_used = True
            self._bump("grace_reuses")
        self._bump("refreshes")
        return self._mint(record.grant, scope, record.successor, self._access_ttl)

    def _usable_refresh_token(self, token: str, client_id: str, now: float) -> _RefreshToken:
        record = self._refresh_tokens.get(token)
        if record is None:
            raise _OAuthError(400, "invalid_grant", "unknown refresh token")
        if record.grant.client_id != client_id:
            raise _OAuthError(400, "invalid_grant", "refresh token was issued to another client")
        if record.grant.revoked:
            raise _OAuthError(400, "invalid_grant", "grant has been revoked")
        if record.expires_at is not None and now >= record.expires_at:
            raise _OAuthError(400, "invalid_grant", "refresh token expired")
        return record

    def _in_grace(self, record: _RefreshToken, now: float) -> bool:
        """Whether a consumed token is the immediately previous one, within the grace period."""
        return (
            record.consumed_at is not None
            and not record.grace_used
            and record.successor == record.grant.current_refresh
            and now < record.consumed_at + self._grace_period
        )

    def _now(self) -> float:
        return time.time() + self._clock_offset

    def _bump(self, counter: str, by: int = 1) -> None:
        self._stats = dataclasses.replace(
            self._stats, **{counter: getattr(self._stats, counter) + by}
        )

    def _access_expiry(self, ttl: float) -> float:
        """When an access token issued now with lifetime ``ttl`` dies, on the server's clock."""
        now = self._now()
        # Rounded, a lifetime under 2 s could end before the token's first use.
        rounded = self._whole_second_expiry and ttl >= 2
        expires_at = (math.floor(now) if rounded else now) + ttl
        if self._early_death is None or expires_at <= now:
            return expires_at
        return self._early_death.uniform(now, expires_at)

    def _revoke(self, grant: _Grant) -> None:
        if not grant.revoked:
            grant.revoked = True
            self._bump("revoked_grants")

    def _new_refresh_token(self, grant: _Grant, now: float) -> str:
        token = _new_token()
        expires_at = None if self._refresh_ttl is None else now + self._refresh_ttl
        self._refresh_tokens[token] = _RefreshToken(grant, expires_at)
        grant.current_refresh = token
        return token

    def _mint(
        self, grant: _Grant, scope: str | None, refresh_token: str | None, ttl: float
    ) -> dict[str, object]:
        access_token = _new_token()
        self._access_tokens[access_token] = _AccessToken(grant, self._access_expiry(ttl))
        payload: dict[str, object] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": _expires_in(ttl),
        }
        if refresh_token is not None:
            payload["refresh_token"] = refresh_token
        if scope:
            payload["scope"] = scope
        return payload
