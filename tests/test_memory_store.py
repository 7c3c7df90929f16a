"""refreshing_session.testing.MemoryStore: the TokenStore promises the keeper relies on
(versions, compare-and-swap, notes, a lock that is held or raises LockTimeout), across threads."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from refreshing_session import LockTimeout, Token, TokenStore
from refreshing_session.keeper import TokenKeeper
from refreshing_session.testing import MemoryStore

from .support.locks import lock_held

WAIT = 5.0
GRANT = Token("access-1", refresh_token="refresh-1", expires_at=2e9)


def test_it_is_a_token_store_holding_its_first_token_and_notes() -> None:
    store = MemoryStore(GRANT, {"note": "kept"})
    assert isinstance(store, TokenStore)
    snapshot = store.read()
    assert snapshot is not None
    assert (snapshot.token, dict(snapshot.notes), snapshot.version) == (GRANT, {"note": "kept"}, 1)
    assert store.version() == 1
    assert MemoryStore().read() is None
    assert MemoryStore().version() is None


def test_every_write_is_a_new_version_and_a_delete_never_brings_one_back() -> None:
    store = MemoryStore()
    first = store.write(GRANT)
    second = store.write(GRANT, {"note": "only the notes changed"})
    assert first.version != second.version
    store.delete()
    assert store.read() is None
    assert store.write(GRANT).version not in (first.version, second.version, None)
    assert store.writes == 3


def test_replace_stores_only_over_the_version_it_names() -> None:
    store = MemoryStore(GRANT)
    read = store.read()
    assert read is not None
    login = store.write(Token("a-login-meanwhile"))
    assert store.replace(Token("late-refresh"), None, read.version) is None
    assert store.read() == login, "a compare-and-swap over a stale version overwrote a token"
    renewed = store.replace(Token("access-2"), {"n": 1}, login.version)
    assert renewed is not None
    assert store.read() == renewed


def test_notes_are_a_copy_the_caller_cannot_change_afterwards() -> None:
    notes = {"note": "first"}
    store = MemoryStore(GRANT, notes)
    notes["note"] = "changed by the caller"
    snapshot = store.read()
    assert snapshot is not None
    assert snapshot.notes["note"] == "first"
    with pytest.raises(TypeError):
        snapshot.notes["note"] = "changed through the snapshot"  # type: ignore[index]


@pytest.mark.timeout(20)
def test_the_lock_excludes_another_thread_until_its_timeout() -> None:
    store = MemoryStore(GRANT)
    with (
        lock_held(store),
        pytest.raises(LockTimeout, match=r"not had in 0\.05 s"),
        store.lock(0.05, lambda: False),
    ):
        pytest.fail("the lock was had while another thread held it")
    with store.lock(WAIT, lambda: False):  # released: had at once
        pass


@pytest.mark.timeout(20)
def test_stop_waiting_ends_the_wait_long_before_the_timeout() -> None:
    store = MemoryStore(GRANT)
    asked = threading.Event()

    def stop_waiting() -> bool:
        asked.set()
        return True

    with (
        lock_held(store),
        pytest.raises(LockTimeout),
        store.lock(3600.0, stop_waiting),
    ):
        pytest.fail("the lock was had while another thread held it")
    assert asked.is_set()


@pytest.mark.timeout(20)
def test_a_waiter_gets_the_lock_when_its_holder_lets_go() -> None:
    store = MemoryStore(GRANT)
    order: list[str] = []
    with lock_held(store):
        waiting = threading.Event()

        def wait_for_the_lock() -> None:
            waiting.set()
            with store.lock(WAIT, lambda: False):
                order.append("waiter")

        waiter = threading.Thread(target=wait_for_the_lock)
        waiter.start()
        assert waiting.wait(WAIT)
        order.append("holder lets go")
    waiter.join(WAIT)
    assert order == ["holder lets go", "waiter"]


def test_a_thread_asking_for_the_lock_it_holds_is_told_at_once() -> None:
    store = MemoryStore(GRANT)
    with (
        store.lock(WAIT, lambda: False),
        pytest.raises(LockTimeout, match="this very thread"),
        store.lock(3600.0, lambda: False),
    ):
        pytest.fail("the lock was had twice")


def test_locked_writes_refuses_changes_made_without_the_lock() -> None:
    store = MemoryStore(GRANT, locked_writes=True)
    read = store.read()
    assert read is not None
    changes: list[Callable[[], object]] = [
        lambda: store.write(Token("x")),
        lambda: store.replace(Token("x"), None, read.version),
        store.delete,
    ]
    for change in changes:
        with pytest.raises(RuntimeError, match="without holding the store's lock"):
            change()
    assert store.read() == read
    with store.lock(WAIT, lambda: False):
        assert store.replace(Token("access-2"), None, read.version) is not None


@pytest.mark.timeout(30)
def test_keepers_in_many_threads_share_one_refresh_through_it() -> None:
    """Eight keepers (as eight processes would) find the token expired at once: one refreshes,
    the others adopt its token."""
    store = MemoryStore(Token("expired", refresh_token="refresh-1", expires_at=1.0))
    calls: list[str | None] = []
    start = threading.Barrier(8)

    def refresher(token: Token) -> Token:
        calls.append(token.refresh_token)
        return Token("access-2", refresh_token="refresh-2", expires_at=2e9)

    got: list[Token] = []

    def one_keeper() -> None:
        keeper = TokenKeeper(store, refresher, leeway=0.0, lock_timeout=WAIT)
        start.wait(WAIT)
        got.append(keeper.current())

    threads = [threading.Thread(target=one_keeper) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert calls == ["refresh-1"], "the refresh token was presented more than once"
    assert [token.access_token for token in got] == ["access-2"] * 8


def test_its_repr_shows_no_token() -> None:
    shown = repr(MemoryStore(GRANT))
    assert "access-1" not in shown
    assert "refresh-1" not in shown
    assert "MemoryStore" in shown
