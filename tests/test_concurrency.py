"""Single flight across threads and processes, against the rotating local server."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from refreshing_session import RefreshingSession
from refreshing_session.testing import LocalAuthServer

from .conftest import SessionFactory, expire, stored
from .support.processes import (
    REQUESTS,
    ROOT,
    job_for,
    run_in_processes,
    start_process,
    use_in_child_processes,
    use_session,
    wait_for,
)

TIMEOUT = 10


@pytest.mark.timeout(120)
def test_a_storm_of_8_processes_by_4_threads_refreshes_once_per_expiry(
    record_property: Callable[[str, object], None],
) -> None:
    """The demo is the storm: 8 processes x 4 threads, tokens living 1 s, for 6 s."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "refreshing_session",
            "demo",
            "--processes",
            "8",
            "--threads",
            "4",
            "--seconds",
            "6",
            "--ttl",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
        check=False,
    )
    report = json.loads(result.stdout)
    record_property("figures", report)
    assert report["caller_failures"] == 0
    assert report["failure_kinds"] == {}
    assert report["token_file_intact"] is True
    assert report["reuse_detections"] == 0
    assert report["revoked_grants"] == 0
    assert report["tokens_due"] >= 2, "the storm did not last through several expiries"
    assert 0 < report["token_endpoint_calls"] <= report["tokens_due"]
    assert report["successes"] == report["requests"] > 0
    assert result.returncode == 0


def test_threads_sharing_a_session_refresh_once(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    session = make_session()
    assert_one_refresh_for_threads(lambda: session, server)


def test_threads_with_their_own_sessions_refresh_once(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    assert_one_refresh_for_threads(make_session, server)


def assert_one_refresh_for_threads(
    session_for: Callable[[], RefreshingSession], server: LocalAuthServer, count: int = 32
) -> None:
    start = threading.Barrier(count)
    statuses: list[int] = []

    def call() -> None:
        session = session_for()
        start.wait(timeout=TIMEOUT)
        statuses.append(session.get(server.api_url + "items", timeout=TIMEOUT).status_code)

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * count
    assert server.stats().token_requests == 1
    assert server.stats().api_unauthorized == 0


def test_a_401_after_a_siblings_refresh_adopts_its_token_without_a_call(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    sibling, late = make_session(), make_session()
    sent = late.token  # the late session sends this one...
    expire(token_file)
    assert sibling.get(server.api_url + "items", timeout=TIMEOUT).ok  # ...the sibling refreshes
    calls = server.stats().token_requests
    # ...and the late one's request got a 401
    adopted = late.keeper.after_unauthorized(sent, "/api/items")
    assert adopted == stored(token_file)
    assert server.stats().token_requests == calls


def test_a_refused_refresh_token_stops_every_process_without_more_calls(
    server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    server.revoke_all()
    job = job_for(server, token_file)
    assert run_in_processes(REQUESTS, 1, job) == ["LoginRequired"]
    assert run_in_processes(REQUESTS, 4, job) == ["LoginRequired"] * 4
    assert server.stats().token_requests == 1


@pytest.mark.timeout(60)
def test_a_process_killed_while_refreshing_leaves_no_stale_lock(
    server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    before = token_file.read_bytes()
    server.slow_token_endpoint(60)
    job = job_for(server, token_file)
    victim = start_process(REQUESTS, job)
    wait_for(lambda: server.stats().token_requests == 1)  # it holds the lock, mid-refresh
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)
    assert token_file.read_bytes() == before
    server.slow_token_endpoint(0)
    started = time.monotonic()
    statuses = run_in_processes(REQUESTS, 2, job)
    assert statuses == ["200", "200"]
    assert time.monotonic() - started < 20
    assert server.stats().reuse_detections == 0


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_sessions_keep_sharing_the_file_in_child_processes(
    method: str, make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    session = make_session()
    url = server.api_url + "items"
    assert use_session(session, url) == 200  # used before the child starts
    expire(token_file)
    assert use_in_child_processes(session, url, method) == [200] * 4
    assert use_session(session, url) == 200
    assert server.stats().token_requests == 1


def test_a_pickled_session_carries_no_lock_or_cached_token(make_session: SessionFactory) -> None:
    session = make_session()
    session.token  # noqa: B018  (loads the token into the cache)
    state = pickle.dumps(session)
    assert session.token.access_token.encode() not in state
