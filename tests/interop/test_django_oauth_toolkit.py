"""Interop: RefreshingSession against django-oauth-toolkit (DOT), the most used Python OAuth2
provider, served for real on loopback (tests/interop/dot_server: Django, SQLite, wsgiref).

DOT is configured as strictly as it goes: access tokens live 2 s, refresh tokens rotate, and
a refresh token presented again revokes its whole family (REFRESH_TOKEN_REUSE_PROTECTION),
with no grace period and with one. Its token endpoint and its protected resource are used
unchanged; only the first login is minted by a test-only endpoint, through DOT's models.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import requests

from refreshing_session import (
    ClientCredentialsRefresher,
    ClientRejected,
    LoginRequired,
    OAuth2Refresher,
    RefreshingSession,
    Token,
    TokenFile,
)

from ..support.processes import ROOT, STORM, run_in_processes, run_storm
from .dot_server import clients
from .servers import RealServer, start_server, stop_server

GRACE = 10  # seconds of REFRESH_TOKEN_GRACE_PERIOD_SECONDS for the lenient server
TTL = clients.ACCESS_TOKEN_TTL
HTTP_TIMEOUT = 10

Stats = dict[str, int]


class Client(NamedTuple):
    """A client the server created, and the client authentication the tests use with it."""

    client_id: str
    secret: str
    auth_method: str


# Confidential authorization_code clients, used with each client authentication method.
BASIC = Client(clients.BASIC_CLIENT_ID, clients.BASIC_CLIENT_SECRET, "client_secret_basic")
POST = Client(clients.POST_CLIENT_ID, clients.POST_CLIENT_SECRET, "client_secret_post")
# A confidential client_credentials client.
MACHINE = Client(clients.CC_CLIENT_ID, clients.CC_CLIENT_SECRET, "client_secret_basic")


@dataclasses.dataclass(frozen=True)
class DotServer(RealServer):
    """A running DOT server, with its clients and the helpers the tests use."""

    grace: int
    log: Path
    basic: Client = BASIC
    post: Client = POST
    machine: Client = MACHINE

    @property
    def token_url(self) -> str:
        return self.base_url + "/o/token/"

    def grant(self, client_id: str = clients.BASIC_CLIENT_ID) -> dict[str, Any]:
        """A first token for the user and ``client_id``, as a login would give it."""
        response = requests.post(
            self.base_url + "/test/grant", data={"client_id": client_id}, timeout=HTTP_TIMEOUT
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def login(self, path: Path, client_id: str = clients.BASIC_CLIENT_ID) -> Token:
        """Write a first token for ``client_id`` to the token file ``path``; return it."""
        token = Token.from_response(self.grant(client_id), requested_at=time.time())
        TokenFile(path).write(token)
        return token

    def stats(self) -> Stats:
        response = requests.get(self.base_url + "/test/stats", timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        answer: Stats = response.json()
        return answer

    def family(self, refresh_token: str) -> Stats:
        """The login ``refresh_token`` belongs to: ``tokens`` issued in it, ``due`` (those at
        half their life by now), ``live`` (neither rotated nor revoked)."""
        response = requests.get(
            self.base_url + "/test/family",
            timeout=HTTP_TIMEOUT,
            params={"refresh_token": refresh_token},
        )
        response.raise_for_status()
        answer: Stats = response.json()
        return answer

    def since(self, before: Stats) -> Stats:
        """What the counters grew by since ``before`` was read."""
        after = self.stats()
        return {name: after[name] - before[name] for name in after}


@pytest.fixture(scope="module", params=[0, GRACE], ids=["grace0", f"grace{GRACE}"])
def dot_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DotServer]:
    """DOT on a free port of 127.0.0.1, with a fresh SQLite database; terminated at the end.

    Parametrized: no grace period, and a GRACE-second one. Tests that need the strict server
    only say so with ``@GRACE_0``. Counters are per server, so tests compare readings."""
    grace: int = request.param
    folder = tmp_path_factory.mktemp(f"dot-grace{grace}-")
    log = folder / "server.log"
    command = [
        sys.executable,
        "-m",
        "tests.interop.dot_server.serve",
        "--port",
        "0",
        "--db",
        str(folder / "dot.sqlite3"),
        "--grace",
        str(grace),
    ]
    process, port = start_server(
        command, name="the DOT server (is the test extra installed?)", cwd=ROOT, log=log
    )
    try:
        yield DotServer(f"http://127.0.0.1:{port}", grace, log)
    finally:
        stop_server(process)


GRACE_0 = pytest.mark.parametrize("dot_server", [0], indirect=True, ids=["grace0"])


def _session(
    server: DotServer,
    token_file: Path,
    client: Client | None = None,
) -> RefreshingSession:
    client_id, secret, auth_method = client or server.basic
    return RefreshingSession(
        server.api_url,
        token_file=token_file,
        refresher=OAuth2Refresher(server.token_url, client_id, secret, auth_method=auth_method),
    )


def _stored(path: Path) -> Token:
    snapshot = TokenFile(path).read()
    assert snapshot is not None
    return snapshot.token


def _expired(token: Token) -> Token:
    """``token`` with its expiry moved to the past, as a token file left overnight has."""
    data = token.to_dict()
    data.update(expires_at=time.time() - 1, expires_in=TTL)
    return Token.from_file(data, written_at=time.time())


@pytest.mark.timeout(60)
@GRACE_0
@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_proactive_refresh_across_token_lifetimes(
    dot_server: DotServer, tmp_path: Path, auth_method: str
) -> None:
    """One caller, back to back for more than a token's lifetime: the token is refreshed at
    half its life, before it is sent, so DOT never sees a stale token nor a reused one."""
    client = dot_server.basic if auth_method == "client_secret_basic" else dot_server.post
    assert client.auth_method == auth_method
    path = tmp_path / "token.json"
    first = dot_server.login(path, client_id=client.client_id)
    before = dot_server.stats()
    started = time.monotonic()
    statuses: set[int] = set()
    with _session(dot_server, path, client) as session:
        refreshed, checked = 0, 0.0
        while refreshed < 2 or time.monotonic() - started < TTL * 1.25:
            assert time.monotonic() - started < 15, "no two refreshes in 15 s"
            statuses.add(session.get(dot_server.items_url, timeout=HTTP_TIMEOUT).status_code)
            if time.monotonic() - checked > 0.2:
                checked = time.monotonic()
                refreshed = dot_server.since(before)["refresh_successes"]
    grew = dot_server.since(before)
    assert statuses == {200}
    assert grew["refresh_calls"] == grew["refresh_successes"] >= 2
    assert grew["api_unauthorized"] == 0
    assert grew["reuse_detections"] == grew["invalid_grant"] == grew["invalid_client"] == 0
    method = "auth_basic" if auth_method == "client_secret_basic" else "auth_post"
    assert grew[method] == grew["token_calls"] == grew["refresh_calls"]
    last = _stored(path)
    assert last.access_token != first.access_token
    assert last.refresh_token not in (None, first.refresh_token)  # rotated


@pytest.mark.timeout(30)
@GRACE_0
def test_reactive_refresh_on_401_replays_once(dot_server: DotServer, tmp_path: Path) -> None:
    """An access token DOT does not know, with a valid refresh token and a far expiry: DOT
    answers 401, the session refreshes once and replays; the caller sees the 200."""
    path = tmp_path / "token.json"
    grant = dot_server.grant()
    data = dict(grant, access_token="not-a-token-dot-issued", expires_in=3600)
    TokenFile(path).write(Token.from_response(data, requested_at=time.time()))
    before = dot_server.stats()
    with _session(dot_server, path) as session:
        response = session.get(dot_server.items_url, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
    assert response.json()["user"] == clients.USERNAME
    grew = dot_server.since(before)
    assert grew["api_unauthorized"] == 1
    assert grew["api_ok"] == 1
    assert grew["refresh_calls"] == grew["refresh_successes"] == 1
    assert grew["reuse_detections"] == 0
    assert _stored(path).refresh_token not in (None, grant["refresh_token"])


def _job(server: DotServer, path: Path, **extra: object) -> dict[str, object]:
    client_id, secret, auth_method = server.basic
    return {
        "api": server.api_url,
        "url": server.items_url,
        "token_url": server.token_url,
        "file": str(path),
        "client_id": client_id,
        "client_secret": secret,
        "auth_method": auth_method,
        "threads": 1,
        "until": time.time() + 30,
        **extra,
    }


def _outcomes(outputs: list[str]) -> dict[str, int]:
    total: dict[str, int] = {}
    for output in outputs:
        for outcome, count in json.loads(output).items():
            total[outcome] = total.get(outcome, 0) + count
    return total


@pytest.mark.timeout(90)
def test_storm_of_4_processes_by_2_threads_through_several_expiries(
    dot_server: DotServer, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """4 processes x 2 threads share one token file for 6 s (3 lifetimes) from the moment all
    have started: no caller sees an error, DOT is asked at most once per token that came due,
    and never sees a reuse (which would have revoked the grant) -- with no grace period and
    with one. Only counts are asserted, none that depends on how fast the machine is."""
    path = tmp_path / "token.json"
    before = dot_server.stats()
    logins: list[Token] = []

    def log_in() -> float:
        requested_at = time.time()
        logins.append(dot_server.login(path))
        return requested_at

    outputs = run_storm(_job(dot_server, path, threads=2), 4, 3 * TTL, tmp_path, log_in)
    grew = dot_server.since(before)
    [first] = logins
    assert first.refresh_token is not None
    login = dot_server.family(first.refresh_token)
    outcomes = _outcomes(outputs)
    record_property(
        "dot_storm",
        {"grace": dot_server.grace, "outcomes": outcomes, "due_tokens": login["due"], **grew},
    )
    assert set(outcomes) == {"200"}, outcomes
    assert all(json.loads(output).get("200", 0) > 0 for output in outputs), outcomes
    assert grew["reuse_detections"] == grew["invalid_grant"] == grew["grants_revoked"] == 0
    assert grew["refresh_calls"] == grew["refresh_successes"] == login["tokens"] - 1
    assert 3 <= grew["refresh_calls"] <= login["due"], (grew, login)
    assert login["live"] == 1
    # DOT deletes the old access token when it rotates, so requests already on their way
    # with it get a 401: the session adopts the sibling's token and replays them.
    assert grew["api_ok"] == outcomes["200"]


@pytest.mark.timeout(60)
@GRACE_0
def test_invalid_grant_raises_login_required_and_stops_siblings(
    dot_server: DotServer, tmp_path: Path
) -> None:
    """A refresh token DOT already rotated, presented again (an old token file restored after
    a refresh): DOT answers invalid_grant and revokes the grant; the session raises
    LoginRequired, and sibling sessions and processes raise it too without asking DOT."""
    path = tmp_path / "token.json"
    old = dot_server.login(path)
    TokenFile(path).write(_expired(old))
    before = dot_server.stats()
    with _session(dot_server, path) as session:
        assert session.get(dot_server.items_url, timeout=HTTP_TIMEOUT).status_code == 200
        assert dot_server.since(before)["refresh_successes"] == 1  # old's refresh token spent
        TokenFile(path).write(_expired(old))  # the old file comes back
        with pytest.raises(LoginRequired):
            session.get(dot_server.items_url, timeout=HTTP_TIMEOUT)
    grew = dot_server.since(before)
    assert grew["refresh_calls"] == 2
    assert grew["invalid_grant"] == grew["reuse_detections"] == grew["grants_revoked"] == 1
    assert old.refresh_token is not None
    assert dot_server.family(old.refresh_token)["live"] == 0  # DOT revoked the whole login

    refused = dot_server.stats()
    with _session(dot_server, path) as sibling, pytest.raises(LoginRequired):
        sibling.get(dot_server.items_url, timeout=HTTP_TIMEOUT)
    outputs = run_in_processes(STORM, 2, _job(dot_server, path, once=True))
    assert _outcomes(outputs) == {"LoginRequired": 2}
    after = dot_server.since(refused)
    assert after["token_calls"] == 0
    assert after["api_ok"] == after["api_unauthorized"] == 0


@pytest.mark.timeout(60)
@GRACE_0
def test_client_credentials_token_is_created_then_reacquired(
    dot_server: DotServer, tmp_path: Path
) -> None:
    """No token file at first: the first request gets a client_credentials token and creates
    the file; a new one is got at half the token's life while in use, and after it expired
    while idle, each before the request goes out (no 401)."""
    path = tmp_path / "machine" / "token.json"
    path.parent.mkdir()
    before = dot_server.stats()
    client_id, secret, _ = dot_server.machine
    refresher = ClientCredentialsRefresher(dot_server.token_url, client_id, secret)
    with RefreshingSession(dot_server.api_url, token_file=path, refresher=refresher) as session:
        assert not path.exists()
        assert session.get(dot_server.items_url, timeout=HTTP_TIMEOUT).status_code == 200
        first = _stored(path)
        assert first.refresh_token is None  # RFC 6749 4.4.3: none for client_credentials
        assert dot_server.since(before)["cc_successes"] == 1

        deadline = time.monotonic() + 10
        while _stored(path).access_token == first.access_token:  # in use: renewed early
            assert time.monotonic() < deadline, "the token was not renewed in 10 s"
            assert session.get(dot_server.items_url, timeout=HTTP_TIMEOUT).status_code == 200
        second = _stored(path)

        assert second.expires_at is not None
        time.sleep(max(0.0, second.expires_at - time.time()) + 0.1)  # idle until it expired
        assert session.get(dot_server.items_url, timeout=HTTP_TIMEOUT).status_code == 200
        third = _stored(path)
    assert len({first.access_token, second.access_token, third.access_token}) == 3
    grew = dot_server.since(before)
    assert grew["cc_calls"] == grew["cc_successes"] == 3
    assert grew["api_unauthorized"] == 0
    assert grew["refresh_calls"] == 0


@pytest.mark.timeout(30)
@GRACE_0
@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_secrets_with_colon_percent_plus_and_space(dot_server: DotServer, auth_method: str) -> None:
    """RFC 6749 2.3.1: the id and secret are form-urlencoded before HTTP Basic. DOT decodes
    them so; the session's encoding is accepted, a secret sent without it is refused."""
    client_id, secret, _ = dot_server.machine
    assert all(char in secret for char in ":%+ ")
    before = dot_server.stats()
    token = ClientCredentialsRefresher(
        dot_server.token_url, client_id, secret, auth_method=auth_method
    ).new_token()
    assert token.access_token
    headers = {"Authorization": token.authorization}
    assert (
        requests.get(dot_server.items_url, headers=headers, timeout=HTTP_TIMEOUT).status_code == 200
    )
    # The same secret without the encoding, and one with its "+" read as a space: refused.
    naive = requests.post(
        dot_server.token_url,
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=HTTP_TIMEOUT,
    )
    assert naive.status_code == 401
    assert naive.json()["error"] == "invalid_client"
    with pytest.raises(ClientRejected):
        ClientCredentialsRefresher(
            dot_server.token_url, client_id, secret.replace("+", " "), auth_method=auth_method
        ).new_token()
    grew = dot_server.since(before)
    assert grew["cc_successes"] == 1
    assert grew["invalid_client"] == 2
    basic = auth_method == "client_secret_basic"  # the naive request used Basic too
    assert (grew["auth_basic"], grew["auth_post"]) == ((3, 0) if basic else (1, 2))


@pytest.mark.timeout(30)
def test_the_server_detects_reuse_and_applies_its_grace_period(dot_server: DotServer) -> None:
    """Checks the test server itself, so that "zero reuse" above means something: a refresh
    token redeemed twice (by hand, as a naive client would) is counted as a reuse. Without a
    grace period DOT refuses it and revokes the grant; within one, it answers the same
    token pair again and revokes nothing."""
    client_id, secret, _ = dot_server.post
    grant = dot_server.grant(client_id)
    form = {
        "grant_type": "refresh_token",
        "refresh_token": grant["refresh_token"],
        "client_id": client_id,
        "client_secret": secret,
    }
    before = dot_server.stats()
    first = requests.post(dot_server.token_url, data=form, timeout=HTTP_TIMEOUT)
    assert first.status_code == 200
    again = requests.post(dot_server.token_url, data=form, timeout=HTTP_TIMEOUT)
    grew = dot_server.since(before)
    assert grew["refresh_calls"] == 2
    assert grew["reuse_detections"] == 1
    rotated = first.json()
    still_valid = requests.get(
        dot_server.items_url,
        timeout=HTTP_TIMEOUT,
        headers={"Authorization": f"Bearer {rotated['access_token']}"},
    ).status_code
    if dot_server.grace == 0:
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"
        assert grew["grants_revoked"] == 1
        assert still_valid == 401  # the rotated token went with the grant
    else:
        assert again.status_code == 200
        answer = again.json()
        assert (answer["access_token"], answer["refresh_token"]) == (
            rotated["access_token"],
            rotated["refresh_token"],
        )
        assert grew["grants_revoked"] == 0
        assert still_valid == 200
