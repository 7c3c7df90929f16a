"""The mixed storm: every front end at once on one token file, through many expiries.

The ``mixed_storm`` part of ``python -m benchmarks``; alone, ``python -m
benchmarks.mixed_storm [--runs N] [--seconds S] [--tasks N] [--ttl S]`` prints the figures.
Two processes of ``RefreshingSession`` and one of ``RefreshingClient`` (two threads each) and
one asyncio process of ``RefreshingAsyncClient`` (``tasks`` tasks on one client) share a
LocalAuthServer grant through one token file, calling the API back to back. Tokens are short
(2 seconds in the full run) and, as oidc-provider does, end at the whole second of issue plus
their life, up to a second before a client counting from its request expects; the refresh
tokens are single-use and rotate. Each process is spawned and has its library imported before
the grant is written, so that the storm's clock counts no start-up.

What it tells: whether a 401 reaches a caller of any front end (a token that died on its way
is a curable 401: the client refreshes or adopts and replays it), and whether every process
together asks the token endpoint once per token that came due, never presenting a refresh
token twice.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx

from refreshing_session.testing import LocalAuthServer

from .async_storm import call_api as call_api_async
from .authserver import Counters, grant_storm, storm_counts
from .clients import Endpoint
from .clients import ours as ours_requests
from .httpx_peers import ours as ours_httpx
from .httpx_peers import ours_async
from .settings import Option, Plan, plan_from_command_line
from .storm import call_api
from .workers import answer, spawned

_REQUEST_TIMEOUT = 10.0
_THREADS = 2  # per requests or httpx sync process
# The asyncio process's connection pool: its tasks take turns on these (httpx's pool, at its
# default of 100, spends much of a loaded 2-core machine's time scanning its queue).
_CONNECTIONS = 20
# Back to back, a thread may make this many requests at most (a bound on every loop).
_MAX_REQUESTS = 1_000_000


@dataclass(frozen=True)
class FrontEnd:
    """The processes of one front end in the storm: ``callers`` threads (or asyncio tasks)
    in each."""

    key: str
    label: str
    processes: int
    callers: int


def front_ends(tasks: int) -> tuple[FrontEnd, ...]:
    """The storm's front ends, with ``tasks`` tasks in the asyncio process."""
    return (
        FrontEnd("requests", "RefreshingSession", 2, _THREADS),
        FrontEnd("httpx", "RefreshingClient", 1, _THREADS),
        FrontEnd("asyncio", "RefreshingAsyncClient", 1, tasks),
    )


@dataclass(frozen=True)
class _Job:
    """What one worker process runs: its callers call ``url`` until ``deadline``."""

    front_end: FrontEnd
    endpoint: Endpoint
    url: str
    deadline: float  # time.perf_counter(), the same clock in every process on one machine


@dataclass(frozen=True)
class _Tally:
    """What one worker's callers saw: "ok", "HTTP <status>" or an exception's class name,
    counted; and when the last request ended (``time.perf_counter``)."""

    outcomes: dict[str, int]
    last_end: float


def run_mixed_storm(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    """Run the storm the plan's ``mixed_storm_runs`` times for ``mixed_storm_seconds``, with
    ``mixed_storm_tasks`` tasks in the asyncio process, on ``storm_ttl``-second tokens, the
    token endpoint answering in ``token_delay`` seconds; return each run's figures as plain
    data."""
    runs, seconds, tasks = plan.mixed_storm_runs, plan.mixed_storm_seconds, plan.mixed_storm_tasks
    ttl, token_delay = plan.storm_ttl, plan.token_delay
    found = []
    for number in range(runs):
        figures = _run(front_ends(tasks), seconds, ttl, token_delay)
        shown = ", ".join(
            f"{entry['label']} {entry['successes']}/{entry['requests']} ok, "
            f"{entry['caller_401s']} 401s"
            for entry in figures["front_ends"]
        )
        progress(
            f"mixed storm run {number + 1}/{runs}: {shown}; {figures['token_calls']} token "
            f"calls ({figures['refreshes_due']} due), {figures['reuse_detections']} reuse, "
            f"{figures['api_401s']} API 401s"
        )
        found.append(figures)
    return {
        "seconds": seconds,
        "ttl": ttl,
        "token_delay": token_delay,
        "tasks": tasks,
        "runs": found,
    }


def _run(ends: Sequence[FrontEnd], seconds: float, ttl: float, delay: float) -> dict[str, Any]:
    with (
        LocalAuthServer(access_ttl=ttl) as server,
        tempfile.TemporaryDirectory(prefix="refreshing-session-bench-") as folder,
        ExitStack() as stack,
    ):
        # No modules to name: to unpickle _work, a worker imports this module, and with it
        # every front end, before it reports ready.
        workers = [
            (end, stack.enter_context(spawned((), _work, end.label)))
            for end in ends
            for _ in range(end.processes)
        ]
        storm = grant_storm(server, folder, ttl, delay)
        for end, connection in workers:
            job = _Job(end, storm.endpoint, server.api_url + "items", storm.granted + seconds)
            connection.send(job)
        tallies: list[tuple[FrontEnd, _Tally | None]] = [
            (end, answer(connection, seconds)) for end, connection in workers
        ]
        counted = Counters.of(server.stats()).since(storm.before)
    last_end = max((tally.last_end for _, tally in tallies if tally), default=storm.granted)
    return {
        "front_ends": [_front_end(end, tallies) for end in ends],
        **storm_counts(counted, ttl, seconds, last_end - storm.granted),
        "lost_workers": sum(1 for _, tally in tallies if tally is None),
    }


def _front_end(end: FrontEnd, tallies: Sequence[tuple[FrontEnd, _Tally | None]]) -> dict[str, Any]:
    """One front end's figures over its processes."""
    outcomes: Counter[str] = Counter()
    for owner, tally in tallies:
        if owner is end and tally is not None:
            outcomes.update(tally.outcomes)
    return {
        "key": end.key,
        "label": end.label,
        "processes": end.processes,
        "callers": end.callers,
        "requests": sum(outcomes.values()),
        "successes": outcomes.get("ok", 0),
        "caller_401s": outcomes.get("HTTP 401", 0),
        "errors": {kind: count for kind, count in sorted(outcomes.items()) if kind != "ok"},
    }


def _work(job: _Job) -> _Tally:
    """A worker's job: its front end's callers until the deadline."""
    return asyncio.run(_tasks(job)) if job.front_end.key == "asyncio" else _threads(job)


def _threads(job: _Job) -> _Tally:
    """Call the API from the job's threads, on one requests session or httpx client."""
    client = (ours_requests if job.front_end.key == "requests" else ours_httpx)(job.endpoint)
    outcomes: Counter[str] = Counter()
    ends = [0.0] * job.front_end.callers
    lock = threading.Lock()

    def call(slot: int) -> None:
        for _ in range(_MAX_REQUESTS):
            if time.perf_counter() >= job.deadline:
                return
            outcome = call_api(client, job.url, _REQUEST_TIMEOUT)
            ends[slot] = time.perf_counter()
            with lock:
                outcomes[outcome] += 1

    with client:
        threads = [threading.Thread(target=call, args=(slot,)) for slot in range(len(ends))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return _Tally(dict(outcomes), max(ends))


async def _tasks(job: _Job) -> _Tally:
    """Call the API from the job's asyncio tasks, on one RefreshingAsyncClient."""
    outcomes: Counter[str] = Counter()

    async def call() -> float:
        ended = 0.0
        for _ in range(_MAX_REQUESTS):
            if time.perf_counter() >= job.deadline:
                break
            outcome = await call_api_async(client, job.url, _REQUEST_TIMEOUT)
            ended = time.perf_counter()
            outcomes[outcome] += 1
        return ended

    limits = httpx.Limits(max_connections=_CONNECTIONS)
    async with ours_async(job.endpoint, limits) as client:
        ends = await asyncio.gather(*(call() for _ in range(job.front_end.callers)))
    return _Tally(dict(outcomes), max(ends, default=0.0))


def main(argv: list[str] | None = None) -> int:
    options = (
        Option("--runs", "mixed_storm_runs", 3),
        Option("--seconds", "mixed_storm_seconds", 11.5, "per run"),
        Option("--ttl", "storm_ttl", 2.0, "access-token life, seconds"),
        Option("--delay", "token_delay", 0.1, "the token endpoint's, seconds"),
        Option("--tasks", "mixed_storm_tasks", 100, "in the asyncio process"),
    )
    plan = plan_from_command_line("benchmarks.mixed_storm", __doc__, options, argv)
    run_mixed_storm(plan, lambda message: print(message, file=sys.stderr))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
