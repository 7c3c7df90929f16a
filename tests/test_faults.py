"""Faults: crashes, hung and misbehaving token endpoints, 401 floods, clocks, unusable locks."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from refreshing_session import (
    LockTimeout,
    LoginRequired,
    RefreshFailed,
    Token,
    TokenError,
    TokenFile,
    TokenFileError,
)
from refreshing_session.testing import LocalAuthServer

from .conftest import SessionFactory, expire, refresher_for, stored, write_grant
from .support.processes import REQUESTS, job_for, run_in_processes, start_process, wait_for

TIMEOUT = 10

WRITER = """
import os, time
from refreshing_session import Token, TokenFile
store = TokenFile(job["file"])
for sequence in range(1, job["writes"] + 1):
    store.write(Token("access-" + str(sequence), expires_at=time.time() + 60,
                      extra={"sequence": sequence}))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("killed", [False, True], ids=["finishes", "killed"])
def test_readers_never_see_a_partial_or_older_token(tmp_path: Path, killed: bool) -> None:
    path = tmp_path / "token.json"
    TokenFile(path).write(Token("access-0", extra={"sequence": 0}))
    writer = start_process(WRITER, {"file": str(path), "writes": 100_000 if killed else 400})
    seen = [0]
    while writer.poll() is None:
        snapshot = TokenFile(path).read()  # raises on a partial or broken file
        assert snapshot is not None
        sequence = snapshot.token.extra["sequence"]
        assert sequence >= seen[-1]
        seen.append(sequence)
        if killed and sequence > 300:
            os.kill(writer.pid, signal.SIGKILL)
    writer.communicate(timeout=10)
    final = stored(path).extra["sequence"]
    assert final >= seen[-1]
    assert len(set(seen)) > 50  # the reader really raced the writer
    if not killed:
        assert final == 400


@pytest.mark.timeout(30)
def test_a_hung_token_endpoint_times_out_and_waiters_time_out_sooner(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    before = token_file.read_bytes()
    server.slow_token_endpoint(20)
    refresher = refresher_for(server, timeout=1.5, retries=0)
    session, sibling = (make_session(refresher=refresher, lock_timeout=0.5) for _ in range(2))
    outcomes: dict[str, tuple[type[BaseException], float]] = {}

    def attempt(name: str, client: Any) -> None:
        started = time.monotonic()
        try:
            client.get(server.api_url + "items", timeout=TIMEOUT)
        except TokenError as error:
            outcomes[name] = (type(error), time.monotonic() - started)

    holder = threading.Thread(target=attempt, args=("holder", session))
    holder.start()
    wait_for(lambda: server.stats().token_requests == 1)  # the holder is stuck in the refresh
    waiters = [
        threading.Thread(target=attempt, args=(name, client))
        for name, client in (("same session", session), ("sibling", sibling))
    ]
    for thread in waiters:
        thread.start()
    for thread in [*waiters, holder]:
        thread.join(timeout=10)
    assert outcomes["holder"][0] is RefreshFailed
    assert 1.4 < outcomes["holder"][1] < 5
    for name in ("same session", "sibling"):
        assert outcomes[name][0] is LockTimeout
        assert outcomes[name][1] < 1.4  # waited its lock_timeout, not the hung refresh
    assert token_file.read_bytes() == before


MISBEHAVIOURS: dict[str, dict[str, Any]] = {
    "500": {"status": 500},
    "502": {"status": 502},
    "503": {"status": 503},
    "429 Retry-After": {"status": 429, "headers": {"Retry-After": "1"}},
    "HTML error page": {
        "status": 500,
        "body": b"<html><h1>Oops</h1></html>",
        "content_type": "text/html",
    },
    "invalid JSON": {"status": 200, "body": b"{not json", "content_type": "application/json"},
    "JSON without access_token": {
        "status": 200,
        "body": b'{"token_type": "Bearer"}',
        "content_type": "application/json",
    },
    "non-bearer token_type": {
        "status": 200,
        "content_type": "application/json",
        "body": b'{"access_token": "abc", "token_type": "mac"}',
    },
}


@pytest.mark.parametrize("fault", MISBEHAVIOURS.values(), ids=MISBEHAVIOURS.keys())
def test_a_misbehaving_token_endpoint_leaves_the_file_byte_identical(
    fault: dict[str, Any], make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    before = token_file.read_bytes()
    server.fail_token_endpoint(times=10, **fault)
    with pytest.raises(RefreshFailed, match=str(fault["status"])):
        make_session(refresher=refresher_for(server, retries=2)).get(
            server.api_url + "items", timeout=TIMEOUT
        )
    assert token_file.read_bytes() == before
    assert server.stats().token_requests <= 3


def test_a_connection_reset_leaves_the_file_byte_identical(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    before = token_file.read_bytes()
    server.reset_token_endpoint(times=10)
    with pytest.raises(RefreshFailed, match="could not reach"):
        make_session().get(server.api_url + "items", timeout=TIMEOUT)
    assert token_file.read_bytes() == before
    assert server.stats().token_requests == 1  # may have reached the server: never resent


def test_a_single_transient_failure_is_invisible_to_the_caller(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    server.fail_token_endpoint(503, headers={"Retry-After": "0"})
    assert make_session().get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert server.stats().token_requests == 2


@pytest.mark.timeout(60)
def test_a_flood_of_unfixable_401s_costs_one_refresh(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    session = make_session()
    statuses: list[int] = []

    def flood() -> None:
        for _ in range(10):
            statuses.append(session.get(server.api_url + "always401", timeout=TIMEOUT).status_code)

    threads = [threading.Thread(target=flood) for _ in range(16)]
    for thread in threads:
        thread.start()
    outputs = run_in_processes(REQUESTS, 4, job_for(server, token_file, path="always401", count=10))
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [401] * 160
    assert outputs == [" ".join(["401"] * 10)] * 4
    assert server.stats().refreshes == 1
    assert server.stats().reuse_detections == 0


def test_a_login_landing_during_a_refused_refresh_is_adopted(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)

    def refused_while_someone_logs_in(token: Token) -> dict[str, Any]:
        write_grant(token_file, server)  # a login by another tool lands meanwhile
        raise LoginRequired("the refresh token was refused")

    session = make_session(refresher=refused_while_someone_logs_in)
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert b"refused" not in token_file.read_bytes()


def test_a_file_with_only_expires_in_counts_from_its_modification_time(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    data = stored(token_file).to_dict()
    del data["expires_at"]
    token_file.write_text(json.dumps(data))
    an_hour_ago = time.time() - 3600
    os.utime(token_file, (an_hour_ago, an_hour_ago))
    assert make_session().get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert server.stats().refreshes == 1  # it expired 59 minutes ago: no fresh look on reload


def test_a_token_without_expiry_is_refreshed_on_401_only(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    data = stored(token_file).to_dict()
    for key in ("expires_at", "expires_in"):
        del data[key]
    token_file.write_text(json.dumps(data))
    session = make_session(leeway=10**6)
    for _ in range(3):
        assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert server.stats().token_requests == 0
    server.revoke_all()
    write_grant(token_file, server)
    assert session.get(server.api_url + "always401", timeout=TIMEOUT).status_code == 401
    assert server.stats().refreshes == 1


def test_a_lifetime_shorter_than_the_leeway_is_not_refreshed_on_every_request(
    make_session: SessionFactory, server: LocalAuthServer, tmp_path: Path
) -> None:
    path = write_grant(tmp_path / "short.json", server, access_ttl=4)
    session = make_session(token_file=path, leeway=30)
    for _ in range(20):
        assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert server.stats().token_requests == 0


@pytest.mark.timeout(10)
def test_an_unusable_lock_file_gives_a_clear_error(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    Path(str(token_file) + ".lock").mkdir()
    with pytest.raises(TokenFileError, match=r"\.lock"):
        make_session().get(server.api_url + "items", timeout=TIMEOUT)


def test_the_lock_file_holds_no_secret(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    make_session().get(server.api_url + "items", timeout=TIMEOUT)
    lock = Path(str(token_file) + ".lock")
    token = stored(token_file)
    assert lock.exists()
    assert token.access_token.encode() not in lock.read_bytes()
    assert (token.refresh_token or "").encode() not in lock.read_bytes()


FULL_DISK = """
import json, resource, signal, time
from refreshing_session import OAuth2Refresher, RefreshingSession, TokenFile
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
session = RefreshingSession(job["api"], token_file=job["file"],
                            refresher=OAuth2Refresher(job["token_url"], "client", "secret"))
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))  # no token file fits in 64 bytes
statuses = [session.get(job["api"] + "items", timeout=10).status_code for _ in range(3)]
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
before = TokenFile(job["file"]).read().token
deadline = time.monotonic() + 10
while TokenFile(job["file"]).read().token == before and time.monotonic() < deadline:
    statuses.append(session.get(job["api"] + "items", timeout=10).status_code)
print(json.dumps(statuses))
"""


@pytest.mark.timeout(30)
def test_a_refreshed_token_the_disk_refuses_is_kept_and_saved_later(
    server: LocalAuthServer, token_file: Path
) -> None:
    expired = expire(token_file)
    [output] = run_in_processes(FULL_DISK, 1, job_for(server, token_file))
    assert set(json.loads(output)) == {200}
    assert stored(token_file) != expired  # saved once the disk took it again
    stats = server.stats()
    assert (stats.refreshes, stats.reuse_detections, stats.api_unauthorized) == (1, 0, 0)


def test_a_login_landing_during_a_refresh_wins(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    refresher = refresher_for(server)

    logins: list[Token] = []

    def refresh_while_someone_logs_in(token: Token) -> Token:
        new = refresher(token)
        logins.append(stored(write_grant(token_file, server)))  # lands before the save
        return new

    session = make_session(refresher=refresh_while_someone_logs_in)
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert stored(token_file) == logins[0] == session.token
    assert server.stats().refreshes == 1


def test_failed_refreshes_of_an_expired_token_back_off(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    expire(token_file)
    server.fail_token_endpoint(503, times=100)
    session = make_session(refresher=refresher_for(server, retries=0))
    messages = []
    for _ in range(10):
        with pytest.raises(RefreshFailed) as caught:
            session.get(server.api_url + "items", timeout=TIMEOUT)
        messages.append(str(caught.value))
    assert server.stats().token_requests == 1
    assert all("not retried for another" in message for message in messages[1:])


@pytest.mark.timeout(20)
def test_requests_do_not_wait_for_an_early_refresh_in_flight(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    data = stored(token_file).to_dict()
    data.update(expires_at=time.time() + 20, expires_in=60)  # due (leeway 30), still valid
    TokenFile(token_file).write(Token.from_file(data, written_at=0))
    server.slow_token_endpoint(3)
    session = make_session()
    early = threading.Thread(
        target=session.get, args=(server.api_url + "items",), kwargs={"timeout": TIMEOUT}
    )
    early.start()
    wait_for(lambda: server.stats().token_requests == 1)
    started = time.monotonic()
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert time.monotonic() - started < 1
    early.join(timeout=10)
    assert server.stats().refreshes == 1
