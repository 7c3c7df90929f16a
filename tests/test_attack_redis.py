"""The Redis refresh lock against a slow token endpoint and a frozen holder: processes of their
own sharing only a real redis-server, and a LocalAuthServer that detects refresh-token reuse.

While its holder lives and works, the lock is renewed, so a token endpoint slower than
``lock_ttl`` no longer lets a second host present the same refresh token. A holder frozen
(SIGSTOP) freezes its renewal too: its lock expires, the others go on, and the frozen holder,
once it resumes, cannot overwrite the newer token (fencing).
"""

from __future__ import annotations

import json
import os
import signal
import time

import redis

from refreshing_session import Token
from refreshing_session.redis_store import RedisTokenStore
from refreshing_session.testing import LocalAuthServer

from .support.processes import STORM, start_process, wait_for
from .support.redis_jobs import redis_job
from .support.redis_servers import RedisServer

KEY = "refreshing-session:attack"
LOCK_TTL = 1.0
TIMEOUT = 30


def stored_token(redis_server: RedisServer) -> Token:
    snapshot = RedisTokenStore(redis_server.url, KEY).read()
    assert snapshot is not None
    return snapshot.token


def start_expired(redis_server: RedisServer, server: LocalAuthServer) -> dict[str, object]:
    """Store an expired grant of ``server``; return the STORM job of one request with it."""
    token = Token.from_response(server.issue_token(), requested_at=time.time())
    data = {**token.to_dict(), "expires_at": time.time() - 1}
    RedisTokenStore(redis_server.url, KEY).write(Token.from_file(data, written_at=time.time()))
    return redis_job(
        server, redis_server, KEY, lock_ttl=LOCK_TTL, threads=1, once=True, until=time.time() + 60
    )


def outcome(process: object) -> dict[str, int]:
    out, err = process.communicate(timeout=TIMEOUT)  # type: ignore[attr-defined]
    assert process.returncode == 0, err  # type: ignore[attr-defined]
    return dict(json.loads(out))


def test_a_token_endpoint_slower_than_lock_ttl_does_not_let_a_second_host_reuse_the_grant(
    redis_server: RedisServer,
) -> None:
    """The endpoint takes 3 lock_ttls to answer; the holder is alive all along."""
    with LocalAuthServer(access_ttl=60.0) as server:
        job = start_expired(redis_server, server)
        server.slow_token_endpoint(3 * LOCK_TTL)
        first = start_process(STORM, job)
        wait_for(lambda: server.stats().token_requests == 1, timeout=TIMEOUT)  # it holds the lock
        second = start_process(STORM, job)
        outcomes = [outcome(first), outcome(second)]
        stats = server.stats()
    assert outcomes == [{"200": 1}, {"200": 1}]
    assert stats.token_requests == 1, "a second host presented the refresh token again"
    assert stats.reuse_detections == 0
    assert stats.revoked_grants == 0


def test_the_lock_is_released_at_once_and_no_longer_renewed_when_the_holder_finishes(
    redis_server: RedisServer,
) -> None:
    store = RedisTokenStore(redis_server.url, KEY, lock_ttl=0.3)
    client = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=TIMEOUT)
    with store.lock(TIMEOUT, lambda: False):
        deadline = time.monotonic() + 1.0  # over three lock_ttls
        while time.monotonic() < deadline:
            assert client.exists(store.lock_key) == 1, "the lock expired under a live holder"
            time.sleep(0.05)
    assert client.exists(store.lock_key) == 0
    client.set(store.lock_key, "a later holder", px=60_000)
    time.sleep(0.5)  # a renewal running on would be owner-checked anyway: the value must stay
    assert client.get(store.lock_key) == b"a later holder"
    assert client.pttl(store.lock_key) > 50_000


def test_a_frozen_holder_lets_others_go_on_and_cannot_overwrite_their_token(
    redis_server: RedisServer,
) -> None:
    """SIGSTOP freezes the holder and its renewal: the lock expires after lock_ttl, another
    host refreshes, and the resumed holder's write is refused. (The server grants a second
    presentation of the refresh token within its grace period; without one, a provider with
    reuse detection would revoke the grant: that is why lock_ttl must still exceed the
    longest pause a holder may suffer.)"""
    with LocalAuthServer(access_ttl=60.0, grace_period=60.0) as server:
        job = start_expired(redis_server, server)
        server.slow_token_endpoint(2 * LOCK_TTL)
        frozen = start_process(STORM, job)
        try:
            wait_for(lambda: server.stats().token_requests == 1, timeout=TIMEOUT)
            os.kill(frozen.pid, signal.SIGSTOP)
            lock_key = KEY + ":lock"
            client = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=TIMEOUT)
            wait_for(lambda: client.exists(lock_key) == 0, timeout=TIMEOUT)
            server.slow_token_endpoint(0)
            assert outcome(start_process(STORM, job)) == {"200": 1}
            newer = stored_token(redis_server)
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        frozen_outcome = outcome(frozen)
        stats = server.stats()
    assert stats.token_requests == 2
    assert stored_token(redis_server) == newer, "the resumed holder overwrote the newer token"
    assert frozen_outcome == {"200": 1}  # it adopted the newer token
