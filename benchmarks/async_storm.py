"""The async storm: one process, N asyncio tasks on one httpx client, on an expiring token.

The ``async_storm`` part of ``python -m benchmarks``. For each async client of
:mod:`benchmarks.httpx_peers`, a fresh LocalAuthServer (rotating single-use refresh tokens with
reuse detection, a slow token endpoint) issues a grant; one spawned process, already started
and with its library imported, builds the client and runs the tasks back to back until the
deadline, while a ticker task that sleeps 1 ms records how late the event loop wakes it. The
server counts token calls and reuse detections.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from refreshing_session.testing import LocalAuthServer

from .authserver import write_grant
from .clients import Endpoint
from .httpx_peers import HTTPX_BY_KEY, HTTPX_CLIENTS
from .stats import Latency

_REQUEST_TIMEOUT = 5.0
_GRACE = 30.0  # the longest the parent waits for the worker after the deadline
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
    deadline: float  # time.perf_counter(), the same clock in every process on one machine


@dataclass(frozen=True)
class _Outcome:
    """What the worker measured."""

    outcomes: dict[str, int]  # "ok", "HTTP <status>" or an exception's class name
    latency: Latency  # of successful requests
    loop_lag: Latency  # how late the 1 ms ticker woke
    cpu: float  # the worker's CPU seconds while its tasks ran


def run_async_storm(tasks: int, ttl: float, seconds: float, token_delay: float,
                    progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """One cell per async client: ``tasks`` tasks for ``seconds`` on ``ttl``-second tokens
    refreshed at half their life, the token endpoint answering in ``token_delay`` seconds;
    return each cell's figures as plain data."""
    cells = []
    for key in ASYNC_KEYS:
        cell = _run_cell(key, tasks, ttl, seconds, token_delay)
        progress(f"async storm {HTTPX_BY_KEY[key].async_label} 1x{tasks} tasks: "
                 f"{cell['successes']} ok, {sum(cell['errors'].values())} errors, "
                 f"{cell['token_calls']} token calls ({cell['refreshes_due']} due), "
                 f"{cell['reuse_detections']} reuse, loop lag max {cell['loop_lag']['max']:.0f} ms")
        cells.append(cell)
    return cells


def _run_cell(key: str, tasks: int, ttl: float, seconds: float,
              token_delay: float) -> dict[str, Any]:
    with LocalAuthServer(access_ttl=ttl) as server, \
            tempfile.TemporaryDirectory(prefix="refreshing-session-bench-") as folder, \
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        server.slow_token_endpoint(token_delay)
        endpoint = Endpoint(server.api_url, server.token_url, os.path.join(folder, "token.json"),
                            margin=ttl / 2)
        pool.submit(_import, key).result(timeout=_GRACE)
        before = server.stats()
        write_grant(endpoint.store(), server.issue_token())
        job = _Job(key, endpoint, server.api_url + "items", tasks, time.perf_counter() + seconds)
        outcome = pool.submit(_storm_process, job).result(timeout=seconds + _GRACE)
        after = server.stats()
    requests = sum(outcome.outcomes.values())
    due = max(1, int(seconds // (ttl / 2)))
    calls = after.token_requests - before.token_requests
    return {"library": key, "label": HTTPX_BY_KEY[key].async_label, "processes": 1,
            "threads": tasks, "seconds": seconds, "requests": requests,
            "successes": outcome.outcomes.get("ok", 0),
            "errors": {kind: count for kind, count in sorted(outcome.outcomes.items())
                       if kind != "ok"},
            "token_calls": calls, "refreshes_due": due, "calls_per_due": calls / due,
            "reuse_detections": after.reuse_detections - before.reuse_detections,
            "grant_revoked": after.revoked_grants > before.revoked_grants,
            "latency": asdict(outcome.latency), "loop_lag": asdict(outcome.loop_lag),
            "client_cpu_us": 1e6 * outcome.cpu / max(1, requests), "lost_workers": 0}


def _import(key: str) -> None:
    """Import the client's library, so that the storm's clock does not count it."""
    for module in HTTPX_BY_KEY[key].modules:
        importlib.import_module(module)


def _storm_process(job: _Job) -> _Outcome:
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
        await asyncio.gather(*(_task(client, job, outcomes, durations)
                               for _ in range(job.tasks)))
        await ticker
    return _Outcome(dict(outcomes), Latency.of(durations), Latency.of(lags),
                    time.process_time() - cpu_started)


async def _tick(deadline: float, lags: list[float]) -> None:
    """Sleep 1 ms at a time until ``deadline``; note how much later than asked each wake-up
    came."""
    while (before := time.perf_counter()) < deadline:
        await asyncio.sleep(_TICK)
        lags.append(max(0.0, time.perf_counter() - before - _TICK))


async def _task(client: httpx.AsyncClient, job: _Job, outcomes: Counter[str],
                durations: list[float]) -> None:
    """Call the API back to back until the deadline; count the outcomes and time the
    successes."""
    while (started := time.perf_counter()) < job.deadline:
        outcome = await _call(client, job.url)
        outcomes[outcome] += 1
        if outcome == "ok":
            durations.append(time.perf_counter() - started)


async def _call(client: httpx.AsyncClient, url: str) -> str:
    """Make one API call; return "ok", "HTTP <status>" or the exception's class name."""
    try:
        response = await client.get(url, timeout=_REQUEST_TIMEOUT)
    except Exception as error:  # peers raise their own exception types
        return type(error).__name__
    return "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
