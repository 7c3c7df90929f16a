"""OAuth2Refresher and ClientCredentialsRefresher against a real local authorization server."""

from __future__ import annotations

import base64
import contextlib
import json
import math
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from refreshing_session import (
    ClientCredentialsRefresher,
    ClientRejected,
    LoginRequired,
    OAuth2Refresher,
    RefreshFailed,
    Token,
    TokenSource,
)
from refreshing_session.exchange import NotConnected
from refreshing_session.testing import LocalAuthServer

from .conftest import refresher_for
from .support.handlers import QuietHandler
from .support.hostile import LoopbackServer
from .support.recording import RecordingEndpoint

ODD_SECRET = "s3:cr%t+pä€ss w%41"  # RFC 6749 2.3.1: must be form-encoded inside Basic
ECHOED_SECRET = "Sup3r-S3cr3t-Value"
NO_WAIT = {"Retry-After": "0"}

Fault = Callable[[LocalAuthServer, int], None]
AnyRefresher = OAuth2Refresher | ClientCredentialsRefresher


def login(server: LocalAuthServer, client_id: str = "client", **issue: Any) -> Token:
    """A fresh grant from ``server``, as a login would store it."""
    return Token.from_response(server.issue_token(client_id, **issue), requested_at=time.time())


def failing(status: int, body: bytes = b"", **options: Any) -> Fault:
    def inject(server: LocalAuthServer, times: int) -> None:
        server.fail_token_endpoint(status, body=body, times=times, **options)

    return inject


def resetting(server: LocalAuthServer, times: int) -> None:
    server.reset_token_endpoint(times=times)


def json_body(payload: dict[str, object]) -> dict[str, Any]:
    """fail_token_endpoint options for a JSON body (UTF-8, like most servers send)."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    return {"body": body, "content_type": "application/json"}


def obtain(refresher: AnyRefresher, server: LocalAuthServer) -> Token:
    """Run ``refresher``'s grant: a client_credentials grant, or a refresh of a fresh login."""
    if isinstance(refresher, ClientCredentialsRefresher):
        return refresher.new_token()
    return refresher(login(server, refresher.client_id))


def refused(refresher: OAuth2Refresher, token: Token) -> RefreshFailed:
    with pytest.raises(RefreshFailed) as caught:
        refresher(token)
    return caught.value


# ---------------------------------------------------------------- the refresh_token grant


@pytest.mark.parametrize(
    ("secret", "auth_method", "expected_method"),
    [
        ("secret", None, "client_secret_basic"),
        ("secret", "client_secret_post", "client_secret_post"),
        (None, None, "none"),
        (None, "none", "none"),
        (ODD_SECRET, None, "client_secret_basic"),
        (ODD_SECRET, "client_secret_post", "client_secret_post"),
    ],
)
def test_refresh_grant(secret: str | None, auth_method: str | None, expected_method: str) -> None:
    with LocalAuthServer(access_ttl=60, clients={"app": secret}) as server:
        refresher = OAuth2Refresher(server.token_url, "app", secret, auth_method=auth_method)
        assert refresher.auth_method == expected_method
        old = login(server, "app")
        before = time.time()
        new = refresher(old)
        after = time.time()
        assert new.access_token != old.access_token
        assert new.refresh_token is not None
        assert new.refresh_token != old.refresh_token
        assert new.expires_at is not None
        assert before + 60 <= new.expires_at <= after + 60
        assert new.lifetime == 60
        stats = server.stats()
        assert (stats.token_requests, stats.refreshes, stats.invalid_grants) == (1, 1, 0)
        assert refresher(new).refresh_token != new.refresh_token  # the rotated token works


@pytest.mark.parametrize(
    ("secret", "auth_method", "sends_authorization"),
    [("secret", None, True), ("secret", "client_secret_post", False), (None, None, False)],
)
def test_only_client_secret_basic_sends_an_authorization_header(
    server: LocalAuthServer, secret: str | None, auth_method: str | None, sends_authorization: bool
) -> None:
    refresher = OAuth2Refresher(server.url + "/echo", "client", secret, auth_method=auth_method)
    failure = refused(refresher, login(server))
    assert failure.status_code == 200  # /echo answers, but not with a token
    assert server.stats().echo_requests == 1
    assert server.stats().echo_with_authorization == int(sends_authorization)


def test_netrc_credentials_are_not_added(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login pub password from-netrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with LocalAuthServer(clients={"pub": None}) as server:
        # A public client presenting a password would be refused with invalid_client.
        assert OAuth2Refresher(server.token_url, "pub")(login(server, "pub")).refresh_token


def test_redirects_are_not_followed(server: LocalAuthServer) -> None:
    query = urllib.parse.urlencode({"to": server.token_url, "status": "307"})
    refresher = OAuth2Refresher(f"{server.url}/redirect?{query}", "client", "secret", retries=2)
    assert refused(refresher, login(server)).status_code == 307
    assert server.stats().token_requests == 0


def test_scope_narrows_the_refreshed_token(server: LocalAuthServer) -> None:
    new = refresher_for(server, scope="read")(login(server, scope="read write"))
    assert new.scope == "read"


def test_wider_scope_is_rejected(server: LocalAuthServer) -> None:
    with pytest.raises(ClientRejected) as caught:
        refresher_for(server, scope="read admin")(login(server, scope="read"))
    assert caught.value.error == "invalid_scope"


def test_refresh_token_is_kept_when_the_response_has_none(server: LocalAuthServer) -> None:
    old = login(server)
    server.fail_token_endpoint(
        200, **json_body({"access_token": "next", "token_type": "Bearer", "expires_in": 30})
    )
    new = refresher_for(server)(old)
    assert (new.access_token, new.refresh_token, new.lifetime) == ("next", old.refresh_token, 30)


# ---------------------------------------------------------------- grants that are gone


@pytest.mark.parametrize("how", ["consumed", "unknown", "revoked"])
def test_refused_refresh_token_requires_login(server: LocalAuthServer, how: str) -> None:
    refresher = refresher_for(server, retries=2)
    token = login(server)
    if how == "consumed":
        refresher(token)
    elif how == "unknown":
        token = Token("access", refresh_token="never-issued")
    else:
        server.revoke_all()
    requests_before = server.stats().token_requests
    with pytest.raises(LoginRequired, match="log in again") as caught:
        refresher(token)
    assert "invalid_grant" in str(caught.value)
    assert server.stats().invalid_grants == 1
    assert server.stats().token_requests == requests_before + 1  # not retried


def test_token_without_refresh_token_requires_login(server: LocalAuthServer) -> None:
    with pytest.raises(LoginRequired, match="log in again"):
        refresher_for(server)(Token("access-only", expires_at=time.time() - 1))
    assert server.stats().token_requests == 0


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("cls", [OAuth2Refresher, ClientCredentialsRefresher])
def test_wrong_secret_is_rejected_once(
    server: LocalAuthServer, auth_method: str, cls: type[AnyRefresher]
) -> None:
    refresher = cls(server.token_url, "client", "wrong", auth_method=auth_method, retries=2)
    with pytest.raises(ClientRejected, match="check client_id, client_secret") as caught:
        obtain(refresher, server)
    assert caught.value.error == "invalid_client"
    assert caught.value.response is not None
    assert caught.value.response.status_code == 401
    assert "wrong" not in str(caught.value)
    assert server.stats().token_requests == 1


def test_public_client_cannot_use_client_credentials() -> None:
    with LocalAuthServer(clients={"pub": None}) as server:
        refresher = ClientCredentialsRefresher(server.token_url, "pub", "")
        assert refresher.auth_method == "none"
        with pytest.raises(ClientRejected) as caught:
            refresher.new_token()
        assert caught.value.error == "unauthorized_client"
        assert server.stats().token_requests == 1


# ---------------------------------------------------------------- transient failures

TRANSIENT: dict[str, Fault] = {
    "503": failing(503),
    "429-retry-after-0": failing(429, headers=NO_WAIT),
    "400-temporarily_unavailable": failing(400, **json_body({"error": "temporarily_unavailable"})),
}


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_failure_is_retried(server: LocalAuthServer, fault: Fault) -> None:
    old = login(server)
    fault(server, 1)
    new = refresher_for(server, retries=1)(old)
    assert new.refresh_token not in (None, old.refresh_token)
    stats = server.stats()
    assert (stats.token_requests, stats.refreshes, stats.reuse_detections) == (2, 1, 0)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_refresh_grant_that_may_have_been_processed_is_not_resent(
    server: LocalAuthServer, status: int
) -> None:
    server.fail_token_endpoint(status, times=3)
    assert refused(refresher_for(server, retries=2), login(server)).status_code == status
    assert server.stats().token_requests == 1
    ClientCredentialsRefresher(server.token_url, "client", "secret", retries=2).new_token()
    assert server.stats().token_requests == 4  # a client_credentials grant is safe to resend


def test_client_credentials_are_retried_too(server: LocalAuthServer) -> None:
    server.fail_token_endpoint(503, headers=NO_WAIT)
    ClientCredentialsRefresher(server.token_url, "client", "secret", retries=1).new_token()
    assert (server.stats().token_requests, server.stats().client_credentials) == (2, 1)


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_persistent_503_fails_after_every_retry(server: LocalAuthServer, retries: int) -> None:
    server.fail_token_endpoint(503, body=b"busy", headers=NO_WAIT, times=retries + 1)
    failure = refused(refresher_for(server, retries=retries), login(server))
    assert failure.status_code == 503
    assert failure.response is not None
    assert "503" in str(failure)
    assert "busy" in str(failure)
    assert server.stats().token_requests == 1 + retries


def test_a_refresh_that_may_have_reached_the_server_is_not_sent_again(
    server: LocalAuthServer,
) -> None:
    server.reset_token_endpoint(times=2)
    failure = refused(refresher_for(server, retries=2), login(server))
    assert failure.response is None
    assert failure.status_code is None
    assert "could not reach the token endpoint" in str(failure)
    assert server.stats().token_requests == 1


def test_a_client_credentials_grant_is_resent_after_a_reset(server: LocalAuthServer) -> None:
    server.reset_token_endpoint(times=1)
    ClientCredentialsRefresher(server.token_url, "client", "secret", retries=1).new_token()
    assert (server.stats().token_requests, server.stats().client_credentials) == (2, 1)


def test_a_connection_that_cannot_be_opened_fails_after_the_retries() -> None:
    with LocalAuthServer() as stopped:
        token_url = stopped.token_url
    refresher = OAuth2Refresher(token_url, "client", "secret", retries=1)
    failure = refused(refresher, Token("access", refresh_token="refresh"))
    assert "could not reach the token endpoint" in str(failure)
    assert isinstance(failure.__cause__, NotConnected), "nothing was sent: safe to retry"


@pytest.mark.parametrize("status", [429, 503])
def test_long_retry_after_is_not_waited_for(server: LocalAuthServer, status: int) -> None:
    server.fail_token_endpoint(status, headers={"Retry-After": "3600"}, times=3)
    started = time.monotonic()
    failure = refused(refresher_for(server, retries=2), login(server))
    assert time.monotonic() - started < 0.5
    assert failure.status_code == status
    assert server.stats().token_requests == 1


def test_non_ascii_digit_retry_after_is_ignored(server: LocalAuthServer) -> None:
    server.fail_token_endpoint(503, headers={"Retry-After": "²"})
    assert refresher_for(server, retries=1)(login(server)).refresh_token
    assert server.stats().token_requests == 2


def test_html_error_page_is_summarised(server: LocalAuthServer) -> None:
    page = (
        "<html><head><title>500 Internal Server Error</title></head>\n<body>\n"
        + "<p>trace</p>" * 500
        + "</body></html>"
    ).encode()
    server.fail_token_endpoint(500, body=page, content_type="text/html")
    message = str(refused(refresher_for(server, retries=0), login(server)))
    assert "answered 500" in message
    assert "<title>500 Internal Server Error</title>" in message
    assert "\n" not in message
    assert len(message) < 400


UNUSABLE: dict[str, dict[str, Any]] = {
    "invalid-json": {"body": b'{"access_token": "x",', "content_type": "application/json"},
    "no-access-token": json_body({"token_type": "Bearer", "expires_in": 60}),
    "mac-token-type": json_body({"access_token": "mac-access", "token_type": "mac"}),
}


@pytest.mark.parametrize("answer", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_unusable_200_answer_fails_without_retry(
    server: LocalAuthServer, answer: dict[str, Any]
) -> None:
    server.fail_token_endpoint(200, times=3, **answer)
    failure = refused(refresher_for(server, retries=2), login(server))
    assert failure.status_code == 200
    assert "answered 200" in str(failure)
    assert "no usable token" in str(failure)
    assert "mac-access" not in str(failure)
    assert server.stats().token_requests == 1


def test_hung_endpoint_times_out(server: LocalAuthServer) -> None:
    server.slow_token_endpoint(2.0)
    started = time.monotonic()
    failure = refused(refresher_for(server, timeout=0.2, retries=0), login(server))
    assert time.monotonic() - started < 1.0
    assert failure.status_code is None
    assert "too slow: no complete answer within 0.2 s" in str(failure)


# ---------------------------------------------------------------- secrets stay out of errors

ECHOES: dict[str, tuple[int, str, type[Exception]]] = {
    "plain-text-500": (500, "text", RefreshFailed),
    "json-500-server_error": (500, "server_error", RefreshFailed),
    "json-400-invalid_grant": (400, "invalid_grant", LoginRequired),
    "json-401-invalid_client": (401, "invalid_client", ClientRejected),
    "json-400-temporarily_unavailable": (400, "temporarily_unavailable", RefreshFailed),
}


@pytest.mark.parametrize("secret", [ECHOED_SECRET, ODD_SECRET])
@pytest.mark.parametrize(("status", "error", "raised"), ECHOES.values(), ids=ECHOES.keys())
def test_echoed_secrets_are_redacted(
    secret: str, status: int, error: str, raised: type[Exception]
) -> None:
    with LocalAuthServer(clients={"client": secret}) as server:
        token = login(server)
        assert token.refresh_token is not None
        echo = f"refresh token {token.refresh_token} and client secret {secret} are bad"
        if error == "text":
            server.fail_token_endpoint(status, body=echo.encode())
        else:
            server.fail_token_endpoint(
                status, **json_body({"error": error, "error_description": echo})
            )
        refresher = OAuth2Refresher(server.token_url, "client", secret, retries=0)
        with pytest.raises(raised) as caught:
            refresher(token)
        for shown in (str(caught.value), repr(caught.value)):
            assert "[redacted]" in shown
            assert token.refresh_token not in shown
            assert secret not in shown


@pytest.mark.parametrize(
    ("secret", "leaked"),
    [
        (ODD_SECRET, json.dumps(ODD_SECRET)[1:-1]),
        ("base64/secret+==", "base64\\/secret+=="),
        ("pass  phrase", "pass phrase"),
    ],
    ids=["json-unicode-escape", "json-slash-escape", "double-space"],
)
def test_escaped_secret_echo_is_redacted(secret: str, leaked: str) -> None:
    with LocalAuthServer(clients={"client": secret}) as server:
        description = json.dumps(f"client secret {secret} is bad").replace("/", "\\/")
        body = f'{{"error": "server_error", "error_description": {description}}}'
        server.fail_token_endpoint(500, body=body.encode(), content_type="application/json")
        refresher = OAuth2Refresher(server.token_url, "client", secret, retries=0)
        message = str(refused(refresher, login(server)))
        assert "[redacted]" in message
        assert leaked not in message


@pytest.mark.parametrize("cls", [OAuth2Refresher, ClientCredentialsRefresher])
def test_repr_shows_no_secret(cls: type[AnyRefresher]) -> None:
    refresher = cls("https://auth.example.com/token", "my-client", ECHOED_SECRET)
    assert "my-client" in repr(refresher)
    assert "https://auth.example.com/token" in repr(refresher)
    assert ECHOED_SECRET not in repr(refresher)
    assert ECHOED_SECRET not in str(refresher)


# ---------------------------------------------------------------- constructor validation

INVALID: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "plain-http-remote": (
        {"token_url": "http://auth.example.com/token"},
        ValueError,
        "allow_insecure_http",
    ),
    "plain-http-localhost-lookalike": (
        {"token_url": "http://localhost.example.com/t"},
        ValueError,
        "allow_insecure_http",
    ),
    "plain-http-userinfo-trick": (
        {"token_url": "http://127.0.0.1@evil.example/t"},
        ValueError,
        "allow_insecure_http",
    ),
    "relative-url": ({"token_url": "/oauth/token"}, ValueError, "absolute http(s) URL"),
    "no-scheme": ({"token_url": "auth.example.com/token"}, ValueError, "absolute http(s) URL"),
    "ftp-scheme": (
        {"token_url": "ftp://auth.example.com/token"},
        ValueError,
        "absolute http(s) URL",
    ),
    "no-host": ({"token_url": "https:///token"}, ValueError, "absolute http(s) URL"),
    "bytes-url": (
        {"token_url": b"https://auth.example.com/token"},
        TypeError,
        "token_url must be a string",
    ),
    "none-url": ({"token_url": None}, TypeError, "token_url must be a string"),
    "empty-client-id": ({"client_id": ""}, TypeError, "client_id"),
    "none-client-id": ({"client_id": None}, TypeError, "client_id"),
    "unknown-auth-method": (
        {"auth_method": "private_key_jwk"},
        ValueError,
        "client_secret_basic, client_secret_post, none",
    ),
    "basic-without-secret": (
        {"client_secret": None, "auth_method": "client_secret_basic"},
        ValueError,
        "needs a client_secret",
    ),
    "post-without-secret": (
        {"client_secret": "", "auth_method": "client_secret_post"},
        ValueError,
        "needs a client_secret",
    ),
    "secret-never-sent": ({"auth_method": "none"}, ValueError, "never sends"),
    "zero-timeout": ({"timeout": 0}, ValueError, "timeout"),
    "negative-timeout": ({"timeout": -1.0}, ValueError, "timeout"),
    "nan-timeout": ({"timeout": math.nan}, ValueError, "timeout"),
    "negative-retries": ({"retries": -1}, ValueError, "retries"),
}


def build(cls: type[AnyRefresher], **overrides: Any) -> AnyRefresher:
    options: dict[str, Any] = {
        "token_url": "https://auth.example.com/token",
        "client_id": "app",
        "client_secret": "secret",
        **overrides,
    }
    return cls(
        options.pop("token_url"), options.pop("client_id"), options.pop("client_secret"), **options
    )


@pytest.mark.parametrize("cls", [OAuth2Refresher, ClientCredentialsRefresher])
@pytest.mark.parametrize(("options", "error", "message"), INVALID.values(), ids=INVALID.keys())
def test_invalid_configuration_is_refused(
    cls: type[AnyRefresher], options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(cls, **options)


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("https://auth.example.com/oauth/token", {}),
        ("http://auth.example.com/token", {"allow_insecure_http": True}),
        ("http://localhost:8080/token", {}),
        ("http://LOCALHOST/token", {}),
        ("http://127.0.0.1/token", {}),
        ("http://127.0.0.2:9/token", {}),
        ("http://[::1]:8080/token", {}),
    ],
)
@pytest.mark.parametrize("cls", [OAuth2Refresher, ClientCredentialsRefresher])
def test_valid_token_urls_are_accepted(
    cls: type[AnyRefresher], url: str, options: dict[str, Any]
) -> None:
    assert build(cls, token_url=url, **options).token_url == url


def test_defaults() -> None:
    refresher = OAuth2Refresher("https://auth.example.com/token", "app")
    assert (refresher.auth_method, refresher.timeout, refresher.retries) == ("none", 10.0, 2)
    assert refresher.scope is None


# ---------------------------------------------------------------- client_credentials


@pytest.mark.parametrize("scope", [None, "read", "read write"])
@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("use_call", [False, True], ids=["new_token", "call"])
def test_client_credentials_grant(
    server: LocalAuthServer, scope: str | None, auth_method: str, use_call: bool
) -> None:
    refresher = ClientCredentialsRefresher(
        server.token_url, "client", "secret", auth_method=auth_method, scope=scope
    )
    before = time.time()
    token = refresher(Token("anything")) if use_call else refresher.new_token()
    assert token.refresh_token is None
    assert token.scope == scope
    assert token.expires_at is not None
    assert before + 60 <= token.expires_at <= time.time() + 60
    stats = server.stats()
    assert (stats.token_requests, stats.client_credentials, stats.refreshes) == (1, 1, 0)


def test_only_client_credentials_is_a_token_source() -> None:
    url = "https://auth.example.com/token"
    assert isinstance(ClientCredentialsRefresher(url, "app", "secret"), TokenSource)
    assert not isinstance(OAuth2Refresher(url, "app", "secret"), TokenSource)


def test_echoed_basic_credentials_are_redacted(server: LocalAuthServer) -> None:
    basic = base64.b64encode(b"client:secret").decode()
    server.fail_token_endpoint(500, body=f"<pre>Authorization: Basic {basic}</pre>".encode())
    failure = refused(refresher_for(server, retries=0), login(server))
    assert basic not in str(failure)
    assert "[redacted]" in str(failure)


# ------------------------------------------------------------ extra parameters and headers


def test_extra_params_and_headers_go_with_every_grant() -> None:
    def issuing(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return 200, {"access_token": "at", "token_type": "Bearer", "expires_in": 60}

    with RecordingEndpoint(issuing) as endpoint:
        extra = {"audience": "https://api.example.com", "resource": "urn:api:items"}
        refresher = OAuth2Refresher(
            endpoint.url,
            "client",
            "secret",
            scope="read",
            extra_params=extra,
            headers={"X-Tenant": "t-7"},
        )
        machine = ClientCredentialsRefresher(endpoint.url, "client", "secret", extra_params=extra)
        refresher(Token("at", refresh_token="rt"))
        machine.new_token()
    (refresh_headers, refresh_form), (_, machine_form) = endpoint.requests
    assert refresh_form == {
        **extra,
        "grant_type": "refresh_token",
        "refresh_token": "rt",
        "scope": "read",
    }
    assert machine_form == {**extra, "grant_type": "client_credentials"}
    assert refresh_headers["X-Tenant"] == "t-7"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"extra_params": {"grant_type": "password"}}, "extra_params may not set grant_type"),
        ({"extra_params": {"refresh_token": "x"}}, "may not set refresh_token"),
        ({"headers": {"authorization": "Bearer x"}}, "headers may not set authorization"),
        ({"extra_params": {"audience": 7}}, "mapping of strings to strings"),
    ],
)
def test_extra_params_and_headers_cannot_replace_what_the_client_sets(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        OAuth2Refresher("https://auth.example.com/token", "client", "secret", **options)


def test_an_extra_headers_value_never_appears_in_an_error() -> None:
    api_key = "header-api-key-7f3a9"

    def echoing(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return 503, {"error": "temporarily_unavailable", "error_description": f"key {api_key}"}

    with RecordingEndpoint(echoing) as endpoint:
        refresher = ClientCredentialsRefresher(
            endpoint.url, "client", "secret", retries=0, headers={"X-Api-Key": api_key}
        )
        with pytest.raises(RefreshFailed) as caught:
            refresher.new_token()
    assert api_key not in str(caught.value)
    assert caught.value.response is not None
    assert api_key not in caught.value.response.text


def test_a_pooled_connection_the_server_closed_does_not_fail_the_next_refresh() -> None:
    # The client keeps one connection pool; a server that dropped an idle connection (most do,
    # after a few seconds) must not turn the next refresh grant into a failure, since a grant
    # that may have been sent is never sent again. (A close that crosses the next request on
    # the wire is a race no HTTP client can tell from a crash after processing.)
    served: list[int] = []

    def issuing(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        served.append(1)
        return 200, {
            "access_token": f"at-{len(served)}",
            "token_type": "Bearer",
            "expires_in": 60,
            "refresh_token": f"rt-{len(served)}",
        }

    with RecordingEndpoint(issuing, close_after_answer=True) as endpoint:
        refresher = OAuth2Refresher(endpoint.url, "client", "secret", retries=0)
        token = Token("at-0", refresh_token="rt-0")
        for _ in range(5):
            token = refresher(token)
            assert endpoint.closed.acquire(timeout=10), "the server closed the connection"
    assert token.access_token == "at-5"


def test_a_redirect_with_a_huge_body_is_read_within_the_answer_limit() -> None:
    # A token endpoint answering 302 with 64 MiB: requests' own redirect handling would read
    # the whole body before the bounded reader sees it.

    class Redirecting(QuietHandler):
        def do_POST(self) -> None:
            self.read_body()
            chunk, total = b"x" * 65536, 64 * 1024 * 1024
            self.send_response(302)
            self.send_header("Location", "https://elsewhere.example/token")
            self.send_header("Content-Length", str(total))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client stops reading: good
                for _ in range(total // len(chunk)):
                    self.wfile.write(chunk)

    with LoopbackServer(Redirecting) as endpoint:
        refresher = OAuth2Refresher(endpoint.origin + "/token", "client", "secret", retries=0)
        with pytest.raises(RefreshFailed, match="more than 1 MiB"):
            refresher(Token("at", refresh_token="rt"))
