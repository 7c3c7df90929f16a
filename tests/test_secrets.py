"""No secret in logs (at any level), reprs, exception messages or command output."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from refreshing_session import RefreshingSession, TokenError
from refreshing_session.cli import main
from refreshing_session.testing import LocalAuthServer

from .conftest import expire, refresher_for, stored, write_grant

CLIENT_SECRET = "cl1ent-s3cret-value"
TIMEOUT = 5


@pytest.fixture
def secret_server() -> Iterator[LocalAuthServer]:
    with LocalAuthServer(clients={"client": CLIENT_SECRET}) as running:
        yield running


def test_no_secret_leaks_through_a_whole_session_lifetime(
    secret_server: LocalAuthServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = secret_server
    path = write_grant(tmp_path / "token.json", server)
    secrets = {CLIENT_SECRET}
    shown: list[str] = []

    def remember() -> None:
        token = stored(path)
        secrets.update({token.access_token, token.refresh_token or CLIENT_SECRET})

    session = RefreshingSession(
        server.api_url, token_file=path, refresher=refresher_for(server, CLIENT_SECRET)
    )
    with caplog.at_level(logging.DEBUG):
        remember()
        session.get(server.api_url + "items", timeout=TIMEOUT)
        expire(path)
        session.get(server.api_url + "items", timeout=TIMEOUT)  # proactive refresh
        remember()
        session.get(server.api_url + "always401", timeout=TIMEOUT)  # 401 flow, unfixable
        remember()
        token = stored(path)
        # a token endpoint that echoes what it was sent into its error page
        echoed = f"<html>bad {token.refresh_token} {CLIENT_SECRET}</html>".encode()
        server.fail_token_endpoint(500, body=echoed, content_type="text/html", times=3)
        expire(path)
        shown.append(failure(session, server))
        server.revoke_all()
        shown.append(failure(session, server))  # invalid_grant
        shown.append(failure(session, server))  # refused earlier
        shown += [repr(session), repr(stored(path)), repr(session.keeper.refresher)]
        main(["status", str(path)])
        main(["status", "--json", str(path)])
    out = capsys.readouterr()
    everything = "\n".join([caplog.text, out.out, out.err, *shown])
    assert "refreshed the access token" in caplog.text  # the logs did record the refresh
    assert len(secrets) >= 5
    leaked = [secret for secret in secrets if secret in everything]
    assert leaked == []


def failure(session: RefreshingSession, server: LocalAuthServer) -> str:
    try:
        session.get(server.api_url + "items", timeout=TIMEOUT)
    except TokenError as error:
        return f"{error!s} {error!r}"
    raise AssertionError("the request was expected to fail")
