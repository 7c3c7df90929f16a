"""The httpx common path: the cost of one API request with a valid token, per httpx client.

The ``httpx_overhead`` part of ``python -m benchmarks``; alone, ``python -m
benchmarks.httpx_overhead [--rounds N] [--requests N]`` prints the ratios. It runs as the
requests common path does (:mod:`benchmarks.overhead`): the server in its own process, the
clients taking turns in every round in a rotating order so that machine noise hits them alike,
and each round's requests per second and client CPU per request divided by those of a plain
``httpx.Client`` with a fixed Authorization header in the same round.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from typing import Any

from .authserver import granted_api
from .httpx_peers import HTTPX_CLIENTS, PLAIN
from .overhead import ClientCost, cost, interleaved
from .settings import Option, Plan, plan_from_command_line

_TOKEN_TTL = 3600.0  # no refresh during the measurement


def run_httpx_overhead(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    """Measure every httpx client against one loopback server in the plan's
    ``overhead_rounds`` interleaved rounds of ``overhead_requests`` requests (as the requests
    common path does); return the rounds, the requests per round and each client's
    :class:`~benchmarks.overhead.ClientCost` as plain data."""
    rounds, count = plan.overhead_rounds, plan.overhead_requests
    with granted_api(_TOKEN_TTL) as (server, endpoint), ExitStack() as stack:
        clients = {
            client.key: stack.enter_context(client.sync(endpoint)) for client in HTTPX_CLIENTS
        }
        batches = interleaved(clients, server.api_url + "items", rounds, count, progress)
    costs: list[ClientCost] = [
        cost(client.key, client.label, batches[client.key], batches[PLAIN.key])
        for client in HTTPX_CLIENTS
    ]
    return {
        "rounds": rounds,
        "requests_per_round": count,
        "clients": [asdict(client_cost) for client_cost in costs],
    }


def main(argv: list[str] | None = None) -> int:
    options = (
        Option("--rounds", "overhead_rounds", 10),
        Option("--requests", "overhead_requests", 300, "per client and round"),
    )
    plan = plan_from_command_line("benchmarks.httpx_overhead", __doc__, options, argv)
    result = run_httpx_overhead(plan, lambda message: print(message, file=sys.stderr))
    for client in result["clients"]:
        speed, cpu = client["speed_vs_plain"], client["cpu_vs_plain"]
        print(
            f"{client['label']:34} requests/s {speed['median']:5.2f} x plain (quartiles "
            f"{speed['low']:.2f}-{speed['high']:.2f}), CPU/request {cpu['median']:5.2f} x "
            f"plain ({cpu['low']:.2f}-{cpu['high']:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
