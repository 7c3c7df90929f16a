"""How long and how hard each benchmark runs: the full plan and the CI smoke plan, and the
command line of a part run alone, which sets some of the full plan's sizes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, replace

Shape = tuple[int, int]  # (processes, threads per process)


@dataclass(frozen=True)
class Plan:
    """The sizes of one benchmark run; every loop in the benchmarks is bounded by these."""

    name: str
    overhead_rounds: int  # interleaved rounds of the common-path benchmark
    overhead_requests: int  # requests per client per round, over loopback
    stubbed_requests: int  # requests per client per round, with the transport stubbed out
    profile_requests: int  # requests under the profiler
    storm_ttl: float  # access-token lifetime in the storms, in seconds
    # How long each storm and scaling cell runs: not a multiple of the refresh interval, so
    # that a refresh never falls due just at the deadline.
    storm_seconds: float
    token_delay: float  # the token endpoint's response time, as a remote one would have
    storm_shapes: tuple[Shape, ...]  # back to back, every library
    latency_shapes: tuple[Shape, ...]  # paced, RefreshingSession only
    latency_rate: float  # requests per second over all threads of a latency cell
    latency_seconds: float  # how long each latency cell runs (more refreshes, steadier p99)
    scaling_processes: tuple[int, ...]  # one thread per process, paced
    scaling_rate: float  # requests per second over all processes of a scaling cell
    peer_scaling_limit: int  # peers run the scaling series up to this many processes
    async_storm_tasks: int  # asyncio tasks in the one process of each async storm cell
    async_storm_rate: float  # requests per second over all tasks of an async storm cell
    async_overhead_pairs: int  # pairs of runs (plain httpx.AsyncClient, ours), in turn
    async_overhead_seconds: float  # how long each of those runs
    async_overhead_tasks: int  # asyncio tasks on the one client of each run
    mixed_storm_runs: int  # runs of the storm with every front end at once
    mixed_storm_seconds: float  # how long each of those runs
    mixed_storm_tasks: int  # asyncio tasks in its asyncio process
    dpop_rounds: int  # interleaved rounds of the DPoP common path (and of the signer alone)
    dpop_requests: int  # requests per session per round of the DPoP common path
    dpop_proofs: int  # proofs per algorithm per round of the signer alone
    versus_shapes: tuple[Shape, ...]  # the storm against a static token, back to back
    versus_runs: int  # pairs of runs (static, RefreshingSession) per shape, in turn (triples
    # against node oidc-provider: the static client also beside a bystander's refreshes)
    versus_seconds: float  # how long each of those runs
    versus_servers: tuple[str, ...]  # the authorization servers it runs against
    # One more run of each client at this shape against this server, profiled.
    versus_profile: tuple[str, Shape] | None


FULL = Plan(
    name="full",
    overhead_rounds=15,
    overhead_requests=300,
    stubbed_requests=600,
    profile_requests=3000,
    storm_ttl=2.0,
    storm_seconds=5.5,
    token_delay=0.1,
    storm_shapes=((1, 1), (1, 8), (8, 2), (16, 4)),
    latency_shapes=((1, 8), (8, 2), (16, 4)),
    latency_rate=400.0,
    latency_seconds=8.5,
    scaling_processes=(1, 2, 4, 8, 16, 32, 64),
    scaling_rate=400.0,
    peer_scaling_limit=16,
    async_storm_tasks=500,
    async_storm_rate=400.0,
    async_overhead_pairs=8,
    async_overhead_seconds=6.0,
    async_overhead_tasks=100,
    mixed_storm_runs=3,
    mixed_storm_seconds=11.5,
    mixed_storm_tasks=100,
    dpop_rounds=15,
    dpop_requests=300,
    dpop_proofs=500,
    versus_shapes=((8, 2), (16, 4), (32, 4)),
    versus_runs=4,
    versus_seconds=4.5,
    versus_servers=("LocalAuthServer", "node oidc-provider"),
    versus_profile=("node oidc-provider", (16, 4)),
)

QUICK = Plan(
    name="quick",
    overhead_rounds=2,
    overhead_requests=30,
    stubbed_requests=60,
    profile_requests=100,
    storm_ttl=1.0,
    storm_seconds=0.8,
    token_delay=0.02,
    storm_shapes=((2, 1),),
    latency_shapes=((1, 4),),
    latency_rate=200.0,
    latency_seconds=1.2,
    scaling_processes=(2,),
    scaling_rate=200.0,
    peer_scaling_limit=0,
    async_storm_tasks=50,
    async_storm_rate=200.0,
    async_overhead_pairs=1,
    async_overhead_seconds=0.5,
    async_overhead_tasks=20,
    mixed_storm_runs=1,
    mixed_storm_seconds=1.5,
    mixed_storm_tasks=20,
    dpop_rounds=2,
    dpop_requests=20,
    dpop_proofs=20,
    versus_shapes=((2, 1),),
    versus_runs=1,
    versus_seconds=0.8,
    versus_servers=("LocalAuthServer",),
    versus_profile=None,
)


@dataclass(frozen=True)
class Option:
    """An option of a part's own command line: ``flag`` sets the :class:`Plan` field ``field``,
    whose value is ``default`` unless given (and of its type: an int or a float)."""

    flag: str
    field: str
    default: int | float
    help: str | None = None


def plan_from_command_line(
    module: str, doc: str, options: Sequence[Option], argv: Sequence[str] | None
) -> Plan:
    """The full plan with the fields that ``options`` set from ``argv``, the command line of
    ``python -m module`` (described by the first line of its ``doc``); exits with argparse's
    usage message on a bad option."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.splitlines()[0])
    for option in options:
        parser.add_argument(
            option.flag,
            dest=option.field,
            metavar="N" if isinstance(option.default, int) else "S",
            type=type(option.default),
            default=option.default,
            help=option.help,
        )
    return replace(FULL, **vars(parser.parse_args(argv)))
