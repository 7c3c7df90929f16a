"""RefreshingAsyncClient under load and cancellation, on asyncio and trio (anyio's pytest
plugin): many tasks share one refresh, the event loop keeps running while the token endpoint
is slow, and a cancelled task never leaves the lock held or loses the token it caused."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from refreshing_session import LockTimeout, TokenFile
from refreshing_session.httpx import RefreshingAsyncClient
from refreshing_session.testing import LocalAuthServer

from .conftest import expire, refresher_for, stored
from .support.processes import start_process

SLOW_TOKEN_ENDPOINT = 0.2
TASKS = 500
ROUNDS = 3
# The loop's longest pause while the token endpoint takes SLOW_TOKEN_ENDPOINT seconds to
# answer. Code that waited on the loop would pause it that long or longer; the bound leaves
# room for a loaded 2-core machine, where the target (20 ms) is typically met.
LAG_BOUND_DURING_REFRESH = 0.1

# In a process of its own, so that the servers' threads do not compete for its interpreter:
# a ticker sleeps 1 ms at a time and records how late it wakes (over 2 ms), while TASKS tasks
# send one request each, ROUNDS times through a plain httpx.AsyncClient with a fixed header
# and through a RefreshingAsyncClient, in turn, the token expiring before each of the latter
# (httpx's own work for a burst of TASKS requests pauses the loop too: the plain client's
# figures show how much). Prints
# the late ticks, each phase's start and end (time.perf_counter, which is system-wide), and
# the outcomes counted.
LOOP_LAG = """
import asyncio, collections, dataclasses, time
import httpx
import refreshing_session as rs
from refreshing_session.httpx import RefreshingAsyncClient

def expire():
    store = rs.TokenFile(job["file"])
    token = store.read().token
    store.write(dataclasses.replace(token, expires_at=time.time() - 1))

async def main():
    late, phases, outcomes = [], {}, collections.Counter()
    stop = asyncio.Event()

    async def ticker():
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lag = time.perf_counter() - before - 0.001
            if lag > 0.002:
                late.append((before, lag))

    async def burst(name, client):
        async def call():
            try:
                outcome = str((await client.get(job["api"] + "items")).status_code)
            except Exception as error:
                outcome = type(error).__name__
            outcomes[outcome] += 1
        started = time.perf_counter()
        await asyncio.gather(*(call() for _ in range(job["tasks"])))
        phases[name] = (started, time.perf_counter())

    refresher = rs.OAuth2Refresher(job["token_url"], "client", "secret")
    ticking = asyncio.create_task(ticker())
    async with RefreshingAsyncClient(job["api"], token_file=job["file"], refresher=refresher,
                                     timeout=30) as client:
        await client.get(job["echo"])  # imports, a connection and a worker thread, warmed up
        token = await client.token()
        async with httpx.AsyncClient(timeout=30,
                                     headers={"Authorization": token.authorization}) as plain:
            await plain.get(job["echo"])
            for round in range(job["rounds"]):
                await burst(f"plain {round}", plain)
                await asyncio.to_thread(expire)
                await burst(f"ours {round}", client)
    stop.set()
    await ticking
    print(json.dumps({"late": late, "phases": phases, "outcomes": outcomes}))

asyncio.run(main())
"""


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "asyncio"))


BACKENDS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"], indirect=True)


@pytest.fixture
def client(server: LocalAuthServer, token_file: Path) -> RefreshingAsyncClient:
    """A client on the server's API; each test closes it with ``async with``."""
    return RefreshingAsyncClient(
        server.api_url, token_file=token_file, refresher=refresher_for(server), timeout=10
    )


@pytest.mark.timeout(120)
def test_the_event_loop_keeps_running_while_500_tasks_wait_for_a_slow_refresh(
    server: LocalAuthServer, token_file: Path, record_property: Callable[[str, object], None]
) -> None:
    server.slow_token_endpoint(SLOW_TOKEN_ENDPOINT)
    worker = start_process(
        LOOP_LAG,
        {
            "api": server.api_url,
            "echo": server.url + "/echo",
            "file": str(token_file),
            "token_url": server.token_url,
            "tasks": TASKS,
            "rounds": ROUNDS,
        },
    )
    out, err = worker.communicate(timeout=110)
    assert worker.returncode == 0, err[-3000:]
    report = json.loads(out)
    late: list[tuple[float, float]] = [(at, lag) for at, lag in report["late"]]
    calls = server.token_calls()

    def longest(start: float, end: float) -> float:
        """The longest pause of a tick that overlaps the span from ``start`` to ``end``."""
        return max((lag for at, lag in late if at < end and at + 0.001 + lag > start), default=0.0)

    during_refresh = max(longest(call.started, call.answered) for call in calls)
    figures = {
        "tasks": TASKS,
        "token_endpoint_seconds": SLOW_TOKEN_ENDPOINT,
        "max_lag_ms_during_refresh": round(during_refresh * 1000, 1),
        "max_lag_ms_per_phase": {
            name: round(longest(*span) * 1000, 1) for name, span in report["phases"].items()
        },
        "outcomes": report["outcomes"],
        "token_calls": len(calls),
    }
    record_property("loop_lag", figures)
    print(figures)  # shown when this fails
    assert report["outcomes"] == {"200": TASKS * ROUNDS * 2}, figures
    assert len(calls) == ROUNDS, "one refresh per expiry, shared by every task"
    assert all(call.answered - call.started >= SLOW_TOKEN_ENDPOINT for call in calls)
    assert during_refresh < LAG_BOUND_DURING_REFRESH, figures
    assert server.stats().reuse_detections == 0


@BACKENDS
@pytest.mark.anyio
async def test_tasks_that_find_the_token_expired_share_one_refresh(
    client: RefreshingAsyncClient, server: LocalAuthServer, token_file: Path
) -> None:
    expired = expire(token_file)
    statuses: list[int] = []

    async def call() -> None:
        statuses.append((await client.get(server.api_url + "items")).status_code)

    async with client, anyio.create_task_group() as tasks:
        for _ in range(100):
            tasks.start_soon(call)
    assert statuses == [200] * 100
    assert server.stats().token_requests == 1
    assert stored(token_file) != expired


@BACKENDS
@pytest.mark.anyio
async def test_a_task_cancelled_during_its_refresh_leaves_the_new_token_stored(
    client: RefreshingAsyncClient, server: LocalAuthServer, token_file: Path
) -> None:
    """The refresh a cancelled task started completes and is stored; the next task uses
    that token: no second call, no refresh token presented twice, no lock left held."""
    expired = expire(token_file)
    server.slow_token_endpoint(0.5)
    async with client:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(client.get, server.api_url + "items")
                await _until(lambda: server.stats().token_requests == 1)
                scope.cancel()
        assert scope.cancelled_caught
        renewed = stored(token_file)
        assert renewed != expired, "the refresh was lost with the cancelled task"
        server.slow_token_endpoint(0)
        assert (await client.get(server.api_url + "items")).status_code == 200
    assert server.stats().token_requests == 1
    assert server.stats().reuse_detections == 0
    _assert_lock_is_free(token_file)


@BACKENDS
@pytest.mark.anyio
async def test_a_task_cancelled_while_it_waits_for_the_lock_leaves_it_free(
    client: RefreshingAsyncClient, server: LocalAuthServer, token_file: Path
) -> None:
    """Another process holds the lock (a thread here, on the same lock file) while the task
    waits for it, and the task is cancelled meanwhile. The cancellation takes effect once the
    keeper's call returns: when the holder lets go, the waiting call refreshes and stores the
    token, releases the lock, and the next request uses that token."""
    expire(token_file)
    with _lock_held_elsewhere(token_file) as release:
        async with client:
            letting_go = threading.Timer(0.6, release.set)
            letting_go.start()
            with anyio.move_on_after(0.3) as scope:
                await client.get(server.api_url + "items")
            assert scope.cancelled_caught
            assert release.is_set(), "the cancellation came before the keeper's call returned"
            assert (await client.get(server.api_url + "items")).status_code == 200
    assert server.stats().token_requests == 1
    _assert_lock_is_free(token_file)


async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.005)


def _assert_lock_is_free(token_file: Path) -> None:
    try:
        with TokenFile(token_file).lock(0.0, lambda: False):
            pass
    except LockTimeout:
        pytest.fail("the token lock is still held")


@contextmanager
def _lock_held_elsewhere(token_file: Path) -> Iterator[threading.Event]:
    """Hold the token file's lock in another thread (as another process would, on the same
    lock file) until the event yielded is set, or the block ends."""
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with TokenFile(token_file).lock(5.0, lambda: False):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert holding.wait(10), "the lock could not be taken"
        yield release
    finally:
        release.set()
        holder.join(10)


@BACKENDS
@pytest.mark.anyio
async def test_tasks_waiting_for_a_lock_held_elsewhere_each_get_a_lock_timeout_at_once(
    server: LocalAuthServer, token_file: Path
) -> None:
    """The lock is held by another process (a thread here) past ``lock_timeout``: the tasks
    that waited together each get their own LockTimeout after one wait, not one after another."""
    expire(token_file)
    errors: list[BaseException] = []
    lock_timeout = 0.5

    async def call(client: RefreshingAsyncClient) -> None:
        try:
            await client.get(server.api_url + "items")
        except LockTimeout as error:
            errors.append(error)

    with _lock_held_elsewhere(token_file):
        async with RefreshingAsyncClient(
            server.api_url,
            token_file=token_file,
            refresher=refresher_for(server),
            lock_timeout=lock_timeout,
        ) as client:
            started = anyio.current_time()
            async with anyio.create_task_group() as tasks:
                for _ in range(20):
                    tasks.start_soon(call, client)
            waited = anyio.current_time() - started
    assert len(errors) == 20
    assert len({id(error) for error in errors}) == 20, "each task raises its own error"
    assert waited < 6 * lock_timeout, f"the tasks waited {waited:.1f} s, in turn"
    assert server.stats().token_requests == 0
