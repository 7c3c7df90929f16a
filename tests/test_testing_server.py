"""Tests for the local OAuth2 server itself, driven with plain ``requests``.

The library's own client is deliberately not used here: the server is the
yardstick the client is measured against, so it is checked independently.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest
import requests

from refreshing_session.testing import LocalAuthServer

from .support.processes import wait_for

TIMEOUT = 5.0
ODD_SECRET = "s3:cr%t+pä€ss w%41"


def text(payload: dict[str, object], key: str) -> str:
    """Return payload[key], which must be a string."""
    value = payload[key]
    assert isinstance(value, str)
    return value


def refresh(
    server: LocalAuthServer,
    refresh_token: str,
    *,
    auth: tuple[str, str] | None = ("client", "secret"),
    headers: dict[str, str] | None = None,
    **fields: str,
) -> requests.Response:
    """POST a refresh_token grant to the server's token endpoint."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **fields}
    return requests.post(server.token_url, data=data, auth=auth, headers=headers, timeout=TIMEOUT)


def client_credentials(server: LocalAuthServer, proof: str | None = None) -> requests.Response:
    """A client_credentials grant of the confidential client, with ``proof`` as its DPoP
    header (None: no DPoP header)."""
    return requests.post(
        server.token_url,
        data={"grant_type": "client_credentials"},
        auth=("client", "secret"),
        headers={"DPoP": proof} if proof is not None else None,
        timeout=TIMEOUT,
    )


def api(server: LocalAuthServer, access_token: str, path: str = "items") -> requests.Response:
    """GET a protected API path with a bearer token."""
    headers = {"Authorization": f"Bearer {access_token}"}
    return requests.get(server.api_url + path, headers=headers, timeout=TIMEOUT)


def basic(client_id: str, secret: str, *, encode: bool = True) -> dict[str, str]:
    """Authorization header for client_secret_basic, form-encoded per RFC 6749 2.3.1 or raw."""
    if encode:
        client_id, secret = urllib.parse.quote_plus(client_id), urllib.parse.quote_plus(secret)
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


def error_of(response: requests.Response) -> str:
    """The OAuth error code of an error response (which must carry a description)."""
    body = response.json()
    assert isinstance(body["error_description"], str)
    return str(body["error"])


def test_issue_and_refresh_rotates() -> None:
    with LocalAuthServer() as server:
        first = server.issue_token(scope="read write")
        assert first["token_type"] == "Bearer"
        assert first["expires_in"] == 60
        assert first["scope"] == "read write"
        response = refresh(server, text(first, "refresh_token"))
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        second = response.json()
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"]
        assert second["scope"] == "read write"
        assert api(server, second["access_token"]).json()["client_id"] == "client"
        assert refresh(server, second["refresh_token"]).status_code == 200
        assert server.stats().refreshes == 2


def test_reuse_of_consumed_token_revokes_grant() -> None:
    with LocalAuthServer() as server:
        first = server.issue_token()
        second = refresh(server, text(first, "refresh_token")).json()
        reused = refresh(server, text(first, "refresh_token"))
        assert reused.status_code == 400
        assert reused.json() == {
            "error": "invalid_grant",
            "error_description": "refresh token already used",
        }
        assert text(first, "refresh_token") not in reused.text
        unauthorized = api(server, second["access_token"])
        assert unauthorized.status_code == 401
        assert 'error="invalid_token"' in unauthorized.headers["WWW-Authenticate"]
        assert error_of(refresh(server, second["refresh_token"])) == "invalid_grant"
        stats = server.stats()
        assert (stats.reuse_detections, stats.revoked_grants, stats.invalid_grants) == (1, 1, 2)


def test_grace_period_allows_immediately_previous_token_once() -> None:
    with LocalAuthServer(grace_period=30) as server:
        first = server.issue_token()
        second = refresh(server, text(first, "refresh_token")).json()
        again = refresh(server, text(first, "refresh_token"))
        assert again.status_code == 200
        assert again.json()["refresh_token"] == second["refresh_token"]
        assert again.json()["access_token"] != second["access_token"]
        assert error_of(refresh(server, text(first, "refresh_token"))) == "invalid_grant"
        assert server.stats().reuse_detections == 1


def test_grace_period_does_not_cover_older_tokens() -> None:
    with LocalAuthServer(grace_period=30) as server:
        first = server.issue_token()
        second = refresh(server, text(first, "refresh_token")).json()
        assert refresh(server, second["refresh_token"]).status_code == 200
        assert error_of(refresh(server, text(first, "refresh_token"))) == "invalid_grant"
        assert server.stats().reuse_detections == 1


def test_basic_auth_credentials_are_form_encoded() -> None:
    clients = {"odd client": ODD_SECRET, "client": "a+b%41:c"}
    with LocalAuthServer(clients=clients) as server:
        token = text(server.issue_token("odd client"), "refresh_token")
        encoded = refresh(server, token, auth=None, headers=basic("odd client", ODD_SECRET))
        assert encoded.status_code == 200
        token = encoded.json()["refresh_token"]
        raw = refresh(
            server, token, auth=None, headers=basic("odd client", ODD_SECRET, encode=False)
        )
        assert raw.status_code == 401
        assert error_of(raw) == "invalid_client"
        assert raw.headers["WWW-Authenticate"] == 'Basic realm="token"'
        assert ODD_SECRET not in raw.text
        ascii_token = text(server.issue_token("client"), "refresh_token")
        raw_ascii = basic("client", "a+b%41:c", encode=False)
        assert refresh(server, ascii_token, auth=None, headers=raw_ascii).status_code == 401
        assert refresh(server, ascii_token, auth=None, headers=basic("client", "a+b%41:c")).ok


def test_client_secret_post() -> None:
    with LocalAuthServer() as server:
        token = text(server.issue_token(), "refresh_token")
        response = refresh(server, token, auth=None, client_id="client", client_secret="secret")
        assert response.status_code == 200


def test_basic_and_post_together_is_invalid_request() -> None:
    with LocalAuthServer() as server:
        token = text(server.issue_token(), "refresh_token")
        response = refresh(server, token, client_id="client", client_secret="secret")
        assert response.status_code == 400
        assert error_of(response) == "invalid_request"
        assert refresh(server, token).status_code == 200  # the token was not consumed


@pytest.mark.parametrize("use_basic", [True, False])
def test_wrong_secret_is_invalid_client(use_basic: bool) -> None:
    with LocalAuthServer() as server:
        token = text(server.issue_token(), "refresh_token")
        if use_basic:
            response = refresh(server, token, auth=("client", "wrong"))
        else:
            response = refresh(server, token, auth=None, client_id="client", client_secret="wrong")
        assert response.status_code == 401
        assert error_of(response) == "invalid_client"
        assert ("WWW-Authenticate" in response.headers) is use_basic
        assert "wrong" not in response.text


def test_public_client() -> None:
    with LocalAuthServer(clients={"spa": None, "client": "secret"}) as server:
        token = text(server.issue_token("spa"), "refresh_token")
        assert refresh(server, token, auth=None, client_id="spa").status_code == 200
        data = {"grant_type": "client_credentials", "client_id": "spa"}
        response = requests.post(server.token_url, data=data, timeout=TIMEOUT)
        assert error_of(response) == "unauthorized_client"


def test_refresh_token_belongs_to_its_client() -> None:
    with LocalAuthServer(clients={"a": "sa", "b": "sb"}) as server:
        token = text(server.issue_token("a"), "refresh_token")
        assert error_of(refresh(server, token, auth=("b", "sb"))) == "invalid_grant"
        assert refresh(server, token, auth=("a", "sa")).status_code == 200


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "nope"}, "invalid_grant"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
    ],
)
def test_token_endpoint_errors(data: dict[str, str], error: str) -> None:
    with LocalAuthServer() as server:
        response = requests.post(
            server.token_url, data=data, auth=("client", "secret"), timeout=TIMEOUT
        )
        assert response.status_code == 400
        assert error_of(response) == error


def test_scope_may_only_narrow() -> None:
    with LocalAuthServer() as server:
        token = text(server.issue_token(scope="read write"), "refresh_token")
        assert error_of(refresh(server, token, scope="read admin")) == "invalid_scope"
        narrowed = refresh(server, token, scope="read")
        assert narrowed.json()["scope"] == "read"


def test_client_credentials() -> None:
    with LocalAuthServer() as server:
        data = {"grant_type": "client_credentials", "scope": "jobs"}
        response = requests.post(
            server.token_url, data=data, auth=("client", "secret"), timeout=TIMEOUT
        )
        assert response.status_code == 200
        body = response.json()
        assert "refresh_token" not in body
        assert body["scope"] == "jobs"
        assert api(server, body["access_token"]).status_code == 200
        assert server.stats().client_credentials == 1


def test_access_token_expires() -> None:
    with LocalAuthServer(access_ttl=0.2, whole_second_expiry=False) as server:
        grant = server.issue_token()
        assert grant["expires_in"] == 0.2
        assert api(server, text(grant, "access_token")).status_code == 200
        wait_for(lambda: api(server, text(grant, "access_token")).status_code == 401, timeout=2.0)
        response = api(server, text(grant, "access_token"))
        assert 'error_description="access token expired"' in response.headers["WWW-Authenticate"]


def test_refresh_token_expires() -> None:
    with LocalAuthServer(refresh_ttl=0.2) as server:
        token = text(server.issue_token(), "refresh_token")
        # A successful probe would consume the token, so this wait cannot poll.
        time.sleep(0.25)
        response = refresh(server, token)
        assert response.json()["error_description"] == "refresh token expired"


def test_fail_token_endpoint_does_not_consume_the_token() -> None:
    with LocalAuthServer() as server:
        token = text(server.issue_token(), "refresh_token")
        server.fail_token_endpoint(503, body=b"busy", headers={"Retry-After": "1"}, times=2)
        for _ in range(2):
            failed = refresh(server, token)
            assert (failed.status_code, failed.text) == (503, "busy")
            assert failed.headers["Retry-After"] == "1"
        assert refresh(server, token).status_code == 200
        assert server.stats().token_requests == 3


def random_failure_statuses(seed: int, calls: int = 200) -> list[int]:
    """The statuses of ``calls`` client_credentials requests to a server that fails a third of
    token requests at random, with ``seed``."""
    with LocalAuthServer() as server:
        server.fail_token_endpoint_at_random(1 / 3, 503, headers={"Retry-After": "0"}, seed=seed)
        statuses = []
        for _ in range(calls):
            answer = client_credentials(server)
            if answer.status_code == 503:
                assert answer.headers["Retry-After"] == "0"
            statuses.append(answer.status_code)
        return statuses


def test_random_token_failures_are_per_call_never_twice_in_a_row_and_seeded() -> None:
    statuses = random_failure_statuses(seed=3)
    assert set(statuses) == {200, 503}
    assert 30 <= statuses.count(503) <= 90, statuses.count(503)
    assert all(not (a == b == 503) for a, b in itertools.pairwise(statuses))
    assert random_failure_statuses(seed=3) == statuses
    assert random_failure_statuses(seed=4) != statuses


def test_random_token_failures_come_after_scheduled_ones_and_stop_at_zero() -> None:
    with LocalAuthServer() as server:
        token = text(server.issue_token(), "refresh_token")
        server.fail_token_endpoint_at_random(1.0, 502)
        server.fail_token_endpoint(429)
        assert refresh(server, token).status_code == 429
        assert refresh(server, token).status_code == 502
        assert refresh(server, token).status_code == 200  # never twice in a row
        server.fail_token_endpoint_at_random(0)
        assert all(
            refresh(server, text(server.issue_token(), "refresh_token")).ok for _ in range(3)
        )
        with pytest.raises(ValueError, match="share"):
            server.fail_token_endpoint_at_random(1.5)


def test_reset_token_endpoint_drops_the_connection() -> None:
    with LocalAuthServer() as server:
        token = text(server.issue_token(), "refresh_token")
        server.reset_token_endpoint()
        with pytest.raises(requests.ConnectionError):
            refresh(server, token)
        assert refresh(server, token).status_code == 200
        assert server.stats().token_requests == 2


def test_slow_token_endpoint() -> None:
    with LocalAuthServer() as server:
        server.slow_token_endpoint(0.3)
        started = time.monotonic()
        assert refresh(server, text(server.issue_token(), "refresh_token")).ok
        assert time.monotonic() - started >= 0.3
        server.slow_token_endpoint(0)
        started = time.monotonic()
        assert refresh(server, text(server.issue_token(), "refresh_token")).ok
        assert time.monotonic() - started < 0.3


def test_stop_interrupts_an_injected_delay() -> None:
    errors: list[Exception] = []

    def call(server: LocalAuthServer, token: str) -> None:
        try:
            refresh(server, token)
        except requests.ConnectionError as exc:
            errors.append(exc)

    with LocalAuthServer() as server:
        server.slow_token_endpoint(30)
        worker = threading.Thread(target=call, args=(server, server.issue_token()["refresh_token"]))
        worker.start()
        wait_for(lambda: server.stats().token_requests == 1, timeout=2.0)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
    worker.join(TIMEOUT)
    assert len(errors) == 1


def test_stop_closes_keep_alive_connections() -> None:
    with requests.Session() as session, LocalAuthServer() as server:
        assert session.get(server.url + "/echo", timeout=TIMEOUT).ok
        server.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(server.url + "/echo", timeout=TIMEOUT)


def test_revoke_all() -> None:
    with LocalAuthServer() as server:
        grant = server.issue_token()
        server.revoke_all()
        assert error_of(refresh(server, text(grant, "refresh_token"))) == "invalid_grant"
        assert api(server, text(grant, "access_token")).status_code == 401
        assert server.stats().revoked_grants == 1


def test_api_without_token_gets_bare_challenge() -> None:
    with LocalAuthServer() as server:
        response = requests.get(server.api_url + "items", timeout=TIMEOUT)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        lowercase = {"Authorization": f"bearer {server.issue_token()['access_token']}"}
        assert requests.get(server.api_url + "items", headers=lowercase, timeout=TIMEOUT).ok
        assert (server.stats().api_ok, server.stats().api_unauthorized) == (1, 1)


def test_special_api_paths() -> None:
    with LocalAuthServer() as server:
        token = text(server.issue_token(), "access_token")
        always = api(server, token, "always401")
        assert always.status_code == 401
        assert 'error="invalid_token"' in always.headers["WWW-Authenticate"]
        scope = api(server, token, "forbidden-scope")
        assert scope.status_code == 401
        assert 'error="insufficient_scope"' in scope.headers["WWW-Authenticate"]
        assert server.stats().api_unauthorized == 2


def test_redirect() -> None:
    with LocalAuthServer() as server:
        query = urllib.parse.urlencode({"to": server.api_url + "items", "status": "307"})
        response = requests.post(
            f"{server.url}/redirect?{query}", data=b"x", allow_redirects=False, timeout=TIMEOUT
        )
        assert response.status_code == 307
        assert response.headers["Location"] == server.api_url + "items"


def test_echo_reports_authorization_without_echoing_it() -> None:
    with LocalAuthServer() as server:
        headers = {"Authorization": "Bearer sensitive-value"}
        response = requests.post(
            server.url + "/echo", data=b"abc", headers=headers, timeout=TIMEOUT
        )
        assert response.json() == {
            "authorization_present": True,
            "method": "POST",
            "body_length": 3,
        }
        assert "sensitive-value" not in response.text
        assert (
            requests.get(server.url + "/echo", timeout=TIMEOUT).json()["authorization_present"]
            is False
        )
        stats = server.stats()
        assert (stats.echo_requests, stats.echo_with_authorization) == (2, 1)


def test_chunked_body_keeps_the_connection_usable() -> None:
    def body() -> Iterator[bytes]:
        yield b"hello "
        yield "wörld".encode("latin-1")

    with requests.Session() as session, LocalAuthServer() as server:
        session.headers["Authorization"] = f"Bearer {server.issue_token()['access_token']}"
        for _ in range(2):
            response = session.post(server.api_url + "items", data=body(), timeout=TIMEOUT)
            assert response.status_code == 200
            assert response.json()["body"] == "hello wörld"
            assert response.json()["body_length"] == 11
        assert server.stats().api_ok == 2


def test_token_calls_are_timed_in_order(server: LocalAuthServer) -> None:
    grant = server.issue_token()
    server.fail_token_endpoint(503)
    refresh(server, text(grant, "refresh_token"))
    refresh(server, text(grant, "refresh_token"))
    calls = server.token_calls()
    assert [call.status for call in calls] == [503, 200]
    assert all(call.started <= call.answered for call in calls)
    assert calls[0].answered <= calls[1].started


# ---------------------------------------------------------------- device authorization grant

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def authorize_device(server: LocalAuthServer, **fields: str) -> dict[str, object]:
    """Start an RFC 8628 device authorization for the confidential test client."""
    response = requests.post(
        server.device_authorization_url, data=fields, auth=("client", "secret"), timeout=TIMEOUT
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    payload = response.json()
    assert isinstance(payload, dict)
    return payload


def poll(
    server: LocalAuthServer, device_code: str, auth: tuple[str, str] = ("client", "secret")
) -> requests.Response:
    data = {"grant_type": DEVICE_GRANT, "device_code": device_code}
    return requests.post(server.token_url, data=data, auth=auth, timeout=TIMEOUT)


def test_device_authorization_answer_follows_rfc_8628() -> None:
    with LocalAuthServer(device_interval=0.01, device_code_ttl=30) as server:
        answer = authorize_device(server, scope="read")
        assert answer["verification_uri"] == server.verification_url
        assert answer["verification_uri_complete"] == (
            f"{server.verification_url}?user_code={answer['user_code']}"
        )
        assert (answer["expires_in"], answer["interval"]) == (30, 0.01)
        user_code = text(answer, "user_code")
        assert re.fullmatch(r"[B-Z]{4}-[B-Z]{4}", user_code)
        assert server.pending_user_codes() == [user_code]
        assert requests.get(server.verification_url, timeout=TIMEOUT).ok
        assert server.stats().device_authorizations == 1


def test_device_code_is_pending_until_approved_then_redeemed_once() -> None:
    with LocalAuthServer(device_interval=0.01) as server:
        answer = authorize_device(server, scope="read")
        device_code = text(answer, "device_code")
        time.sleep(0.02)  # the server measures the interval between polls in real time
        assert error_of(poll(server, device_code)) == "authorization_pending"
        server.approve(text(answer, "user_code").lower().replace("-", ""))
        assert server.pending_user_codes() == []
        time.sleep(0.02)
        token = poll(server, device_code)
        assert token.status_code == 200
        assert token.json()["scope"] == "read"
        assert api(server, token.json()["access_token"]).ok
        assert refresh(server, token.json()["refresh_token"]).status_code == 200
        assert error_of(poll(server, device_code)) == "invalid_grant"
        assert server.stats().device_grants == 1


def test_polling_faster_than_the_interval_is_told_to_slow_down() -> None:
    with LocalAuthServer(device_interval=30) as server:
        device_code = text(authorize_device(server), "device_code")
        assert error_of(poll(server, device_code)) == "slow_down"
        assert server.stats().slow_downs == 1


def test_denied_and_expired_device_codes() -> None:
    # A denial on a code that lives long enough for a loaded machine; the expiry on one that
    # does not.
    with LocalAuthServer(device_interval=0) as server:
        denied = authorize_device(server)
        server.deny(text(denied, "user_code"))
        assert error_of(poll(server, text(denied, "device_code"))) == "access_denied"
        with pytest.raises(ValueError, match="no pending device authorization"):
            server.approve(text(denied, "user_code"))
    with LocalAuthServer(device_interval=0, device_code_ttl=0.05) as server:
        expired = authorize_device(server)
        wait_for(
            lambda: error_of(poll(server, text(expired, "device_code"))) == "expired_token",
            timeout=2.0,
        )


def test_device_code_belongs_to_its_client() -> None:
    with LocalAuthServer(clients={"client": "secret", "other": "x"}, device_interval=0) as server:
        device_code = text(authorize_device(server), "device_code")
        assert error_of(poll(server, device_code, auth=("other", "x"))) == "invalid_grant"
        unauthenticated = requests.post(
            server.device_authorization_url, data={"client_id": "client"}, timeout=TIMEOUT
        )
        assert error_of(unauthenticated) == "invalid_client"


# ---------------------------------------------------------------- revocation


def revoke(
    server: LocalAuthServer, token: str, auth: tuple[str, str] = ("client", "secret"), **fields: str
) -> requests.Response:
    return requests.post(
        server.revocation_url, data={"token": token, **fields}, auth=auth, timeout=TIMEOUT
    )


def test_revoking_a_refresh_token_revokes_the_grant() -> None:
    with LocalAuthServer() as server:
        grant = server.issue_token()
        response = revoke(server, text(grant, "refresh_token"), token_type_hint="refresh_token")
        assert (response.status_code, response.content) == (200, b"")
        assert error_of(refresh(server, text(grant, "refresh_token"))) == "invalid_grant"
        assert api(server, text(grant, "access_token")).status_code == 401
        stats = server.stats()
        assert (stats.revocations, stats.revoked_grants) == (1, 1)


def test_revoking_an_access_token_keeps_the_grant() -> None:
    with LocalAuthServer() as server:
        grant = server.issue_token()
        assert revoke(server, text(grant, "access_token")).status_code == 200
        assert api(server, text(grant, "access_token")).status_code == 401
        assert refresh(server, text(grant, "refresh_token")).status_code == 200
        assert server.stats().revoked_grants == 0


def test_revocation_answers_200_for_unknown_tokens_and_authenticates_the_client() -> None:
    with LocalAuthServer(clients={"client": "secret", "other": "x"}) as server:
        assert revoke(server, "no-such-token").status_code == 200
        assert server.stats().revocations == 0
        grant = server.issue_token()
        wrong_secret = revoke(server, text(grant, "refresh_token"), auth=("client", "wrong"))
        assert error_of(wrong_secret) == "invalid_client"
        other_client = revoke(server, text(grant, "refresh_token"), auth=("other", "x"))
        assert error_of(other_client) == "unauthorized_client"
        assert (
            error_of(
                requests.post(
                    server.revocation_url, data={}, auth=("client", "secret"), timeout=TIMEOUT
                )
            )
            == "invalid_request"
        )
        assert requests.get(server.revocation_url, timeout=TIMEOUT).status_code == 405
        assert refresh(server, text(grant, "refresh_token")).status_code == 200


# ---------------------------------------------------------------- time, as harsh as real servers


def issued_late_in_a_second(server: LocalAuthServer, ttl: float) -> tuple[str, int]:
    """Issue an access token of lifetime ``ttl`` once the server's clock is past the middle of
    a second; return it and the whole second (server clock) it was issued in."""
    while True:
        wait_for(lambda: server.now() % 1 >= 0.5, timeout=2.0)
        before = server.now()
        token = text(server.issue_token(access_ttl=ttl), "access_token")
        if math.floor(server.now()) == math.floor(before):
            return token, math.floor(before)


def jump_to(server: LocalAuthServer, moment: float) -> None:
    """Move the server's clock so that its now is ``moment`` (epoch seconds)."""
    server.set_clock_offset(moment - time.time())


def problem(response: requests.Response) -> str:
    """Why the API refused a token (the bearer challenge's error_description)."""
    assert response.status_code == 401
    found = re.search(r'error_description="([^"]*)"', response.headers["WWW-Authenticate"])
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize("clock_offset", [0.0, 0.5, -3600.25])
def test_an_access_token_dies_at_its_issue_second_plus_its_lifetime(clock_offset: float) -> None:
    """As oidc-provider: exp = floor(iat) + ttl, on the server's own clock (which may run
    ahead or behind from the start), while expires_in announces the whole ttl."""
    with LocalAuthServer(clock_offset=clock_offset) as server:
        assert abs(server.now() - time.time() - clock_offset) < 1
        token, second = issued_late_in_a_second(server, 60)
        assert server.expiry_of(token) == second + 60
        jump_to(server, second + 55)
        assert api(server, token).status_code == 200
        # Half a second or more before a client counting from its request expects it.
        jump_to(server, second + 60)
        assert problem(api(server, token)) == "access token expired"


def test_exact_expiry_counts_from_the_moment_of_issue() -> None:
    with LocalAuthServer(whole_second_expiry=False) as server:
        before = server.now()
        token = text(server.issue_token(access_ttl=60), "access_token")
        after = server.now()
        expiry = server.expiry_of(token)
        assert expiry is not None
        assert before + 60 <= expiry <= after + 60
        jump_to(server, expiry - 5)
        assert api(server, token).status_code == 200
        jump_to(server, expiry)
        assert problem(api(server, token)) == "access token expired"


def test_a_lifetime_under_two_seconds_is_not_rounded() -> None:
    """Rounded to the issue second, it could end before the token's first use."""
    with LocalAuthServer() as server:
        token, second = issued_late_in_a_second(server, 1.9)
        expiry = server.expiry_of(token)
        assert expiry is not None
        assert expiry >= second + 0.5 + 1.9


def test_expiry_of_an_unknown_token_is_none() -> None:
    with LocalAuthServer() as server:
        assert server.expiry_of("never-issued") is None


def test_revoke_access_tokens_kills_every_live_one_and_keeps_refresh_tokens() -> None:
    with LocalAuthServer() as server:
        first, second = server.issue_token(), server.issue_token()
        rotated = refresh(server, text(first, "refresh_token")).json()
        server.issue_token(access_ttl=0)  # already dead: not counted
        assert server.revoke_access_tokens() == 3
        for grant in (first, second, rotated):
            assert problem(api(server, text(grant, "access_token"))) == "access token revoked"
        # The grants live on: a refresh cures the 401, for each of them.
        for grant in (second, rotated):
            renewed = refresh(server, text(grant, "refresh_token"))
            assert renewed.status_code == 200
            assert api(server, renewed.json()["access_token"]).status_code == 200
        stats = server.stats()
        assert (stats.revoked_access_tokens, stats.revoked_grants, stats.reuse_detections) == (
            3,
            0,
            0,
        )
        assert server.revoke_access_tokens() == 2  # the two renewed ones
        assert server.stats().revoked_access_tokens == 5


def test_a_clock_moved_at_run_time_ends_tokens_early_or_late() -> None:
    with LocalAuthServer(access_ttl=60, refresh_ttl=120, whole_second_expiry=False) as server:
        grant = server.issue_token()
        token = text(grant, "access_token")
        server.set_clock_offset(61)  # the server's clock is now a minute ahead of ours
        assert abs(server.now() - time.time() - 61) < 1
        assert problem(api(server, token)) == "access token expired"
        server.set_clock_offset(-3600)  # behind: the token has an hour more to live
        assert api(server, token).status_code == 200
        server.set_clock_offset(121)
        answer = refresh(server, text(grant, "refresh_token"))
        assert answer.json()["error_description"] == "refresh token expired"


@pytest.mark.parametrize("offset", [math.nan, math.inf])
def test_a_clock_offset_must_be_finite(offset: float) -> None:
    with pytest.raises(ValueError, match="clock_offset must be a finite number"):
        LocalAuthServer(clock_offset=offset)
    with LocalAuthServer() as server, pytest.raises(ValueError, match="clock_offset"):
        server.set_clock_offset(offset)


def death_moments(seed: int, count: int = 50, ttl: float = 1000) -> list[float]:
    """Issue ``count`` tokens from a server with random early death and ``seed``; return when
    each dies, as a share of its lifetime (1.0: at the announced expiry)."""
    with LocalAuthServer(early_death=True, seed=seed, whole_second_expiry=False) as server:
        shares = []
        for _ in range(count):
            issued = server.now()
            grant = server.issue_token(access_ttl=ttl)
            assert grant["expires_in"] == ttl  # the server does not announce the early death
            expiry = server.expiry_of(text(grant, "access_token"))
            assert expiry is not None
            shares.append((expiry - issued) / ttl)
        return shares


def test_random_early_death_spreads_over_the_lifetime_and_repeats_with_its_seed() -> None:
    shares = death_moments(seed=7)
    assert all(0 <= share <= 1.001 for share in shares)
    assert min(shares) < 0.2, shares
    assert max(shares) > 0.8, shares
    again = death_moments(seed=7)
    # Only the moments of issue differ between the runs (by well under a second of 1000).
    assert all(abs(a - b) < 0.005 for a, b in zip(shares, again, strict=True))
    assert death_moments(seed=8) != pytest.approx(shares, abs=0.005)


def test_an_early_death_is_enforced_by_the_api() -> None:
    with LocalAuthServer(early_death=True, seed=1) as server:
        token = text(server.issue_token(access_ttl=1000), "access_token")
        expiry = server.expiry_of(token)
        assert expiry is not None
        assert expiry < server.now() + 1000
        jump_to(server, expiry - 5)
        assert api(server, token).status_code == 200
        jump_to(server, expiry)
        assert problem(api(server, token)) == "access token expired"


# Runs with a bare stand-in for the refreshing_session package, whose own __init__ imports the
# client: any import of a client module from the server then lands in sys.modules (or fails).
ISOLATION_PROBE = """
import importlib.util, sys, types
spec = importlib.util.find_spec("refreshing_session")
parent = types.ModuleType("refreshing_session")
parent.__path__ = list(spec.submodule_search_locations)
sys.modules["refreshing_session"] = parent
import refreshing_session.testing
with refreshing_session.testing.LocalAuthServer() as server:
    server.issue_token()
print("\\n".join(sorted(name for name in sys.modules if name.startswith("refreshing_session."))))
"""


def test_the_server_imports_nothing_of_the_client() -> None:
    result = subprocess.run(
        [sys.executable, "-c", ISOLATION_PROBE],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"importing the server alone failed: {result.stderr}"
    loaded = result.stdout.split()
    assert "refreshing_session.testing.server" in loaded, "the probe did not load the server"
    borrowed = [name for name in loaded if not name.startswith("refreshing_session.testing")]
    assert not borrowed, f"the test server must not import the client it measures: {borrowed}"


# ------------------------------------------------------------------ DPoP (RFC 9449)
# Proofs made here with PyJWT and cryptography directly, not with the library's signer.

PUBLIC_CLIENTS = {"client": "secret", "public": None}


class ProofKey:
    """A P-256 key that makes DPoP proofs, however right or wrong a test wants them."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec
        from jwt.algorithms import ECAlgorithm

        self.key = ec.generate_private_key(ec.SECP256R1())
        self.jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        members = {name: self.jwk[name] for name in ("crv", "kty", "x", "y")}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
        self.jkt = b64url(hashlib.sha256(canonical).digest())

    def proof(self, method: str, url: str, **claims: object) -> str:
        import jwt

        header = {"typ": claims.pop("typ", "dpop+jwt"), "jwk": claims.pop("jwk", self.jwk)}
        payload = {
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
            "jti": b64url(os.urandom(16)),
        }
        payload.update(claims)
        return jwt.encode(payload, self.key, algorithm="ES256", headers=header)

    def api_headers(self, token: str, url: str, **claims: object) -> dict[str, str]:
        claims.setdefault("ath", b64url(hashlib.sha256(token.encode()).digest()))
        return {"Authorization": f"DPoP {token}", "DPoP": self.proof("GET", url, **claims)}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def dpop_grant(server: LocalAuthServer, key: ProofKey, **claims: object) -> requests.Response:
    """A client_credentials grant with a proof of ``key``."""
    return client_credentials(server, key.proof("POST", server.token_url, **claims))


def test_a_proof_at_the_token_endpoint_binds_the_access_token_to_its_key() -> None:
    key = ProofKey()
    with LocalAuthServer() as server:
        answer = dpop_grant(server, key)
        assert answer.ok, answer.text
        assert answer.json()["token_type"] == "DPoP"
        token = text(answer.json(), "access_token")
        url = server.api_url + "items"
        assert requests.get(url + "?q=1", headers=key.api_headers(token, url), timeout=TIMEOUT).ok
        as_bearer = api(server, token)
        assert as_bearer.status_code == 401
        assert as_bearer.headers["WWW-Authenticate"].startswith('DPoP error="invalid_token"')
        assert "failed jkt verification" in as_bearer.headers["WWW-Authenticate"]
        other = ProofKey().api_headers(token, url)
        assert requests.get(url, headers=other, timeout=TIMEOUT).status_code == 401
        proofs = server.dpop_proofs()
        assert [(proof.endpoint, proof.problem) for proof in proofs] == [
            ("token", None),
            ("api", None),
            ("api", "failed jkt verification"),
        ]
        assert proofs[1].url == url
        assert proofs[1].claims["htu"] == url
        assert proofs[0].jkt == proofs[1].jkt == key.jkt


def test_a_replayed_proof_is_refused_at_the_api() -> None:
    key = ProofKey()
    with LocalAuthServer() as server:
        token = text(dpop_grant(server, key).json(), "access_token")
        url = server.api_url + "items"
        headers = key.api_headers(token, url)
        assert requests.get(url, headers=headers, timeout=TIMEOUT).ok
        again = requests.get(url, headers=headers, timeout=TIMEOUT)
        assert again.status_code == 401
        assert "Replay detected" in again.headers["WWW-Authenticate"]
        assert server.stats().dpop_refusals == 1


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"typ": "JWT"}, "invalid DPoP key binding"),
        ({"htm": "GET"}, "DPoP proof htm mismatch"),
        ({"htu": "http://127.0.0.1:1/oauth/token"}, "DPoP proof htu mismatch"),
        ({"iat": int(time.time()) - 3600}, "DPoP proof iat is not recent enough"),
        ({"jti": ""}, "DPoP proof must have a jti string property"),
        ({"nonce": "unasked"}, "DPoP nonces are not supported"),
        ({"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}, "invalid DPoP key binding"),
    ],
)
def test_a_wrong_proof_is_invalid_dpop_proof_at_the_token_endpoint(
    claims: dict[str, object], problem: str
) -> None:
    with LocalAuthServer() as server:
        answer = dpop_grant(server, ProofKey(), **claims)
        assert answer.status_code == 400
        assert answer.json() == {"error": "invalid_dpop_proof", "error_description": problem}
        assert server.dpop_proofs()[0].problem == problem
        assert server.stats().client_credentials == 0


def test_a_proof_with_the_query_of_the_request_in_its_htu_still_matches() -> None:
    key = ProofKey()
    with LocalAuthServer() as server:
        token = text(dpop_grant(server, key).json(), "access_token")
        url = server.api_url + "items"
        headers = key.api_headers(token, url + "?q=1#frag")
        assert requests.get(url + "?q=1", headers=headers, timeout=TIMEOUT).ok


def test_a_wrong_access_token_hash_is_refused_at_the_api() -> None:
    key = ProofKey()
    with LocalAuthServer() as server:
        token = text(dpop_grant(server, key).json(), "access_token")
        url = server.api_url + "items"
        headers = key.api_headers(token, url, ath=b64url(b"x" * 32))
        answer = requests.get(url, headers=headers, timeout=TIMEOUT)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith('DPoP error="invalid_dpop_proof"')
        assert "ath mismatch" in answer.headers["WWW-Authenticate"]


def test_nonces_are_required_at_the_token_endpoint_and_the_api_and_rotate() -> None:
    key = ProofKey()
    with LocalAuthServer(dpop_nonce=True, dpop_nonce_rotation=60, access_ttl=600) as server:
        asked = dpop_grant(server, key)
        assert asked.status_code == 400
        assert "WWW-Authenticate" not in asked.headers
        assert error_of(asked) == "use_dpop_nonce"
        nonce = asked.headers["DPoP-Nonce"]
        granted = dpop_grant(server, key, nonce=nonce)
        assert granted.ok
        assert "DPoP-Nonce" not in granted.headers  # the nonce it carried is the current one
        token = text(granted.json(), "access_token")
        url = server.api_url + "items"
        refused = requests.get(url, headers=key.api_headers(token, url), timeout=TIMEOUT)
        assert refused.status_code == 401
        assert 'DPoP error="use_dpop_nonce"' in refused.headers["WWW-Authenticate"]
        assert refused.headers["DPoP-Nonce"] == nonce
        assert requests.get(url, headers=key.api_headers(token, url, nonce=nonce), timeout=5).ok
        # Time moves the nonce on: the old one still works, and the answer hands out the new.
        server.set_clock_offset(61)
        moved = requests.get(url, headers=key.api_headers(token, url, nonce=nonce), timeout=5)
        assert moved.ok
        assert moved.headers["DPoP-Nonce"] not in ("", nonce)
        # A rotation by hand ends every earlier nonce at once.
        server.rotate_dpop_nonce()
        old = moved.headers["DPoP-Nonce"]
        ended = requests.get(url, headers=key.api_headers(token, url, nonce=old), timeout=5)
        assert ended.status_code == 401
        assert ended.headers["DPoP-Nonce"] == server.dpop_nonce()
        assert server.stats().dpop_nonce_challenges == 3


def refresh_with(
    server: LocalAuthServer, refresh_token: str, key: ProofKey | None
) -> requests.Response:
    headers = {"DPoP": key.proof("POST", server.token_url)} if key else None
    return refresh(server, refresh_token, auth=None, headers=headers, client_id="public")


def test_a_public_clients_refresh_token_is_bound_to_its_key_and_a_wrong_key_spends_nothing() -> (
    None
):
    key, other = ProofKey(), ProofKey()
    with LocalAuthServer(clients=PUBLIC_CLIENTS) as server:
        login = server.issue_token("public", dpop_jkt=key.jkt)
        assert login["token_type"] == "DPoP"
        refresh_token = text(login, "refresh_token")
        for wrong in (other, None):
            answer = refresh_with(server, refresh_token, wrong)
            # oidc-provider's words for a dead grant, although this one lives on.
            assert answer.json() == {
                "error": "invalid_grant",
                "error_description": "grant request is invalid",
            }
        assert server.stats().dpop_refusals == 2
        assert server.stats().reuse_detections == server.stats().revoked_grants == 0
        renewed = refresh_with(server, refresh_token, key)
        assert renewed.ok
        assert renewed.json()["token_type"] == "DPoP"
        assert refresh_with(server, text(renewed.json(), "refresh_token"), key).ok


def test_a_replayed_proof_at_the_token_endpoint_is_an_invalid_grant() -> None:
    key = ProofKey()
    with LocalAuthServer() as server:
        proof = key.proof("POST", server.token_url)
        grants = [client_credentials(server, proof) for _ in range(2)]
        assert grants[0].ok
        assert grants[1].json()["error"] == "invalid_grant"
        assert server.dpop_proofs()[1].problem == "DPoP proof JWT Replay detected"


def test_dpop_true_requires_a_proof_with_every_grant() -> None:
    with LocalAuthServer(dpop=True) as server:
        plain = client_credentials(server)
        assert plain.json()["error"] == "invalid_grant"
        assert dpop_grant(server, ProofKey()).ok
        bare = requests.get(server.api_url + "items", timeout=TIMEOUT)
        assert bare.headers["WWW-Authenticate"] == 'Bearer realm="api", DPoP algs="ES256 EdDSA"'
