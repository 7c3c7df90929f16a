"""A fast model-based test of the keeper and the 401 flow: several sibling keepers (processes)
share one MemoryStore, a fake clock and a fake authorization server as strict as real ones
(rotating single-use refresh tokens, reuse detection that revokes the grant, lifetimes rounded
down to whole seconds, access tokens revoked early, a server clock that jumps ahead,
token-endpoint outages). Every request goes through the real ``bearer_flow`` pumped by the real
``flow.drive``, with the fake API answering its sends. Hypothesis interleaves the requests and
checks the rules after every step:

- a 401 at a path where the very token sent had worked (it died: revoked, a clock ahead, a
  lifetime rounded down) is refreshed, and the replay is answered 200;
- any other 401 reaches the caller only once ``MAX_WASTED`` refreshes since the last
  scheduled one did not help, and paths refused for good cost at most ``MAX_WASTED``
  refreshes per scheduled token;
- a request is sent at most twice (one replay, with another token), and every answer but
  the returned one is released;
- no refresh token is presented twice, no newer token is overwritten, none is lost.

The real-parts tests (LocalAuthServer, real files, processes) stand beside this one; this one
explores orders of events that they cannot reach in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
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

from refreshing_session import LoginRequired, RefreshFailed, Token
from refreshing_session.credentials import Credentials
from refreshing_session.flow import Hop, Seen, bearer_flow, drive
from refreshing_session.guard import MAX_WASTED
from refreshing_session.keeper import TokenKeeper
from refreshing_session.testing import MemoryStore

LIFETIME = 10
API = "https://api.example"
OK = "/api/items"
# Two paths refused for good (a missing permission answered with 401): enough to reach the
# guard's limit of MAX_WASTED, after which 401s at unproven paths go back to the caller.
REFUSING = ("/api/always401", "/api/admin")
CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
# The requests the model makes: (path, whether its body can be sent again).
HOPS = [
    (OK, True),
    (OK, True),
    (OK, False),
    *((path, True) for path in REFUSING),
    (REFUSING[0], False),
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Answer:
    """One answer of the fake API, as a front end holds it until the flow releases it."""

    status: int
    token: str
    released: bool = False

    def seen(self) -> Seen:
        return self.status, CHALLENGE if self.status == 401 else {}


class FakeServer:
    """An authorization server and its API in memory, as strict as Okta or oidc-provider."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.ahead = 0.0  # how far the server's clock runs ahead of the client's
        self.issued = 0
        self.refresh_token = ""
        self.spent: set[str] = set()
        self.expiry: dict[str, float] = {}  # live access tokens and when they die
        self.revoked_grant = False
        self.outages = 0
        self.calls = 0

    def now(self) -> float:
        return self.clock.now + self.ahead

    def issue(self) -> dict[str, object]:
        self.issued += 1
        access, self.refresh_token = f"a{self.issued}", f"r{self.issued}"
        self.expiry[access] = math.floor(self.now()) + LIFETIME  # rounded, as real ones do
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

    def api(self, headers: Mapping[str, str], path: str) -> Answer:
        scheme, _, access_token = headers["Authorization"].partition(" ")
        assert scheme == "Bearer", "the token went without its Bearer scheme"
        live = not self.revoked_grant and self.now() < self.expiry.get(access_token, 0)
        return Answer(200 if live and path not in REFUSING else 401, access_token)

    def revoke_access_tokens(self) -> None:
        self.expiry.clear()


@dataclass
class Request:
    """What happened to one request on its way through the flow."""

    answers: list[Answer] = field(default_factory=list)
    refreshes_before_sending: int = 0
    refreshes_after_the_first_answer: int = 0

    @property
    def sent(self) -> list[str]:
        return [answer.token for answer in self.answers]


def send(keeper: TokenKeeper, server: FakeServer, path: str, replayable: bool) -> Request:
    """One request through the real 401 flow, pumped by the real ``drive`` as the requests
    front end pumps it, with ``server`` answering each send; return what happened."""
    issued = server.issued
    request = Request()

    def send_with(headers: Mapping[str, str]) -> Answer:
        if not request.answers:
            request.refreshes_before_sending = server.issued - issued
        answer = server.api(headers, path)
        request.answers.append(answer)
        return answer

    def release(answer: Answer) -> None:
        assert not answer.released, "an answer was released twice"
        answer.released = True

    flow = bearer_flow(keeper, Credentials((401,)), Hop("GET", API + path, replayable))
    try:
        final = drive(flow, send_with, Answer.seen, release)
    finally:
        request.refreshes_after_the_first_answer = (
            server.issued - issued - request.refreshes_before_sending
        )
    assert not final.released, "the answer returned to the caller was released"
    assert final is request.answers[-1], "the caller did not get the last answer"
    unreleased = [answer for answer in request.answers[:-1] if not answer.released]
    assert not unreleased, "an answer that is not returned was never released"
    return request


class KeeperModel(RuleBasedStateMachine):
    @initialize(siblings=st.integers(1, 3), leeway=st.sampled_from([0.0, 0.5, 3.0]))
    def start(self, siblings: int, leeway: float) -> None:
        self.clock = FakeClock()
        self.server = FakeServer(self.clock)
        first = Token.from_response(self.server.issue(), requested_at=self.clock.now)
        self.store = MemoryStore(first, locked_writes=True)

        def refresher(token: Token) -> Mapping[str, object]:
            return self.server.refresh(token.refresh_token)

        self.keepers = [
            TokenKeeper(self.store, refresher, leeway=leeway, lock_timeout=1.0, clock=self.clock)
            for _ in range(siblings)
        ]
        # (access token, path) pairs each keeper saw accepted: its proof that a 401 there
        # means the token died.
        self.worked: list[set[tuple[str, str]]] = [set() for _ in range(siblings)]
        # Since the last scheduled refresh: refreshes for paths refused for good, and the
        # paths of refreshes for 401s that no accepted replay followed.
        self.forbidden_refreshes = 0
        self.unhelpful: list[str] = []
        self.stored_sequence = self._sequence()

    def _sequence(self) -> int:
        snapshot = self.store.read()
        return 0 if snapshot is None else int(snapshot.token.access_token[1:])

    @rule(which=st.integers(0, 2), hop=st.sampled_from(HOPS))
    def a_request(self, which: int, hop: tuple[str, bool]) -> None:
        self.request(which, *hop)

    def request(self, which: int, path: str, replayable: bool) -> Request | None:
        """Send a request for ``path`` through keeper ``which``, check the rules, and return
        what happened to it (None when the token endpoint was down)."""
        index = which % len(self.keepers)
        try:
            request = send(self.keepers[index], self.server, path, replayable)
        except RefreshFailed:
            return None  # an outage: the caller is told, and no 401 came back
        self._check_sends(request, replayable)
        if request.refreshes_before_sending:
            self.forbidden_refreshes, self.unhelpful = 0, []  # a new token lifetime
        refreshed_for_401 = request.refreshes_after_the_first_answer > 0
        first, final = request.answers[0], request.answers[-1]
        if first.status == 401 and (first.token, path) in self.worked[index]:
            assert refreshed_for_401, "a 401 where the very token worked was not refreshed"
            assert not replayable or final.status == 200, (
                "a 401 where the very token worked reached the caller"
            )
        if path == OK and final.status == 401 and replayable:
            assert path in self.unhelpful or len(self.unhelpful) >= MAX_WASTED, (
                "a 401 that a refresh cures reached the caller before the guard's limit"
            )
        if path in REFUSING:
            self.forbidden_refreshes += refreshed_for_401
        if refreshed_for_401 and final.status == 401:
            self.unhelpful.append(path)
        assert self.forbidden_refreshes <= MAX_WASTED, (
            "refreshes for paths refused for good are not bounded"
        )
        for answer in request.answers:
            if answer.status != 401:
                self.worked[index].add((answer.token, path))
        return request

    def _check_sends(self, request: Request, replayable: bool) -> None:
        sent = request.sent
        assert 1 <= len(sent) <= (2 if replayable else 1), f"the request was sent {len(sent)} times"
        if len(sent) == 2:
            assert request.answers[0].status == 401, "a request that was answered was replayed"
            assert sent[0] != sent[1], "the request was replayed with the token refused"

    @rule(seconds=st.floats(0.1, 2 * LIFETIME))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(seconds=st.floats(0.1, LIFETIME))
    def server_clock_jumps_ahead(self, seconds: float) -> None:
        self.server.ahead += seconds

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
        snapshot = self.store.read()
        assert snapshot is not None
        assert snapshot.token.refresh_token == self.server.refresh_token, (
            "the newest refresh token is not in the store"
        )


def test_keeper_model() -> None:
    run_state_machine_as_test(
        KeeperModel,
        settings=settings(
            max_examples=150,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,  # the same examples on every run and machine
            database=None,
        ),
    )


def early_death(machine: KeeperModel, how: str) -> None:
    """End the access token in hand before its time, as ``how`` says, while the keeper still
    holds it for valid (the machine started at a whole second, its token issued 0.7 s later)."""
    if how == "revoked":
        machine.access_tokens_revoked()
    elif how == "a server clock ahead":
        machine.server_clock_jumps_ahead(5.0)
        machine.time_passes(5.3)
    else:  # the server counted the lifetime from the whole second the token was issued in
        machine.time_passes(9.6)


@pytest.mark.parametrize("how", ["revoked", "a server clock ahead", "whole-second expiry"])
def test_a_token_that_worked_and_died_early_is_refreshed_past_the_guards_limit(how: str) -> None:
    """Once paths refused for good have spent the guard's refreshes, a 401 at a path where
    the very token worked still means it died: it is refreshed and the replay answered."""
    machine = KeeperModel()
    machine.start(siblings=1, leeway=0.0)
    machine.time_passes(0.7)
    for path in REFUSING:
        machine.request(0, path, replayable=True)
    assert machine.forbidden_refreshes == MAX_WASTED
    worked = machine.request(0, OK, replayable=True)
    assert worked is not None
    assert [answer.status for answer in worked.answers] == [200]
    early_death(machine, how)
    cured = machine.request(0, OK, replayable=True)
    assert cured is not None
    assert [answer.status for answer in cured.answers] == [401, 200]
    assert cured.refreshes_after_the_first_answer == 1
    for path in REFUSING:  # the guard still holds: the new token is no licence to refresh
        refused = machine.request(0, path, replayable=True)
        assert refused is not None
        assert refused.refreshes_after_the_first_answer == 0


def test_the_model_catches_a_keeper_without_the_guard(monkeypatch: Any) -> None:
    """The model can fail: with a guard that always allows a refresh, a path refused for good
    makes refreshes unbounded, and the model says so."""
    from refreshing_session import guard

    monkeypatch.setattr(guard.Guard, "may_refresh", lambda self, key, replayable=True: True)
    machine = KeeperModel()
    machine.start(siblings=1, leeway=0.0)
    for _ in range(MAX_WASTED):
        machine.request(0, REFUSING[0], replayable=True)
    with pytest.raises(AssertionError, match="not bounded"):
        machine.request(0, REFUSING[0], replayable=True)


def test_the_model_catches_a_keeper_that_holds_back_curable_401s(monkeypatch: Any) -> None:
    """The model can fail: with the old guard (a token obtained for a 401 is never refreshed
    for another) and no proof, a token revoked after such a refresh sends its 401 to the
    caller, though it had worked at that path."""
    from refreshing_session import guard

    monkeypatch.setattr(
        guard.Guard, "may_refresh", lambda self, key, replayable=True: self == guard.Guard()
    )
    monkeypatch.setattr(guard.Guard, "cured", lambda self, key: self)
    monkeypatch.setattr(TokenKeeper, "worked", lambda self, token, path: None)
    machine = KeeperModel()
    machine.start(siblings=1, leeway=0.0)
    machine.access_tokens_revoked()
    machine.request(0, OK, replayable=True)  # T1 refused, T2 obtained for a 401, replay works
    machine.access_tokens_revoked()
    with pytest.raises(AssertionError, match="where the very token worked"):
        machine.request(0, OK, replayable=True)  # T2 refused: the old guard gives it back


def test_streamed_requests_to_a_path_refused_for_good_cost_at_most_the_guards_refreshes() -> None:
    machine = KeeperModel()
    machine.start(siblings=1, leeway=0.0)
    for _ in range(MAX_WASTED + 1):
        machine.request(0, REFUSING[0], replayable=False)
