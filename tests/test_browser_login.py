"""The browser login (authorization code + PKCE S256, loopback redirect) against an
authorization server of the test's own, which checks PKCE and the redirect as a real one does;
a test plays the browser. Attacks: a forged callback, another login's state, a refusal, a
callback that never comes, a local program that connects to the listener first and stays silent
or sends a byte at a time."""

from __future__ import annotations

import base64
import hashlib
import http.client
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from refreshing_session import LoginRequired, OAuth2Refresher
from refreshing_session.browser_login import BrowserLogin

from .support.handlers import QuietHandler
from .support.hostile import LoopbackServer

CLIENT_ID = "native-app"


class AuthorizationServer(LoopbackServer):
    """/authorize redirects at once (the user is signed in and consents) with a code bound to
    the PKCE challenge and the redirect URI; /token redeems a code once, checking the
    verifier with its own S256."""

    def __init__(self, refuse: bool = False) -> None:
        self.codes: dict[str, tuple[str, str]] = {}  # code -> (challenge, redirect_uri)
        self.authorize_queries: list[dict[str, str]] = []
        self.token_forms: list[dict[str, str]] = []
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                server.authorize_queries.append(query)
                answer = {"state": query["state"]}
                if refuse:
                    answer["error"] = "access_denied"
                else:
                    code = secrets.token_urlsafe(16)
                    server.codes[code] = (query["code_challenge"], query["redirect_uri"])
                    answer["code"] = code
                location = query["redirect_uri"] + "?" + urllib.parse.urlencode(answer)
                self.send_empty(302, {"Location": location})

            def do_POST(self) -> None:
                form = self.read_form()
                server.token_forms.append(form)
                self.send_json(*server.redeem(form))

        super().__init__(Handler)

    def redeem(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        bound = self.codes.pop(form.get("code", ""), None)
        if bound is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant"}
        challenge, redirect_uri = bound
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if (
            base64.urlsafe_b64encode(digest).decode().rstrip("=") != challenge
            or form.get("redirect_uri") != redirect_uri
        ):
            return 400, {"error": "invalid_grant", "error_description": "PKCE or redirect"}
        return 200, {
            "access_token": "at-browser",
            "token_type": "Bearer",
            "expires_in": 600,
            "refresh_token": "rt-browser",
        }


@pytest.fixture
def auth() -> Iterator[AuthorizationServer]:
    with AuthorizationServer() as server:
        yield server


def login_on(
    server: AuthorizationServer, browser: Callable[[str], object], timeout: float = 20.0
) -> BrowserLogin:
    client = OAuth2Refresher(
        server.origin + "/token",
        CLIENT_ID,
        scope="openid offline_access",
        extra_params={"resource": "https://api.example.com"},
        retries=0,
    )
    return BrowserLogin(client, server.origin + "/authorize", open_browser=browser, timeout=timeout)


def in_background(visit: Callable[[str], object]) -> Callable[[str], None]:
    """A browser: ``visit(url)`` in another thread, as the user's browser runs beside us."""

    def open_browser(url: str) -> None:
        threading.Thread(target=visit, args=(url,), daemon=True).start()

    return open_browser


def get(url: str) -> tuple[int, str]:
    """GET ``url`` as a browser would, without following a redirect; the status and the
    Location. (http.client, which logs nothing: the URLs hold codes.)"""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request("GET", parts.path + ("?" + parts.query if parts.query else ""))
        answer = connection.getresponse()
        answer.read()
        return answer.status, answer.getheader("Location") or ""
    finally:
        connection.close()


def follow(url: str) -> None:
    """The browser: the authorization endpoint's redirect, followed to the listener."""
    status, location = get(url)
    assert status == 302
    get(location)


def test_the_code_is_redeemed_with_pkce_and_the_listener_is_closed(
    auth: AuthorizationServer,
) -> None:
    shown: list[str] = []
    token = login_on(auth, in_background(follow))(shown.append)
    assert (token.access_token, token.refresh_token) == ("at-browser", "rt-browser")
    [query] = auth.authorize_queries
    assert query["code_challenge_method"] == "S256"
    assert query["response_type"] == "code"
    assert query["scope"] == "openid offline_access"
    assert query["resource"] == "https://api.example.com"
    redirect = urllib.parse.urlsplit(query["redirect_uri"])
    assert (redirect.scheme, redirect.hostname, redirect.path) == ("http", "127.0.0.1", "/callback")
    assert shown == [
        auth.origin
        + "/authorize?"
        + urllib.parse.urlencode(
            {**{k: v for k, v in query.items() if k != "scope"}, "scope": query["scope"]}
        )
    ]
    [form] = auth.token_forms
    assert form["client_id"] == CLIENT_ID
    assert form["resource"] == "https://api.example.com"
    with pytest.raises(ConnectionRefusedError):  # the listener is gone once the callback came
        socket.create_connection(("127.0.0.1", redirect.port), timeout=2).close()


def test_a_forged_callback_with_another_state_changes_nothing(auth: AuthorizationServer) -> None:
    forged: list[int] = []

    def attacker_then_user(url: str) -> None:
        redirect_uri = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))[
            "redirect_uri"
        ]
        forged.append(get(redirect_uri + "?code=attackers-code&state=guessed")[0])
        forged.append(get(redirect_uri.replace("/callback", "/favicon.ico"))[0])
        follow(url)

    token = login_on(auth, in_background(attacker_then_user))(lambda url: None)
    assert forged == [404, 404]
    assert token.access_token == "at-browser"
    assert [form["code"] for form in auth.token_forms] != ["attackers-code"]
    assert len(auth.token_forms) == 1


def test_a_refused_sign_in_raises_login_required_and_redeems_nothing() -> None:
    with AuthorizationServer(refuse=True) as refusing:
        with pytest.raises(LoginRequired, match=r"refused .*access_denied"):
            login_on(refusing, in_background(follow))(lambda url: None)
        assert refusing.token_forms == []


def test_no_callback_ends_at_the_timeout(auth: AuthorizationServer) -> None:
    with pytest.raises(LoginRequired, match="before the timeout"):
        login_on(auth, lambda url: None, timeout=0.5)(lambda url: None)
    assert auth.token_forms == []


def test_a_browser_that_cannot_open_leaves_the_url_to_the_user(auth: AuthorizationServer) -> None:
    def no_browser(url: str) -> None:
        raise RuntimeError("no display")

    def user_opens(url: str) -> None:
        threading.Thread(target=follow, args=(url,), daemon=True).start()

    login = login_on(auth, no_browser)
    assert login(user_opens).access_token == "at-browser"


def test_the_pasted_address_is_checked_and_redeemed(auth: AuthorizationServer) -> None:
    def paste_from(url: str) -> str:
        return get(url)[1]

    shown: list[str] = []
    login = login_on(auth, lambda url: None)
    token = login.with_pasted_url(shown.append, lambda: paste_from(shown[0]))
    assert token.access_token == "at-browser"

    shown.clear()
    with pytest.raises(LoginRequired, match="another login"):
        login.with_pasted_url(
            shown.append, lambda: paste_from(shown[0]).replace("state=", "state=x")
        )
    with pytest.raises(LoginRequired, match="does not start with"):
        login.with_pasted_url(lambda url: None, lambda: "https://evil.example/callback?code=1")
    assert len(auth.token_forms) == 1


def test_a_code_the_server_refuses_keeps_no_code_or_verifier_in_the_error(
    auth: AuthorizationServer,
) -> None:
    login = login_on(auth, lambda url: None)
    request = login.request("http://127.0.0.1:9/callback")
    with pytest.raises(LoginRequired) as caught:
        login.redeem(request, {"state": request.state, "code": "code-nobody-issued-77"})
    text = f"{caught.value} {caught.value.response.text if caught.value.response else ''}"
    assert "code-nobody-issued-77" not in text
    assert request.verifier not in text
    assert request.verifier not in repr(request)


def test_plain_http_authorization_endpoints_are_refused_off_loopback() -> None:
    client = OAuth2Refresher("https://auth.example.com/token", CLIENT_ID)
    with pytest.raises(ValueError, match="plain http"):
        BrowserLogin(client, "http://auth.example.com/authorize")


def test_a_fixed_redirect_port_is_used_and_a_taken_one_is_named(auth: AuthorizationServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    login = login_on(auth, in_background(follow))
    login.port = free
    assert login(lambda url: None).access_token == "at-browser"
    assert auth.authorize_queries[0]["redirect_uri"] == f"http://127.0.0.1:{free}/callback"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        login.port = taken.getsockname()[1]
        with pytest.raises(LoginRequired, match=f"cannot listen on 127.0.0.1:{login.port}"):
            login(lambda url: None)


def redirect_port(url: str) -> int:
    """The listener's port, from the authorization URL's redirect_uri."""
    redirect_uri = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["redirect_uri"]
    return urllib.parse.urlsplit(redirect_uri).port or 0


@pytest.mark.timeout(30)
def test_an_idle_local_connection_opened_first_does_not_keep_the_callback_out(
    auth: AuthorizationServer,
) -> None:
    squatters: list[socket.socket] = []

    def squatter_then_user(url: str) -> None:
        # another local program connects first and says nothing; the browser comes at 0.3 s
        squatters.append(socket.create_connection(("127.0.0.1", redirect_port(url)), timeout=5))
        user = threading.Timer(0.3, follow, args=(url,))
        user.daemon = True
        user.start()

    try:
        token = login_on(auth, squatter_then_user, timeout=4)(lambda url: None)
    finally:
        for squatter in squatters:
            squatter.close()
    assert token.access_token == "at-browser", "the user signed in: the login must succeed"
    assert len(squatters) == 1


class Trickler:
    """A local program that connects to the listener and sends one byte every 0.2 s, for at
    most ``longest`` seconds, until the listener cuts it off."""

    def __init__(self, longest: float = 12.0) -> None:
        self.stop = threading.Event()
        self.cut_off = threading.Event()
        self.longest = longest
        self.thread: threading.Thread | None = None

    def __call__(self, url: str) -> None:
        """As the login's browser: connect, and start trickling."""
        connection = socket.create_connection(("127.0.0.1", redirect_port(url)), timeout=5)
        self.thread = threading.Thread(target=self._trickle, args=(connection,), daemon=True)
        self.thread.start()

    def _trickle(self, connection: socket.socket) -> None:
        with connection:
            deadline = time.monotonic() + self.longest
            while time.monotonic() < deadline and not self.stop.wait(0.2):
                try:
                    connection.sendall(b"G")
                except OSError:  # the listener shut the connection down
                    self.cut_off.set()
                    return


@pytest.mark.timeout(60)
def test_a_trickling_local_connection_cannot_hold_the_login_past_its_timeout(
    auth: AuthorizationServer,
) -> None:
    trickler = Trickler()
    started = time.monotonic()
    try:
        with pytest.raises(LoginRequired, match="before the timeout"):
            login_on(auth, trickler, timeout=2)(lambda url: None)
        took = time.monotonic() - started
        # the connection is ended with the login, not when the other program stops
        cut_off = trickler.cut_off.wait(5)
    finally:
        trickler.stop.set()
    assert took < 2 + 2, f"a login with timeout=2 ended after {took:.1f} s against a trickle"
    assert cut_off, "the trickling connection was still open 5 s after the login ended"
    assert auth.token_forms == []
