"""A real local OAuth2 authorization server and protected API for tests.

:class:`LocalAuthServer` speaks plain HTTP/1.1 on a free loopback port and
behaves like production servers (Okta, Auth0, oidc-provider): rotating
single-use refresh tokens with reuse detection, RFC 6749 client
authentication, RFC 6750 bearer challenges, the RFC 8628 device authorization
grant, RFC 7009 revocation, plus fault injection for the token endpoint.

It is as harsh about time as real servers are: by default an access token's
expiry is counted from the whole second it was issued in (as oidc-provider
does), so a token answered with ``expires_in`` 2 may die 1.01 s after it was
issued (lifetimes under 2 s are counted exactly); access tokens can be revoked
early, all at once; the server's clock can run ahead of or behind the caller's;
and every access token can be made to die at a random moment of its lifetime.

This module deliberately imports nothing from the rest of
``refreshing_session``: a bug in the client must not be able to hide the same
bug here.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import random
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from types import TracebackType
from typing import cast

__all__ = ["LocalAuthServer", "ServerStats", "TokenCall"]

_OAUTH_PATH = "/oauth/token"
_DEVICE_PATH = "/oauth/device"
_REVOKE_PATH = "/oauth/revoke"
_VERIFY_PATH = "/device"
_DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 section 6.1: no vowels (no words), no easily confused characters.
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_API_PREFIX = "/api/"

_MAX_BODY = 16 * 1024 * 1024
_MAX_LINE = 65536
_MAX_TRAILERS = 100
_MAX_FORM_FIELDS = 100
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_REDIRECT_STATUSES = frozenset({"301", "302", "303", "307", "308"})
_FORM_TYPE = "application/x-www-form-urlencoded"
_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
# serve_forever only notices shutdown() between polls; keep stop() fast.
_POLL_INTERVAL = 0.05
_JOIN_TIMEOUT = 5.0

Headers = tuple[tuple[str, str], ...]


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


@dataclass(frozen=True)
class TokenCall:
    """One request to the token endpoint, timed on the server with ``time.perf_counter``."""

    started: float
    answered: float
    status: int  # 0: the connection was dropped without an answer


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Headers = ()


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: str
    headers: Message
    body: bytes


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


@dataclass
class _Fault:
    response: _Response | None  # None: drop the connection without answering
    remaining: int


@dataclass
class _RandomFailures:
    """Fail each token request with probability ``share``, but never two in a row."""

    response: _Response
    share: float
    draw: random.Random
    failed_last: bool = False

    def next_fault(self) -> _Fault | None:
        failing = not self.failed_last and self.draw.random() < self.share
        self.failed_last = failing
        return _Fault(self.response, 0) if failing else None


class _HTTPError(Exception):
    """A request the server rejects before routing (malformed framing)."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.response = _error_response(
            status, "invalid_request", description, headers=(("Connection", "close"),)
        )


class _OAuthError(Exception):
    """An RFC 6749 section 5.2 error answer from the token endpoint."""

    def __init__(
        self, status: int, error: str, description: str, *, basic_challenge: bool = False
    ) -> None:
        super().__init__(description)
        self.error = error
        challenge = (("WWW-Authenticate", 'Basic realm="token"'),) if basic_challenge else ()
        self.response = _error_response(status, error, description, headers=_NO_STORE + challenge)


def _json_response(status: int, payload: Mapping[str, object], headers: Headers = ()) -> _Response:
    return _Response(status, json.dumps(payload).encode(), headers=headers)


def _error_response(status: int, error: str, description: str, headers: Headers = ()) -> _Response:
    return _json_response(status, {"error": error, "error_description": description}, headers)


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


def _check_non_negative(name: str, value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{name} must be >= 0")


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds")


# ---------------------------------------------------------------- HTTP framing


def _read_line(rfile: BufferedIOBase) -> bytes:
    line = rfile.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE or not line.endswith(b"\n"):
        raise _HTTPError(400, "malformed chunked body")
    return line.rstrip(b"\r\n")


def _read_exact(rfile: BufferedIOBase, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) != size:
        raise _HTTPError(400, "request body shorter than announced")
    return data


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()
    if not digits or len(digits) > 16 or not set(digits) <= _HEX_DIGITS:
        raise _HTTPError(400, "malformed chunk size")
    return int(digits, 16)


def _read_chunked(rfile: BufferedIOBase) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while size := _chunk_size(_read_line(rfile)):
        total += size
        if total > _MAX_BODY:
            raise _HTTPError(413, "request body too large")
        chunks.append(_read_exact(rfile, size))
        if _read_line(rfile):
            raise _HTTPError(400, "missing CRLF after chunk")
    for _ in range(_MAX_TRAILERS):
        if not _read_line(rfile):
            return b"".join(chunks)
    raise _HTTPError(400, "too many trailer fields")


def _read_body(rfile: BufferedIOBase, headers: Message) -> bytes:
    """Read the whole request body so the connection can be kept alive."""
    transfer_encoding = headers.get("Transfer-Encoding")
    if transfer_encoding is not None:
        # RFC 9112 6.3: a request whose final coding is not chunked is unframeable.
        if transfer_encoding.split(",")[-1].strip().lower() != "chunked":
            raise _HTTPError(400, "unsupported transfer coding")
        return _read_chunked(rfile)
    length = headers.get("Content-Length")
    if length is None:
        return b""
    length = length.strip()
    if not (length.isascii() and length.isdigit()):
        raise _HTTPError(400, "invalid Content-Length")
    if int(length) > _MAX_BODY:
        raise _HTTPError(413, "request body too large")
    return _read_exact(rfile, int(length))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalAuthServer"
    # Idle keep-alive connections must not pin a thread forever.
    timeout = 30.0
    # Headers and body go out in two writes; Nagle would delay the second one.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        """Discard request logging: request lines and errors may carry secrets."""

    def _dispatch(self) -> None:
        try:
            body = _read_body(self.rfile, self.headers)
        except _HTTPError as exc:
            self._send(exc.response)
            return
        target = urllib.parse.urlsplit(self.path)
        request = _Request(self.command, target.path, target.query, self.headers, body)
        response = cast(_Server, self.server).route(request)
        if response is None:
            self.close_connection = True
        else:
            self._send(response)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: str, route: Callable[[_Request], _Response | None]) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.route = route
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((host, 0), _Handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        """Remember the connection so :meth:`close_connections` can end it."""
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        """Forget the connection, then close it."""
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End every open keep-alive connection so none is served after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # OSError: the peer may already have closed it.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        """Ignore peers that hang up mid-request; report real handler bugs."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


# ---------------------------------------------------------------- OAuth helpers


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


def _parse_form(request: _Request) -> dict[str, str]:
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


def _redirect(query: str) -> _Response:
    params = dict(urllib.parse.parse_qsl(query))
    target = params.get("to")
    status = params.get("status", "302")
    if not target or status not in _REDIRECT_STATUSES:
        return _error_response(400, "invalid_request", "need ?to=<url> and a redirect status")
    return _Response(int(status), content_type="text/plain", headers=(("Location", target),))


def _unauthorized(error: str, description: str) -> _Response:
    challenge = f'Bearer error="{error}", error_description="{description}"'
    return _error_response(401, error, description, (("WWW-Authenticate", challenge),))


def _api_echo(request: _Request, client_id: str) -> _Response:
    return _json_response(
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


# ---------------------------------------------------------------- the server


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

        Raises ValueError for a negative duration or a clock offset that is
        not a finite number.
        """
        for name, value in (
            ("access_ttl", access_ttl),
            ("refresh_ttl", refresh_ttl),
            ("grace_period", grace_period),
            ("device_interval", device_interval),
            ("device_code_ttl", device_code_ttl),
        ):
            _check_non_negative(name, value)
        _check_finite("clock_offset", clock_offset)
        self._access_ttl = access_ttl
        self._refresh_ttl = refresh_ttl
        self._clients: dict[str, str | None] = dict(
            {"client": "secret"} if clients is None else clients
        )
        self._grace_period = grace_period
        self._host = host
        self._device_interval = device_interval
        self._revokes_refresh_tokens = revokes_refresh_tokens
        self._device_code_ttl = device_code_ttl
        self._device_codes: dict[str, _DeviceCode] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._stats = ServerStats()
        self._grants: list[_Grant] = []
        self._access_tokens: dict[str, _AccessToken] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._faults: deque[_Fault] = deque()
        self._random_failures: _RandomFailures | None = None
        self._token_calls: list[TokenCall] = []
        self._token_delay = 0.0
        self._whole_second_expiry = whole_second_expiry
        self._clock_offset = clock_offset
        self._early_death = random.Random(seed) if early_death else None
        self._http: _Server | None = None
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
        self._http = _Server(self._host, self._route)
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
    ) -> dict[str, object]:
        """Mint a new grant as if a user just logged in.

        Returns an RFC 6749 5.1 token response: ``access_token``,
        ``token_type`` ``"Bearer"``, ``expires_in``, ``refresh_token`` and
        ``scope`` (when given). ``access_ttl`` overrides the lifetime of this
        first access token only; refreshed ones use the server's ``access_ttl``.
        Raises ValueError for an unknown client or a negative ``access_ttl``.
        """
        _check_non_negative("access_ttl", access_ttl)
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

    def token_calls(self) -> list[TokenCall]:
        """Return the timing of every token-endpoint request answered so far, oldest first."""
        with self._lock:
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
        response = _Response(status, body, content_type, tuple((headers or {}).items()))
        self._add_fault(response, times)

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
        response = _Response(status, b"", "text/plain", tuple((headers or {}).items()))
        with self._lock:
            self._random_failures = (
                _RandomFailures(response, share, random.Random(seed)) if share else None
            )

    def reset_token_endpoint(self, *, times: int = 1) -> None:
        """Close the connection without any response for the next ``times`` token requests."""
        self._add_fault(None, times)

    def slow_token_endpoint(self, seconds: float) -> None:
        """Delay every later token request by ``seconds`` before processing it (0 disables)."""
        _check_non_negative("seconds", seconds)
        with self._lock:
            self._token_delay = seconds

    def pending_user_codes(self) -> list[str]:
        """Return the user codes of device authorizations awaiting a decision, oldest first."""
        with self._lock:
            return [code.user_code for code in self._device_codes.values()
                    if code.decision == "pending"]

    def approve(self, user_code: str) -> None:
        """Act as the user who signs in and approves the device showing ``user_code``.
        Raises ValueError when no pending authorization has that code."""
        self._decide(user_code, "approved")

    def deny(self, user_code: str) -> None:
        """Act as the user who refuses the device showing ``user_code``: its next poll gets
        ``access_denied``. Raises ValueError when no pending authorization has that code."""
        self._decide(user_code, "denied")

    def revoke_all(self) -> None:
        """Revoke every grant: refreshes get invalid_grant and the API answers 401."""
        with self._lock:
            for grant in self._grants:
                self._revoke(grant)

    def revoke_access_tokens(self) -> int:
        """Kill every live access token of every grant, as a password change or a signing-key
        rotation does; refresh tokens and grants stay valid, so a refresh cures the 401s that
        follow. Returns how many tokens were revoked."""
        with self._lock:
            now = self._now()
            live = [record for record in self._access_tokens.values()
                    if not record.revoked and now < record.expires_at]
            for record in live:
                record.revoked = True
            self._bump("revoked_access_tokens", len(live))
            return len(live)

    def expiry_of(self, access_token: str) -> float | None:
        """When the server starts refusing ``access_token`` as expired, in epoch seconds on
        its own clock (:meth:`now`); None for a token it never issued. Revocation is not
        reflected here."""
        with self._lock:
            record = self._access_tokens.get(access_token)
            return None if record is None else record.expires_at

    def now(self) -> float:
        """The server's idea of now, in epoch seconds: ``time.time()`` plus the clock offset."""
        with self._lock:
            return self._now()

    def set_clock_offset(self, seconds: float) -> None:
        """Set the server's clock to run ``seconds`` ahead of ``time.time()`` (negative:
        behind), from now on. Tokens already issued keep their expiry on the server's clock,
        so moving it ahead by N kills them N seconds early. Raises ValueError for a value that
        is not a finite number."""
        _check_finite("clock_offset", seconds)
        with self._lock:
            self._clock_offset = seconds

    # ------------------------------------------------------------ state helpers (lock held)

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

    def _decide(self, user_code: str, decision: str) -> None:
        wanted = _normal_user_code(user_code)
        with self._lock:
            for code in self._device_codes.values():
                if _normal_user_code(code.user_code) == wanted and code.decision == "pending":
                    code.decision = decision
                    return
        raise ValueError("no pending device authorization has that user code")

    def _add_fault(self, response: _Response | None, times: int) -> None:
        _check_non_negative("times", times)
        if times:
            with self._lock:
                self._faults.append(_Fault(response, times))

    def _take_fault(self) -> _Fault | None:
        if not self._faults:
            return None if self._random_failures is None else self._random_failures.next_fault()
        fault = self._faults[0]
        fault.remaining -= 1
        if not fault.remaining:
            self._faults.popleft()
        return fault

    # ------------------------------------------------------------ routing

    def _route(self, request: _Request) -> _Response | None:
        """Answer one request; None means drop the connection without a response."""
        if request.path == _OAUTH_PATH:
            started = time.perf_counter()
            response = self._token_endpoint(request)
            call = TokenCall(started, time.perf_counter(), response.status if response else 0)
            with self._lock:
                self._token_calls.append(call)
            return response
        if request.path == _DEVICE_PATH:
            return self._form_endpoint(request, self._device_authorization)
        if request.path == _REVOKE_PATH:
            return self._form_endpoint(request, self._revocation)
        if request.path == _VERIFY_PATH:
            return _Response(200, b"Enter the code shown on your device.\n", "text/plain")
        if request.path.startswith(_API_PREFIX):
            return self._api(request)
        if request.path == "/echo":
            return self._echo(request)
        if request.path == "/redirect":
            return _redirect(request.query)
        return _error_response(404, "not_found", "no such endpoint")

    def _echo(self, request: _Request) -> _Response:
        has_authorization = "Authorization" in request.headers
        with self._lock:
            self._bump("echo_requests")
            if has_authorization:
                self._bump("echo_with_authorization")
        return _json_response(
            200,
            {
                "authorization_present": has_authorization,
                "method": request.method,
                "body_length": len(request.body),
            },
        )

    # ------------------------------------------------------------ protected API

    def _api(self, request: _Request) -> _Response:
        with self._lock:
            response, client_id = self._authorize_api(request)
            self._bump("api_unauthorized" if client_id is None else "api_ok")
        return response

    def _authorize_api(self, request: _Request) -> tuple[_Response, str | None]:
        header = request.headers.get("Authorization")
        if header is None:
            challenge = (("WWW-Authenticate", 'Bearer realm="api"'),)
            return _error_response(401, "unauthorized", "bearer token required", challenge), None
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

    # ------------------------------------------------------------ token endpoint

    def _token_endpoint(self, request: _Request) -> _Response | None:
        if request.method != "POST":
            return _error_response(
                405, "invalid_request", "the token endpoint only accepts POST", (("Allow", "POST"),)
            )
        with self._lock:
            self._bump("token_requests")
            delay = self._token_delay
        # Event.wait, not sleep: stop() must be able to cut an injected delay short.
        if self._stopping.wait(delay):
            return None
        with self._lock:
            fault = self._take_fault()
        if fault is not None:
            return fault.response
        return self._process_token_request(request)

    def _form_endpoint(
        self, request: _Request, answer: Callable[[str, Mapping[str, str]], _Response]
    ) -> _Response:
        """Serve a POST endpoint that authenticates the client as the token endpoint does."""
        if request.method != "POST":
            return _error_response(
                405, "invalid_request", "this endpoint only accepts POST", (("Allow", "POST"),)
            )
        try:
            form = _parse_form(request)
            client_id = self._authenticate(request.headers, form)
            with self._lock:
                return answer(client_id, form)
        except _OAuthError as exc:
            return exc.response

    def _device_authorization(self, client_id: str, form: Mapping[str, str]) -> _Response:
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
            "verification_uri": self.verification_url,
            "verification_uri_complete": f"{self.verification_url}?user_code={user_code}",
            "expires_in": _expires_in(self._device_code_ttl),
            "interval": _expires_in(self._device_interval),
        }
        return _json_response(200, payload, _NO_STORE)

    def _revocation(self, client_id: str, form: Mapping[str, str]) -> _Response:
        """RFC 7009: revoke a refresh token's whole grant, or one access token. Unknown
        tokens are answered 200 too (section 2.2)."""
        token = form.get("token")
        if not token:
            raise _OAuthError(400, "invalid_request", "missing token parameter")
        refresh = self._refresh_tokens.get(token)
        if refresh is not None and not self._revokes_refresh_tokens:
            raise _OAuthError(400, "unsupported_token_type",
                              "this server revokes access tokens only")
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
        return _Response(200, content_type="text/plain", headers=_NO_STORE)

    def _process_token_request(self, request: _Request) -> _Response:
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
        return _json_response(200, payload, _NO_STORE)

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
