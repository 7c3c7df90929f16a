"""Tokens that die before their time (revoked, rounded, a server clock ahead), and the guard
that keeps refreshes for incurable 401s bounded, against the real local server."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from refreshing_session import TokenFile
from refreshing_session.testing import LocalAuthServer

from .conftest import SessionFactory, expire, refresher_for, stored
from .support.processes import REQUESTS, job_for, run_in_processes

TIMEOUT = 10


def test_a_token_revoked_after_a_401_refresh_is_refreshed_again(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    session = make_session()
    for revocation in range(1, 4):  # T1 revoked -> T2 works; T2 revoked -> T3 works; ...
        assert server.revoke_access_tokens() == 1
        response = session.get(server.api_url + "items", timeout=TIMEOUT)
        assert response.status_code == 200, f"revocation {revocation}: a curable 401 came back"
    assert server.stats().refreshes == 3


def test_a_sibling_process_refreshes_a_token_that_died_after_a_401_refresh(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    session = make_session()
    server.revoke_access_tokens()
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    server.revoke_access_tokens()  # the token obtained for a 401, proven, now dies too
    outputs = run_in_processes(REQUESTS, 2, job_for(server, token_file, count=3))
    assert outputs == ["200 200 200"] * 2, "a sibling returned a curable 401 to its caller"
    assert server.stats().refreshes == 2
    assert server.stats().reuse_detections == 0


def test_a_server_clock_ahead_kills_tokens_early_and_no_401_reaches_the_caller(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    session = make_session()
    for jump in (70.0, 140.0):  # each jump kills the 60-second token the client thinks fresh
        server.set_clock_offset(jump)
        assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
        assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert server.stats().refreshes == 2


def test_an_always_401_path_mixed_with_working_calls_costs_one_wasted_refresh_per_token(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    session = make_session()
    for _ in range(20):
        assert session.get(server.api_url + "always401", timeout=TIMEOUT).status_code == 401
        assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert server.stats().refreshes == 1, "refused calls must not each cost a refresh"
    expire(token_file)  # the next token starts the count afresh: one more wasted refresh
    for _ in range(20):
        assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
        assert session.get(server.api_url + "always401", timeout=TIMEOUT).status_code == 401
    assert server.stats().refreshes == 3  # the scheduled one and one wasted


def test_early_deaths_between_refused_calls_are_all_cured(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    session = make_session()
    for round_ in range(6):
        assert session.get(server.api_url + "always401", timeout=TIMEOUT).status_code == 401
        server.revoke_access_tokens()
        response = session.get(server.api_url + "items", timeout=TIMEOUT)
        assert response.status_code == 200, f"round {round_}: a curable 401 came back"
    # One wasted refresh for the refusing path, one cure per revocation; never one per call.
    assert server.stats().refreshes == 1 + 6


def test_paths_that_refuse_every_token_cost_at_most_two_refreshes_per_token(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    session = make_session()
    for index in range(10):  # ten different refusing paths, each asked three times
        for _ in range(3):
            response = session.get(server.api_url + f"always401/{index}", timeout=TIMEOUT)
            assert response.status_code == 401
    assert server.stats().refreshes == 2
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    server.revoke_access_tokens()  # the token worked: a 401 now means it died, guard or not
    for _ in range(3):
        assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert server.stats().refreshes == 3


def test_a_401_on_a_body_that_could_not_be_replayed_is_not_held_against_its_path(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    session = make_session()
    server.revoke_access_tokens()
    upload = session.post(server.api_url + "upload", data=iter([b"part"]), timeout=TIMEOUT)
    assert upload.status_code == 401  # refreshed, but a generator cannot be sent again
    for _ in range(2):  # the path is no refusing one: later early deaths there are cured
        server.revoke_access_tokens()
        again = session.post(server.api_url + "upload", data=b"part", timeout=TIMEOUT)
        assert again.status_code == 200
    assert server.stats().refreshes == 3


@pytest.mark.timeout(60)
def test_threads_mixing_refused_and_working_calls_cost_a_bounded_number_of_refreshes(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    session = make_session()
    statuses: dict[str, list[int]] = {"always401": [], "items": []}

    def mix() -> None:
        for _ in range(10):
            for path, seen in statuses.items():
                seen.append(session.get(server.api_url + path, timeout=TIMEOUT).status_code)

    threads = [threading.Thread(target=mix) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=50)
    assert set(statuses["items"]) == {200}, "a working call came back refused"
    assert statuses["always401"] == [401] * 160
    assert 1 <= server.stats().refreshes <= 2
    assert server.stats().reuse_detections == 0


def test_the_guard_travels_with_the_token_to_sibling_processes(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    assert make_session().get(server.api_url + "always401", timeout=TIMEOUT).status_code == 401
    outputs = run_in_processes(REQUESTS, 2, job_for(server, token_file, path="always401", count=5))
    assert outputs == [" ".join(["401"] * 5)] * 2
    assert server.stats().refreshes == 1


def test_each_decision_is_logged_with_its_reason(
    make_session: SessionFactory,
    server: LocalAuthServer,
    token_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    session, sibling = make_session(), make_session()
    expire(token_file)
    session.get(server.api_url + "items", timeout=TIMEOUT)  # refresh: expired
    sibling.get(server.api_url + "items", timeout=TIMEOUT)  # (reads the new token)
    server.revoke_access_tokens()
    session.get(server.api_url + "items", timeout=TIMEOUT)  # refresh: a 401
    session.get(server.api_url + "always401", timeout=TIMEOUT)  # refresh: a 401, wasted
    session.get(server.api_url + "always401", timeout=TIMEOUT)  # held back
    before = stored(token_file)
    server.revoke_access_tokens()
    sibling.get(server.api_url + "items", timeout=TIMEOUT)  # refreshes for a 401...
    assert stored(token_file) != before
    messages = [
        record.getMessage()
        for record in caplog.records
        if record.name == "refreshing_session.keeper" and record.levelno == logging.DEBUG
    ]
    for reason in ("it expired", "a 401 refused it", "holding a 401 back"):
        assert any(reason in message for message in messages), (reason, messages)


def test_a_siblings_token_adopted_for_a_replay_is_renewed_first_when_it_is_due(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    keeper = make_session().keeper
    sent = keeper.current()
    # A sibling renews the token meanwhile, and its token is due by now (so the server,
    # which rounds lifetimes down, may have ended it already): here it has.
    renewed = refresher_for(server)(sent)
    TokenFile(token_file).write(replace(renewed, expires_at=time.time() + 5))
    server.revoke_access_tokens()
    replacement = keeper.after_unauthorized(sent, "/api/items")  # the request with T1 got a 401
    assert replacement is not None
    assert replacement.access_token != renewed.access_token, "a dead token was adopted"
    answer = requests.get(
        server.api_url + "items",
        timeout=TIMEOUT,
        headers={"Authorization": replacement.authorization},
    )
    assert answer.status_code == 200


def test_a_401_where_the_same_token_worked_is_renewed_even_while_its_cure_is_unrecorded(
    make_session: SessionFactory, server: LocalAuthServer
) -> None:
    keeper = make_session().keeper
    first = keeper.current()
    server.revoke_access_tokens()
    second = keeper.after_unauthorized(first, "/api/items")  # pending at /api/items...
    assert second is not None
    keeper.worked(second, "/api/items")  # ...a request there worked, its record not yet made
    server.revoke_access_tokens()
    third = keeper.after_unauthorized(second, "/api/items")
    assert third is not None, "a 401 where this very token worked was held back"
    assert server.stats().refreshes == 2
