"""A fast model-based test of the keeper: several sibling keepers (processes) share one
in-memory store, a fake clock and a fake authorization server as strict as real ones (rotating
single-use refresh tokens, reuse detection that revokes the grant, lifetimes rounded down to
whole seconds, access tokens revoked early, token-endpoint outages). Hypothesis interleaves
their requests and checks the invariants after every step.

The real-parts tests (LocalAuthServer, real files, processes) stand beside this one; this one
explores orders of events that they cannot reach in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from refreshing_session import LoginRequired, RefreshFailed, Snapshot, Token
from refreshing_session.guard import MAX_WASTED
from refreshing_session.keeper import TokenKeeper
from refreshing_session.store import Version

LIFETIME = 10
OK, REFUSING = "/api/items", "/api/always401"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeServer:
    """An authorization server and its API in memory, as strict as Okta or oidc-provider."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.issued = 0
        self.refresh_token = ""
        self.spent: set[str] = set()
        self.expiry: dict[str, float] = {}  # live access tokens and when they die
        self.revoked_grant = False
        self.outages = 0
        self.calls = 0

    def issue(self) -> dict[str, object]:
        self.issued += 1
        access, self.refresh_token = f"a{self.issued}", f"r{self.issued}"
        self.expiry[access] = math.floor(self.clock.now) + LIFETIME  # rounded, as real ones do
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": LIFETIME,
            "refresh_token": self.refresh_token,
        }

    def refresh(self, refresh_token: str | None) -> dict[str, object]:
        self.calls += 1
        if self.outages:
            self.outages -= 1
            raise RefreshFailed("the token endpoint answered 503 (not processed)")
        if refresh_token in self.spent or self.revoked_grant:
            self.revoked_grant = True  # reuse detection: the whole grant dies
            raise LoginRequired("invalid_grant")
        assert refresh_token == self.refresh_token, "an unknown refresh token was presented"
        self.spent.add(refresh_token)
        self.expiry.clear()  # rotation ends the previous access token too
        return self.issue()

    def api(self, access_token: str, path: str) -> int:
        live = not self.revoked_grant and self.clock.now < self.expiry.get(access_token, 0)
        return 200 if live and path != REFUSING else 401

    def revoke_access_tokens(self) -> None:
        self.expiry.clear()


class MemoryStore:
    """A TokenStore in memory; its lock is free whenever no keeper holds it."""

    location = "the memory store"

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.writes = 0
        self.held = False

    def version(self) -> Version | None:
        return None if self.snapshot is None else self.snapshot.version

    def read(self) -> Snapshot | None:
        return self.snapshot

    def write(self, token: Token, notes: Mapping[str, Any] | None = None) -> Snapshot:
        assert self.held, "the store was written without its lock"
        self.writes += 1
        self.snapshot = Snapshot(token, self.writes, MappingProxyType(dict(notes or {})))
        return self.snapshot

    def replace(
        self, token: Token, notes: Mapping[str, Any] | None, replacing: Version | None
    ) -> Snapshot | None:
        return None if self.version() != replacing else self.write(token, notes)

    def delete(self) -> None:
        self.snapshot = None

    @contextmanager
    def lock(self, timeout: float, stop_waiting: Callable[[], bool]) -> Iterator[None]:
        assert not self.held, "the store's lock was taken twice"
        self.held = True
        try:
            yield
        finally:
            self.held = False


def send(keeper: TokenKeeper, server: FakeServer, path: str) -> tuple[int, bool, bool]:
    """One request through the 401 flow, as BearerAdapter.send runs it; return the status the
    caller sees, whether the token was renewed on schedule (due, expired) on the way, and
    whether it was renewed for a 401 that the new token did not cure."""
    calls = server.calls
    token = keeper.current()
    scheduled = server.calls > calls
    status = server.api(token.access_token, path)
    if status != 401:
        keeper.worked(token, path)
        return status, scheduled, False
    calls = server.calls
    replacement = keeper.after_unauthorized(token, path)
    if replacement is None:
        return status, scheduled, False
    status = server.api(replacement.access_token, path)
    keeper.replayed(replacement, path, refused=status == 401)
    return status, scheduled, status == 401 and server.calls > calls


class KeeperModel(RuleBasedStateMachine):
    @initialize(siblings=st.integers(1, 3), leeway=st.sampled_from([0.0, 0.5, 3.0]))
    def start(self, siblings: int, leeway: float) -> None:
        self.clock = FakeClock()
        self.server = FakeServer(self.clock)
        self.store = MemoryStore()
        first = Token.from_response(self.server.issue(), requested_at=self.clock.now)
        self.store.held = True
        self.store.write(first)
        self.store.held = False

        def refresher(token: Token) -> Mapping[str, object]:
            return self.server.refresh(token.refresh_token)

        self.keepers = [
            TokenKeeper(self.store, refresher, leeway=leeway, lock_timeout=1.0, clock=self.clock)
            for _ in range(siblings)
        ]
        self.wasted = 0  # refreshes for 401s that did not help, since the last scheduled one
        self.stored_sequence = self._sequence()

    def _sequence(self) -> int:
        snapshot = self.store.snapshot
        return 0 if snapshot is None else int(snapshot.token.access_token[1:])

    @rule(which=st.integers(0, 2), path=st.sampled_from([OK, OK, REFUSING]))
    def request(self, which: int, path: str) -> None:
        keeper = self.keepers[which % len(self.keepers)]
        try:
            status, scheduled, wasted = send(keeper, self.server, path)
        except RefreshFailed:
            return  # an outage: the caller is told, and no 401 came back
        if path == OK:
            assert status == 200, "a 401 that a refresh cures reached the caller"
        if scheduled:
            self.wasted = 0  # a new token lifetime begins
        self.wasted += wasted
        assert self.wasted <= MAX_WASTED, "refreshes for incurable 401s are not bounded"

    @rule(seconds=st.floats(0.1, 2 * LIFETIME))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def access_tokens_revoked(self) -> None:
        self.server.revoke_access_tokens()

    @precondition(lambda self: self.server.outages == 0)
    @rule(count=st.integers(1, 3))
    def token_endpoint_down(self, count: int) -> None:
        self.server.outages = count

    @invariant()
    def no_refresh_token_redeemed_twice(self) -> None:
        assert not self.server.revoked_grant, "a refresh token was presented twice"

    @invariant()
    def no_newer_token_overwritten(self) -> None:
        sequence = self._sequence()
        assert sequence >= self.stored_sequence, "an older token overwrote a newer one"
        self.stored_sequence = sequence

    @invariant()
    def no_refreshed_token_lost(self) -> None:
        snapshot = self.store.snapshot
        assert snapshot is not None
        assert snapshot.token.refresh_token == self.server.refresh_token, (
            "the newest refresh token is not in the store"
        )


def test_keeper_model() -> None:
    run_state_machine_as_test(
        KeeperModel, settings=settings(max_examples=150, stateful_step_count=40, deadline=None)
    )


def test_the_model_catches_a_keeper_without_the_guard(monkeypatch: Any) -> None:
    """The model can fail: with a guard that always allows a refresh, an always-401 path makes
    refreshes unbounded, and the model says so."""
    from refreshing_session import guard

    monkeypatch.setattr(guard.Guard, "may_refresh", lambda self, key, proven=False: True)
    machine = KeeperModel()
    machine.start(siblings=1, leeway=0.0)
    for _ in range(MAX_WASTED):
        machine.request(0, REFUSING)
    with pytest.raises(AssertionError, match="not bounded"):
        machine.request(0, REFUSING)


def test_the_model_catches_a_keeper_that_holds_back_curable_401s(monkeypatch: Any) -> None:
    """The model can fail: with the old guard (a token obtained for a 401 is never refreshed
    for another), a token revoked after such a refresh sends its 401 to the caller."""
    from refreshing_session import guard

    monkeypatch.setattr(
        guard.Guard, "may_refresh", lambda self, key, proven=False: self == guard.Guard()
    )
    monkeypatch.setattr(guard.Guard, "cured", lambda self, key: self)
    monkeypatch.setattr(TokenKeeper, "worked", lambda self, token, path: None)
    machine = KeeperModel()
    machine.start(siblings=1, leeway=0.0)
    machine.access_tokens_revoked()
    machine.request(0, OK)  # T1 refused, T2 obtained for a 401, replay works
    machine.access_tokens_revoked()
    with pytest.raises(AssertionError, match="reached the caller"):
        machine.request(0, OK)  # T2 refused: the old guard gives the 401 back
