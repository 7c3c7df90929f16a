"""The OAuth state of the local server: clients, grants, rotating refresh tokens with reuse
detection, access tokens and their expiry, device codes and revocation, and tokens bound to a
DPoP key (the proof checks themselves are in :mod:`.dpop`).

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
from .dpop import ALGORITHMS, CheckedProof, DPoPRules, ProofError
from .messages import NO_STORE, Headers, Request, Response, error_response, json_response

_DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 section 6.1: no vowels (no words), no easily confused characters.
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_MAX_FORM_FIELDS = 100
_FORM_TYPE = "application/x-www-form-urlencoded"
# What oidc-provider tells a client whose grant request failed a DPoP rule (a missing, replayed
# or wrongly keyed proof): the same words as for a dead grant, although the grant lives on.
_GRANT_INVALID = "grant request is invalid"


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
    killed by :meth:`LocalAuthServer.revoke_access_tokens`; ``dpop_nonce_challenges``
    counts ``use_dpop_nonce`` answers (token endpoint and API), ``dpop_refusals`` requests
    refused for their DPoP proof (invalid, replayed, signed with the wrong key, or missing
    where one is required).
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
    dpop_nonce_challenges: int = 0
    dpop_refusals: int = 0


@dataclass
class _Grant:
    client_id: str
    scope: str | None
    revoked: bool = False
    current_refresh: str | None = None
    jkt: str | None = None  # the key a public client's refresh tokens are bound to


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
    jkt: str | None = None  # the DPoP key it is bound to


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


def _unauthorized(error: str, description: str, *, dpop: bool = False) -> Response:
    """A 401 from the API, its challenge in the DPoP scheme (naming the proof algorithms, as
    oidc-provider does) for a request about a DPoP proof or a bound token."""
    scheme = "DPoP" if dpop else "Bearer"
    algs = f', algs="{" ".join(ALGORITHMS)}"' if dpop else ""
    challenge = f'{scheme} error="{error}", error_description="{description}"{algs}'
    return error_response(401, error, description, (("WWW-Authenticate", challenge),))


def _with_headers(response: Response, headers: Headers) -> Response:
    return (
        dataclasses.replace(response, headers=response.headers + headers) if headers else response
    )


def _access_token_of(request: Request) -> tuple[str, str] | None:
    """The scheme (lower case) and token of the request's Authorization header, if any."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return scheme.lower(), token.strip()


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
        dpop: DPoPRules,
        dpop_required: bool,
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
        self.dpop = dpop
        self._dpop_required = dpop_required

    def issue_token(
        self,
        client_id: str,
        *,
        scope: str | None,
        access_ttl: float | None,
        dpop_jkt: str | None = None,
    ) -> dict[str, object]:
        """Mint a new grant as if a user just logged in and return its token response; with
        ``dpop_jkt``, its access token (and a public client's refresh tokens) are bound to the
        DPoP key of that thumbprint.

        Raises ValueError for an unknown client or a negative ``access_ttl``.
        """
        check_non_negative("access_ttl", access_ttl)
        if client_id not in self._clients:
            raise ValueError(f"unknown client {client_id!r}")
        ttl = self._access_ttl if access_ttl is None else access_ttl
        with self._lock:
            grant = self._new_grant(client_id, scope, dpop_jkt)
            refresh_token = self._new_refresh_token(grant, self._now())
            return self._mint(grant, scope, refresh_token, ttl, dpop_jkt)

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

    def api(self, request: Request, url: str) -> Response:
        """Answer a request to the protected API at ``url`` (without its query): an echo for a
        live token (with a valid DPoP proof, for a bound one), else a 401."""
        presented = _access_token_of(request)
        now = self.now()
        try:
            proof = self.dpop.check(
                request.headers,
                endpoint="api",
                method=request.method,
                url=url,
                now=now,
                access_token=presented[1] if presented and presented[0] == "dpop" else None,
            )
        except ProofError as refused:
            self.count("api_unauthorized", *self._proof_counters(refused))
            return _with_headers(
                _unauthorized(refused.error, refused.description, dpop=True),
                self._nonce_for(refused, now),
            )
        with self._lock:
            response, client_id = self._authorize_api(request, presented, proof, now)
            self._bump("api_unauthorized" if client_id is None else "api_ok")
        return _with_headers(response, self.dpop.nonce_headers(proof, now))

    def token_request(self, request: Request, url: str) -> Response:
        """Answer a POST to the token endpoint at ``url`` (refresh, client credentials or
        device grant)."""
        now = self.now()
        proof = None
        try:
            form = _parse_form(request)
            client_id = self._authenticate(request.headers, form)
            proof = self.dpop.check(
                request.headers, endpoint="token", method=request.method, url=url, now=now
            )
            with self._lock:
                payload = self._grant(client_id, form, proof)
        except ProofError as refused:
            self.count(*self._proof_counters(refused))
            response = error_response(400, refused.error, refused.description, NO_STORE)
            return _with_headers(response, self._nonce_for(refused, now))
        except _OAuthError as exc:
            if exc.error == "invalid_grant":
                with self._lock:
                    self._bump("invalid_grants")
            return _with_headers(exc.response, self.dpop.nonce_headers(proof, now))
        return json_response(200, payload, NO_STORE + self.dpop.nonce_headers(proof, now))

    def device_authorization(self, request: Request, verification_url: str) -> Response:
        """Answer a request to the RFC 8628 device authorization endpoint; users are sent to
        ``verification_url``."""
        return self._form_endpoint(
            request, functools.partial(self._device_authorization, verification_url)
        )

    def revocation(self, request: Request) -> Response:
        """Answer a request to the RFC 7009 revocation endpoint."""
        return self._form_endpoint(request, self._revocation)

    def _proof_counters(self, refused: ProofError) -> tuple[str, ...]:
        return (
            ("dpop_nonce_challenges",) if refused.error == "use_dpop_nonce" else ("dpop_refusals",)
        )

    def _nonce_for(self, refused: ProofError, now: float) -> Headers:
        """The nonce a ``use_dpop_nonce`` answer hands out."""
        if refused.error != "use_dpop_nonce":
            return ()
        return (("DPoP-Nonce", self.dpop.current_nonce(now)),)

    # ------------------------------------------------------------ rules (lock held)

    def _authorize_api(
        self,
        request: Request,
        presented: tuple[str, str] | None,
        proof: CheckedProof | None,
        now: float,
    ) -> tuple[Response, str | None]:
        """The answer to an API ``request`` that ``presented`` a token (its scheme and token,
        as :func:`_access_token_of` reads them), and the client it is for (None: refused)."""
        if presented is None:
            challenges: Headers = (("WWW-Authenticate", 'Bearer realm="api"'),)
            if self._dpop_required:
                challenges += (("WWW-Authenticate", f'DPoP algs="{" ".join(ALGORITHMS)}"'),)
            return error_response(401, "unauthorized", "bearer token required", challenges), None
        scheme, token = presented
        record = self._access_tokens.get(token)
        bound = proof is not None or scheme == "dpop" or (record is not None and record.jkt)
        problem = (
            self._access_token_problem(token) or self._binding_problem(token, proof, now)
            if scheme in ("bearer", "dpop")
            else "authorization scheme must be Bearer or DPoP"
        )
        if problem is None and (request.path + "/").startswith("/api/always401/"):
            problem = "this endpoint rejects every token"
        if problem is not None:
            return _unauthorized("invalid_token", problem, dpop=bool(bound)), None
        if request.path == "/api/forbidden-scope":
            return _unauthorized(
                "insufficient_scope", "token lacks the required scope", dpop=bool(bound)
            ), None
        client_id = self._access_tokens[token].grant.client_id
        return _api_echo(request, client_id), client_id

    def _binding_problem(self, token: str, proof: CheckedProof | None, now: float) -> str | None:
        """What is wrong with the DPoP binding of a live ``token`` presented with ``proof``
        (oidc-provider's checks and words), or None."""
        record = self._access_tokens[token]
        problem = None
        if proof is not None and not self.dpop.unique(record.grant.client_id, proof, now):
            problem = "DPoP proof JWT Replay detected"
        elif proof is not None and record.jkt is None:
            problem = "access token is not sender-constrained but proof of possession was provided"
        elif record.jkt is not None and (proof is None or proof.jkt != record.jkt):
            problem = "failed jkt verification"
        if problem is not None:
            self._dpop_refused(proof, problem)
        return problem

    def _dpop_refused(self, proof: CheckedProof | None, problem: str) -> None:
        self._bump("dpop_refusals")
        if proof is not None:
            self.dpop.refuse(proof, problem)

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

    def _grant(
        self, client_id: str, form: Mapping[str, str], proof: CheckedProof | None
    ) -> dict[str, object]:
        grant_type = form.get("grant_type")
        if grant_type == "refresh_token":
            return self._refresh(client_id, form, proof)
        if grant_type == "client_credentials":
            self._check_dpop_grant(client_id, proof)
            return self._client_credentials(client_id, form.get("scope"), proof)
        if grant_type == _DEVICE_GRANT:
            self._check_dpop_grant(client_id, proof)
            return self._device_token(client_id, form.get("device_code"), proof)
        if not grant_type:
            raise _OAuthError(400, "invalid_request", "missing grant_type parameter")
        raise _OAuthError(400, "unsupported_grant_type", "grant_type is not supported")

    def _check_dpop_grant(
        self, client_id: str, proof: CheckedProof | None, bound_to: str | None = None
    ) -> None:
        """oidc-provider's DPoP rules for a grant request (a proof where one is required, no
        replayed proof, the key a refresh token is bound to), each refused with its
        invalid_grant "grant request is invalid", whatever the reason."""
        problem = None
        if proof is None and (self._dpop_required or bound_to is not None):
            problem = (
                "DPoP proof JWT not provided" if bound_to is None else "failed jkt verification"
            )
        elif proof is not None and not self.dpop.unique(client_id, proof, self._now()):
            problem = "DPoP proof JWT Replay detected"
        elif proof is not None and bound_to is not None and proof.jkt != bound_to:
            problem = "failed jkt verification"
        if problem is not None:
            self._dpop_refused(proof, problem)
            raise _OAuthError(400, "invalid_grant", _GRANT_INVALID)

    def _new_grant(self, client_id: str, scope: str | None, jkt: str | None) -> _Grant:
        """A new grant; a public client's refresh tokens are bound to the DPoP key ``jkt``."""
        grant = _Grant(client_id, scope, jkt=jkt if self._clients[client_id] is None else None)
        self._grants.append(grant)
        return grant

    def _client_credentials(
        self, client_id: str, scope: str | None, proof: CheckedProof | None
    ) -> dict[str, object]:
        if self._clients[client_id] is None:
            raise _OAuthError(
                400, "unauthorized_client", "public clients cannot use client_credentials"
            )
        grant = self._new_grant(client_id, scope or None, None)
        self._bump("client_credentials")
        return self._mint(grant, grant.scope, None, self._access_ttl, _jkt(proof))

    def _device_token(
        self, client_id: str, device_code: str | None, proof: CheckedProof | None
    ) -> dict[str, object]:
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
        grant = self._new_grant(client_id, code.scope, _jkt(proof))
        self._bump("device_grants")
        refresh_token = self._new_refresh_token(grant, now)
        return self._mint(grant, code.scope, refresh_token, self._access_ttl, _jkt(proof))

    def _refresh(
        self, client_id: str, form: Mapping[str, str], proof: CheckedProof | None
    ) -> dict[str, object]:
        presented = form.get("refresh_token")
        if not presented:
            raise _OAuthError(400, "invalid_request", "missing refresh_token parameter")
        now = self._now()
        record = self._usable_refresh_token(presented, client_id, now)
        # As oidc-provider: the DPoP rules come before reuse detection, so that a wrong
        # proof never spends or revokes the grant.
        self._check_dpop_grant(client_id, proof, record.grant.jkt)
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
        return self._mint(record.grant, scope, record.successor, self._access_ttl, _jkt(proof))

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
        self,
        grant: _Grant,
        scope: str | None,
        refresh_token: str | None,
        ttl: float,
        jkt: str | None,
    ) -> dict[str, object]:
        """A new access token for ``grant``, bound to the DPoP key ``jkt`` if given; return
        the token response."""
        access_token = _new_token()
        self._access_tokens[access_token] = _AccessToken(grant, self._access_expiry(ttl), jkt=jkt)
        payload: dict[str, object] = {
            "access_token": access_token,
            "token_type": "Bearer" if jkt is None else "DPoP",
            "expires_in": _expires_in(ttl),
        }
        if refresh_token is not None:
            payload["refresh_token"] = refresh_token
        if scope:
            payload["scope"] = scope
        return payload


def _jkt(proof: CheckedProof | None) -> str | None:
    return None if proof is None else proof.jkt
