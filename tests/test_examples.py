"""examples/typed_usage.py runs as a user would run it, against a local authorization server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from refreshing_session.testing import LocalAuthServer

from .conftest import stored, write_grant
from .processes import ROOT

EXAMPLE = ROOT / "examples" / "typed_usage.py"
CLIENT = "example-client"
SECRET = "example-client-secret-that-must-never-show"


@pytest.fixture
def example_server() -> Iterator[LocalAuthServer]:
    with LocalAuthServer(access_ttl=60.0, clients={CLIENT: SECRET}) as running:
        yield running


def run_example(server: LocalAuthServer, token_file: Path, *resources: str,
                secret: str = SECRET) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(EXAMPLE), "--api-url", server.api_url,
               "--token-url", server.token_url, "--client-id", CLIENT,
               "--token-file", str(token_file), *resources]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=ROOT,
                          env={**os.environ, "CLIENT_SECRET": secret})


def assert_no_secret(result: subprocess.CompletedProcess[str], *secrets: str | None) -> None:
    output = result.stdout + result.stderr
    for secret in (SECRET, *secrets):
        assert secret
        assert secret not in output


def test_the_example_refreshes_an_expired_token_once_and_fetches_everything(
        example_server: LocalAuthServer, tmp_path: Path) -> None:
    token_file = write_grant(tmp_path / "token.json", example_server, client_id=CLIENT,
                             access_ttl=0)
    expired = stored(token_file)

    result = run_example(example_server, token_file, "items", "orders")

    assert result.returncode == 0, result.stderr
    fresh = stored(token_file)
    assert result.stdout.splitlines() == [
        f"new token {fresh.fingerprint}, expires in 60 s",
        "GET items: 200",
        "GET orders: 200",
        f"done: 1 refresh(es); token {fresh.fingerprint}, expires in 60 s",
    ]
    stats = example_server.stats()
    assert (stats.refreshes, stats.api_ok, stats.reuse_detections) == (1, 2, 0)
    assert_no_secret(result, expired.access_token, expired.refresh_token,
                     fresh.access_token, fresh.refresh_token)


def revoke(server: LocalAuthServer) -> None:
    server.revoke_all()


def fail_with_503(server: LocalAuthServer) -> None:
    server.fail_token_endpoint(503, headers={"Retry-After": "0"}, times=3)


@pytest.mark.parametrize(("fault", "secret", "status", "says"), [
    (revoke, SECRET, 2, "login required: the authorization server rejected the refresh token"),
    (fail_with_503, SECRET, 1, "refresh failed (HTTP 503): the token endpoint"),
    (None, "not-the-secret", 3, "client rejected: the token endpoint"),
])
def test_the_example_says_what_to_do_when_the_refresh_fails(
        example_server: LocalAuthServer, tmp_path: Path,
        fault: Callable[[LocalAuthServer], None] | None, secret: str, status: int,
        says: str) -> None:
    token_file = write_grant(tmp_path / "token.json", example_server, client_id=CLIENT,
                             access_ttl=0)
    expired = stored(token_file)
    if fault is not None:
        fault(example_server)

    result = run_example(example_server, token_file, "items", secret=secret)

    assert result.returncode == status
    assert result.stderr.startswith(says)
    assert result.stdout == ""
    assert example_server.stats().api_ok == 0
    assert_no_secret(result, expired.access_token, expired.refresh_token)
