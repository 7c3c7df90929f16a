"""pytest fixtures for testing code that uses a RefreshingSession, against a real local server.

Installing the package enables this plugin (entry point ``pytest11``) in every pytest run, so it
defines no hooks, starts nothing at import, loads the local server's module only when a test
asks for it, and names every fixture ``refreshing_...`` so as not to take a name from anyone's
conftest:

``refreshing_auth_server``
    A started :class:`~refreshing_session.testing.LocalAuthServer` on 127.0.0.1, stopped after
    the test. It knows the client ``"client"`` with the secret ``"secret"``.
``refreshing_auth_server_options``
    The keyword arguments that server is built with (none by default). Override it in a
    conftest, or per test with ``@pytest.mark.parametrize("refreshing_auth_server_options",
    [{"access_ttl": 1}])``.
``refreshing_token_file``
    A token file in the test's ``tmp_path`` holding a fresh grant the server issued to
    ``"client"``, as if someone had just logged in.
``refreshing_api_session``
    A :class:`~refreshing_session.RefreshingSession` on the server's API (``server.api_url``)
    with that token file and an :class:`~refreshing_session.OAuth2Refresher`, closed after.

Every fixture is function-scoped: each test gets its own server, grant and file, so a test that
revokes the grant or injects a fault cannot affect another.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .session import RefreshingSession
    from .testing import LocalAuthServer

CLIENT_ID = "client"
CLIENT_SECRET = "secret"


@pytest.fixture
def refreshing_auth_server_options() -> Mapping[str, Any]:
    """Return the keyword arguments for :class:`LocalAuthServer`; override to change them."""
    return {}


@pytest.fixture
def refreshing_auth_server(
    refreshing_auth_server_options: Mapping[str, Any],
) -> Iterator[LocalAuthServer]:
    """Yield a started local authorization server; stop it after the test."""
    from .testing import LocalAuthServer

    with LocalAuthServer(**refreshing_auth_server_options) as server:
        yield server


@pytest.fixture
def refreshing_token_file(tmp_path: Path, refreshing_auth_server: LocalAuthServer) -> Path:
    """Return the path of a token file holding a fresh grant from ``refreshing_auth_server``."""
    from .store import TokenFile
    from .token import Token

    path = tmp_path / "token.json"
    answer = refreshing_auth_server.issue_token(CLIENT_ID)
    TokenFile(path).write(Token.from_response(answer, requested_at=time.time()))
    return path


@pytest.fixture
def refreshing_api_session(
    refreshing_auth_server: LocalAuthServer, refreshing_token_file: Path
) -> Iterator[RefreshingSession]:
    """Yield a RefreshingSession on the local server's API and token file; close it after."""
    from .refreshers import OAuth2Refresher
    from .session import RefreshingSession

    refresher = OAuth2Refresher(refreshing_auth_server.token_url, CLIENT_ID, CLIENT_SECRET)
    with RefreshingSession(
        refreshing_auth_server.api_url, token_file=refreshing_token_file, refresher=refresher
    ) as session:
        yield session
