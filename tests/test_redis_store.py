"""RedisTokenStore against real redis-server processes, sessions and subprocesses on loopback."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from refreshing_session import (
    LockTimeout,
    RefreshingSession,
    Token,
    TokenStore,
    TokenStoreError,
)
from refreshing_session.cli import main
from refreshing_session.profiles import CONFIG_ENV
from refreshing_session.redis_store import RedisTokenStore
from refreshing_session.store import MAX_FILE_SIZE
from refreshing_session.testing import LocalAuthServer

from .conftest import refresher_for
from .support.processes import (
    STORM,
    start_process,
    use_in_child_processes,
    use_session,
    wait_for,
)
from .support.redis_jobs import redis_job
from .support.redis_servers import RedisServer, RedisUser
from .support.storms import storm_through_expiries

KEY = "refreshing-session:test"
TIMEOUT = 10
PASSWORD = "pw-Vq73-Lk29-Zr51"
NOW = time.time()
TOKEN = Token(
    "at-Hs82Jd7Qp",
    refresh_token="rt-Wn4Bv9Xc1",
    expires_at=NOW + 3600,
    lifetime=3600.0,
    scope="read",
)
OTHER = Token("at-Mz5Tg3Lr8", refresh_token="rt-Ck6Yf2Np0", expires_at=NOW + 3600)


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path / "redis", persistent=True)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def store(redis_server: RedisServer) -> RedisTokenStore:
    return RedisTokenStore(redis_server.url, KEY)


def raw_client(server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=TIMEOUT)


def log_in(store: RedisTokenStore, server: LocalAuthServer, **issue: Any) -> Token:
    """Store a fresh grant from ``server``, as a login would."""
    token = Token.from_response(server.issue_token(**issue), requested_at=time.time())
    store.write(token)
    return token


def expire(store: RedisTokenStore) -> Token:
    """Store the token again, expired; return that expired token."""
    snapshot = store.read()
    assert snapshot is not None
    data = {**snapshot.token.to_dict(), "expires_at": time.time() - 1, "expires_in": 60}
    expired = Token.from_file(data, written_at=time.time())
    store.write(expired)
    return expired


def session_on(
    store: RedisTokenStore, server: LocalAuthServer, **options: Any
) -> RefreshingSession:
    options.setdefault("refresher", refresher_for(server))
    return RefreshingSession(server.api_url, store=store, **options)


def calls(server: RedisServer, command: str) -> int:
    """How many times Redis ran ``command`` (its command statistics)."""
    stats = raw_client(server).info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def stored_token(server: RedisServer) -> Token:
    """The token in Redis, read by a store of its own (so nothing is cached)."""
    snapshot = RedisTokenStore(server.url, KEY).read()
    assert snapshot is not None
    return snapshot.token


def never() -> bool:
    return False


# ------------------------------------------------------------------ the TokenStore contract


def test_it_is_a_token_store_and_starts_empty(store: RedisTokenStore) -> None:
    assert isinstance(store, TokenStore)
    assert store.version() is None
    assert store.read() is None


def test_a_written_token_reads_back_with_its_notes_and_version(
    store: RedisTokenStore, redis_server: RedisServer
) -> None:
    written = store.write(TOKEN, {"refresh_refused": "invalid_grant"})
    other = RedisTokenStore(redis_server.url, KEY)
    snapshot = other.read()
    assert snapshot is not None
    assert snapshot.token == TOKEN
    assert dict(snapshot.notes) == {"refresh_refused": "invalid_grant"}
    assert snapshot.version == written.version == other.version() == store.version()
    assert written.version is not None


def test_every_write_makes_a_version_never_seen_before(store: RedisTokenStore) -> None:
    seen = {store.write(TOKEN).version, store.write(TOKEN).version}
    store.delete()
    seen.add(store.write(TOKEN).version)
    assert len(seen) == 3
    assert None not in seen


def test_replace_stores_only_over_the_version_it_names(store: RedisTokenStore) -> None:
    assert store.replace(TOKEN, None, None) is not None  # nothing stored: None is current
    first = store.read()
    assert first is not None
    assert store.replace(OTHER, None, None) is None  # a token is there now
    second = store.replace(OTHER, {"obtained_for_a_401": True}, first.version)
    assert second is not None
    assert store.replace(TOKEN, None, first.version) is None  # stale: refused, nothing stored
    latest = store.read()
    assert latest is not None
    assert (latest.token, latest.version) == (OTHER, second.version)
    assert latest.notes["obtained_for_a_401"] is True


def test_delete_removes_the_token(store: RedisTokenStore) -> None:
    store.write(TOKEN)
    store.delete()
    assert store.read() is None
    assert store.version() is None
    store.delete()  # nothing to remove: no error


def test_a_store_built_on_a_decoding_client_reads_the_same(redis_server: RedisServer) -> None:
    client = redis.Redis(port=redis_server.port, decode_responses=True)
    store = RedisTokenStore(client, KEY)
    written = store.write(TOKEN)
    snapshot = RedisTokenStore(redis_server.url, KEY).read()
    assert snapshot is not None
    assert (snapshot.token, snapshot.version) == (TOKEN, written.version)


# ------------------------------------------------------------------ the cheap version check


def test_the_version_is_answered_from_memory_within_check_interval(
    redis_server: RedisServer,
) -> None:
    store = RedisTokenStore(redis_server.url, KEY, check_interval=60)
    store.write(TOKEN)
    before = calls(redis_server, "hget")
    for _ in range(200):
        store.version()
    assert calls(redis_server, "hget") == before


def test_a_siblings_write_is_seen_after_check_interval(redis_server: RedisServer) -> None:
    interval = 0.3
    reader = RedisTokenStore(redis_server.url, KEY, check_interval=interval)
    writer = RedisTokenStore(redis_server.url, KEY)
    first = writer.write(TOKEN)
    assert reader.version() == first.version
    looked = time.monotonic()
    second = writer.write(OTHER)
    assert reader.version() == first.version  # from memory, until the interval has passed
    wait_for(lambda: reader.version() == second.version, timeout=TIMEOUT)
    assert time.monotonic() - looked >= interval * 0.9


def test_threads_of_a_fresh_store_never_take_a_stored_token_for_none(
    redis_server: RedisServer,
) -> None:
    """Until its first answer from Redis, a store has nothing to answer from memory."""
    RedisTokenStore(redis_server.url, KEY).write(TOKEN)
    fresh = RedisTokenStore(redis_server.url, KEY)
    start = threading.Barrier(8)
    seen: list[object] = []

    def look() -> None:
        start.wait(TIMEOUT)
        seen.extend(fresh.version() for _ in range(20))

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(seen) == 160
    assert None not in seen


@pytest.mark.timeout(30)
def test_a_hung_redis_holds_up_a_valid_tokens_requests_once_per_outage_interval(
    redis_server: RedisServer, server: LocalAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisTokenStore(redis_server.url, KEY, check_interval=0)
    log_in(store, server)
    session = session_on(store, server)
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    with redis_server.paused():
        started = time.monotonic()
        statuses = [
            session.get(server.api_url + "items", timeout=TIMEOUT).status_code for _ in range(10)
        ]
        took = time.monotonic() - started
    assert statuses == [200] * 10
    assert took < 4  # one look at the hung Redis (its timeouts), then the token in memory
    assert caplog.text.count("going on with the token last read") == 1


def test_a_client_without_a_socket_timeout_is_warned_about(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    RedisTokenStore(raw_client(redis_server), KEY)
    assert "no socket_timeout" not in caplog.text
    RedisTokenStore(redis.Redis(port=redis_server.port, socket_timeout=None), KEY)
    assert "no socket_timeout" in caplog.text


def test_a_zero_check_interval_asks_redis_every_time(redis_server: RedisServer) -> None:
    reader = RedisTokenStore(redis_server.url, KEY, check_interval=0)
    writer = RedisTokenStore(redis_server.url, KEY)
    assert reader.version() is None
    written = writer.write(TOKEN)
    assert reader.version() == written.version


# ------------------------------------------------------------------ the lock


def test_the_lock_excludes_a_second_holder_until_released(redis_server: RedisServer) -> None:
    first, second = (RedisTokenStore(redis_server.url, KEY) for _ in range(2))
    with first.lock(TIMEOUT, never), pytest.raises(LockTimeout), second.lock(0.05, never):
        pytest.fail("a second holder got the lock")
    with second.lock(0, never):
        pass  # free again once released
    assert not raw_client(redis_server).exists(first.lock_key)


def test_a_waiter_backs_off_and_stops_when_told(redis_server: RedisServer) -> None:
    holder, waiter = (RedisTokenStore(redis_server.url, KEY) for _ in range(2))
    told = threading.Event()
    with holder.lock(TIMEOUT, never):
        before = calls(redis_server, "evalsha")
        threading.Timer(0.4, told.set).start()
        started = time.monotonic()
        with pytest.raises(LockTimeout), waiter.lock(TIMEOUT, told.is_set):
            pytest.fail("the waiter got a held lock")
        waited = time.monotonic() - started
        attempts = calls(redis_server, "evalsha") - before
    assert 0.35 <= waited < 2
    # 2 ms doubling to 50 ms: about a dozen attempts in 0.4 s, not hundreds.
    assert 3 <= attempts <= 20


def test_an_abandoned_lock_expires_after_lock_ttl(redis_server: RedisServer) -> None:
    waiter = RedisTokenStore(redis_server.url, KEY)
    # As a holder that crashed right after taking it with lock_ttl=0.3 leaves it:
    raw_client(redis_server).set(waiter.lock_key, "a crashed holder", px=300)
    started = time.monotonic()
    with waiter.lock(TIMEOUT, never):
        assert time.monotonic() - started >= 0.2


def stall(store: RedisTokenStore, redis_server: RedisServer) -> None:
    """Let ``store``'s held lock expire now, as it does when its process pauses (SIGSTOP, see
    test_attack_redis.py) for over lock_ttl: the key expires before a renewal comes."""
    client = raw_client(redis_server)
    client.pexpire(store.lock_key, 1)
    wait_for(lambda: not client.exists(store.lock_key), timeout=TIMEOUT)


def test_a_holder_whose_lock_expired_cannot_overwrite_the_newer_token(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    stalled = RedisTokenStore(redis_server.url, KEY, lock_ttl=0.2)
    next_holder = RedisTokenStore(redis_server.url, KEY)
    stalled.write(TOKEN)
    with stalled.lock(TIMEOUT, never):
        started_from = stalled.read()
        assert started_from is not None
        stall(stalled, redis_server)
        with next_holder.lock(TIMEOUT, never):
            snapshot = next_holder.read()
            assert snapshot is not None
            assert next_holder.replace(OTHER, None, snapshot.version) is not None
            assert stalled.replace(TOKEN, None, started_from.version) is None
    assert stored_token(redis_server) == OTHER
    assert "expired after lock_ttl=0.2 s" in caplog.text


def test_a_late_release_never_frees_the_next_holders_lock(redis_server: RedisServer) -> None:
    stalled = RedisTokenStore(redis_server.url, KEY, lock_ttl=0.2)
    next_holder = RedisTokenStore(redis_server.url, KEY)
    client = raw_client(redis_server)
    with next_holder.lock(0, never):
        pass  # a first holder, gone: its lock is released
    stalled_lock = stalled.lock(TIMEOUT, never)
    stalled_lock.__enter__()
    stall(stalled, redis_server)
    with next_holder.lock(TIMEOUT, never):
        stalled_lock.__exit__(None, None, None)  # the stalled holder wakes and releases
        assert client.exists(next_holder.lock_key) == 1


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("arguments", "options", "error", "says"),
    [
        ((123, KEY), {}, TypeError, "redis:// URL or a redis.Redis client"),
        (("http://127.0.0.1:6379/0", KEY), {}, ValueError, "must start with redis://"),
        (("127.0.0.1:6379", KEY), {}, ValueError, "must start with redis://"),
        (("redis://user:pw-SECRET@127.0.0.1:port/0", KEY), {}, ValueError, "port must be a number"),
        (("redis://user:pw-SECRET@127.0.0.1:6379/zero", KEY), {}, ValueError, "database"),
        (("redis://127.0.0.1:6379/0", ""), {}, ValueError, "non-empty string"),
        (("redis://127.0.0.1:6379/0", b"key"), {}, TypeError, "non-empty string"),
        (("redis://127.0.0.1:6379/0", KEY), {"lock_ttl": 0}, ValueError, "more than 0"),
        (("redis://127.0.0.1:6379/0", KEY), {"lock_ttl": math.nan}, ValueError, "finite"),
        (("redis://127.0.0.1:6379/0", KEY), {"lock_ttl": "60"}, TypeError, "number of seconds"),
        (("redis://127.0.0.1:6379/0", KEY), {"lock_ttl": True}, TypeError, "number of seconds"),
        (("redis://127.0.0.1:6379/0", KEY), {"check_interval": -1}, ValueError, "0 or more"),
        (("redis://127.0.0.1:6379/0", KEY), {"check_interval": math.inf}, ValueError, "finite"),
    ],
)
def test_bad_arguments_say_how_to_fix_them(
    arguments: tuple[Any, ...], options: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says) as raised:
        RedisTokenStore(*arguments, **options)
    assert "SECRET" not in str(raised.value)


def _hash(**fields: str | bytes) -> Callable[[redis.Redis], object]:
    """What plants a hash with ``fields`` at the token's key."""

    def plant(client: redis.Redis) -> None:
        for name, value in fields.items():
            client.hset(KEY, name, value)

    return plant


GOOD = json.dumps(TOKEN.to_dict())


@pytest.mark.parametrize(
    ("plant", "says"),
    [
        (lambda client: client.set(KEY, "a string"), "another kind of value"),
        (_hash(token=b"{not json", version="1-a", written_at="1"), "is not valid JSON"),
        (_hash(token=b"[1, 2]", version="1-a", written_at="1"), "does not hold a JSON object"),
        (
            _hash(token=b'{"token_type": "mac"}', version="1-a", written_at="1"),
            "does not hold a usable token",
        ),
        (_hash(token=GOOD), "does not hold a complete token"),
        (_hash(token=GOOD, version="1-a", written_at="soon"), "'written_at' field that is not"),
        (_hash(token=b" " * (MAX_FILE_SIZE + 1), version="1-a", written_at="1"), "larger than"),
    ],
    ids=["string", "not-json", "not-object", "not-a-token", "incomplete", "bad-time", "huge"],
)
def test_bad_stored_data_is_a_token_store_error(
    redis_server: RedisServer,
    store: RedisTokenStore,
    plant: Callable[[redis.Redis], object],
    says: str,
) -> None:
    plant(raw_client(redis_server))
    with pytest.raises(TokenStoreError, match=says) as raised:
        store.read()
    assert store.location in str(raised.value)


def test_a_session_on_bad_stored_data_raises_a_token_store_error(
    redis_server: RedisServer, store: RedisTokenStore, server: LocalAuthServer
) -> None:
    raw_client(redis_server).set(KEY, "a string")
    with pytest.raises(TokenStoreError, match="another kind of value"):
        session_on(store, server).get(server.api_url + "items", timeout=TIMEOUT)


def test_an_unreachable_redis_is_a_clear_error_soon(tmp_path: Path) -> None:
    nobody = RedisServer(tmp_path / "never-started")  # a free port nobody listens on
    store = RedisTokenStore(nobody.url, KEY)
    started = time.monotonic()
    for attempt in (store.version, store.read, lambda: store.write(TOKEN)):
        with pytest.raises(TokenStoreError, match="check that Redis is running") as raised:
            attempt()
        assert store.location in str(raised.value)
    with pytest.raises(TokenStoreError, match="cannot lock"), store.lock(1, never):
        pass
    assert time.monotonic() - started < 5


# ------------------------------------------------------------------ credentials


def test_an_acl_user_works_and_wrong_credentials_are_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "pw-Wrong-Guess-77"
    secured = RedisServer(tmp_path / "redis", user=RedisUser("app", PASSWORD))
    secured.start()
    try:
        store = RedisTokenStore(secured.url_for("app", PASSWORD), KEY)
        assert store.write(TOKEN).version == store.version()
        assert pickle.loads(pickle.dumps(store)).read().token == TOKEN
        texts = [repr(store), store.location]
        for url in (
            secured.url_for("app", wrong),
            secured.url_for("nobody", PASSWORD),
            secured.url,
        ):
            refused = RedisTokenStore(url, KEY)
            with pytest.raises(TokenStoreError, match="cannot read") as raised:
                refused.read()
            texts += [str(raised.value), repr(refused), refused.location]
        assert "check the user name and password" in texts[2]
    finally:
        secured.stop()
    logged = caplog.text + " ".join(texts)
    assert PASSWORD not in logged
    assert wrong not in logged


def test_a_store_built_on_a_client_pickles_its_connection_settings(tmp_path: Path) -> None:
    secured = RedisServer(tmp_path / "redis", user=RedisUser("app", PASSWORD))
    secured.start()
    try:
        client = redis.Redis(port=secured.port, username="app", password=PASSWORD)
        store = RedisTokenStore(client, KEY, lock_ttl=7, check_interval=0.5)
        store.write(TOKEN)
        copy = pickle.loads(pickle.dumps(store))
        snapshot = copy.read()
        assert snapshot is not None
        assert snapshot.token == TOKEN
        assert (copy.lock_ttl, copy.check_interval, copy.location) == (7, 0.5, store.location)
    finally:
        secured.stop()


# ------------------------------------------------------------------ sessions and processes


@pytest.mark.timeout(60)
def test_processes_sharing_only_redis_refresh_once_per_due_token(
    tmp_path: Path, redis_server: RedisServer, record_property: Callable[[str, object], None]
) -> None:
    ttl, seconds, processes = 1.0, 4.0, 4
    with LocalAuthServer(access_ttl=ttl) as auth:
        job = redis_job(auth, redis_server, KEY, lock_ttl=10.0, threads=2)
        storm = storm_through_expiries(
            job,
            [STORM] * processes,
            seconds,
            tmp_path,
            RedisTokenStore(redis_server.url, KEY),
            lambda: Token.from_response(auth.issue_token(), requested_at=time.time()),
        )
        stats = auth.stats()
    outcomes, due = storm.outcomes, storm.tokens_due
    requests = sum(outcomes.values())
    record_property(
        "figures",
        {
            "requests": requests,
            "caller_failures": requests - outcomes["200"],
            "token_endpoint_calls": stats.token_requests,
            "tokens_due": due,
            "reuse_detections": stats.reuse_detections,
            "injected": {},
        },
    )
    assert set(outcomes) == {"200"}, outcomes
    assert outcomes["200"] > 0  # a count that does not depend on the machine's speed
    assert 3 <= stats.token_requests <= due
    assert stats.reuse_detections == 0
    assert stats.revoked_grants == 0


@pytest.mark.timeout(60)
def test_a_holder_killed_mid_refresh_blocks_the_others_only_until_lock_ttl(
    redis_server: RedisServer, store: RedisTokenStore, server: LocalAuthServer
) -> None:
    lock_ttl = 2.0
    log_in(store, server)
    expired = expire(store)
    server.slow_token_endpoint(60)
    job = redis_job(
        server, redis_server, KEY, lock_ttl=lock_ttl, threads=1, once=True, until=time.time() + 60
    )
    victim = start_process(STORM, job)
    wait_for(lambda: server.stats().token_requests == 1, timeout=30)  # it holds the lock
    killed_at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=TIMEOUT)
    assert raw_client(redis_server).exists(store.lock_key) == 1  # nobody released it
    assert stored_token(redis_server) == expired
    server.slow_token_endpoint(0)
    others = [start_process(STORM, job) for _ in range(2)]
    outcomes = [json.loads(other.communicate(timeout=30)[0]) for other in others]
    assert outcomes == [{"200": 1}, {"200": 1}]
    assert time.monotonic() - killed_at < lock_ttl + 10
    assert server.stats().token_requests == 2  # the victim's, then one for both others
    assert server.stats().reuse_detections == 0
    assert stored_token(redis_server) != expired


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_sessions_keep_sharing_redis_in_child_processes(
    method: str, redis_server: RedisServer, store: RedisTokenStore, server: LocalAuthServer
) -> None:
    log_in(store, server)
    session = session_on(store, server)
    url = server.api_url + "items"
    assert use_session(session, url) == 200  # connected before the fork
    expire(store)
    assert use_in_child_processes(session, url, method) == [200] * 4
    assert use_session(session, url) == 200
    assert server.stats().token_requests == 1
    assert server.stats().reuse_detections == 0


def test_requests_go_on_while_redis_restarts_and_the_token_survives(
    persistent_redis: RedisServer, server: LocalAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisTokenStore(persistent_redis.url, KEY, check_interval=0.05)
    token = log_in(store, server)
    session = session_on(store, server)
    url = server.api_url + "items"
    outcomes: list[str] = []
    stop = threading.Event()

    def call_until_stopped() -> None:
        while not stop.is_set():
            try:
                outcomes.append(str(session.get(url, timeout=TIMEOUT).status_code))
            except Exception as error:
                outcomes.append(type(error).__name__)

    caller = threading.Thread(target=call_until_stopped)
    caller.start()
    try:
        wait_for(lambda: len(outcomes) > 5, timeout=TIMEOUT)
        persistent_redis.stop()
        during = len(outcomes)
        wait_for(lambda: len(outcomes) > during + 20, timeout=TIMEOUT)
        with pytest.raises(TokenStoreError, match="check that Redis is running"):
            RedisTokenStore(persistent_redis.url, KEY).read()
        with pytest.raises(TokenStoreError, match="cannot lock"):
            session.keeper.refresh_now()
        persistent_redis.start()
        after = len(outcomes)
        wait_for(lambda: len(outcomes) > after + 20, timeout=TIMEOUT)
    finally:
        stop.set()
        caller.join(timeout=TIMEOUT)
    # The token was valid: every caller succeeded, Redis down or not.
    assert set(outcomes) == {"200"}
    assert caplog.text.count("going on with the token last read") == 1  # rate-limited
    assert stored_token(persistent_redis) == token
    expire(store)
    assert use_session(session, url) == 200  # refreshed through the restarted Redis
    assert server.stats().token_requests == 1
    assert stored_token(persistent_redis) == session.token != token


def test_a_token_refreshed_while_redis_went_down_is_used_and_stored_later(
    persistent_redis: RedisServer, server: LocalAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisTokenStore(persistent_redis.url, KEY, lock_ttl=1.0, check_interval=0.05)
    log_in(store, server)
    expire(store)
    refreshed: list[Token] = []
    base = refresher_for(server)

    def refresh_then_lose_redis(token: Token) -> Token:
        new = base(token)
        refreshed.append(new)
        persistent_redis.stop()
        return new

    session = session_on(store, server, refresher=refresh_then_lose_redis)
    url = server.api_url + "items"
    assert use_session(session, url) == 200
    assert "could not save the refreshed token" in caplog.text
    assert session.token == refreshed[0]
    persistent_redis.start()

    def saved() -> bool:
        assert use_session(session, url) == 200
        return stored_token(persistent_redis) == refreshed[0]

    wait_for(saved, timeout=TIMEOUT)
    assert server.stats().token_requests == 1
    assert server.stats().reuse_detections == 0


# ------------------------------------------------------------------ a profile naming Redis


def test_a_profile_naming_redis_logs_in_serves_sessions_and_logs_out(
    redis_server: RedisServer,
    server: LocalAuthServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[profiles.fleet]\ntoken_url = "{server.token_url}"\n'
        f'client_id = "client"\nclient_secret_env = "FLEET_SECRET"\n'
        f'prefixes = "{server.api_url}"\nredis_url_env = "FLEET_REDIS"\n'
        'redis_key = "fleet:api"\n'
    )
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setenv("FLEET_SECRET", "secret")
    monkeypatch.setenv("FLEET_REDIS", redis_server.url)
    saved = tmp_path / "saved-by-another-tool.json"
    saved.write_text(json.dumps(server.issue_token()))

    assert main(["login", "--profile", "fleet", "--import", str(saved)]) == 0
    assert "logged in: the Redis key 'fleet:api'" in capsys.readouterr().out
    assert main(["status", "--json", "--profile", "fleet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["location"].startswith("the Redis key 'fleet:api' at redis://127.0.0.1:")
    assert "mode" not in report
    with RefreshingSession.from_profile("fleet") as session:
        assert isinstance(session.keeper.store, RedisTokenStore)
        assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    assert main(["logout", "--profile", "fleet", "--no-revoke"]) == 0
    assert RedisTokenStore(redis_server.url, "fleet:api").read() is None
    assert not list(tmp_path.glob("**/fleet.json"))  # no token file was made on the side
