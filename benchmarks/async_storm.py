"""The async storm: one process, N asyncio tasks on one httpx client, on an expiring token.

The ``async_storm`` part of ``python -m benchmarks``. For each async client of
:mod:`benchmarks.httpx_peers`, a fresh LocalAuthServer (rotating single-use refresh tokens with
reuse detection, a slow token endpoint) issues a grant; one spawned process, already started
and with its library imported, builds the client and runs the tasks until the deadline, while a
ticker task that sleeps 1 ms records how late the event loop wakes it. The server counts token
calls, reuse detections and the API's 401 answers.

The tasks are paced (each calls the API once per ``tasks / rate`` seconds, from a random
offset), so that the process is not saturated: back to back, 500 tasks queue for the client's
one core for longer than half a 2-second token lives, and a token stamped on a request dies in
that queue whatever the client's refresh policy.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from refreshing_session.testing import LocalAuthServer

from .authserver import Counters, grant_storm, storm_counts
from .clients import Endpoint
from .httpx_peers import HTTPX_BY_KEY, HTTPX_CLIENTS
from .settings import Plan
from .stats import Latency
from .workers import answer, spawned

_REQUEST_TIMEOUT = 5.0
_TICK = 0.001
# The client's connection pool, the same for every client: its tasks take turns on these.
# (httpx's default of 100 spends much of a loaded 2-core machine's time scanning its queue.)
_CONNECTIONS = 20
ASYNC_KEYS = tuple(client.key for client in HTTPX_CLIENTS if client.asynchronous is not None)


@dataclass(frozen=True)
class _Job:
    """What the worker process runs."""

    key: str
    endpoint: Endpoint
    url: str
    tasks: int
    interval: float  # seconds between one task's requests
    deadline: float  # time.perf_counter(), the same clock in every process on one machine


@dataclass(frozen=True)
class _Outcome:
    """What the worker measured."""

    outcomes: dict[str, int]  # "ok", "HTTP <status>" or an exception's class name
    latency: Latency  # of successful requests
    loop_lag: Latency  # how late the 1 ms ticker woke
    cpu: float  # the worker's CPU seconds while its tasks ran
    # time.perf_counter() when the last request ended: a request that started before the
    # deadline may wait in the client's queue and take its token after it
    last_end: float


# What a worker that never reported counts for.
_LOST = _Outcome({}, Latency.of([]), Latency.of([]), 0.0, 0.0)


def run_async_storm(plan: Plan, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """One cell per async client: the plan's ``async_storm_tasks`` tasks making
    ``async_storm_rate`` requests per second in all, for ``storm_seconds``, on
    ``storm_ttl``-second tokens refreshed at half their life, the token endpoint answering in
    ``token_delay`` seconds; return each cell's figures as plain data."""
    tasks = plan.async_storm_tasks
    cells = []
    for key in ASYNC_KEYS:
        cell = _run_cell(
            key, tasks, plan.async_storm_rate, plan.storm_ttl, plan.storm_seconds, plan.token_delay
        )
        progress(
            f"async storm {HTTPX_BY_KEY[key].async_label} 1x{tasks} tasks: "
            f"{cell['successes']} ok, {sum(cell['errors'].values())} errors, "
            f"{cell['token_calls']} token calls ({cell['refreshes_due']} due), "
            f"{cell['reuse_detections']} reuse, loop lag max {cell['loop_lag']['max']:.0f} ms"
        )
        cells.append(cell)
    return cells


def _run_cell(
    key: str, tasks: int, rate: float, ttl: float, seconds: float, token_delay: float
) -> dict[str, Any]:
    with (
        LocalAuthServer(access_ttl=ttl) as server,
        tempfile.TemporaryDirectory(prefix="refreshing-session-bench-") as folder,
        spawned(HTTPX_BY_KEY[key].modules, _run_job, f"the async storm's {key}") as connection,
    ):
        storm = grant_storm(server, folder, ttl, token_delay)
        deadline = storm.granted + seconds
        connection.send(
            _Job(key, storm.endpoint, server.api_url + "items", tasks, tasks / rate, deadline)
        )
        reported: _Outcome | None = answer(connection, seconds)
        outcome = _LOST if reported is None else reported
        counted = Counters.of(server.stats()).since(storm.before)
    requests = sum(outcome.outcomes.values())
    return {
        "library": key,
        "label": HTTPX_BY_KEY[key].async_label,
        "processes": 1,
        "threads": tasks,
        "rate": rate,
        "seconds": seconds,
        "requests": requests,
        "successes": outcome.outcomes.get("ok", 0),
        "errors": {kind: count for kind, count in sorted(outcome.outcomes.items()) if kind != "ok"},
        **storm_counts(counted, ttl, seconds, outcome.last_end - storm.granted),
        "latency": asdict(outcome.latency),
        "loop_lag": asdict(outcome.loop_lag),
        "client_cpu_us": 1e6 * outcome.cpu / max(1, requests),
        "lost_workers": int(reported is None),
    }


def _run_job(job: _Job) -> _Outcome:
    """The worker's job: the storm, on an event loop of its own."""
    return asyncio.run(_storm(job))


async def _storm(job: _Job) -> _Outcome:
    build = HTTPX_BY_KEY[job.key].asynchronous
    assert build is not None, "only clients with an async builder take part"
    outcomes: Counter[str] = Counter()
    durations: list[float] = []
    lags: list[float] = []
    cpu_started = time.process_time()
    async with build(job.endpoint, httpx.Limits(max_connections=_CONNECTIONS)) as client:
        ticker = asyncio.create_task(_tick(job.deadline, lags))
        ends = await asyncio.gather(
            *(_task(client, job, outcomes, durations) for _ in range(job.tasks))
        )
        await ticker
    return _Outcome(
        dict(outcomes),
        Latency.of(durations),
        Latency.of(lags),
        time.process_time() - cpu_started,
        max(ends, default=0.0),
    )


async def _tick(deadline: float, lags: list[float]) -> None:
    """Sleep 1 ms at a time until ``deadline``; note how much later than asked each wake-up
    came."""
    while (before := time.perf_counter()) < deadline:
        await asyncio.sleep(_TICK)
        lags.append(max(0.0, time.perf_counter() - before - _TICK))


async def _task(
    client: httpx.AsyncClient, job: _Job, outcomes: Counter[str], durations: list[float]
) -> float:
    """Call the API every ``job.interval`` seconds from a random offset until the deadline (a
    slot missed while a request was slow is skipped, not made up in a burst); count the
    outcomes and time the successes. Return when the last request ended (0.0: none)."""
    next_at = time.perf_counter() + random.random() * job.interval
    ended = 0.0
    while True:
        await asyncio.sleep(max(0.0, min(next_at, job.deadline) - time.perf_counter()))
        started = time.perf_counter()
        if started >= job.deadline:
            return ended
        outcome = await call_api(client, job.url, _REQUEST_TIMEOUT)
        ended = time.perf_counter()
        outcomes[outcome] += 1
        if outcome == "ok":
            durations.append(ended - started)
        next_at = max(next_at + job.interval, ended)


async def call_api(client: httpx.AsyncClient, url: str, timeout: float) -> str:
    """Make one API call; return "ok", "HTTP <status>" or the exception's class name."""
    try:
        response = await client.get(url, timeout=timeout)
    except Exception as error:  # peers raise their own exception types
        return type(error).__name__
    return "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
