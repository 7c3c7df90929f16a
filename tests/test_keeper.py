"""The keeper's operations for the command line, and the keeper over any TokenStore."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from refreshing_session import (
    ClientCredentialsRefresher,
    LockTimeout,
    LoginRequired,
    RefreshingSession,
    Snapshot,
    Token,
    TokenFile,
    TokenFileError,
    TokenStore,
    TokenStoreError,
)
from refreshing_session.keeper import TokenKeeper
from refreshing_session.store import Version
from refreshing_session.testing import LocalAuthServer, MemoryStore

from .conftest import SessionFactory, expire, refresher_for, stored
from .support.locks import lock_held

TIMEOUT = 10


def keeper_for(server: LocalAuthServer, store: TokenStore, **options: Any) -> TokenKeeper:
    options.setdefault("leeway", 30.0)
    options.setdefault("lock_timeout", 5.0)
    return TokenKeeper(store, refresher_for(server), **options)


def test_install_stores_a_login_and_clears_the_notes(
    server: LocalAuthServer, token_file: Path
) -> None:
    store = TokenFile(token_file)
    store.write(stored(token_file), {"refresh_refused": "invalid_grant"})
    login = Token("a-new-login", refresh_token="r", expires_at=2e9)
    assert keeper_for(server, store).install(login) == login
    snapshot = store.read()
    assert snapshot is not None
    assert (snapshot.token, dict(snapshot.notes)) == (login, {})


@pytest.mark.timeout(20)
def test_install_waits_for_the_lock_and_gives_up_after_lock_timeout(
    server: LocalAuthServer, token_file: Path
) -> None:
    store = TokenFile(token_file)
    before = stored(token_file)
    with lock_held(store), pytest.raises(LockTimeout, match=r"lock_timeout=0\.2"):
        keeper_for(server, store, lock_timeout=0.2).install(Token("late"))
    assert stored(token_file) == before


def test_refresh_now_refreshes_a_token_that_is_not_due(
    server: LocalAuthServer, token_file: Path
) -> None:
    before = stored(token_file)
    new = keeper_for(server, TokenFile(token_file)).refresh_now()
    assert new != before
    assert stored(token_file) == new
    assert server.stats().refreshes == 1


def test_refresh_now_without_a_token_asks_for_a_login(
    server: LocalAuthServer, tmp_path: Path
) -> None:
    keeper = keeper_for(
        server,
        TokenFile(tmp_path / "none.json"),
        login_command="refreshing-session login --profile prod",
    )
    for copy in (keeper, pickle.loads(pickle.dumps(keeper))):  # a pool's worker too
        with pytest.raises(LoginRequired, match="--profile prod"):
            copy.refresh_now()
    assert server.stats().token_requests == 0


def test_remove_hands_the_token_over_then_deletes_it(
    server: LocalAuthServer, token_file: Path
) -> None:
    before = stored(token_file)
    seen: list[Token] = []
    assert keeper_for(server, TokenFile(token_file)).remove(seen.append) == before
    assert seen == [before]
    assert not token_file.exists()
    assert keeper_for(server, TokenFile(token_file)).remove(seen.append) is None
    assert seen == [before]


def test_remove_keeps_the_token_when_the_step_before_fails(
    server: LocalAuthServer, token_file: Path
) -> None:
    def refuse(token: Token) -> None:
        raise RuntimeError("revocation endpoint down")

    before = stored(token_file)
    with pytest.raises(RuntimeError):
        keeper_for(server, TokenFile(token_file)).remove(refuse)
    assert stored(token_file) == before


# --- the keeper over a store of another kind -----------------------------------------------------


def test_a_session_works_over_any_token_store(
    server: LocalAuthServer, make_session: SessionFactory
) -> None:
    store = MemoryStore()
    assert isinstance(store, TokenStore)
    store.write(Token.from_response(server.issue_token(), requested_at=0.0))
    session = make_session(token_file=None, store=store)
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert server.stats().refreshes == 1  # issued at time 0: long expired
    assert store.writes == 2
    assert "MemoryStore" in repr(session)


def test_a_refreshed_token_written_over_by_a_login_gives_way(
    server: LocalAuthServer, token_file: Path
) -> None:
    """The fencing the stores share: a token is stored only over the version it replaces."""
    expire(token_file)
    store = TokenFile(token_file)
    login = Token("logged-in-by-hand", refresh_token="r", expires_at=2e9)

    def refresh_while_someone_logs_in(token: Token) -> Token:
        store.write(login)
        return Token("refreshed", refresh_token="r2", expires_at=2e9)

    keeper = TokenKeeper(store, refresh_while_someone_logs_in, leeway=30, lock_timeout=5)
    assert keeper.current() == login
    assert stored(token_file) == login


def test_a_session_rejects_a_store_of_the_wrong_kind(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="TokenStore"):
        RefreshingSession("https://api.example.com/", store=object())  # type: ignore[arg-type]


# --- a store that fails ------------------------------------------------------------------------


class FailingFile(TokenFile):
    """A token file whose writes fail ``failures`` times (a full disk, say), then work."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    def replace(
        self, token: Token, notes: Mapping[str, Any] | None, replacing: Version | None
    ) -> Snapshot | None:
        if self.failures > 0:
            self.failures -= 1
            raise TokenFileError(
                "cannot write the token file (No space left on device)", path=self.path
            )
        return super().replace(token, notes, replacing)


def test_refresh_now_stores_the_new_token_once_the_store_recovers(
    server: LocalAuthServer, token_file: Path
) -> None:
    new = keeper_for(server, FailingFile(token_file, failures=2)).refresh_now()
    assert stored(token_file) == new


def test_refresh_now_says_so_when_the_new_token_cannot_be_stored(
    server: LocalAuthServer, token_file: Path
) -> None:
    """A command line's process ends after the refresh: a token kept only in its memory
    would be lost silently, with the stored refresh token spent."""
    before = stored(token_file)
    with pytest.raises(TokenStoreError, match=r"could not be stored.*log in again"):
        keeper_for(server, FailingFile(token_file, failures=100)).refresh_now()
    assert stored(token_file) == before
    assert server.stats().refreshes == 1


def test_refresh_now_gets_a_first_token_from_a_token_source(
    server: LocalAuthServer, tmp_path: Path
) -> None:
    path = tmp_path / "machine.json"
    keeper = TokenKeeper(
        TokenFile(path),
        ClientCredentialsRefresher(server.token_url, "client", "secret"),
        leeway=30,
        lock_timeout=5,
    )
    assert keeper.refresh_now() == stored(path)


def test_remove_without_a_step_before_removes_an_unreadable_token(
    server: LocalAuthServer, token_file: Path
) -> None:
    token_file.write_text("{ not json")
    with pytest.raises(TokenFileError):
        keeper_for(server, TokenFile(token_file)).remove(lambda token: None)
    assert token_file.exists()
    assert keeper_for(server, TokenFile(token_file)).remove() is None
    assert not token_file.exists()


class UnreachableLock(TokenFile):
    """A token file whose lock cannot be had: the store is down, as a Redis can be."""

    attempts = 0

    @contextmanager
    def lock(self, timeout: float, stop_waiting: Callable[[], bool]) -> Iterator[None]:
        self.attempts += 1
        raise TokenStoreError("cannot lock: the store is unreachable")
        yield  # never reached; makes this the generator that contextmanager wants


def test_an_early_refresh_that_cannot_lock_pauses_instead_of_retrying_per_request(
    server: LocalAuthServer, token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = {**stored(token_file).to_dict(), "expires_at": time.time() + 20, "expires_in": 60}
    TokenFile(token_file).write(Token.from_file(data, written_at=time.time()))
    store = UnreachableLock(token_file)
    keeper = keeper_for(server, store)
    for _ in range(20):
        assert keeper.current() == stored(token_file)  # the valid token goes on serving
    assert store.attempts == 1
    assert caplog.text.count("early refresh failed") == 1


class CountedLock(TokenFile):
    """A token file that counts the tries to take its lock."""

    attempts = 0

    @contextmanager
    def lock(self, timeout: float, stop_waiting: Callable[[], bool]) -> Iterator[None]:
        self.attempts += 1
        with super().lock(timeout, stop_waiting):
            yield


def test_an_early_refresh_that_finds_the_lock_taken_is_not_tried_on_every_request(
    server: LocalAuthServer, token_file: Path
) -> None:
    """While another process renews the token, the others go on with the still-valid token
    and do not try the lock again (each failed try is a file-lock call) until the store
    changes or a short pause has passed."""
    data = {**stored(token_file).to_dict(), "expires_at": time.time() + 20, "expires_in": 60}
    due = Token.from_file(data, written_at=time.time())
    TokenFile(token_file).write(due)
    now = [time.time()]
    store = CountedLock(token_file)
    keeper = keeper_for(server, store, clock=lambda: now[0])
    with lock_held(TokenFile(token_file)):
        for _ in range(20):
            assert keeper.current() == due
        assert store.attempts == 1, "a request retried the lock while its holder renews"
        TokenFile(token_file).write(due, {"note": "a sibling's notes-only write"})
        assert keeper.current() == due
        assert store.attempts == 2, "a new version of the store is not tried at once"
        now[0] += 1.0
        assert keeper.current() == due
        assert store.attempts == 3, "the lock is not tried again after the pause"
    assert server.stats().refreshes == 0
    now[0] += 1.0
    renewed = keeper.current()
    assert renewed != due
    assert renewed == stored(token_file)
    assert server.stats().refreshes == 1
