"""refresh_on: an API that answers 403 to an expired token gets a refresh and one replay when
the user says so, under the same 401 rules (the guard, the Bearer challenge's errors)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refreshing_session import OAuth2Refresher, RefreshingSession
from refreshing_session.guard import refresh_may_cure

from .support.handlers import QuietHandler
from .support.hostile import LoopbackServer
from .support.recording import RecordingEndpoint


class ForbiddingApi(LoopbackServer):
    """An API that answers 403 (with ``challenge``, if any) to any token but the current one,
    and 403 always at /admin."""

    def __init__(self, challenge: str = "") -> None:
        self.current = "at-1"
        self.calls = 0
        api = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                with api._lock:
                    api.calls += 1
                    allowed = self.headers.get(
                        "Authorization"
                    ) == f"Bearer {api.current}" and not self.path.startswith("/admin")
                if allowed:
                    self.send_empty(200)
                else:
                    self.send_empty(403, {"WWW-Authenticate": challenge} if challenge else {})

        super().__init__(Handler)


class Issuer:
    """Token answers that number the tokens, and tell the API which one is current."""

    def __init__(self, api: ForbiddingApi) -> None:
        self.api = api
        self.issued = 0
        self._lock = threading.Lock()

    def __call__(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.issued += 1
            token = f"at-{self.issued + 1}"
        self.api.current = token
        return 200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": f"rt-{self.issued + 1}",
        }


def write_first_token(path: Path) -> Path:
    """Write the token :class:`Issuer` counts from (``at-1``, ``rt-1``) to ``path``, as a
    login would; return ``path``."""
    path.write_text(
        json.dumps(
            {
                "access_token": "at-1",
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": "rt-1",
            }
        )
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return write_first_token(tmp_path / "token.json")


@contextlib.contextmanager
def running(
    token_file: Path, challenge: str = "", **options: Any
) -> Iterator[tuple[ForbiddingApi, Issuer, RefreshingSession]]:
    """The API, its token issuer and a session whose stored token the API no longer takes."""
    with ForbiddingApi(challenge) as api:
        issuer = Issuer(api)
        with (
            RecordingEndpoint(issuer) as endpoint,
            RefreshingSession(
                api.origin + "/",
                token_file=token_file,
                refresher=OAuth2Refresher(endpoint.url, "client", "secret", retries=0),
                **options,
            ) as session,
        ):
            api.current = "at-revoked"  # the stored token died early
            yield api, issuer, session


def test_with_refresh_on_403_a_dead_token_is_refreshed_and_the_call_replayed(
    token_file: Path,
) -> None:
    with running(token_file, refresh_on=(401, 403)) as (api, issuer, session):
        assert session.get(api.origin + "/items", timeout=5).status_code == 200
        assert issuer.issued == 1
        assert api.calls == 2, "the refused call and its replay"


def test_by_default_a_403_goes_back_to_the_caller(token_file: Path) -> None:
    with running(token_file) as (api, issuer, session):
        assert session.get(api.origin + "/items", timeout=5).status_code == 403
        assert issuer.issued == 0


def test_a_path_that_always_answers_403_gets_one_wasted_refresh_only(token_file: Path) -> None:
    with running(token_file, refresh_on=(401, 403)) as (api, issuer, session):
        api.current = "at-1"  # the token is good; /admin refuses it anyway
        statuses = [session.get(api.origin + "/admin", timeout=5).status_code for _ in range(10)]
        assert statuses == [403] * 10
        assert issuer.issued == 1, "the guard stops refreshing where a refresh did not help"


def test_a_403_for_missing_scope_is_never_refreshed_for(token_file: Path) -> None:
    challenge = 'Bearer error="insufficient_scope", scope="admin"'
    with running(token_file, challenge, refresh_on=(401, 403)) as (api, issuer, session):
        assert session.get(api.origin + "/items", timeout=5).status_code == 403
        assert issuer.issued == 0


def test_the_guard_rules_take_the_statuses() -> None:
    assert refresh_may_cure(403, {}, (401, 403))
    assert not refresh_may_cure(403, {})
    assert not refresh_may_cure(
        403, {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}, (403,)
    )
    assert not refresh_may_cure(401, {}, (403,))


@pytest.mark.parametrize(
    ("refresh_on", "error"),
    [
        ((), ValueError),
        ((200,), ValueError),
        (("403",), ValueError),
        (403, TypeError),
        ("401", TypeError),
        ((True,), ValueError),
    ],
)
def test_refresh_on_must_be_4xx_statuses(
    token_file: Path, refresh_on: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="refresh_on"):
        RefreshingSession("https://api.example.com/", token_file=token_file, refresh_on=refresh_on)
