"""The guard's rules as a value: which 401s may refresh, and how a token's history changes."""

from __future__ import annotations

from refreshing_session.guard import MAX_WASTED, Guard, path_key, refresh_may_cure

A, B, C = path_key("/api/a"), path_key("/api/b"), path_key("/api/c")


def test_a_fresh_guard_lets_every_401_refresh() -> None:
    assert Guard().may_refresh(A)


def test_the_path_that_obtained_a_token_waits_for_its_replay() -> None:
    guard = Guard().successor(A)
    assert not guard.may_refresh(A)
    assert guard.may_refresh(B)
    assert guard.cured(A).may_refresh(A)


def test_a_pending_path_without_a_verdict_counts_as_wasted_for_the_next_token() -> None:
    guard = Guard().successor(A).successor(B)
    assert guard == Guard(wasted=(A,), pending=B)
    assert not guard.may_refresh(C), f"at most {MAX_WASTED} doubtful paths"


def test_a_late_verdict_clears_a_path_already_counted_as_wasted() -> None:
    assert Guard(wasted=(A,), pending=B).cured(A) == Guard(pending=B)


def test_the_guard_round_trips_through_notes_and_ignores_malformed_ones() -> None:
    guard = Guard(wasted=(A,), pending=B)
    notes = guard.notes({"refresh_refused": "x"})
    assert Guard.of(notes) == guard
    assert notes["refresh_refused"] == "x"
    assert Guard().notes({"other": 1}) == {"other": 1}
    for bad in ({"guard_401": "x"}, {"guard_401": {"wasted": [1], "pending": 2}}):
        assert Guard.of(bad) == Guard()


def test_which_401s_a_refresh_may_cure() -> None:
    assert refresh_may_cure(401, {})
    assert refresh_may_cure(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    assert not refresh_may_cure(401, {"WWW-Authenticate": 'Bearer error="insufficient_scope"'})
    assert not refresh_may_cure(401, {"WWW-Authenticate": 'Basic realm="x"'})
    assert not refresh_may_cure(403, {})


def test_a_path_whose_request_could_not_be_replayed_is_untried_until_a_replayable_one_comes() -> (
    None
):
    guard = Guard().successor(A).unanswered(A)
    assert guard == Guard(untried=A)
    assert not guard.may_refresh(A, replayable=False), "a second stream would refresh again"
    assert guard.may_refresh(A, replayable=True), "a replayable request may find out"
    assert guard.successor(A) == Guard(pending=A), "the replayable request's token tries it"
    assert Guard.of(guard.notes()) == guard, "the untried path travels in the notes"


def test_an_untried_path_counts_towards_the_limit() -> None:
    guard = Guard(wasted=(B,), untried=A)
    assert not guard.may_refresh(C), f"at most {MAX_WASTED} refreshes not known to help"
    assert not guard.may_refresh(A, replayable=True)
