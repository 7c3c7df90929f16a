"""The pytest plugin, as a user meets it: a small project of their own, run by a real pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# A user's conftest with fixtures named like this project's own, which the plugin must not take.
USER_CONFTEST = """
import pytest

@pytest.fixture
def server():
    return "the user's own server"

@pytest.fixture
def token_file():
    return "the user's own token file"
"""

# A user's tests. Each writes the tokens it saw to SECRETS, for the outer test to look for.
USER_TESTS = """
import threading
import time
from pathlib import Path

import pytest
import requests

from refreshing_session import RefreshingSession, Token, TokenFile
from refreshing_session.testing import LocalAuthServer

SECRETS = Path(__file__).with_name("secrets.txt")
STARTED = []


def remember(token_file):
    token = TokenFile(token_file).read().token
    with SECRETS.open("a") as out:
        out.write(f"{token.access_token}\\n{token.refresh_token}\\n")
    return token


def test_the_fixtures_work_together(refreshing_auth_server, refreshing_token_file,
                                    refreshing_api_session):
    assert isinstance(refreshing_auth_server, LocalAuthServer)
    assert isinstance(refreshing_api_session, RefreshingSession)
    token = remember(refreshing_token_file)
    assert token.refresh_token
    assert refreshing_api_session.get(refreshing_auth_server.api_url + "items").status_code == 200
    assert refreshing_api_session.token == token
    assert refreshing_auth_server.stats().api_ok == 1
    STARTED.extend(thread for thread in threading.enumerate()
                   if thread.name == f"LocalAuthServer {refreshing_auth_server.url}")


def test_the_previous_server_was_stopped(refreshing_auth_server):
    assert len(STARTED) == 1
    assert not STARTED[0].is_alive()


def test_an_expired_token_is_refreshed_against_the_local_server(
        refreshing_auth_server, refreshing_token_file, refreshing_api_session, caplog):
    caplog.set_level("DEBUG")
    answer = refreshing_auth_server.issue_token(access_ttl=0)
    TokenFile(refreshing_token_file).write(Token.from_response(answer, requested_at=time.time()))
    expired = remember(refreshing_token_file)

    assert refreshing_api_session.get(refreshing_auth_server.api_url + "items").status_code == 200

    fresh = remember(refreshing_token_file)
    assert fresh.access_token != expired.access_token
    stats = refreshing_auth_server.stats()
    assert (stats.refreshes, stats.reuse_detections, stats.api_ok) == (1, 0, 1)
    assert "refreshed the access token" in caplog.text
    for secret in (expired.access_token, expired.refresh_token, fresh.access_token,
                   fresh.refresh_token):
        assert secret not in caplog.text


@pytest.mark.parametrize("refreshing_auth_server_options", [{"access_ttl": 5}])
def test_the_server_options_can_be_overridden(refreshing_token_file):
    assert remember(refreshing_token_file).lifetime == 5


def test_the_users_own_fixtures_keep_their_names(server, token_file, refreshing_auth_server):
    assert server == "the user's own server"
    assert token_file == "the user's own token file"


def test_failure_output_shows_no_token(refreshing_token_file, refreshing_api_session):
    token = remember(refreshing_token_file)
    session = refreshing_api_session
    assert session.token is None, (token, session, session.token)
"""

# Passes only when the plugin is loaded but has not imported the server or started a thread.
UNUSED_PLUGIN_TEST = """
import sys
import threading

def test_the_plugin_costs_nothing_until_used(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("refreshing_session")
    assert "refreshing_session.testing" not in sys.modules
    assert threading.active_count() == 1
"""


def run_pytest(project: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run pytest in ``project`` the way a user would, untouched by this suite's settings."""
    (project / "pytest.ini").write_text("[pytest]\n")
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *options],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=50,
    )


def test_a_users_tests_get_a_server_a_token_file_and_a_session_and_nothing_leaks(
    tmp_path: Path,
) -> None:
    (tmp_path / "conftest.py").write_text(USER_CONFTEST)
    (tmp_path / "test_user.py").write_text(USER_TESTS)

    # Every log record printed, and each failure's local variables shown.
    result = run_pytest(tmp_path, "-rA", "--showlocals", "--log-cli-level=DEBUG")

    assert result.returncode == 1, result.stdout
    assert "1 failed, 5 passed" in result.stdout.splitlines()[-1]
    assert "FAILED test_user.py::test_failure_output_shows_no_token" in result.stdout
    assert "RefreshingSession" in result.stdout  # the locals were shown
    assert "refreshed the access token" in result.stdout  # and so were the logs
    secrets = (tmp_path / "secrets.txt").read_text().split()
    assert len(secrets) == 10
    output = result.stdout + result.stderr
    assert not [secret for secret in secrets if secret in output]


def test_the_plugin_is_loaded_everywhere_but_costs_nothing_until_used(tmp_path: Path) -> None:
    (tmp_path / "test_unused.py").write_text(UNUSED_PLUGIN_TEST)

    result = run_pytest(tmp_path)

    assert result.returncode == 0, result.stdout
    assert "1 passed" in result.stdout
