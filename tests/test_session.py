"""RefreshingSession in one process, where requests has its own ways: prefixes and the
caller's credentials, rewinding bodies, hooks, pooled connections, netrc, drop-in behaviour.
What every front end does alike (the 401 flow, redirects, typed errors) is in
test_front_ends.py."""

from __future__ import annotations

import copy
import io
import logging
import os
import pickle
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.auth
from requests.adapters import HTTPAdapter

from refreshing_session import (
    ClientCredentialsRefresher,
    LoginRequired,
    RefreshFailed,
    RefreshingSession,
    Token,
    TokenFile,
    TokenFileError,
)
from refreshing_session.adapter import BearerAdapter
from refreshing_session.testing import LocalAuthServer
from refreshing_session.urls import Prefixes

from .conftest import SessionFactory, expire, refresher_for, stored, write_grant

TIMEOUT = 5


def with_unknown_access_token(path: Path) -> Token:
    """Keep the grant's refresh token but replace the access token with one the API refuses,
    as happens when the server revokes an access token before its expiry."""
    data = stored(path).to_dict()
    data["access_token"] = "revoked-before-expiry"
    token = Token.from_file(data, written_at=0)
    TokenFile(path).write(token)
    return token


def sent_authorization(response: requests.Response) -> str:
    value = response.request.headers["Authorization"]
    return value.decode() if isinstance(value, bytes) else value


# --- which URLs get the token ---------------------------------------------------------------------


def test_token_goes_to_urls_under_the_prefix(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    response = make_session().get(server.api_url + "items", timeout=TIMEOUT)
    assert response.status_code == 200
    assert sent_authorization(response).startswith("Bearer ")


def test_urls_outside_the_prefix_get_no_token(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    response = make_session().get(server.url + "/echo", timeout=TIMEOUT)
    assert response.json()["authorization_present"] is False
    assert server.stats().echo_with_authorization == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.example.com/v1/items", True),
        ("https://API.Example.com:443/v1/items?q=1", True),
        ("https://api.example.com/v1", True),
        ("https://api.example.com/v1beta/items", False),
        ("https://api.example.com/", False),
        ("http://api.example.com/v1/items", False),
        ("https://api.example.com:8443/v1/items", False),
        ("https://api.example.com.evil.test/v1/items", False),
        ("https://api.example.com@evil.test/v1/items", False),
        ("https://evil.test/https://api.example.com/v1/", False),
        ("https://api.example.com:bad/v1/", False),
        ("not a url", False),
    ],
)
def test_prefixes_match_on_origin_and_path_boundary(url: str, expected: bool) -> None:
    assert Prefixes("https://api.example.com/v1/").match(url) is expected


@pytest.mark.parametrize("prefixes", [[], "api.example.com/v1", "ftp://api.example.com/", ""])
def test_bad_prefixes_are_refused_with_an_example(prefixes: str | list[str]) -> None:
    with pytest.raises(ValueError, match=re.escape("https://api.example.com/")):
        Prefixes(prefixes)


def test_several_prefixes_each_get_the_token(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    session = make_session(prefixes=["https://elsewhere.example/", server.api_url])
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200


# --- the caller's own credentials win ------------------------------------------------------------


@pytest.mark.parametrize("how", ["header", "auth", "session.auth", "session.headers"])
def test_callers_authorization_wins_and_no_refresh_happens(
    how: str, make_session: SessionFactory, server: LocalAuthServer
) -> None:
    session = make_session()
    kwargs: dict[str, object] = {}
    if how == "header":
        kwargs["headers"] = {"Authorization": "Bearer callers-own"}
    elif how == "auth":
        kwargs["auth"] = ("user", "password")
    elif how == "session.auth":
        session.auth = ("user", "password")
    else:
        session.headers["Authorization"] = "Bearer callers-own"
    response = session.get(server.api_url + "items", timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert sent_authorization(response) in ("Bearer callers-own", "Basic dXNlcjpwYXNzd29yZA==")
    assert server.stats().token_requests == 0


def test_netrc_is_skipped_under_the_prefix_and_kept_elsewhere(
    make_session: SessionFactory,
    server: LocalAuthServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    session = make_session()
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert session.get(server.url + "/echo", timeout=TIMEOUT).json()["authorization_present"]


# --- proactive refresh ---------------------------------------------------------------------------


def expiring_in(path: Path, seconds: float, lifetime: float) -> Token:
    """Rewrite the stored token to expire in ``seconds``, out of a ``lifetime`` in total."""
    data = stored(path).to_dict()
    data.update(expires_at=time.time() + seconds, expires_in=lifetime)
    token = Token.from_file(data, written_at=0)
    TokenFile(path).write(token)
    return token


@pytest.mark.parametrize(("lifetime", "refreshed"), [(60, True), (12, False)])
def test_a_token_within_the_leeway_is_refreshed_early_but_not_before_half_its_life(
    lifetime: float,
    refreshed: bool,
    make_session: SessionFactory,
    server: LocalAuthServer,
    token_file: Path,
) -> None:
    before = expiring_in(token_file, 10, lifetime)
    session = make_session(leeway=30)
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert server.stats().refreshes == int(refreshed)
    assert (stored(token_file) != before) is refreshed


def test_a_failed_early_refresh_keeps_using_the_valid_token(
    make_session: SessionFactory,
    server: LocalAuthServer,
    token_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    expiring_in(token_file, 10, 60)
    before = token_file.read_bytes()
    server.fail_token_endpoint(503, times=100)
    session = make_session(leeway=30, refresher=refresher_for(server, retries=0))
    with caplog.at_level(logging.WARNING, logger="refreshing_session"):
        for _ in range(5):
            assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert server.stats().token_requests == 1  # not one attempt per request after a failure
    assert "early refresh failed" in caplog.text
    assert token_file.read_bytes() == before


def test_a_failed_refresh_of_an_expired_token_raises_and_keeps_the_file(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    before = token_file.read_bytes()
    server.fail_token_endpoint(503, body=b"<html>down</html>", content_type="text/html", times=3)
    with pytest.raises(RefreshFailed, match="503"):
        make_session().get(server.api_url + "items", timeout=TIMEOUT)
    assert token_file.read_bytes() == before


# --- reactive refresh on 401 ---------------------------------------------------------------------


def test_a_401_refreshes_and_replays_once(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    with_unknown_access_token(token_file)
    seen: list[int] = []
    session = make_session()
    session.hooks["response"].append(lambda r, *args, **kwargs: seen.append(r.status_code))
    response = session.post(server.api_url + "items", data=b"payload", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["body"] == "payload"
    assert (server.stats().api_unauthorized, server.stats().refreshes) == (1, 1)
    assert seen == [200]  # hooks see the answer the caller gets, once


def test_a_seekable_body_is_rewound_for_the_replay(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    with_unknown_access_token(token_file)
    body = io.BytesIO(b"x" * 5000)
    response = make_session().post(server.api_url + "upload", data=body, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["body_length"] == 5000


def test_a_generator_body_is_not_replayed_half_empty(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    stale = with_unknown_access_token(token_file)
    chunks = (part for part in (b"one", b"two"))
    response = make_session().post(server.api_url + "upload", data=chunks, timeout=TIMEOUT)
    assert response.status_code == 401
    assert response.json()  # the 401's body is still readable
    assert (server.stats().api_ok, server.stats().refreshes) == (0, 1)
    assert stored(token_file) != stale  # refreshed, ready for the caller's next try


def test_the_first_401_response_is_released_before_the_replay(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    with_unknown_access_token(token_file)
    session = make_session(max_retries=0)
    adapter = session.get_adapter(server.api_url)
    assert isinstance(adapter, BearerAdapter)
    response = session.get(server.api_url + "items", stream=True, timeout=TIMEOUT)
    assert response.status_code == 200
    response.close()
    pools = adapter.poolmanager.pools
    # keys() is a copy: the container refuses plain iteration
    connections = [pools[key].num_connections for key in pools.keys()]  # noqa: SIM118
    # the 401's connection went back to the pool and the replay reused it
    assert connections == [1]


# --- drop-in behaviour ---------------------------------------------------------------------------


def test_it_is_a_requests_session_with_a_context_manager(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    with make_session() as session:
        assert isinstance(session, requests.Session)
        assert session.get(server.url + "/echo", timeout=TIMEOUT).ok


def test_max_retries_reaches_the_mounted_adapter(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    adapter = make_session(max_retries=3).get_adapter(server.api_url + "items")
    assert isinstance(adapter, BearerAdapter)
    assert adapter.max_retries.total == 3


def test_a_users_mount_on_a_longer_prefix_wins(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    session = make_session()
    own = HTTPAdapter()
    session.mount(server.api_url + "special/", own)
    assert session.get_adapter(server.api_url + "special/x") is own
    assert session.get(server.api_url + "special/x", timeout=TIMEOUT).status_code == 401


@pytest.mark.parametrize(
    "clone", [lambda s: pickle.loads(pickle.dumps(s)), copy.copy], ids=["pickle", "copy"]
)
def test_pickled_and_copied_sessions_keep_working(
    clone: object, make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    session = make_session()
    session.get(server.api_url + "items", timeout=TIMEOUT)
    twin = clone(session)  # type: ignore[operator]
    assert isinstance(twin, RefreshingSession)
    expire(token_file)
    assert twin.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert server.stats().refreshes == 1
    twin.close()


def test_streaming_responses_work(make_session: SessionFactory, server: LocalAuthServer) -> None:
    with make_session().get(server.api_url + "items", stream=True, timeout=TIMEOUT) as response:
        assert b"".join(response.iter_content(4)).startswith(b"{")


# --- the token file ------------------------------------------------------------------------------


def test_construction_reads_nothing_and_a_missing_file_asks_for_a_login(
    server: LocalAuthServer, tmp_path: Path
) -> None:
    session = RefreshingSession(server.api_url, token_file=tmp_path / "none.json")
    with pytest.raises(LoginRequired, match=re.escape("none.json")):
        session.get(server.api_url + "items", timeout=TIMEOUT)


def test_client_credentials_create_the_token_file_on_first_use(
    server: LocalAuthServer, tmp_path: Path
) -> None:
    path = tmp_path / "machine.json"
    refresher = ClientCredentialsRefresher(server.token_url, "client", "secret")
    with RefreshingSession(server.api_url, token_file=path, refresher=refresher) as session:
        assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert path.stat().st_mode & 0o777 == 0o600
    assert server.stats().client_credentials == 1


def test_a_corrupt_token_file_raises_and_stays_untouched(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    token_file.write_text('{"access_token": ')
    with pytest.raises(TokenFileError, match=str(token_file)):
        make_session().get(server.api_url + "items", timeout=TIMEOUT)
    assert token_file.read_text() == '{"access_token": '


def test_an_expired_token_without_refresh_token_asks_for_a_login(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    data = expire(token_file).to_dict()
    del data["refresh_token"]
    TokenFile(token_file).write(Token.from_file(data, written_at=0))
    with pytest.raises(LoginRequired, match="log in") as caught:
        make_session().get(server.api_url + "items", timeout=TIMEOUT)
    assert str(token_file) in str(caught.value)
    assert server.stats().token_requests == 0


def test_a_refused_refresh_token_is_recorded_for_every_sibling(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    server.revoke_all()
    with pytest.raises(LoginRequired, match="invalid_grant"):
        make_session().get(server.api_url + "items", timeout=TIMEOUT)
    assert server.stats().token_requests == 1
    for _ in range(3):
        with pytest.raises(LoginRequired, match="refused"):
            make_session().get(server.api_url + "items", timeout=TIMEOUT)
    assert server.stats().token_requests == 1


def test_a_new_login_clears_the_refusal(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    server.revoke_all()
    session = make_session()
    with pytest.raises(LoginRequired):
        session.get(server.api_url + "items", timeout=TIMEOUT)
    write_grant(token_file, server)
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200


def test_a_token_written_by_another_tool_is_picked_up_at_once(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    session = make_session()
    first = session.token
    write_grant(token_file, server)
    assert session.token != first
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert server.stats().token_requests == 0


def test_the_token_file_is_private(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    token_file.chmod(0o644)
    expire(token_file)
    make_session().get(server.api_url + "items", timeout=TIMEOUT)
    assert os.stat(token_file).st_mode & 0o777 == 0o600


# --- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "hint"),
    [
        ({"leeway": -1}, ValueError, "leeway"),
        ({"leeway": float("nan")}, ValueError, "leeway"),
        ({"lock_timeout": 0}, ValueError, "lock_timeout"),
        ({"lock_timeout": "5"}, TypeError, "lock_timeout"),
        ({"token_file": 42}, TypeError, "token_file"),
        ({"refresher": "https://auth.example.com/token"}, TypeError, "OAuth2Refresher"),
        ({"on_refresh": "print"}, TypeError, "on_refresh"),
        ({"token_file": None}, TypeError, "neither"),
        ({"store": TokenFile("x.json")}, TypeError, "both"),
        ({"token_file": None, "store": "redis://localhost"}, TypeError, "TokenStore"),
    ],
)
def test_misuse_is_refused_with_a_hint(
    options: dict[str, object], error: type[Exception], hint: str, tmp_path: Path
) -> None:
    arguments: dict[str, object] = {"token_file": tmp_path / "t.json", **options}
    with pytest.raises(error, match=hint):
        RefreshingSession("https://api.example.com/", **arguments)  # type: ignore[arg-type]


def test_repr_names_the_prefixes_and_file_only(
    make_session: SessionFactory, token_file: Path
) -> None:
    session = make_session()
    text = repr(session) + repr(session.token) + repr(session.keeper.refresher)
    assert str(token_file) in text
    assert session.token.access_token not in text
    assert "secret" not in text.replace("client_secret", "")


# --- custom refreshers ---------------------------------------------------------------------------


def in_house_refresher(server: LocalAuthServer) -> Callable[[Token], dict[str, Any]]:
    """The README's in-house example, aimed at the local server's token endpoint."""

    def refresh(token: Token) -> dict[str, Any]:
        response = requests.post(
            server.token_url,
            auth=("client", "secret"),
            timeout=10,
            data={"grant_type": "refresh_token", "refresh_token": token.refresh_token},
        )
        if response.status_code in (400, 401):
            raise LoginRequired("the refresh token was refused; log in again")
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    return refresh


def test_a_callable_returning_a_mapping_is_a_refresher(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    old = expire(token_file)
    session = make_session(refresher=in_house_refresher(server))
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    new = stored(token_file)
    assert new.refresh_token not in (None, old.refresh_token)
    assert new.expires_at is not None
    assert new.expires_at > time.time() + 50


def test_a_refresher_answer_without_refresh_token_keeps_the_old_one(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    old = expire(token_file)
    fresh = server.issue_token()
    session = make_session(
        refresher=lambda token: {"access_token": fresh["access_token"], "expires_in": 60}
    )
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert stored(token_file).refresh_token == old.refresh_token


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda token: ["not", "a", "token"], "not a Token or a mapping"),
        (lambda token: {"token_type": "bearer"}, "access_token"),
        (lambda token: requests.get("http://127.0.0.1:9/", timeout=1), "ConnectionError"),
    ],
)
def test_a_refresher_that_fails_gives_refresh_failed(
    answer: Callable[[Token], Any],
    message: str,
    make_session: SessionFactory,
    server: LocalAuthServer,
    token_file: Path,
) -> None:
    expire(token_file)
    before = token_file.read_bytes()
    with pytest.raises(RefreshFailed, match=message):
        make_session(refresher=answer).get(server.api_url + "items", timeout=TIMEOUT)
    assert token_file.read_bytes() == before


# --- challenges, caller auth schemes, bodies, ports ----------------------------------------------


def test_a_challenge_based_auth_gets_no_token(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    response = make_session().get(
        server.api_url + "items",
        timeout=TIMEOUT,
        auth=requests.auth.HTTPDigestAuth("user", "password"),
    )
    assert response.status_code == 401
    assert "Authorization" not in response.request.headers
    assert server.stats().token_requests == 0


def test_a_401_with_a_non_bearer_challenge_triggers_no_refresh(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    session = make_session(prefixes=[server.url + "/oauth/"])
    response = session.post(
        server.token_url, data={"grant_type": "client_credentials"}, timeout=TIMEOUT
    )  # the token endpoint refuses a bearer: Basic
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert server.stats().token_requests == 1  # that request itself, and no refresh


@pytest.mark.parametrize(
    "body", [bytearray(b"x" * 300), memoryview(b"x" * 300)], ids=["bytearray", "memoryview"]
)
def test_bytes_like_bodies_are_replayed(
    body: bytearray | memoryview,
    make_session: SessionFactory,
    server: LocalAuthServer,
    token_file: Path,
) -> None:
    with_unknown_access_token(token_file)
    response = make_session().post(server.api_url + "upload", data=body, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["body_length"] == 300


@pytest.mark.parametrize(
    ("prefix", "url"),
    [
        ("https://api.example.com:443/v1/", "https://api.example.com/v1/items"),
        ("https://api.example.com/v1/", "https://api.example.com:443/v1/items"),
        ("https://API.example.com/v1/", "https://api.example.com/v1/items"),
        ("https://[::1]:8443/", "https://[::1]:8443/items"),
    ],
)
def test_the_adapter_serves_every_spelling_of_a_prefix(
    prefix: str, url: str, tmp_path: Path
) -> None:
    session = RefreshingSession(prefix, token_file=tmp_path / "t.json")
    assert isinstance(session.get_adapter(url), BearerAdapter)


def test_a_refresh_token_known_to_be_expired_is_not_presented(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    data = expire(token_file).to_dict()
    data["refresh_expires_at"] = time.time() - 1  # as Keycloak's refresh_expires_in said
    TokenFile(token_file).write(Token.from_file(data, written_at=0))
    for _ in range(2):
        with pytest.raises(LoginRequired, match="expired"):
            make_session().get(server.api_url + "items", timeout=TIMEOUT)
    assert server.stats().token_requests == 0


# --- on_refresh ----------------------------------------------------------------------------------


def test_on_refresh_hears_of_each_token_this_process_obtains(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    heard: list[Token] = []
    expire(token_file)
    session = make_session(on_refresh=heard.append)
    sibling = make_session(on_refresh=heard.append)
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert sibling.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200  # adopts
    assert heard == [stored(token_file)]


def test_a_failing_on_refresh_callback_does_not_fail_the_request(
    make_session: SessionFactory,
    server: LocalAuthServer,
    token_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(token: Token) -> None:
        raise RuntimeError("callback bug")

    expire(token_file)
    session = make_session(on_refresh=broken)
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert "on_refresh callback raised RuntimeError" in caplog.text


def test_on_refresh_hears_of_a_first_client_credentials_token(
    server: LocalAuthServer, tmp_path: Path
) -> None:
    heard: list[Token] = []
    refresher = ClientCredentialsRefresher(server.token_url, "client", "secret")
    with RefreshingSession(
        server.api_url, token_file=tmp_path / "m.json", refresher=refresher, on_refresh=heard.append
    ) as session:
        assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert heard == [stored(tmp_path / "m.json")]
