"""``python -m benchmarks.redis_hot_path``: what a Redis token store costs on the common path.

Against one local API server (in its own process) and one ``redis-server`` on loopback (started
here, in a temporary folder), with a token valid for the whole run, it compares a plain
``requests.Session`` with a fixed header, RefreshingSession on a token file, on a
RedisTokenStore with its default ``check_interval``, and on one that asks Redis on every request
(``check_interval=0``). Clients take turns in every round, as in the common-path benchmark; the
figures are medians over the rounds, with each round's ratio to the plain session of that round.
It needs ``redis-server`` on PATH and the test extra (see :mod:`benchmarks.local_redis`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import redis
import requests

from refreshing_session import OAuth2Refresher, RefreshingSession
from refreshing_session.redis_store import DEFAULT_CHECK_INTERVAL, RedisTokenStore

from .authserver import api_server, write_grant
from .clients import REDIS_KEY, Endpoint, ours, plain
from .local_redis import local_redis
from .overhead import Batch, measure
from .stats import Spread

_TOKEN_TTL = 3600.0  # no refresh during the measurement
_WARMUP_REQUESTS = 50


@dataclass(frozen=True)
class HotPathCost:
    """One client's figures over all rounds."""

    label: str
    requests_per_second: Spread
    cpu_us_per_request: Spread
    speed_vs_plain: Spread  # requests per second / plain's, round by round
    redis_commands_per_1000: float  # Redis commands run per 1000 requests


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print it as a Markdown table (or JSON)."""
    arguments = _parser().parse_args(argv)
    costs = run(arguments.rounds, arguments.requests, _progress)
    if arguments.json:
        print(json.dumps([asdict(cost) for cost in costs], indent=2))
    else:
        print(markdown(costs, arguments.rounds, arguments.requests))
    return 0


def run(rounds: int, count: int, progress: Callable[[str], None]) -> list[HotPathCost]:
    """Measure every client for ``rounds`` interleaved rounds of ``count`` requests."""
    with (
        tempfile.TemporaryDirectory(prefix="refreshing-session-redis-bench-") as folder,
        api_server(_TOKEN_TTL) as server,
        local_redis(Path(folder) / "redis") as url,
    ):
        endpoint = Endpoint(server.api_url, server.token_url, f"{folder}/token.json", margin=60.0)
        token = write_grant(endpoint.store(), server.grant)
        RedisTokenStore(url, REDIS_KEY).write(token)
        sessions = _sessions(endpoint, url)
        counter = redis.Redis.from_url(url)
        try:
            batches, commands = _interleaved(
                sessions, server.api_url + "items", rounds, count, counter, progress
            )
        finally:
            for session in sessions.values():
                session.close()
    return [_cost(label, batches[label], batches[_PLAIN], commands[label]) for label in sessions]


_PLAIN = "requests.Session + fixed header"


def _sessions(endpoint: Endpoint, url: str) -> dict[str, requests.Session]:
    def on_redis(check_interval: float) -> requests.Session:
        refresher = OAuth2Refresher(endpoint.token_url, endpoint.client_id, endpoint.client_secret)
        store = RedisTokenStore(url, REDIS_KEY, check_interval=check_interval)
        return RefreshingSession(endpoint.api_url, store=store, refresher=refresher)

    return {
        _PLAIN: plain(endpoint),
        "RefreshingSession, token file": ours(endpoint),
        f"RefreshingSession, Redis (check_interval={DEFAULT_CHECK_INTERVAL:g})": on_redis(
            DEFAULT_CHECK_INTERVAL
        ),
        "RefreshingSession, Redis (check_interval=0)": on_redis(0.0),
    }


def _interleaved(
    sessions: Mapping[str, requests.Session],
    url: str,
    rounds: int,
    count: int,
    counter: redis.Redis,
    progress: Callable[[str], None],
) -> tuple[dict[str, list[Batch]], dict[str, int]]:
    """Run the rounds, each client starting one place later each round; also count the Redis
    commands each client caused."""
    labels = list(sessions)
    for label in labels:
        measure(sessions[label], url, _WARMUP_REQUESTS)
    batches: dict[str, list[Batch]] = {label: [] for label in labels}
    commands = dict.fromkeys(labels, 0)
    for round_number in range(rounds):
        shift = round_number % len(labels)
        for label in labels[shift:] + labels[:shift]:
            before = _commands_run(counter)
            batches[label].append(measure(sessions[label], url, count))
            # The INFO call itself counts as one command: leave it out.
            commands[label] += _commands_run(counter) - before - 1
        progress(f"round {round_number + 1}/{rounds} ({count} requests each)")
    return batches, commands


def _commands_run(counter: redis.Redis) -> int:
    return int(counter.info("stats")["total_commands_processed"])


def _cost(
    label: str, batches: Sequence[Batch], plain_batches: Sequence[Batch], commands: int
) -> HotPathCost:
    speed = [b.per_second for b in batches]
    plain_speed = [b.per_second for b in plain_batches]
    total = sum(b.requests for b in batches)
    return HotPathCost(
        label=label,
        requests_per_second=Spread.of(speed),
        cpu_us_per_request=Spread.of([1e6 * b.cpu / b.requests for b in batches]),
        speed_vs_plain=Spread.of([s / p for s, p in zip(speed, plain_speed, strict=True)]),
        redis_commands_per_1000=1000 * commands / total,
    )


def markdown(costs: Sequence[HotPathCost], rounds: int, count: int) -> str:
    """The figures as a Markdown table, with a line saying how they were obtained."""
    lines = [
        f"{rounds} interleaved rounds of {count} GET requests per client, one loopback "
        "API server in its own process, redis-server on loopback; medians (quartiles).",
        "",
        "| client | requests/s | vs plain | client CPU µs/request | Redis commands per "
        "1000 requests |",
        "|---|---|---|---|---|",
    ]
    for cost in costs:
        speed = cost.speed_vs_plain
        lines.append(
            f"| {cost.label} | {cost.requests_per_second.median:.0f} | "
            f"{speed.median:.3f} ({speed.low:.3f}-{speed.high:.3f}) | "
            f"{cost.cpu_us_per_request.median:.0f} | "
            f"{cost.redis_commands_per_1000:.1f} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.redis_hot_path",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (15)")
    parser.add_argument(
        "--requests", type=int, default=300, help="requests per client per round (300)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
