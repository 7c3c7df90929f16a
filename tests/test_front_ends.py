"""One behaviour suite over every front end: requests, httpx sync, httpx async, and
RefreshingAuth on plain httpx clients. Which URLs get the token (prefixes, crafted URLs,
redirects, the caller's own credentials), the 401 flow and its guard, the typed errors, and no
secret in logs (conftest's autouse check runs each of these tests at DEBUG level).

The servers say what was sent: LocalAuthServer's API answers 200 only to its live token, its
/echo tells whether an Authorization header came, and the hostile server of
test_attack_prefixes records every header scheme it receives."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from anyio.from_thread import BlockingPortal

from refreshing_session import (
    LoginRequired,
    OAuth2Refresher,
    RefreshFailed,
    Token,
    TokenError,
)
from refreshing_session.guard import MAX_WASTED
from refreshing_session.httpx import RefreshingAsyncClient, RefreshingAuth, RefreshingClient
from refreshing_session.testing import LocalAuthServer

from .conftest import expire, refresher_for, stored
from .support.front_end_checks import check_a_401_no_refresh_cures_costs_one_refresh_per_token
from .support.front_ends import ALL, HOP_BY_HOP, Client, ClientFactory, client_factory
from .support.hostile import served
from .support.recording import RecordingEndpoint
from .test_attack_prefixes import CLIMBS, UNSAFE_METHODS, HostileServer
from .test_profiles import server_profile
from .test_refresh_on import ForbiddingApi, Issuer, write_first_token
from .test_session import expiring_in, with_unknown_access_token

CALLER_BASIC = ("caller", "caller-password")


@pytest.fixture
def make_client(
    kind: str, portal: BlockingPortal, server: LocalAuthServer, token_file: Path
) -> Iterator[ClientFactory]:
    yield from client_factory(
        kind,
        portal,
        {"prefixes": server.api_url, "token_file": token_file, "refresher": refresher_for(server)},
    )


hostile = served(HostileServer)
other_origin = served(LocalAuthServer)


def redirect_and_api(server: LocalAuthServer) -> list[str]:
    """Prefixes that hold the server's /redirect beside its API, so that a redirect starts on a
    hop that gets the token."""
    return [server.url + "/redirect", server.api_url]


@pytest.fixture
def redirect_client(make_client: ClientFactory, server: LocalAuthServer) -> Client:
    """A client on :func:`redirect_and_api`'s prefixes: its redirects start with the token."""
    return make_client(prefixes=redirect_and_api(server))


# --- which URLs get the token ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL)
def test_the_token_goes_under_the_prefix_and_nowhere_else(
    kind: str, make_client: ClientFactory, server: LocalAuthServer
) -> None:
    client = make_client(prefixes=["https://elsewhere.example/", server.api_url])
    assert client.request("GET", server.api_url + "items").status == 200
    assert client.request("GET", server.url + "/echo").json()["authorization_present"] is False
    assert server.stats().echo_with_authorization == 0


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("climb", CLIMBS)
def test_a_url_climbing_out_of_the_prefix_gets_no_token(
    kind: str, climb: str, make_client: ClientFactory, hostile: HostileServer
) -> None:
    client = make_client(prefixes=hostile.url + "/api/")
    client.request("GET", f"{hostile.url}/api/{climb}pub/steal")
    assert hostile.seen, "the request never reached the hostile server"
    assert hostile.authorized_outside("/api/") == [], "the token reached /pub/"


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("how", ["headers=", "auth="])
def test_the_callers_own_authorization_wins_and_no_refresh_happens(
    kind: str, how: str, make_client: ClientFactory, hostile: HostileServer
) -> None:
    client = make_client(prefixes=hostile.url + "/api/")
    if how == "auth=":
        client.request("GET", hostile.url + "/api/items", auth=CALLER_BASIC)
    else:
        client.request(
            "GET",
            hostile.url + "/api/items",
            headers={"Authorization": "Basic Y2FsbGVyOmNhbGxlci1wYXNzd29yZA=="},
        )
    assert [seen.scheme for seen in hostile.seen] == ["basic"]


# --- refreshing before expiry, and the 401 flow -----------------------------------------------


@pytest.mark.parametrize("kind", ALL)
def test_an_expired_token_is_refreshed_once_before_sending(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expired = expire(token_file)
    client = make_client()
    for _ in range(3):
        assert client.request("GET", server.api_url + "items").status == 200
    assert (server.stats().refreshes, server.stats().api_unauthorized) == (1, 0)
    assert stored(token_file).access_token != expired.access_token


@pytest.mark.parametrize("kind", ALL)
def test_a_401_refreshes_and_replays_once_with_the_body(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, token_file: Path
) -> None:
    with_unknown_access_token(token_file)
    answer = make_client().request("POST", server.api_url + "items", body=b"payload")
    assert answer.status == 200
    assert answer.json()["body"] == "payload"
    assert (server.stats().api_unauthorized, server.stats().refreshes) == (1, 1)


@pytest.mark.parametrize("kind", ALL)
def test_a_streamed_body_is_not_replayed_and_the_401_comes_back_readable(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, token_file: Path
) -> None:
    stale = with_unknown_access_token(token_file)
    answer = make_client().request("POST", server.api_url + "upload", chunks=[b"one", b"two"])
    assert answer.status == 401
    assert answer.json()  # the 401's body is still readable
    assert (server.stats().api_ok, server.stats().refreshes) == (0, 1)
    assert stored(token_file) != stale  # refreshed, ready for the caller's next try


@pytest.mark.parametrize("kind", ALL)
def test_a_401_that_refresh_cannot_fix_costs_one_refresh_per_token(
    kind: str, make_client: ClientFactory, server: LocalAuthServer
) -> None:
    check_a_401_no_refresh_cures_costs_one_refresh_per_token(make_client, server)


@pytest.mark.parametrize("kind", ALL)
def test_insufficient_scope_does_not_trigger_a_refresh(
    kind: str, make_client: ClientFactory, server: LocalAuthServer
) -> None:
    assert make_client().request("GET", server.api_url + "forbidden-scope").status == 401
    assert server.stats().token_requests == 0


@pytest.mark.parametrize("kind", ALL)
def test_a_sibling_clients_refresh_is_adopted_after_a_401_without_a_call(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, token_file: Path
) -> None:
    client, sibling = make_client(), make_client()
    assert client.request("GET", server.api_url + "items").status == 200
    server.revoke_access_tokens()
    assert sibling.request("GET", server.api_url + "items").status == 200  # refreshes
    assert client.request("GET", server.api_url + "items").status == 200  # adopts
    assert server.stats().refreshes == 1


# --- typed errors, and no secret in them -------------------------------------------------------


@pytest.mark.parametrize("kind", ALL)
def test_a_missing_token_file_asks_for_a_login_with_a_typed_error(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, tmp_path: Path
) -> None:
    client = make_client(token_file=tmp_path / "none.json")
    with pytest.raises(LoginRequired, match=r"none\.json") as raised:
        client.request("GET", server.api_url + "items")
    assert isinstance(raised.value, TokenError)
    assert isinstance(raised.value, requests.RequestException)


@pytest.mark.parametrize("kind", ALL)
def test_a_refused_refresh_token_raises_login_required_without_the_secrets(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expired = expire(token_file)
    server.revoke_all()
    client = make_client()
    with pytest.raises(LoginRequired) as raised:
        client.request("GET", server.api_url + "items")
    shown = f"{raised.value} {raised.value!r} {client!r}"
    assert expired.access_token not in shown
    assert expired.refresh_token is not None
    assert expired.refresh_token not in shown


@pytest.mark.parametrize("kind", ALL)
def test_a_failing_token_endpoint_raises_refresh_failed_and_keeps_the_file(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    before = token_file.read_bytes()
    server.fail_token_endpoint(times=3)
    with pytest.raises(RefreshFailed):
        make_client().request("GET", server.api_url + "items")
    assert token_file.read_bytes() == before


# --- redirects, hop by hop ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_to_another_origin_carries_no_token(
    kind: str,
    status: int,
    redirect_client: Client,
    server: LocalAuthServer,
    other_origin: LocalAuthServer,
) -> None:
    answer = redirect_client.request(
        "GET", f"{server.url}/redirect?status={status}&to={other_origin.url}/echo"
    )
    assert answer.redirects == [status]
    assert answer.json()["authorization_present"] is False
    assert other_origin.stats().echo_with_authorization == 0


@pytest.mark.parametrize("kind", HOP_BY_HOP)
def test_a_redirect_leaving_the_prefix_on_the_same_origin_carries_no_token(
    kind: str, redirect_client: Client, server: LocalAuthServer
) -> None:
    answer = redirect_client.request("GET", f"{server.url}/redirect?to=/echo")
    assert answer.json()["authorization_present"] is False


@pytest.mark.parametrize("kind", HOP_BY_HOP)
def test_a_redirect_into_the_prefix_gets_the_token(
    kind: str, make_client: ClientFactory, server: LocalAuthServer
) -> None:
    answer = make_client().request("GET", f"{server.url}/redirect?to={server.api_url}items")
    assert (answer.redirects, answer.status) == ([302], 200)


@pytest.mark.parametrize("kind", HOP_BY_HOP)
@pytest.mark.parametrize("climb", ["../", "%2e%2e/", "..%2F"])
@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_climbing_out_of_the_prefix_gets_no_token(
    kind: str, climb: str, status: int, make_client: ClientFactory, hostile: HostileServer
) -> None:
    hostile.redirects["/api/start"] = (status, f"{hostile.url}/api/{climb}pub/steal")
    make_client(prefixes=hostile.url + "/api/").request("GET", hostile.url + "/api/start")
    assert [seen.routed for seen in hostile.seen] == ["/api/start", "/pub/steal"]
    assert hostile.bearer_requests() == ["/api/start"], "only the hop under /api/ has the token"


@pytest.mark.parametrize("kind", HOP_BY_HOP)
@pytest.mark.parametrize("method", UNSAFE_METHODS)
def test_an_unsafe_request_steered_into_the_api_by_another_origin_gets_no_token(
    kind: str,
    method: str,
    make_client: ClientFactory,
    hostile: HostileServer,
    server: LocalAuthServer,
) -> None:
    hostile.redirects["/webhook"] = (307, server.api_url + "accounts/delete")
    answer = make_client().request(method, hostile.url + "/webhook", body=b"attacker's body")
    assert (answer.redirects, answer.status) == ([307], 401)
    assert server.stats().api_ok == 0, "the API accepted the attacker's request"


@pytest.mark.parametrize("kind", HOP_BY_HOP)
@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_an_unsafe_request_steered_into_the_api_from_outside_the_prefix_gets_no_token(
    kind: str, method: str, make_client: ClientFactory, server: LocalAuthServer
) -> None:
    answer = make_client().request(
        method, f"{server.url}/redirect?status=308&to=/api/accounts/delete", body=b"x"
    )
    assert answer.status == 401
    assert server.stats().api_ok == 0, "the API accepted the attacker's request"


@pytest.mark.parametrize("kind", HOP_BY_HOP)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_safe_request_redirected_into_the_api_by_another_origin_gets_the_token(
    kind: str,
    method: str,
    make_client: ClientFactory,
    hostile: HostileServer,
    server: LocalAuthServer,
) -> None:
    hostile.redirects["/moved"] = (307, server.api_url + "items")
    assert make_client().request(method, hostile.url + "/moved").status == 200
    assert server.stats().api_ok == 1


@pytest.mark.parametrize("kind", HOP_BY_HOP)
def test_an_unsafe_request_redirected_within_the_prefixes_keeps_the_token(
    kind: str, redirect_client: Client, server: LocalAuthServer
) -> None:
    answer = redirect_client.request(
        "POST", f"{server.url}/redirect?status=307&to=/api/items", body=b"body"
    )
    assert (answer.status, answer.json()["body"]) == (200, "body")


@pytest.mark.parametrize("kind", HOP_BY_HOP)
@pytest.mark.parametrize("how", ["auth=", "headers=", "client auth"])
@pytest.mark.parametrize("status", [302, 307])
def test_a_caller_authenticated_request_bounced_into_the_api_gets_no_token(
    kind: str,
    how: str,
    status: int,
    make_client: ClientFactory,
    hostile: HostileServer,
    server: LocalAuthServer,
) -> None:
    hostile.redirects["/login"] = (status, server.api_url + "items")
    answer = _caller_request(make_client, how, hostile.url + "/login")
    assert hostile.seen[0].scheme == "basic", "the caller's own credentials went out"
    assert answer.status == 401
    assert server.stats().api_ok == 0, "the bearer token replaced the caller's credentials"


@pytest.mark.parametrize("kind", HOP_BY_HOP)
@pytest.mark.parametrize("how", ["auth=", "headers=", "client auth"])
def test_a_caller_authenticated_api_request_bounced_back_through_another_origin_gets_no_token(
    kind: str, how: str, make_client: ClientFactory, hostile: HostileServer, server: LocalAuthServer
) -> None:
    hostile.redirects["/bounce"] = (302, server.api_url + "items")
    answer = _caller_request(
        make_client,
        how,
        f"{server.url}/redirect?to={hostile.url}/bounce",
        prefixes=redirect_and_api(server),
    )
    assert (len(answer.redirects), answer.status) == (2, 401)
    assert server.stats().api_ok == 0, "the bearer token replaced the caller's credentials"


def _caller_request(make_client: ClientFactory, how: str, url: str, **options: Any) -> Any:
    """GET ``url`` with the caller's own Basic credentials, given the way ``how`` names."""
    if how == "client auth":
        return make_client(caller_auth=CALLER_BASIC, **options).request("GET", url)
    client = make_client(**options)
    if how == "auth=":
        return client.request("GET", url, auth=CALLER_BASIC)
    return client.request(
        "GET", url, headers={"Authorization": "Basic Y2FsbGVyOmNhbGxlci1wYXNzd29yZA=="}
    )


# --- the module itself -------------------------------------------------------------------------


def test_importing_the_package_does_not_import_httpx() -> None:
    import subprocess
    import sys

    code = "import sys, refreshing_session; print('httpx' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"


def test_every_front_end_shares_the_token_one_of_them_refreshed(
    portal: BlockingPortal, server: LocalAuthServer, token_file: Path
) -> None:
    """One token file, three front ends: the token one of them refreshed is the others'."""
    expire(token_file)
    answers = []
    for kind in HOP_BY_HOP:
        for build in client_factory(
            kind,
            portal,
            {
                "prefixes": server.api_url,
                "token_file": token_file,
                "refresher": refresher_for(server),
            },
        ):
            answers.append(build().request("GET", server.api_url + "items").status)
    assert answers == [200, 200, 200]
    assert server.stats().refreshes == 1


def test_the_httpx_front_ends_are_built_from_a_profile_with_options_that_win(
    portal: BlockingPortal,
    server: LocalAuthServer,
    token_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOCAL_SECRET", "secret")
    profiles = server_profile(tmp_path / "profiles.toml", server)
    expire(token_file)
    options: dict[str, Any] = {"config": profiles, "token_file": token_file, "leeway": 5}
    with RefreshingClient.from_profile("local", timeout=3, **options) as client:
        assert (client.keeper.leeway, client.timeout.read) == (5, 3)
        assert client.get(server.api_url + "items").status_code == 200
    auth = RefreshingAuth.from_profile("local", **options)
    assert httpx.get(server.api_url + "items", auth=auth).status_code == 200

    async def through_the_async_client() -> int:
        async with RefreshingAsyncClient.from_profile("local", **options) as client:
            return (await client.get(server.api_url + "items")).status_code

    assert portal.call(through_the_async_client) == 200
    assert server.stats().refreshes == 1  # the profile's refresher, once for all three


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize(
    ("refresh_on", "status", "refreshes"), [((401, 403), 200, 1), ((401,), 403, 0)]
)
def test_refresh_on_403_refreshes_and_replays_only_where_asked(
    kind: str,
    refresh_on: tuple[int, ...],
    status: int,
    refreshes: int,
    portal: BlockingPortal,
    tmp_path: Path,
) -> None:
    """An API that answers 403 to a dead token (test_refresh_on's)."""
    with forbidding(kind, portal, tmp_path, refresh_on) as (api, issuer, client):
        api.current = "at-revoked"  # the stored token died early
        assert client.request("GET", api.origin + "/items").status == status
    assert issuer.issued == refreshes


@contextmanager
def forbidding(
    kind: str, portal: BlockingPortal, folder: Path, refresh_on: tuple[int, ...]
) -> Iterator[tuple[ForbiddingApi, Issuer, Client]]:
    """An API that answers 403 to a dead token (test_refresh_on's), the issuer of its tokens,
    and a client of ``kind`` on it, whose token file in ``folder`` holds the issuer's first
    token (no LocalAuthServer needed to log in)."""
    token_file = write_first_token(folder / "token.json")
    with ForbiddingApi() as api:
        issuer = Issuer(api)
        with RecordingEndpoint(issuer) as endpoint:
            refresher = OAuth2Refresher(endpoint.url, "client", "secret", retries=0)
            defaults = {"prefixes": api.origin + "/", "token_file": token_file}
            for build in client_factory(kind, portal, {**defaults, "refresher": refresher}):
                yield api, issuer, build(refresh_on=refresh_on)


# --- a refresher that raises anything ---------------------------------------------------------


class Boom(Exception):
    """What a custom refresher's own code may raise: no TokenError, no requests error."""


class RaisingRefresher:
    """A custom refresher that fails with :class:`Boom`, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, token: Token) -> Token:
        self.calls += 1
        raise Boom("the SDK's own failure")


@pytest.mark.parametrize("kind", ALL)
def test_a_custom_refresher_that_raises_anything_never_fails_a_request_whose_token_is_valid(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expiring_in(token_file, 20, 60)  # due (inside the leeway) but still valid for 20 s
    refresher = RaisingRefresher()
    client = make_client(refresher=refresher)
    statuses = [client.request("GET", server.api_url + "items").status for _ in range(6)]
    assert statuses == [200] * 6, "a failed early refresh failed a request whose token is valid"
    assert refresher.calls == 1, f"{refresher.calls} refreshes: the cool-down was not kept"


@pytest.mark.parametrize("kind", ALL)
def test_a_custom_refresher_that_raises_anything_gives_refresh_failed_within_its_cool_down(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    refresher = RaisingRefresher()
    client = make_client(refresher=refresher)
    started = time.monotonic()
    for attempt in range(6):
        with pytest.raises(RefreshFailed) as raised:
            client.request("GET", server.api_url + "items")
        assert isinstance(raised.value, requests.RequestException)
        if attempt == 0:  # (the cool-down raises its copies)
            assert isinstance(raised.value.__cause__, Boom), "the refresher's error is lost"
    if time.monotonic() - started < 1.0:  # the cool-down starts at 0.5 s, then doubles
        assert refresher.calls <= 2, f"{refresher.calls} refreshes within a second"


# --- the token an earlier path proved, and paths it never reached ------------------------------


@pytest.mark.parametrize("kind", ALL)
def test_a_path_refused_for_good_costs_at_most_the_guards_refreshes_though_the_token_works(
    kind: str, make_client: ClientFactory, server: LocalAuthServer
) -> None:
    """Eight rounds of a path that works, then a new item the token may never see: the guard's
    limit holds at each new path (it used to lift once the token had worked anywhere)."""
    client = make_client()
    for item in range(8):
        assert client.request("GET", server.api_url + "items").status == 200
        assert client.request("GET", server.api_url + f"always401/{item}").status == 401
    assert server.stats().refreshes <= MAX_WASTED, "a refresh for every forbidden item"
    server.revoke_access_tokens()  # the token dies early: where it worked, a 401 still cures
    assert client.request("GET", server.api_url + "items").status == 200
    assert server.stats().refreshes <= MAX_WASTED + 1


@pytest.mark.parametrize("kind", ALL)
def test_streamed_bodies_to_a_path_refused_for_good_cost_at_most_the_guards_refreshes(
    kind: str, make_client: ClientFactory, server: LocalAuthServer
) -> None:
    client = make_client()
    for _ in range(6):
        answer = client.request("POST", server.api_url + "always401", chunks=[b"a", b"b"])
        assert answer.status == 401
    assert server.stats().refreshes <= MAX_WASTED, "a refresh for every streamed request"


@pytest.mark.parametrize("kind", ALL)
def test_with_refresh_on_403_a_forbidden_item_is_not_a_refresh_each(
    kind: str, portal: BlockingPortal, tmp_path: Path
) -> None:
    with forbidding(kind, portal, tmp_path, (401, 403)) as (api, issuer, client):
        api.current = "at-revoked"  # the stored token died early: cured once
        assert client.request("GET", api.origin + "/items").status == 200
        for item in range(8):
            assert client.request("GET", api.origin + "/items").status == 200
            assert client.request("GET", api.origin + f"/admin/{item}").status == 403
    assert issuer.issued <= 1 + MAX_WASTED, f"{issuer.issued} refreshes for 8 forbidden items"


# --- a client-wide credential left over from before the switch -----------------------------------


@pytest.mark.parametrize("kind", HOP_BY_HOP)
def test_a_client_wide_authorization_header_is_warned_about_once_per_prefix(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    client.native.headers["Authorization"] = "Bearer hard-coded-and-stale"
    caplog.set_level(logging.WARNING, logger="refreshing_session")
    statuses = {client.request("GET", server.api_url + "items").status for _ in range(3)}
    assert statuses == {401}, "the caller's own header no longer wins"
    warnings = [
        r.getMessage() for r in caplog.records if "instead of the refreshed token" in r.getMessage()
    ]
    assert len(warnings) == 1, f"warned {len(warnings)} times, not once per prefix"
    assert "Authorization" in warnings[0]
    assert "delete the line" in warnings[0]
    assert server.api_url in warnings[0], "the warning does not name the prefix"
    assert "hard-coded-and-stale" not in caplog.text


@pytest.mark.parametrize("kind", HOP_BY_HOP)
def test_a_client_wide_auth_is_warned_about_and_a_request_outside_the_prefixes_is_not(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(caller_auth=CALLER_BASIC)
    caplog.set_level(logging.WARNING, logger="refreshing_session")
    client.request("GET", server.url + "/echo")
    assert "instead of the refreshed token" not in caplog.text, "warned outside the prefixes"
    client.request("GET", server.api_url + "items")
    assert caplog.text.count("instead of the refreshed token") == 1
    assert "auth" in caplog.text
