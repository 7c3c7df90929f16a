"""The token stays on its prefixes, tried from the attacker's side: dot segments that climb out of
the prefix, plain http to a remote API, another origin steering an unsafe request into the API,
and redirects that swap the caller's own credentials for the token.

The hostile party is a server of this file's own on 127.0.0.1 that redirects as it is told and
records every request it receives. Like nginx, it decodes the path and removes its dot segments
before routing, so ``/api/../pub/steal`` reaches its ``/pub/`` handler.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import pytest
import requests

from refreshing_session import RefreshingSession
from refreshing_session.errors import ProfileError
from refreshing_session.profiles import CONFIG_ENV
from refreshing_session.testing import LocalAuthServer
from refreshing_session.urls import Prefixes

from .conftest import SessionFactory
from .support.handlers import QuietHandler
from .support.hostile import LoopbackServer, served

TIMEOUT = 5
# The ways to write a dot segment that requests sends on as it is (or turns into "..").
# The last two climb in servlet containers (Tomcat, Jetty, Spring), which drop a segment's
# ";parameters" before removing dot segments.
CLIMBS = [
    "../",
    "%2e%2e/",
    "%2E%2E/",
    ".%2e/",
    "%2e./",
    "..%2F",
    "%2e%2e%2f",
    "..;/",
    "%2e%2e;jsessionid=x/",
]
UNSAFE_METHODS = ["POST", "PUT", "PATCH", "DELETE"]


class Seen(NamedTuple):
    """One request as the hostile server received it."""

    method: str
    target: str  # the path as sent on the wire
    routed: str  # the path after the server's own normalisation
    scheme: str | None  # of the Authorization header; never its secret, which test output shows
    proofs: tuple[str, ...] = ()  # every DPoP header it carried


class HostileServer(LoopbackServer):
    """A normalising HTTP server on 127.0.0.1 that answers the paths in ``redirects`` with a
    redirect (status, Location) and every other path with 200, and records what it received.
    A subclass answers otherwise by overriding :meth:`answer`."""

    def __init__(self, redirects: Mapping[str, tuple[int, str]] | None = None) -> None:
        self.redirects = dict(redirects or {})
        self.seen: list[Seen] = []
        super().__init__(_handler_for(self))

    @property
    def url(self) -> str:
        return self.origin

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def answer(self, seen: Seen) -> tuple[int, dict[str, str]]:
        """Record ``seen``; return the status and headers to answer it with."""
        self.record(seen)
        status, location = self.redirects.get(seen.routed, (200, ""))
        return status, {"Location": location} if location else {}

    def authorized_outside(self, prefix: str) -> list[str]:
        """The routed paths outside ``prefix`` that received an Authorization header."""
        with self._lock:
            return [
                s.routed
                for s in self.seen
                if s.scheme is not None and not s.routed.startswith(prefix)
            ]

    def bearer_requests(self) -> list[str]:
        """The wire paths of the requests that carried a bearer token."""
        with self._lock:
            return [s.target for s in self.seen if s.scheme == "bearer"]


def _handler_for(hostile: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def answer(self) -> None:
            self.read_body()
            target = urlsplit(self.path).path
            # Routed as a servlet container does: each segment's ";parameters" dropped, then
            # the path decoded and its dot segments removed.
            plain = "/".join(segment.split(";", 1)[0] for segment in target.split("/"))
            routed = posixpath.normpath(unquote(plain))
            authorization = self.headers.get("Authorization")
            scheme = authorization.split()[0].lower() if authorization else None
            proofs = tuple(self.headers.get_all("DPoP") or ())
            self.send_empty(*hostile.answer(Seen(self.command, target, routed, scheme, proofs)))

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = answer

    return Handler


hostile = served(HostileServer)


# --- 1. dot segments ------------------------------------------------------------------------------


@pytest.mark.parametrize("climb", CLIMBS)
def test_a_caller_url_climbing_out_of_the_prefix_gets_no_token(
    climb: str, hostile: HostileServer, make_session: SessionFactory
) -> None:
    session = make_session(prefixes=hostile.url + "/api/")
    session.get(f"{hostile.url}/api/{climb}pub/steal", timeout=TIMEOUT)
    assert hostile.seen, "the request never reached the hostile server"
    assert hostile.authorized_outside("/api/") == [], "the token reached /pub/"


@pytest.mark.parametrize("climb", CLIMBS)
@pytest.mark.parametrize("form", ["absolute", "scheme-relative"])
@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_climbing_out_of_the_prefix_gets_no_token(
    climb: str, form: str, status: int, hostile: HostileServer, make_session: SessionFactory
) -> None:
    location = f"{hostile.url}/api/{climb}pub/steal"
    if form == "scheme-relative":
        location = location.removeprefix("http:")
    hostile.redirects["/api/start"] = (status, location)
    session = make_session(prefixes=hostile.url + "/api/")
    session.get(hostile.url + "/api/start", timeout=TIMEOUT)
    assert [s.routed for s in hostile.seen] == ["/api/start", "/pub/steal"]
    assert hostile.bearer_requests() == ["/api/start"], "only the hop under /api/ has the token"
    assert hostile.authorized_outside("/api/") == [], "the token reached /pub/"


@pytest.mark.parametrize(
    "path",
    [
        "/api%2F..%2Fpub/steal",
        "/api%2f%2e%2e%2fpub/steal",  # the boundary slash encoded
        "/api/items/../more",
        "/api/./items",
        "/api/items/%2e%2e/more",  # dot segments that stay
    ],
)
def test_encoded_slashes_and_dot_segments_inside_the_prefix_keep_their_answer(
    path: str, hostile: HostileServer, make_session: SessionFactory
) -> None:
    """Regression guards: what never left the prefix keeps the token, what never entered it
    (an encoded slash at the prefix's boundary) still gets none."""
    session = make_session(prefixes=hostile.url + "/api/")
    session.get(hostile.url + path, timeout=TIMEOUT)
    assert hostile.authorized_outside("/api/") == []
    expect_token = path.startswith("/api/")
    assert bool(hostile.bearer_requests()) is expect_token


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        *((f"https://h.test/api/{climb}pub/x", False) for climb in CLIMBS),
        ("https://h.test/api/a/b/../../../pub/x", False),
        ("https://h.test/api/..", False),
        ("https://h.test/api/%2e%2E", False),
        ("https://h.test/api/a%2F..%2F..%2Fpub/x", False),
        ("https://h.test/api/a/../b", True),
        ("https://h.test/api/./b/.", True),
        ("https://h.test/api/..b/c", True),
        ("https://h.test/api/b?next=../../pub", True),
        ("https://h.test/api%2F..%2Fpub/x", False),
    ],
)
def test_prefixes_match_after_dot_segment_removal(url: str, expected: bool) -> None:
    assert Prefixes("https://h.test/api/").match(url) is expected


# --- 7. plain http to remote hosts ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["http://api.example.com/", "HTTP://10.0.0.8:8080/v1/"])
def test_a_plain_http_prefix_on_a_remote_host_is_refused(
    prefix: str, make_session: SessionFactory
) -> None:
    """An on-path attacker reads every header of plain http: the token must not go there."""
    with pytest.raises(ValueError, match="allow_insecure_http=True"):
        make_session(prefixes=["https://safe.example.com/", prefix])
    session = make_session(prefixes=prefix, allow_insecure_http=True)
    assert session.prefixes.match(prefix + "items")


def test_a_plain_http_prefix_on_the_loopback_interface_is_allowed(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    for prefix in ("http://localhost:8080/", "http://[::1]/api/", server.api_url):
        make_session(prefixes=prefix)
    assert make_session().get(server.api_url + "items", timeout=TIMEOUT).status_code == 200


PROFILE = """
[profiles.plain]
token_url = "{token_url}"
client_id = "client"
prefixes = ["http://api.example.com/"]
token_file = "{token_file}"
"""


def test_a_profile_with_a_plain_http_prefix_is_refused_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalAuthServer
) -> None:
    config = tmp_path / "config.toml"
    text = PROFILE.format(token_url=server.token_url, token_file=tmp_path / "token.json")
    config.write_text(text)
    config.chmod(0o600)
    monkeypatch.setenv(CONFIG_ENV, str(config))
    with pytest.raises(ProfileError, match="allow_insecure_http") as refused:
        RefreshingSession.from_profile("plain")
    assert refused.value.key == "prefixes"
    config.write_text(text + "allow_insecure_http = true\n")
    with RefreshingSession.from_profile("plain") as session:
        assert session.prefixes.match("http://api.example.com/items")


# --- 8. another origin steering an unsafe request into the API ------------------------------------


@pytest.mark.parametrize("method", UNSAFE_METHODS)
@pytest.mark.parametrize("status", [307, 308])
def test_an_unsafe_request_steered_into_the_api_by_another_origin_gets_no_token(
    method: str,
    status: int,
    hostile: HostileServer,
    server: LocalAuthServer,
    make_session: SessionFactory,
) -> None:
    hostile.redirects["/webhook"] = (status, server.api_url + "accounts/delete")
    response = make_session().request(
        method, hostile.url + "/webhook", data=b"attacker's body", timeout=TIMEOUT
    )
    assert [r.status_code for r in response.history] == [status]
    assert response.status_code == 401, "the API must see the request without a token"
    assert server.stats().api_ok == 0, "the API accepted the attacker's request"


@pytest.mark.parametrize("method", UNSAFE_METHODS)
def test_an_unsafe_request_steered_into_the_api_from_outside_the_prefix_gets_no_token(
    method: str, server: LocalAuthServer, make_session: SessionFactory
) -> None:
    """The same from a URL on the API's own origin but outside the prefix (users' content)."""
    response = make_session().request(
        method,
        f"{server.url}/redirect?status=307&to=/api/accounts/delete",
        data=b"attacker's body",
        timeout=TIMEOUT,
    )
    assert response.status_code == 401
    assert server.stats().api_ok == 0, "the API accepted the attacker's request"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_safe_request_redirected_into_the_api_by_another_origin_gets_the_token(
    method: str, hostile: HostileServer, server: LocalAuthServer, make_session: SessionFactory
) -> None:
    hostile.redirects["/moved"] = (307, server.api_url + "items")
    response = make_session().request(method, hostile.url + "/moved", timeout=TIMEOUT)
    assert response.status_code == 200
    assert server.stats().api_ok == 1


def test_an_unsafe_request_redirected_within_the_prefixes_keeps_the_token(
    server: LocalAuthServer, make_session: SessionFactory
) -> None:
    session = make_session(prefixes=[server.url + "/redirect", server.api_url])
    response = session.post(
        f"{server.url}/redirect?status=307&to=/api/items", data=b"body", timeout=TIMEOUT
    )
    assert response.status_code == 200
    assert response.json()["body"] == "body"


# --- 9. the caller's own credentials are never swapped for the token ---------------------------

CALLER_AUTH = ["auth=", "session.auth", "headers=", "session.headers", "session.send"]


def caller_request(session: RefreshingSession, how: str, url: str) -> requests.Response:
    """GET ``url`` with the caller's own Basic credentials, given the way ``how`` names."""
    options: dict[str, Any] = {}
    if how == "session.send":  # a request the caller prepared itself
        prepared = requests.Request("GET", url, auth=("caller", "caller-password")).prepare()
        return session.send(prepared, timeout=TIMEOUT)
    if how == "auth=":
        options["auth"] = ("caller", "caller-password")
    elif how == "session.auth":
        session.auth = ("caller", "caller-password")
    elif how == "headers=":
        options["headers"] = {"Authorization": "Basic Y2FsbGVyOmNhbGxlci1wYXNzd29yZA=="}
    else:
        session.headers["Authorization"] = "Basic Y2FsbGVyOmNhbGxlci1wYXNzd29yZA=="
    return session.get(url, timeout=TIMEOUT, **options)


@pytest.mark.parametrize("how", CALLER_AUTH)
@pytest.mark.parametrize("status", [302, 307])
def test_a_caller_authenticated_request_bounced_into_the_api_gets_no_token(
    how: str,
    status: int,
    hostile: HostileServer,
    server: LocalAuthServer,
    make_session: SessionFactory,
) -> None:
    hostile.redirects["/login"] = (status, server.api_url + "items")
    response = caller_request(make_session(), how, hostile.url + "/login")
    assert hostile.seen[0].scheme == "basic", "the caller's own credentials went out"
    assert response.status_code == 401
    assert server.stats().api_ok == 0, "the bearer token replaced the caller's credentials"


@pytest.mark.parametrize("how", CALLER_AUTH)
def test_a_caller_authenticated_api_request_bounced_back_through_another_origin_gets_no_token(
    how: str, hostile: HostileServer, server: LocalAuthServer, make_session: SessionFactory
) -> None:
    """Caller's credentials to a URL under a prefix, which redirects to another origin, which
    redirects back under the prefix: requests drops the credentials on the way; no token."""
    hostile.redirects["/bounce"] = (302, server.api_url + "items")
    session = make_session(prefixes=[server.url + "/redirect", server.api_url])
    response = caller_request(session, how, f"{server.url}/redirect?to={hostile.url}/bounce")
    assert len(response.history) == 2
    assert response.status_code == 401
    assert server.stats().api_ok == 0, "the bearer token replaced the caller's credentials"


def test_the_hostile_server_model_sees_what_was_sent(hostile: HostileServer) -> None:
    """The recording server itself: a path is routed as a normalising server would."""
    response = requests.get(
        f"{hostile.url}/api/%2e%2e/pub/x", headers={"Authorization": "Bearer x"}, timeout=TIMEOUT
    )
    assert response.status_code == 200
    assert hostile.seen[0].routed == "/pub/x"
    assert hostile.authorized_outside("/api/") == ["/pub/x"]
