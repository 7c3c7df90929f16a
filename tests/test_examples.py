"""Every example under examples/ (the code the documentation shows) runs as a user would run it,
against a local authorization server.

The examples name the addresses a reader would have (``https://api.example.com/``, ...); each test
runs a copy in which only those addresses are replaced by the local servers' ones."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from refreshing_session import Token, load_profile
from refreshing_session.testing import LocalAuthServer

from .conftest import stored, write_grant
from .support.processes import ROOT

EXAMPLES = ROOT / "examples"
# providers.py needs node oidc-provider: tests/interop/test_oidc_provider_logins.py runs it.
EXAMPLE = EXAMPLES / "typed_usage.py"
CLIENT = "example-client"
SECRET = "example-client-secret-that-must-never-show"


@pytest.fixture
def example_server() -> Iterator[LocalAuthServer]:
    with LocalAuthServer(access_ttl=60.0, clients={CLIENT: SECRET}) as running:
        yield running


def run_example(
    server: LocalAuthServer, token_file: Path, *resources: str, secret: str = SECRET
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        str(EXAMPLE),
        "--api-url",
        server.api_url,
        "--token-url",
        server.token_url,
        "--client-id",
        CLIENT,
        "--token-file",
        str(token_file),
        *resources,
    ]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, "CLIENT_SECRET": secret},
    )


def assert_no_secret(result: subprocess.CompletedProcess[str], *secrets: str | None) -> None:
    output = result.stdout + result.stderr
    for secret in (SECRET, *secrets):
        assert secret
        assert secret not in output


def test_the_example_refreshes_an_expired_token_once_and_fetches_everything(
    example_server: LocalAuthServer, tmp_path: Path
) -> None:
    token_file = write_grant(
        tmp_path / "token.json", example_server, client_id=CLIENT, access_ttl=0
    )
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
    assert_no_secret(
        result, expired.access_token, expired.refresh_token, fresh.access_token, fresh.refresh_token
    )


def revoke(server: LocalAuthServer) -> None:
    server.revoke_all()


def fail_with_503(server: LocalAuthServer) -> None:
    server.fail_token_endpoint(503, headers={"Retry-After": "0"}, times=3)


@pytest.mark.parametrize(
    ("fault", "secret", "status", "says"),
    [
        (revoke, SECRET, 2, "login required: the authorization server rejected the refresh token"),
        (fail_with_503, SECRET, 1, "refresh failed (HTTP 503): the token endpoint"),
        (None, "not-the-secret", 3, "client rejected: the token endpoint"),
    ],
)
def test_the_example_says_what_to_do_when_the_refresh_fails(
    example_server: LocalAuthServer,
    tmp_path: Path,
    fault: Callable[[LocalAuthServer], None] | None,
    secret: str,
    status: int,
    says: str,
) -> None:
    token_file = write_grant(
        tmp_path / "token.json", example_server, client_id=CLIENT, access_ttl=0
    )
    expired = stored(token_file)
    if fault is not None:
        fault(example_server)

    result = run_example(example_server, token_file, "items", secret=secret)

    assert result.returncode == status
    assert result.stderr.startswith(says)
    assert result.stdout == ""
    assert example_server.stats().api_ok == 0
    assert_no_secret(result, expired.access_token, expired.refresh_token)


# --- the examples the documentation includes -----------------------------------------------------

API, TOKEN_URL = "https://api.example.com/", "https://auth.example.com/oauth/token"
DOC_CLIENTS = {"my-client": "s3cret", "my-job": "s3cret"}
# The peers' examples talk to a plain-http server on loopback, which both refuse unless told.
PEERS_ON_LOOPBACK = {"OAUTHLIB_INSECURE_TRANSPORT": "1", "AUTHLIB_INSECURE_TRANSPORT": "1"}


@pytest.fixture
def doc_server() -> Iterator[LocalAuthServer]:
    with LocalAuthServer(access_ttl=60.0, clients=DOC_CLIENTS) as running:
        yield running


def aimed_at(example: str, folder: Path, addresses: dict[str, str]) -> Path:
    """Copy ``example`` into ``folder`` with each address replaced by its local stand-in."""
    text = (EXAMPLES / example).read_text()
    for address, local in addresses.items():
        assert address in text, f"{example} no longer names {address}: update this test"
        text = text.replace(address, local)
    copy = folder / Path(example).name
    copy.write_text(text)
    return copy


def local_addresses(server: LocalAuthServer) -> dict[str, str]:
    return {API: server.api_url, TOKEN_URL: server.token_url}


def run_python(script: Path, folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=folder,
        env={**os.environ, **env},
        check=False,
    )


@pytest.mark.parametrize(
    ("example", "output", "api_calls"),
    [
        ("quickstart.py", "200\n", 1),
        ("migrating/after.py", "200\n", 1),
        ("migrating/after_hardcoded.py", "200\n", 1),
        # RefreshingClient, RefreshingAuth and RefreshingAsyncClient, on one token file
        ("httpx_clients.py", "200\n" * 3, 3),
        # four worker processes of a multiprocessing.Pool, on one token file
        ("pool_workers.py", "40 requests, statuses [200]\n", 40),
    ],
)
def test_the_example_refreshes_an_expired_token_once_and_reaches_the_api(
    example: str, output: str, api_calls: int, doc_server: LocalAuthServer, tmp_path: Path
) -> None:
    write_grant(tmp_path / "token.json", doc_server, client_id="my-client", access_ttl=0)

    result = run_python(aimed_at(example, tmp_path, local_addresses(doc_server)), tmp_path)

    assert (result.returncode, result.stdout) == (0, output), result.stderr
    stats = doc_server.stats()
    assert (stats.refreshes, stats.api_ok, stats.reuse_detections) == (1, api_calls, 0), (
        "every client and process of the example shares one refresh of the expired token"
    )


def test_the_machine_client_gets_its_first_token_without_a_login(
    doc_server: LocalAuthServer, tmp_path: Path
) -> None:
    script = aimed_at("machine_client.py", tmp_path, local_addresses(doc_server))

    result = run_python(script, tmp_path)

    assert (result.returncode, result.stdout) == (0, "200\n"), result.stderr
    assert doc_server.stats().client_credentials == 1
    assert stored(tmp_path / "job-token.json").access_token


@pytest.mark.parametrize(
    ("example", "peer"),
    [
        ("migrating/before_requests_oauthlib.py", "requests_oauthlib"),
        ("migrating/before_authlib.py", "authlib"),
        ("migrating/before_interceptor.py", "requests"),
    ],
)
def test_the_code_a_migration_starts_from_works_in_one_process(
    example: str, peer: str, doc_server: LocalAuthServer, tmp_path: Path
) -> None:
    """The "before" code of the migration guide is a fair picture: alone, it works."""
    pytest.importorskip(peer, reason=f"{peer} is in the bench extra: pip install -e '.[bench]'")
    expired = doc_server.issue_token(client_id="my-client", access_ttl=0)
    # oauthlib counts expires_in from when it reads the file: only expires_at says "expired".
    del expired["expires_in"]
    (tmp_path / "token.json").write_text(json.dumps({**expired, "expires_at": time.time() - 10}))

    result = run_python(
        aimed_at(example, tmp_path, local_addresses(doc_server)), tmp_path, **PEERS_ON_LOOPBACK
    )

    assert (result.returncode, result.stdout) == (0, "200\n"), result.stderr
    assert doc_server.stats().refreshes == 1


def test_the_hard_coded_header_a_migration_starts_from_works_while_its_token_lives(
    doc_server: LocalAuthServer, tmp_path: Path
) -> None:
    live = doc_server.issue_token(client_id="my-client")
    script = aimed_at("migrating/before_hardcoded.py", tmp_path, {API: doc_server.api_url})

    result = run_python(script, tmp_path, API_TOKEN=str(live["access_token"]))

    assert (result.returncode, result.stdout) == (0, "200\n"), result.stderr


def test_an_in_house_refresh_endpoint_is_a_refresher_function(
    doc_server: LocalAuthServer, tmp_path: Path
) -> None:
    write_grant(tmp_path / "token.json", doc_server, client_id="my-client", access_ttl=0)
    with InHouseRefreshEndpoint(doc_server) as endpoint:
        script = aimed_at(
            "in_house_refresh.py",
            tmp_path,
            {API: doc_server.api_url, "https://auth.example.com/auth/refresh": endpoint.url},
        )

        result = run_python(script, tmp_path)

    assert (result.returncode, result.stdout) == (0, "200\n"), result.stderr
    assert (endpoint.calls, doc_server.stats().refreshes) == (1, 1)


class InHouseRefreshEndpoint:
    """``POST /auth/refresh {"token": REFRESH_TOKEN}`` on loopback, as an in-house service
    might offer; it redeems the token at the local server's token endpoint for "my-client"."""

    def __init__(self, server: LocalAuthServer) -> None:
        self.calls = 0
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                endpoint.calls += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = requests.post(
                    server.token_url,
                    auth=("my-client", "s3cret"),
                    timeout=10,
                    data={"grant_type": "refresh_token", "refresh_token": body["token"]},
                )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: object) -> None:
                """Quiet: the test's output is the example's."""

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/auth/refresh"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> InHouseRefreshEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()


def test_the_redis_example_shares_the_token_through_redis(
    doc_server: LocalAuthServer, tmp_path: Path
) -> None:
    from refreshing_session.redis_store import RedisTokenStore

    from .support.redis_servers import RedisServer

    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        key = "refreshing-session:api.example.com"
        expired = doc_server.issue_token(client_id="my-client", access_ttl=0)
        RedisTokenStore(redis.url, key).write(
            Token.from_response(expired, requested_at=time.time())
        )
        addresses = {
            **local_addresses(doc_server),
            "redis://my-app:s3cret@redis.internal:6379/0": redis.url,
        }
        script = aimed_at("redis_store.py", tmp_path, addresses)

        result = run_python(script, tmp_path)

        assert (result.returncode, result.stdout) == (0, "200\n"), result.stderr
        snapshot = RedisTokenStore(redis.url, key).read()
        assert snapshot is not None
        assert snapshot.token.access_token != expired["access_token"]
        assert doc_server.stats().refreshes == 1
    finally:
        redis.stop()


def test_the_testing_example_runs_on_its_own_server(tmp_path: Path) -> None:
    result = run_python(EXAMPLES / "local_server.py", tmp_path)

    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr


def test_the_pytest_plugin_example_passes_with_the_installed_plugin() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "pytest_plugin"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=EXAMPLES / "pytest_plugin",
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_the_profiles_example_is_a_valid_profile_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTLY_CLIENT_SECRET", "from-the-environment")

    prod = load_profile("prod", EXAMPLES / "profiles.toml")
    nightly = load_profile("nightly", EXAMPLES / "profiles.toml")

    assert (prod.client_id, prod.scope) == ("my-cli", "openid offline_access api")
    assert (nightly.grant, nightly.client_secret) == ("client_credentials", "from-the-environment")


@contextlib.contextmanager
def serving(script: str, folder: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``script`` (a server) in ``folder``, as the docs say; yield the first line it prints.
    Then stop it with Ctrl+C (SIGINT), as the docs say, and check that it stopped cleanly."""
    server = subprocess.Popen(
        [sys.executable, script], cwd=folder, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            rest, _ = server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
    assert (server.returncode, rest) == (0, "stopped\n"), "Ctrl+C must stop the server cleanly"


@pytest.mark.timeout(60)
def test_the_first_script_runs_as_pasted_against_the_one_command_server(tmp_path: Path) -> None:
    """The getting-started page: `python serve.py` in examples/first_script, then
    `python first_script.py` in the same folder; the token the server left was expired."""
    for name in ("serve.py", "first_script.py"):
        shutil.copy(EXAMPLES / "first_script" / name, tmp_path)

    with serving("serve.py", tmp_path) as first_line:
        assert first_line.startswith("serving on http://127.0.0.1:")
        expired = stored(tmp_path / "token.json")
        result = run_python(tmp_path / "first_script.py", tmp_path)

        assert (result.returncode, result.stdout) == (0, "200 /api/items\n200 /api/orders\n"), (
            result.stderr
        )
        fresh = stored(tmp_path / "token.json")
        assert fresh.access_token != expired.access_token, "the expired token was refreshed"
        assert fresh.refresh_token != expired.refresh_token, "the grant was rotated once"
    assert "secret" not in (tmp_path / "config.toml").read_text(), "a public client: no secret"


@pytest.mark.timeout(90)
def test_the_walk_through_from_nothing_to_a_working_script(tmp_path: Path) -> None:
    """The tutorial's session, command by command: log in with the device flow, look, call the
    API, refresh, log out, and the app then asks for a login."""
    for name in ("server.py", "app.py"):
        shutil.copy(EXAMPLES / "walkthrough" / name, tmp_path)
    env = {
        **os.environ,
        "REFRESHING_SESSION_CONFIG": str(tmp_path / "config.toml"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "LOCAL_SECRET": "secret",
    }
    with serving("server.py", tmp_path, env) as first_line:
        assert first_line.startswith("ready http://127.0.0.1:")
        assert (tmp_path / "config.toml").is_file(), "server.py writes the profile where it runs"

        def run(*command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=45,
                cwd=tmp_path,
                env=env,
                check=False,
            )

        cli = (sys.executable, "-m", "refreshing_session")
        login = run(*cli, "login", "--profile", "local")
        assert login.returncode == 0, login.stderr
        assert "enter the code" in login.stdout
        assert "logged in: the token file" in login.stdout
        status = run(*cli, "status", "--profile", "local")
        assert "mode: 0600" in status.stdout
        assert "'path': '/api/items'" in run(sys.executable, "app.py").stdout
        assert run(*cli, "refresh", "--profile", "local").stdout.startswith("refreshed:")
        assert run(*cli, "logout", "--profile", "local").stdout.startswith(
            "logged out: revoked the grant"
        )
        after = run(sys.executable, "app.py")
        assert after.returncode == 1
        assert "log in first with `refreshing-session login --profile local`" in after.stderr


# Serves two requests of the FastAPI example's app, with its lifespan, and prints what each got.
FASTAPI_DRIVER = """
import runpy, sys
from fastapi.testclient import TestClient
app = runpy.run_path(sys.argv[1])["app"]
with TestClient(app) as client:
    for _ in range(2):
        response = client.get("/items")
        print(response.status_code, response.json().get("path") or response.json()["detail"])
"""


@pytest.mark.parametrize(
    ("logged_in", "expected"),
    [
        (True, "200 /api/v1/items\n200 /api/v1/items\n"),
        (False, "503 this service must be logged in again\n" * 2),
    ],
)
def test_the_fastapi_example_serves_through_one_client_for_its_life(
    logged_in: bool, expected: str, doc_server: LocalAuthServer, tmp_path: Path
) -> None:
    if logged_in:
        write_grant(tmp_path / "token.json", doc_server, client_id="my-client", access_ttl=0)
    script = aimed_at("fastapi_service.py", tmp_path, local_addresses(doc_server))

    result = subprocess.run(
        [sys.executable, "-c", FASTAPI_DRIVER, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )

    assert (result.returncode, result.stdout) == (0, expected), result.stderr
    stats = doc_server.stats()
    assert (stats.refreshes, stats.reuse_detections) == (int(logged_in), 0)
