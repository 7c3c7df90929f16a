"""The browser login: the authorization code grant with PKCE (RFC 6749 section 4.1, RFC 7636
S256) and a loopback redirect (RFC 8252 section 7.3), as ``gh``, ``az`` and ``gcloud`` log in.

The listener for the redirect is bound to 127.0.0.1 only, on a port the system chooses, and is
closed once the callback that carries this login's ``state`` arrived, or at the timeout.
Requests without that state (a page the user's browser opens while waiting, a forged callback
from another local program) are refused and change nothing. Without a browser on this machine,
the user opens the printed URL elsewhere and pastes back the address the browser was sent to.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import logging
import secrets
import socket
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from .errors import LoginRequired, excerpt
from .login import HoldsClient, client_of
from .oauth_client import OAuthClient
from .token import Token
from .urls import check_endpoint_url

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/callback"
DEFAULT_TIMEOUT = 300.0  # seconds for the user to sign in
_READ_TIMEOUT = 10.0  # seconds a read of a connection to the listener may wait, at most
_SHORTEST_READ = 0.05  # seconds: a connection accepted at the deadline still gets a read
_DONE_PAGE = (
    b"<!doctype html><title>Signed in</title><p>Signed in. You can close this tab and "
    b"go back to the terminal.</p>"
)


@dataclass(frozen=True)
class AuthorizationRequest:
    """One login's authorization request: the URL to open, and its secrets (absent from the
    repr): the ``state`` the callback must carry and the PKCE ``verifier``."""

    url: str
    redirect_uri: str
    state: str = field(repr=False)
    verifier: str = field(repr=False)


def pkce_pair() -> tuple[str, str]:
    """A new PKCE code verifier (64 URL-safe characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class BrowserLogin:
    """The authorization code grant with PKCE for ``client`` (an OAuthClient, or a refresher
    holding one), at the authorization endpoint ``authorization_url``.

    ``open_browser`` opens a URL (``webbrowser.open``, as it is when the login starts, by
    default); ``timeout`` is how long the user has to sign in, in seconds; ``port`` is the
    loopback port of the redirect (0, the default: a free one; a fixed one for providers that
    compare the registered redirect URI exactly, port included).
    """

    def __init__(
        self,
        client: OAuthClient | HoldsClient,
        authorization_url: str,
        *,
        open_browser: Callable[[str], object] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        port: int = 0,
    ) -> None:
        self.client = client_of(client)
        check_endpoint_url("authorization_url", authorization_url, self.client.allow_insecure_http)
        self.url = authorization_url
        self._open_browser = open_browser
        self.timeout = timeout
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be a number from 0 to 65535, got {port!r}")
        self.port = port

    def request(self, redirect_uri: str) -> AuthorizationRequest:
        """A new authorization request that sends the user back to ``redirect_uri``."""
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(24)
        query = {
            **self.client.extra_params,
            "response_type": "code",
            "client_id": self.client.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if self.client.scope:
            query["scope"] = self.client.scope
        joiner = "&" if urlsplit(self.url).query else "?"
        return AuthorizationRequest(
            self.url + joiner + urlencode(query), redirect_uri, state, verifier
        )

    def __call__(self, show: Callable[[str], object]) -> Token:
        """Listen on loopback, open the browser at the authorization URL (and pass it to
        ``show``, for the user to open by hand if no browser comes up), wait for the redirect
        and return the token the code is exchanged for. Raises LoginRequired when the user
        refused, or did not finish within the timeout."""
        with _Listener(self.timeout, self.port) as listener:
            request = self.request(listener.redirect_uri)
            listener.expect(request.state)
            show(request.url)
            try:
                (self._open_browser or webbrowser.open)(request.url)
            except Exception as error:  # a missing browser must not end the login: the URL is shown
                logger.info("could not open a browser (%s)", type(error).__name__)
            query = listener.wait()
        return self.redeem(request, query)

    def with_pasted_url(self, show: Callable[[str], object], paste: Callable[[], str]) -> Token:
        """Without a browser here: pass the URL to ``show``, read the address the browser was
        sent to from ``paste`` (a loopback address nothing answers at: the browser shows an
        error page, whose address the user copies), and return the token its code is
        exchanged for."""
        with _Listener(0, self.port) as unused:  # a free port unless one is given
            redirect_uri = unused.redirect_uri
        request = self.request(redirect_uri)
        show(request.url)
        pasted = paste().strip()
        if not pasted.startswith(redirect_uri + "?"):
            raise LoginRequired(
                f"the pasted address does not start with {redirect_uri}; "
                "paste the whole address the browser was sent to"
            )
        query = parse_qs(urlsplit(pasted).query)
        return self.redeem(request, {name: values[0] for name, values in query.items()})

    def redeem(self, request: AuthorizationRequest, query: dict[str, str]) -> Token:
        """Check the callback's ``query`` against ``request`` and exchange its code for a
        token. Raises LoginRequired for another login's state, a refusal or no code."""
        if not secrets.compare_digest(query.get("state", ""), request.state):
            raise LoginRequired(
                "the sign-in answer belongs to another login (its state "
                "differs); run the login again"
            )
        if "error" in query:
            raise LoginRequired(f"the sign-in was refused ({_said(query)}); run the login again")
        code = query.get("code")
        if not code:
            raise LoginRequired("the sign-in answer holds no code; run the login again")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": request.redirect_uri,
            "code_verifier": request.verifier,
        }
        return self.client.grant(form, resend_safe=False)


def _said(query: dict[str, str]) -> str:
    description = query.get("error_description")
    return excerpt(f"{query['error']}: {description}" if description else query["error"])


class _Listener:
    """A one-shot HTTP listener on 127.0.0.1 for the redirect that ends a login. Each
    connection is served in a thread of its own, so that a local program that connects and
    stays silent (or sends a byte at a time) cannot keep the browser's callback out; each
    read waits at most as long as the login has left, and the login's timeout is a deadline:
    at its end every connection still open is shut down."""

    def __init__(self, timeout: float, port: int) -> None:
        self._deadline = time.monotonic() + timeout
        self._state = ""
        self._arrived = threading.Event()
        self.query: dict[str, str] | None = None
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def setup(self) -> None:
                super().setup()
                # Each read of this connection waits at most as long as the login has left.
                self.connection.settimeout(min(_READ_TIMEOUT, max(listener.left(), _SHORTEST_READ)))

            def log_message(self, format: str, *args: object) -> None:
                """Silent: the callback's query holds the code."""

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {name: values[0] for name, values in parse_qs(parts.query).items()}
                ours = parts.path == CALLBACK_PATH and secrets.compare_digest(
                    query.get("state", ""), listener._state
                )
                self.send_response(200 if ours else 404)
                page = _DONE_PAGE if ours else b"Not the sign-in this terminal is waiting for."
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(page)
                if ours:  # after the page is sent: the login ends, and the listener with it
                    listener.arrived(query)

        try:
            self._server = _Server(("127.0.0.1", port), Handler)
        except OSError as error:
            raise LoginRequired(
                f"cannot listen on 127.0.0.1:{port} for the sign-in's redirect "
                f"({error.strerror}); free that port, or choose another one "
                "registered with the provider"
            ) from None
        self._serving = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sign-in listener",
            daemon=True,
        )

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{CALLBACK_PATH}"

    def expect(self, state: str) -> None:
        self._state = state

    def left(self) -> float:
        """Seconds until the deadline (negative once it passed)."""
        return self._deadline - time.monotonic()

    def arrived(self, query: dict[str, str]) -> None:
        """Keep the first callback carrying the expected state, and end the wait."""
        with self._server.lock:
            if self.query is None:
                self.query = query
        self._arrived.set()

    def wait(self) -> dict[str, str]:
        """The query of the callback carrying the expected state; LoginRequired at the
        deadline."""
        self._serving.start()
        if not self._arrived.wait(max(0.0, self.left())) or self.query is None:
            raise LoginRequired(
                "no sign-in came back before the timeout; run the login "
                "again (or use --no-browser to paste the address)"
            )
        return self.query

    def __enter__(self) -> _Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._serving.ident is not None:  # started: shutdown() waits for its loop to end
            self._server.shutdown()
        self._server.server_close()
        self._server.end_connections()


class _Server(http.server.ThreadingHTTPServer):
    """The listener's server: a thread per connection, and a record of the connections still
    open, to end them with the login."""

    daemon_threads = True
    block_on_close = False  # server_close must not wait for a connection that trickles

    def __init__(
        self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler]
    ) -> None:
        self.lock = threading.Lock()
        self._open: set[socket.socket] = set()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection, and record it as open."""
        connection, address = super().get_request()
        with self.lock:
            self._open.add(connection)
        return connection, address

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        """Close a connection that was served, and forget it."""
        with self.lock:
            self._open.discard(request)  # TCP: always a socket
        super().shutdown_request(request)

    def end_connections(self) -> None:
        """Shut down every connection still open: its thread's read ends at once."""
        with self.lock:
            still_open = list(self._open)
        for connection in still_open:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        """Silent: a connection ended by the deadline, or a client that hung up, is no fault
        of the login."""
