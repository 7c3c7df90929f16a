"""The storm against a static token: RefreshingSession, refreshing short-lived tokens, beside a
plain session that sends one long-lived token, run after run in turn at each shape.

Whatever both pay (the API calls, the server's work on them, the machine) cancels out of the
ratio of their successful requests; what is left is the cost of refreshing: the token endpoint's
work, and ours around it. Against node oidc-provider, whose refresh grant is work on the same
single thread that answers the API, a third run in each pair tells the two apart: the static
client again, while a bystander thread redeems a refresh token of its own as often as
RefreshingSession does (the server's work per refresh, which no client avoids).

Each shape runs ``versus_runs`` pairs (or triples), the order reversed from one to the next,
against LocalAuthServer (a fresh one per run, its token endpoint as slow as a remote
one) and against node oidc-provider (one with short-lived tokens for RefreshingSession, one with
long-lived tokens for the static client, both kept for the whole part).
"""

from __future__ import annotations

import io
import pstats
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from refreshing_session import OAuth2Refresher, Token

from .clients import OURS, PLAIN
from .oidc_provider import oidc_provider, unavailable
from .overhead import without_folders
from .settings import Plan
from .stats import percentile
from .storm import (
    STATIC_TTL,
    AuthServer,
    Cell,
    CellResult,
    as_dict,
    describe,
    run_cell,
    run_cell_on,
)

LOCAL, OIDC = "LocalAuthServer", "node oidc-provider"
BESIDE_REFRESHES = "static_beside_refreshes"  # the static client's run beside a bystander
_PROFILE_ROWS = 30
# Ours, the file lock and the token file, and the requests steps they sit in.
_FOCUS = (
    r"refreshing_session[/\\]|filelock|\((get_netrc_auth|request|send|"
    r"merge_environment_settings|loads|stat|open|read)\)"
)
# Runs a cell (a library at a shape) for the plan's time, saving profiles in the folder if
# one is given; returns its result.
Runner = Callable[[Cell, str | None], CellResult]
_STOP_TIMEOUT = 10.0


def run_versus_static(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    """Every server's pairs at every shape; a server that cannot run here is named in
    ``skipped`` with the reason."""
    found: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    profiles: dict[str, str] = {}
    for name in plan.versus_servers:
        problem = unavailable() if name == OIDC else None
        if problem is not None:
            skipped[name] = problem
            progress(f"storm against a static token: {name} skipped: {problem}")
            continue
        with _runner(name, plan) as (runner, beside):
            found += [
                _pairs(name, shape, plan.versus_runs, runner, beside, progress)
                for shape in plan.versus_shapes
            ]
            if plan.versus_profile is not None and plan.versus_profile[0] == name:
                profiles.update(_profiles(name, plan.versus_profile[1], runner, progress))
    return {"shapes": found, "skipped": skipped, "profiles": profiles}


@contextmanager
def _runner(name: str, plan: Plan) -> Iterator[tuple[Runner, Runner | None]]:
    """The runner of cells against server ``name``, and (where the refreshes' work on the
    server can be told apart) the runner of the static client beside a bystander's refreshes."""
    if name == LOCAL:
        yield (
            (
                lambda cell, folder: run_cell(
                    cell, plan.storm_ttl, plan.versus_seconds, plan.token_delay, folder
                )
            ),
            None,
        )
        return
    with (
        oidc_provider(round(plan.storm_ttl)) as rotating,
        oidc_provider(round(STATIC_TTL)) as lasting,
    ):
        servers: dict[str, AuthServer] = {OURS.key: rotating, PLAIN.key: lasting}

        def run(cell: Cell, folder: str | None) -> CellResult:
            return run_cell_on(
                cell, servers[cell.library], plan.storm_ttl, plan.versus_seconds, folder
            )

        def beside(cell: Cell, folder: str | None) -> CellResult:
            with _refreshing(lasting, plan.storm_ttl / 2):
                return run(cell, folder)

        yield run, beside


@contextmanager
def _refreshing(server: AuthServer, interval: float) -> Iterator[None]:
    """A bystander thread that redeems a refresh token of its own grant every ``interval``
    seconds while the context lasts."""
    stop = threading.Event()
    refresher = OAuth2Refresher(server.token_url, server.client_id, server.client_secret)
    token = Token.from_response(server.grant(), requested_at=time.time())

    def redeem() -> None:
        nonlocal token
        while not stop.wait(interval):
            token = refresher(token)

    bystander = threading.Thread(target=redeem, daemon=True)
    bystander.start()
    try:
        yield
    finally:
        stop.set()
        bystander.join(_STOP_TIMEOUT)


def _pairs(
    server: str,
    shape: tuple[int, int],
    runs: int,
    runner: Runner,
    beside: Runner | None,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    processes, threads = shape
    pairs = []
    for number in range(runs):
        steps = [(PLAIN.key, PLAIN, runner), (OURS.key, OURS, runner)]
        if beside is not None:
            steps.append((BESIDE_REFRESHES, PLAIN, beside))
        pair = {}
        for key, library, run in steps if number % 2 == 0 else steps[::-1]:
            result = run(Cell(library.key, processes, threads), None)
            progress(
                f"{server} {processes}x{threads} run {number + 1}/{runs} {key}: {describe(result)}"
            )
            pair[key] = as_dict(result)
        pairs.append(pair)
    return {"server": server, "processes": processes, "threads": threads, "pairs": pairs}


def _profiles(
    server: str, shape: tuple[int, int], runner: Runner, progress: Callable[[str], None]
) -> dict[str, str]:
    """One more run of each client at ``shape`` with every thread under cProfile: where the
    client's CPU time goes, ours beside the static client's, by cumulative and by own time."""
    processes, threads = shape
    found = {}
    for library in (PLAIN, OURS):
        with tempfile.TemporaryDirectory(prefix="refreshing-session-bench-profile-") as folder:
            result = runner(Cell(library.key, processes, threads), folder)
            files = sorted(Path(folder).glob("*.prof"))
            text = io.StringIO()
            print(
                f"{result.requests} requests ({result.successes} ok, "
                f"{result.token_calls} token calls) by {processes}x{threads} threads in "
                f"{result.seconds:g} s, profiled, {result.client_cpu_us:.0f} µs client CPU "
                "per request",
                file=text,
            )
            if files:
                stats = pstats.Stats(*map(str, files), stream=text)
                stats.files = []  # type: ignore[attr-defined]  # not every thread's file name
                stats.sort_stats("cumulative").print_stats(_FOCUS, _PROFILE_ROWS)
                stats.sort_stats("tottime").print_stats(_PROFILE_ROWS)
        progress(f"{server} {processes}x{threads} profiled {library.label}: {describe(result)}")
        found[f"{server}, {processes}x{threads}, {library.label}"] = without_folders(
            text.getvalue()
        )
    return found


def summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One shape's figures over its pairs: the ratios of RefreshingSession's successful
    requests and p99 latency to the static client's, run by run (median, lowest, highest),
    and the totals of errors, token calls and due tokens."""
    pairs: Sequence[Mapping[str, Any]] = entry["pairs"]
    ours = [pair[OURS.key] for pair in pairs]
    static = [pair[PLAIN.key] for pair in pairs]
    speed = [
        o["successes"] / s["successes"] if s["successes"] else 0.0
        for o, s in zip(ours, static, strict=True)
    ]
    p99 = [
        o["latency"]["p99"] / s["latency"]["p99"]
        for o, s in zip(ours, static, strict=True)
        if o["latency"]["p99"] and s["latency"]["p99"]
    ]
    beside = [pair[BESIDE_REFRESHES] for pair in pairs if BESIDE_REFRESHES in pair]
    return {
        "runs": len(pairs),
        "ratio": _range(speed),
        "p99_ratio": _range(p99),
        # The static client beside a bystander's refreshes against the static client alone,
        # and RefreshingSession against the former: the server's share, and ours.
        "server_share": _range(
            [
                b["successes"] / s["successes"]
                for b, s in zip(beside, static, strict=False)
                if s["successes"]
            ]
        ),
        "ours_share": _range(
            [
                o["successes"] / b["successes"]
                for o, b in zip(ours, beside, strict=False)
                if b["successes"]
            ]
        ),
        "ours_per_second": percentile([o["successes"] / o["seconds"] for o in ours], 0.5),
        "static_per_second": percentile([s["successes"] / s["seconds"] for s in static], 0.5),
        "ours_p99": percentile([o["latency"]["p99"] or 0.0 for o in ours], 0.5),
        "static_p99": percentile([s["latency"]["p99"] or 0.0 for s in static], 0.5),
        "ours_cpu": percentile([o["client_cpu_us"] for o in ours], 0.5),
        "static_cpu": percentile([s["client_cpu_us"] for s in static], 0.5),
        "ours_errors": sum(sum(o["errors"].values()) for o in ours),
        "static_errors": sum(sum(s["errors"].values()) for s in static),
        "token_calls": sum(o["token_calls"] for o in ours),
        "due": sum(o["refreshes_due"] for o in ours),
        "reuse": sum(o["reuse_detections"] for o in ours),
        "api_401s": sum(o["api_401s"] for o in ours),
        "lost_workers": sum(
            o["lost_workers"] + s["lost_workers"] for o, s in zip(ours, static, strict=True)
        ),
    }


def _range(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "low": float("nan"), "high": float("nan")}
    return {"median": percentile(values, 0.5), "low": min(values), "high": max(values)}
