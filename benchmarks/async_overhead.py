"""The async common path: RefreshingAsyncClient against a plain ``httpx.AsyncClient`` with a
fixed Authorization header, many tasks on one client, the token valid throughout.

The ``async_overhead`` part of ``python -m benchmarks``; alone, ``python -m
benchmarks.async_overhead [--pairs N] [--seconds S] [--tasks N]`` prints the figures. The API
server runs in its own process (:func:`~benchmarks.authserver.api_server`), so this process's
CPU time is the client's own; its token lives an hour, so no client refreshes. Each pair of
runs has both clients in turn, ``tasks`` tasks calling the API back to back for ``seconds``
each, and the order swaps from one pair to the next, so that a slow spell of the machine falls
on both alike. The ratio of requests per second is taken pair by pair; how far each client's
requests per second wander from run to run tells how steady it is.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from .authserver import granted_api
from .clients import Endpoint, load_token
from .httpx_peers import ours_async
from .overhead import Batch
from .settings import Option, Plan, plan_from_command_line
from .stats import percentile

_TOKEN_TTL = 3600.0  # no refresh during the measurement
# httpx's own default pool, as a client built without limits= has it: 100 connections, 20 of
# them kept alive when idle.
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
_REQUEST_TIMEOUT = 10.0
PLAIN_KEY, OURS_KEY = "httpx_async_plain", "ours_httpx_async"
LABELS = {
    PLAIN_KEY: "plain httpx.AsyncClient, fixed header",
    OURS_KEY: "RefreshingAsyncClient",
}


def plain_async(endpoint: Endpoint, limits: httpx.Limits) -> httpx.AsyncClient:
    """A plain httpx.AsyncClient with a fixed Authorization header: the floor for the cost."""
    token = load_token(endpoint.token_file)["access_token"]
    return httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, limits=limits)


_BUILDERS: dict[str, Callable[[Endpoint, httpx.Limits], httpx.AsyncClient]] = {
    PLAIN_KEY: plain_async,
    OURS_KEY: ours_async,
}


def run_async_overhead(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    """Run the plan's ``async_overhead_pairs`` pairs of runs, ``async_overhead_tasks`` tasks
    for ``async_overhead_seconds`` per client and run, against one loopback server; return the
    runs and their summary as plain data."""
    pairs, seconds = plan.async_overhead_pairs, plan.async_overhead_seconds
    tasks = plan.async_overhead_tasks
    runs: dict[str, list[Batch]] = {key: [] for key in _BUILDERS}
    with granted_api(_TOKEN_TTL) as (server, endpoint):
        url = server.api_url + "items"
        for pair in range(pairs):
            order = list(_BUILDERS) if pair % 2 == 0 else list(reversed(_BUILDERS))
            for key in order:
                runs[key].append(
                    asyncio.run(_run(_BUILDERS[key](endpoint, LIMITS), url, tasks, seconds))
                )
            ours, plain = runs[OURS_KEY][-1].per_second, runs[PLAIN_KEY][-1].per_second
            progress(
                f"async common path pair {pair + 1}/{pairs}: ours {ours:.0f}, plain "
                f"{plain:.0f} requests/s ({ours / plain:.3f}x)"
            )
    return summary(runs, pairs, seconds, tasks)


async def _run(client: httpx.AsyncClient, url: str, tasks: int, seconds: float) -> Batch:
    """Call ``url`` from ``tasks`` tasks back to back for ``seconds``, after one call per task
    to open the connections; every answer must be a 200."""
    async with client:
        await asyncio.gather(*(_get(client, url) for _ in range(tasks)))
        gc.collect()
        started, cpu_started = time.perf_counter(), time.process_time()
        counts = await asyncio.gather(
            *(_calls(client, url, started + seconds) for _ in range(tasks))
        )
        return Batch(
            requests=sum(counts),
            seconds=time.perf_counter() - started,
            cpu=time.process_time() - cpu_started,
        )


async def _calls(client: httpx.AsyncClient, url: str, deadline: float) -> int:
    """Call ``url`` until ``deadline`` (``time.perf_counter``); return how many calls."""
    count = 0
    while time.perf_counter() < deadline:
        await _get(client, url)
        count += 1
    return count


async def _get(client: httpx.AsyncClient, url: str) -> None:
    response = await client.get(url, timeout=_REQUEST_TIMEOUT)
    if response.status_code != 200:
        raise RuntimeError(f"{type(client).__name__} got HTTP {response.status_code}")


def _range(values: Sequence[float]) -> dict[str, float]:
    """The median of ``values`` with the lowest and the highest."""
    return {"median": percentile(values, 0.5), "low": min(values), "high": max(values)}


def summary(runs: dict[str, list[Batch]], pairs: int, seconds: float, tasks: int) -> dict[str, Any]:
    """The part's figures: each client's requests per second (median, lowest-highest, and
    their coefficient of variation: the standard deviation over the mean, run to run) and CPU
    per request, and ours against plain pair by pair."""
    speeds = {key: [run.per_second for run in client_runs] for key, client_runs in runs.items()}
    ratios = [o / p for o, p in zip(speeds[OURS_KEY], speeds[PLAIN_KEY], strict=True)]
    return {
        "pairs": pairs,
        "seconds": seconds,
        "tasks": tasks,
        "connections": LIMITS.max_connections,
        "kept_alive": LIMITS.max_keepalive_connections,
        "clients": [
            {
                "key": key,
                "label": LABELS[key],
                "runs": [round(speed, 1) for speed in speeds[key]],
                "requests_per_second": _range(speeds[key]),
                "variation": statistics.pstdev(speeds[key]) / statistics.fmean(speeds[key]),
                "cpu_us_per_request": percentile(
                    [1e6 * run.cpu / run.requests for run in runs[key]], 0.5
                ),
            }
            for key in (PLAIN_KEY, OURS_KEY)
        ],
        "ratios": [round(ratio, 4) for ratio in ratios],
        "speed_vs_plain": _range(ratios),
    }


def main(argv: list[str] | None = None) -> int:
    options = (
        Option("--pairs", "async_overhead_pairs", 8),
        Option("--seconds", "async_overhead_seconds", 6.0, "per client and run"),
        Option("--tasks", "async_overhead_tasks", 100),
    )
    plan = plan_from_command_line("benchmarks.async_overhead", __doc__, options, argv)
    result = run_async_overhead(plan, lambda message: print(message, file=sys.stderr))
    for client in result["clients"]:
        speed = client["requests_per_second"]
        print(
            f"{client['label']:38} requests/s {speed['median']:6.0f} ({speed['low']:.0f}-"
            f"{speed['high']:.0f}), variation {client['variation']:.3f}, CPU/request "
            f"{client['cpu_us_per_request']:.0f} us"
        )
    ratio = result["speed_vs_plain"]
    print(f"ours vs plain: {ratio['median']:.3f} ({ratio['low']:.3f}-{ratio['high']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
