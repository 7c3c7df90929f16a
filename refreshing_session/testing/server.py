"""The :class:`LocalAuthServer` facade: configuration, lifecycle, routing and the controls
tests use, joining the HTTP plumbing, the OAuth state and the token endpoint's faults."""

from __future__ import annotations

import random
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

from .checks import check_finite, check_non_negative
from .dpop import DPoPProof, DPoPRules
from .faults import TokenEndpointFaults
from .messages import Request, Response, error_response, json_response
from .oauth import OAuthState, ServerStats
from .transport import HTTPServer

_OAUTH_PATH = "/oauth/token"
_DEVICE_PATH = "/oauth/device"
_REVOKE_PATH = "/oauth/revoke"
_VERIFY_PATH = "/device"
_API_PREFIX = "/api/"
_REDIRECT_STATUSES = frozenset({"301", "302", "303", "307", "308"})
# serve_forever only notices shutdown() between polls; keep stop() fast.
_POLL_INTERVAL = 0.05
_JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class TokenCall:
    """One request to the token endpoint, timed on the server with ``time.perf_counter``."""

    started: float
    answered: float
    status: int  # 0: the connection was dropped without an answer


def _redirect(query: str) -> Response:
    params = dict(urllib.parse.parse_qsl(query))
    target = params.get("to")
    status = params.get("status", "302")
    if not target or status not in _REDIRECT_STATUSES:
        return error_response(400, "invalid_request", "need ?to=<url> and a redirect status")
    return Response(int(status), content_type="text/plain", headers=(("Location", target),))


class LocalAuthServer:
    """A local OAuth2 authorization server plus protected API, run in a thread.

    Use as a context manager (``with LocalAuthServer() as server:``), which
    starts it on a free port of ``host`` and stops it on exit.
    """

    def __init__(
        self,
        *,
        access_ttl: float = 60.0,
        refresh_ttl: float | None = None,
        clients: Mapping[str, str | None] | None = None,
        grace_period: float = 0.0,
        host: str = "127.0.0.1",
        device_interval: float = 5.0,
        device_code_ttl: float = 600.0,
        revokes_refresh_tokens: bool = True,
        whole_second_expiry: bool = True,
        clock_offset: float = 0.0,
        early_death: bool = False,
        seed: int | None = None,
        dpop: bool = False,
        dpop_nonce: bool = False,
        dpop_nonce_rotation: float = 60.0,
    ) -> None:
        """Configure the server without starting it.

        ``access_ttl``/``refresh_ttl`` are token lifetimes in seconds
        (``refresh_ttl=None``: refresh tokens never expire); ``clients`` maps
        client ids to secrets (``None`` marks a public client) and defaults to
        ``{"client": "secret"}``; ``grace_period`` is how long after rotation
        the immediately previous refresh token may be presented once more
        without triggering reuse detection (0 = strict).
        ``device_interval`` is the polling interval, in seconds, the device
        authorization endpoint asks for (a poll sooner than that after the
        previous one is answered ``slow_down``); ``device_code_ttl`` is how long
        a device code lives. With ``revokes_refresh_tokens`` False, the
        revocation endpoint answers ``unsupported_token_type`` for a refresh
        token, as servers that revoke only access tokens do.

        Time, as harsh as real servers make it:

        - ``whole_second_expiry`` (the default) counts an access token's
          lifetime from the whole second it was issued in, as oidc-provider
          does (``exp = floor(iat) + ttl``): ``expires_in`` still says
          ``access_ttl``, but the token dies up to a second sooner than a
          client counting from its request expects. False counts from the
          exact moment of issue. So does a lifetime under 2 s: rounded, a
          token issued at the end of a second could die before its first use,
          which no client can tell from a token the API refuses for good
          (oidc-provider does that to a 1-second token). Refresh tokens and
          device codes are never rounded.
        - ``clock_offset`` is how many seconds the server's clock runs ahead
          of ``time.time()`` (negative: behind). It is the server's idea of now
          (:meth:`now`) for issuing and checking every token and device code;
          :meth:`set_clock_offset` moves it while the server runs, so a jump
          ahead kills live tokens early, as a resource server whose clock is
          ahead of the client's would.
        - ``early_death`` makes every access token die at a moment drawn
          uniformly within its lifetime, after whole-second rounding;
          ``expires_in`` still announces the full lifetime. ``seed`` seeds
          those draws, so that a test can reproduce a run.

        DPoP (RFC 9449), as node oidc-provider with ``features.dPoP`` enabled:
        a token request that carries a ``DPoP`` proof gets an access token bound
        to the proof's key (``token_type`` ``DPoP``), and a public client's
        refresh tokens are bound to the key of its first grant; the API then
        wants ``Authorization: DPoP`` with a proof of that key. Every proof is
        checked (signature with the embedded public key, ``typ``, ``alg`` ES256
        or EdDSA, ``htm``, ``htu``, ``iat`` within 5 minutes, ``jti`` never
        seen before, ``ath`` at the API, the bound key) and recorded
        (:meth:`dpop_proofs`). A proof the server refuses is answered
        ``invalid_dpop_proof``; a missing, replayed or wrongly keyed one at the
        token endpoint is answered ``invalid_grant`` "grant request is invalid",
        as oidc-provider does (the grant lives on), and at the API
        ``invalid_token`` with a ``DPoP`` challenge. ``dpop`` requires a proof
        with every token request. ``dpop_nonce`` requires a server nonce in
        every proof (RFC 9449 sections 8 and 9): one without it is answered
        ``use_dpop_nonce`` (400 at the token endpoint, 401 at the API) with a
        ``DPoP-Nonce`` header; a new nonce is issued every
        ``dpop_nonce_rotation`` seconds (the two before it stay valid, and an
        answer to a proof with an older one carries the new one), or at once
        by :meth:`rotate_dpop_nonce`. Proofs need PyJWT and cryptography.

        Raises ValueError for a negative duration or a clock offset that is
        not a finite number.
        """
        for name, value in (
            ("access_ttl", access_ttl),
            ("refresh_ttl", refresh_ttl),
            ("grace_period", grace_period),
            ("device_interval", device_interval),
            ("device_code_ttl", device_code_ttl),
            ("dpop_nonce_rotation", dpop_nonce_rotation),
        ):
            check_non_negative(name, value)
        check_finite("clock_offset", clock_offset)
        self._state = OAuthState(
            access_ttl=access_ttl,
            refresh_ttl=refresh_ttl,
            clients={"client": "secret"} if clients is None else clients,
            grace_period=grace_period,
            device_interval=device_interval,
            device_code_ttl=device_code_ttl,
            revokes_refresh_tokens=revokes_refresh_tokens,
            whole_second_expiry=whole_second_expiry,
            clock_offset=clock_offset,
            early_death=random.Random(seed) if early_death else None,
            dpop=DPoPRules(require_nonce=dpop_nonce, nonce_rotation=dpop_nonce_rotation),
            dpop_required=dpop,
        )
        self._faults = TokenEndpointFaults()
        self._host = host
        self._stopping = threading.Event()
        self._calls_lock = threading.Lock()
        self._token_calls: list[TokenCall] = []
        self._http: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalAuthServer:
        """Start the server and return it."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server; exceptions propagate."""
        self.stop()

    def start(self) -> None:
        """Bind a free port and serve in a daemon thread; a server starts only once."""
        if self._http is not None or self._stopping.is_set():
            raise RuntimeError("a LocalAuthServer can only be started once")
        self._http = HTTPServer(self._host, self._route)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._url = f"http://{host}:{self._http.server_port}"
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"LocalAuthServer {self._url}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close all connections and wake handlers in injected delays.

        Idempotent; returns within a bounded time even if handlers are busy.
        """
        self._stopping.set()
        http, thread = self._http, self._thread
        self._http = self._thread = None
        if http is None or thread is None:
            return
        http.shutdown()
        http.close_connections()
        http.server_close()
        thread.join(_JOIN_TIMEOUT)

    @property
    def url(self) -> str:
        """Base URL ``http://<host>:<port>``; raises RuntimeError before start()."""
        if self._url is None:
            raise RuntimeError("the server has not been started")
        return self._url

    @property
    def token_url(self) -> str:
        """URL of the token endpoint (``url + "/oauth/token"``)."""
        return self.url + _OAUTH_PATH

    @property
    def device_authorization_url(self) -> str:
        """URL of the RFC 8628 device authorization endpoint (``url + "/oauth/device"``)."""
        return self.url + _DEVICE_PATH

    @property
    def revocation_url(self) -> str:
        """URL of the RFC 7009 revocation endpoint (``url + "/oauth/revoke"``)."""
        return self.url + _REVOKE_PATH

    @property
    def verification_url(self) -> str:
        """The verification URI shown to users (``url + "/device"``): a plain page, since
        tests approve codes with :meth:`approve`."""
        return self.url + _VERIFY_PATH

    @property
    def api_url(self) -> str:
        """Base URL of the protected API (``url + "/api/"``). Any path under it answers a live
        token with an echo of the request, except ``always401`` (and paths below it), which
        refuses every token with a 401, and ``forbidden-scope``, which answers 401
        ``insufficient_scope``."""
        return self.url + _API_PREFIX

    # ------------------------------------------------------------ public controls

    def issue_token(
        self,
        client_id: str = "client",
        *,
        scope: str | None = None,
        access_ttl: float | None = None,
        dpop_jkt: str | None = None,
    ) -> dict[str, object]:
        """Mint a new grant as if a user just logged in.

        Returns an RFC 6749 5.1 token response: ``access_token``,
        ``token_type`` ``"Bearer"``, ``expires_in``, ``refresh_token`` and
        ``scope`` (when given). ``access_ttl`` overrides the lifetime of this
        first access token only; refreshed ones use the server's ``access_ttl``.
        With ``dpop_jkt`` (the RFC 7638 thumbprint of a DPoP key), the login
        was made with that key: the access token is bound to it (``token_type``
        ``"DPoP"``), and so are a public client's refresh tokens.
        Raises ValueError for an unknown client or a negative ``access_ttl``.
        """
        return self._state.issue_token(
            client_id, scope=scope, access_ttl=access_ttl, dpop_jkt=dpop_jkt
        )

    def dpop_proofs(self) -> list[DPoPProof]:
        """Every DPoP proof received so far (token endpoint and API), oldest first, decoded,
        with the reason it was refused, if it was."""
        return self._state.dpop.proofs()

    def dpop_nonce(self) -> str:
        """The DPoP nonce the server hands out now (with ``dpop_nonce``)."""
        return self._state.dpop.current_nonce(self.now())

    def rotate_dpop_nonce(self) -> None:
        """Issue a new DPoP nonce now; proofs with any earlier one are answered
        ``use_dpop_nonce`` from now on."""
        self._state.dpop.rotate_nonce(self.now())

    def stats(self) -> ServerStats:
        """Return a snapshot of the request counters."""
        return self._state.stats()

    def token_calls(self) -> list[TokenCall]:
        """Return the timing of every token-endpoint request answered so far, oldest first."""
        with self._calls_lock:
            return sorted(self._token_calls, key=lambda call: call.started)

    def fail_token_endpoint(
        self,
        status: int = 503,
        *,
        body: bytes = b"",
        content_type: str = "text/plain",
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` token requests with this canned response.

        The request is not processed, so a presented refresh token is not
        consumed. Faults queue up and apply in the order they were scheduled.
        """
        response = Response(status, body, content_type, tuple((headers or {}).items()))
        self._faults.add(response, times)

    def fail_token_endpoint_at_random(
        self,
        share: float,
        status: int = 503,
        *,
        headers: Mapping[str, str] | None = None,
        seed: int | None = None,
    ) -> None:
        """From now on, answer each token request with ``status`` (an empty body and
        ``headers``) with probability ``share``, drawn per request, but never two requests in a
        row: the one after a failed request is processed, so a client that retries once always
        gets through. Faults scheduled with :meth:`fail_token_endpoint` or
        :meth:`reset_token_endpoint` come first. ``seed`` makes the draws repeatable;
        ``share`` 0 stops the failures. Raises ValueError unless 0 <= share <= 1."""
        if not 0 <= share <= 1:
            raise ValueError("share must be between 0 and 1")
        response = Response(status, b"", "text/plain", tuple((headers or {}).items()))
        self._faults.fail_at_random(response, share, seed)

    def reset_token_endpoint(self, *, times: int = 1) -> None:
        """Close the connection without any response for the next ``times`` token requests."""
        self._faults.add(None, times)

    def slow_token_endpoint(self, seconds: float) -> None:
        """Delay every later token request by ``seconds`` before processing it (0 disables)."""
        self._faults.set_delay(seconds)

    def pending_user_codes(self) -> list[str]:
        """Return the user codes of device authorizations awaiting a decision, oldest first."""
        return self._state.pending_user_codes()

    def approve(self, user_code: str) -> None:
        """Act as the user who signs in and approves the device showing ``user_code``.
        Raises ValueError when no pending authorization has that code."""
        self._state.decide(user_code, "approved")

    def deny(self, user_code: str) -> None:
        """Act as the user who refuses the device showing ``user_code``: its next poll gets
        ``access_denied``. Raises ValueError when no pending authorization has that code."""
        self._state.decide(user_code, "denied")

    def revoke_all(self) -> None:
        """Revoke every grant: refreshes get invalid_grant and the API answers 401."""
        self._state.revoke_all()

    def revoke_access_tokens(self) -> int:
        """Kill every live access token of every grant, as a password change or a signing-key
        rotation does; refresh tokens and grants stay valid, so a refresh cures the 401s that
        follow. Returns how many tokens were revoked."""
        return self._state.revoke_access_tokens()

    def expiry_of(self, access_token: str) -> float | None:
        """When the server starts refusing ``access_token`` as expired, in epoch seconds on
        its own clock (:meth:`now`); None for a token it never issued. Revocation is not
        reflected here."""
        return self._state.expiry_of(access_token)

    def now(self) -> float:
        """The server's idea of now, in epoch seconds: ``time.time()`` plus the clock offset."""
        return self._state.now()

    def set_clock_offset(self, seconds: float) -> None:
        """Set the server's clock to run ``seconds`` ahead of ``time.time()`` (negative:
        behind), from now on. Tokens already issued keep their expiry on the server's clock,
        so moving it ahead by N kills them N seconds early. Raises ValueError for a value that
        is not a finite number."""
        self._state.set_clock_offset(seconds)

    # ------------------------------------------------------------ routing

    def _route(self, request: Request) -> Response | None:
        """Answer one request; None means drop the connection without a response."""
        if request.path == _OAUTH_PATH:
            started = time.perf_counter()
            response = self._token_endpoint(request)
            call = TokenCall(started, time.perf_counter(), response.status if response else 0)
            with self._calls_lock:
                self._token_calls.append(call)
            return response
        if request.path == _DEVICE_PATH:
            return self._state.device_authorization(request, self.verification_url)
        if request.path == _REVOKE_PATH:
            return self._state.revocation(request)
        if request.path == _VERIFY_PATH:
            return Response(200, b"Enter the code shown on your device.\n", "text/plain")
        if request.path.startswith(_API_PREFIX):
            return self._state.api(request, self.url + request.path)
        if request.path == "/echo":
            return self._echo(request)
        if request.path == "/redirect":
            return _redirect(request.query)
        return error_response(404, "not_found", "no such endpoint")

    def _echo(self, request: Request) -> Response:
        has_authorization = "Authorization" in request.headers
        self._state.count(
            "echo_requests", *(("echo_with_authorization",) if has_authorization else ())
        )
        return json_response(
            200,
            {
                "authorization_present": has_authorization,
                "method": request.method,
                "body_length": len(request.body),
            },
        )

    def _token_endpoint(self, request: Request) -> Response | None:
        """Count the request, then apply the injected delay and faults before the OAuth state
        answers it; None when a fault or stop() drops the connection."""
        if request.method != "POST":
            return error_response(
                405, "invalid_request", "the token endpoint only accepts POST", (("Allow", "POST"),)
            )
        self._state.count("token_requests")
        # Event.wait, not sleep: stop() must be able to cut an injected delay short.
        if self._stopping.wait(self._faults.delay()):
            return None
        fault = self._faults.take()
        if fault is not None:
            return fault.response
        return self._state.token_request(request, self.token_url)
