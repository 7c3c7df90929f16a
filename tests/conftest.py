"""Shared fixtures: a running local authorization server and a token file holding a fresh grant."""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from refreshing_session import OAuth2Refresher, RefreshingSession, Token, TokenFile
from refreshing_session.testing import LocalAuthServer

from .support.redis_servers import RedisServer
from .support.scenarios import scenario_of

SessionFactory = Callable[..., RefreshingSession]
_RESULTS: dict[str, Counter[str]] = {}
_FIGURES: dict[str, object] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-json",
        metavar="PATH",
        help="write the outcome of each Reliability scenario to PATH",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of each scenario of the reliability report (docs/reports/reliability.md)."""
    for item in items:
        name = scenario_of(getattr(item, "originalname", item.name))
        if name is not None:
            item.add_marker(pytest.mark.scenario(name))
            item.user_properties.append(("scenario", name))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    properties = dict(report.user_properties)
    name = properties.get("scenario")
    if isinstance(name, str) and (report.when == "call" or report.outcome != "passed"):
        _RESULTS.setdefault(name, Counter())[report.outcome] += 1
    if "figures" in properties:
        _FIGURES[str(name)] = properties["figures"]


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--reliability-json")
    if path:
        Path(path).write_text(json.dumps({"results": _RESULTS, "figures": _FIGURES}))


# LocalAuthServer's tokens are 43 URL-safe characters (secrets.token_urlsafe(32)).
TOKEN_SHAPED = re.compile(r"(?<![\w-])[\w-]{43}(?![\w-])", re.ASCII)


@pytest.fixture(autouse=True)
def no_token_in_debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test runs with DEBUG logging on, and fails if a token-shaped string was logged."""
    caplog.set_level(logging.DEBUG)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    leaked = [hit for record in records for hit in TOKEN_SHAPED.findall(record.getMessage())]
    if leaked:  # the count only: the failure itself must not print the secret
        pytest.fail(f"{len(leaked)} token-shaped strings were logged", pytrace=False)


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    """An asyncio event loop in a thread of its own, for the async front ends."""
    with start_blocking_portal("asyncio") as running:
        yield running


@pytest.fixture
def server() -> Iterator[LocalAuthServer]:
    with LocalAuthServer(access_ttl=60.0) as running:
        yield running


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own on a free loopback port (a skip without one, a failure
    in CI)."""
    running = RedisServer(tmp_path / "redis")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def token_file(tmp_path: Path, server: LocalAuthServer) -> Path:
    return write_grant(tmp_path / "token.json", server)


def write_grant(path: Path, server: LocalAuthServer, **issue: Any) -> Path:
    """Log in: write a fresh grant from ``server`` to ``path``."""
    token = Token.from_response(server.issue_token(**issue), requested_at=time.time())
    TokenFile(path).write(token)
    return path


def refresher_for(
    server: LocalAuthServer, secret: str = "secret", **options: Any
) -> OAuth2Refresher:
    return OAuth2Refresher(server.token_url, "client", secret, **options)


@pytest.fixture
def make_session(server: LocalAuthServer, token_file: Path) -> Iterator[SessionFactory]:
    """Build sessions on the server's API and the shared token file; closes them afterwards."""
    sessions: list[RefreshingSession] = []

    def build(**options: Any) -> RefreshingSession:
        options.setdefault("token_file", token_file)
        options.setdefault("refresher", refresher_for(server))
        session = RefreshingSession(options.pop("prefixes", server.api_url), **options)
        sessions.append(session)
        return session

    yield build
    for session in sessions:
        session.close()


def expire(path: Path) -> Token:
    """Rewrite the token file so that its token has expired; return that token."""
    snapshot = TokenFile(path).read()
    assert snapshot is not None
    data = snapshot.token.to_dict()
    data.update(expires_at=time.time() - 1, expires_in=60)
    expired = Token.from_file(data, written_at=time.time())
    TokenFile(path).write(expired)
    return expired


def stored(path: Path) -> Token:
    snapshot = TokenFile(path).read()
    assert snapshot is not None
    return snapshot.token
