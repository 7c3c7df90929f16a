"""The report's httpx parts (the sync and async common paths, the async storm and the mixed
storm of every front end), as headings, text and table rows that :mod:`benchmarks.report` lays
out, and their targets."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .async_overhead import OURS_KEY, PLAIN_KEY
from .httpx_peers import HTTPX_CLIENTS

Results = Mapping[str, Any]
Spread = Callable[[Mapping[str, float]], str]  # a median (quartiles), as the report shows it
Errors = Callable[[Mapping[str, int]], str]  # errors by kind, as the report shows them
Number = Callable[[float | None, int], str]  # a figure with some digits, or a dash if none
_TIMES, _DASH = "\u00d7", "\u2013"
_OURS = "ours_httpx"
ASYNC_RATIO = 0.95  # the async common path's requests/s against plain's, at least (median)
# As steady as plain: its run-to-run variation at most this many times plain's (8 runs of each
# client give a noisy estimate of the variation: equal clients differ by this much).
STEADY_SLACK = 1.25
# The columns of a common-path table, the requests one's and the httpx one's.
COMMON_PATH_HEADER = (
    "client",
    "requests/s",
    "requests/s vs plain",
    "client CPU µs/request",
    "CPU vs plain",
)


@dataclass(frozen=True)
class Section:
    """A part of the report: its title, the text before its table, and the table."""

    title: str
    text: str
    header: tuple[str, ...]
    rows: Sequence[Sequence[str]]


def httpx_sections(
    results: Results, spread: Spread, errors: Errors, number: Number
) -> list[Section]:
    """The sections of the httpx parts present in ``results``, their figures shown with the
    report's ``spread``, ``errors`` and ``number``."""
    found = []
    if "httpx_overhead" in results:
        found.append(_common_path(results["httpx_overhead"], spread))
    if "async_overhead" in results:
        found.append(_async_common_path(results["async_overhead"], spread))
    if "async_storm" in results:
        found.append(_async_storm(results, errors, number))
    if "mixed_storm" in results:
        found.append(_mixed_storm(results["mixed_storm"], errors))
    return found


def httpx_summary(results: Results) -> list[str]:
    """The headline bullets of the httpx parts present in ``results``."""
    bullets = []
    if "httpx_overhead" in results:
        costs = ", ".join(
            f"{c['label']} {_ratio(c['speed_vs_plain'])} requests/s and "
            f"{_ratio(c['cpu_vs_plain'])} CPU"
            for c in results["httpx_overhead"]["clients"][1:]
        )
        bullets.append(
            f"httpx common path against a plain `httpx.Client` with a fixed header "
            f"(medians): {costs}."
        )
    if "async_overhead" in results:
        bullets.append(_async_common_path_summary(results["async_overhead"]))
    for cell in results.get("async_storm", []):
        bullets.append(
            f"Async storm, {cell['label']}, 1 process {_TIMES} {cell['threads']} "
            f"tasks: {cell['requests']} requests, {sum(cell['errors'].values())} "
            f"errors, {cell['token_calls']} token calls for {cell['refreshes_due']} "
            f"due tokens, {cell['reuse_detections']} reuse detections, grant "
            f"{'revoked' if cell['grant_revoked'] else 'kept'}."
        )
    if "mixed_storm" in results:
        bullets.append(_mixed_storm_summary(results["mixed_storm"]))
    return bullets


def usage_rows() -> list[tuple[str, str]]:
    """How each httpx client is used, for the report's usage table."""
    return [(client.label, client.usage) for client in HTTPX_CLIENTS]


def common_path_faster(overhead: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether RefreshingClient sends at least as many requests per second as the plain client
    (median of the rounds), and the figures."""
    ours = next(c for c in overhead["clients"] if c["key"] == _OURS)
    speed = ours["speed_vs_plain"]
    return speed["median"] >= 1.0, (
        f"RefreshingClient {speed['median']:.3f}{_TIMES} the plain "
        f"client's requests/s (quartiles {speed['low']:.3f}"
        f"{_DASH}{speed['high']:.3f})"
    )


def _ratio(spread: Mapping[str, float]) -> str:
    return f"{spread['median']:.2f}{_TIMES}"


def common_path_rows(clients: Sequence[Mapping[str, Any]], spread: Spread) -> list[tuple[str, ...]]:
    """The rows of a common-path table (requests' or httpx's; columns
    :data:`COMMON_PATH_HEADER`), one per client's :class:`~benchmarks.overhead.ClientCost` as
    plain data: the medians of its requests per second and client CPU per request, each with
    its ratio to the plain client's shown with ``spread``."""
    return [
        (
            c["label"],
            f"{c['requests_per_second']['median']:.0f}",
            spread(c["speed_vs_plain"]),
            f"{c['cpu_us_per_request']['median']:.0f}",
            spread(c["cpu_vs_plain"]),
        )
        for c in clients
    ]


def _common_path(overhead: Mapping[str, Any], spread: Spread) -> Section:
    text = (
        f"{overhead['rounds']} interleaved rounds of {overhead['requests_per_round']} GET "
        "requests per httpx client against one loopback server in its own process, each "
        "round's figures divided by those of a plain `httpx.Client` with a fixed "
        "`Authorization` header in the same round: median (quartiles). Tokens live an hour, "
        "so no client refreshes."
    )
    return Section(
        "httpx common path: one request with a valid token",
        text,
        COMMON_PATH_HEADER,
        common_path_rows(overhead["clients"], spread),
    )


def _async_storm(results: Results, errors: Errors, number: Number) -> Section:
    plan = results["meta"]["plan"]
    rows = [
        (
            cell["label"],
            str(cell["requests"]),
            str(cell["successes"]),
            errors(cell["errors"]),
            f"{cell['token_calls']} / {cell['refreshes_due']}",
            str(cell["reuse_detections"]),
            "**yes**" if cell["grant_revoked"] else "no",
            str(cell["api_401s"]),
            f"{number(cell['latency']['p50'], 0)} / {number(cell['latency']['p99'], 0)}",
            f"{number(cell['loop_lag']['p99'], 1)} / {number(cell['loop_lag']['max'], 0)}",
            f"{cell['client_cpu_us']:.0f}",
        )
        for cell in results["async_storm"]
    ]
    tasks = results["async_storm"][0]["threads"] if results["async_storm"] else 0
    text = (
        f"One process, {tasks} asyncio tasks calling the API through one client for "
        f"{plan['storm_seconds']:g} s, paced at {plan['async_storm_rate']:g} requests/s in "
        "all (each task from a random offset), so that the process is not saturated: back "
        "to back, the requests queue in the client's one process for longer than half a "
        "token's life, and a token stamped on a request dies in that queue whatever the "
        f"client's refresh policy. Tokens live {plan['storm_ttl']:g} s and "
        "every client refreshes them at half their life; the refresh tokens are single-use "
        "and rotate, and presenting one twice revokes the grant. *Due* counts the tokens that "
        "came due until the last request ended: a request started before the end may wait "
        "in the client for a connection and take its token later. The token endpoint answers "
        f"in {1000 * plan['token_delay']:.0f} ms. Every client has a pool of 20 connections. "
        "*Loop lag* is how much later than asked a task sleeping 1 ms at a time woke: a "
        "refresh that blocks the event loop shows there. Authlib keeps `expires_at` in whole "
        "seconds, so a token it has just received may already count as expired under its "
        "leeway: it then refreshes once more, and a task that waited for its lock meanwhile "
        "presents the refresh token it read before waiting, a spent one (a reuse). "
        "*API 401s* are the API's refusals of a dead token, whether the client cured them "
        "(a refresh and a replay) or surfaced them."
    )
    return Section(
        "Async storm: one process, many tasks",
        text,
        (
            "client",
            "requests",
            "successes",
            "errors surfaced",
            "token calls / due",
            "reuse detected",
            "grant revoked",
            "API 401s",
            "latency p50 / p99 ms",
            "loop lag p99 / max ms",
            "client CPU µs/request",
        ),
        rows,
    )


def async_common_path_kept_up(part: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether RefreshingAsyncClient served at least :data:`ASYNC_RATIO` of the plain
    client's requests per second (median of the pairs) and wandered from run to run at most
    :data:`STEADY_SLACK` times as much as it; and the figures."""
    ratio = part["speed_vs_plain"]
    plain, ours = (_async_client(part, key) for key in (PLAIN_KEY, OURS_KEY))
    met = ratio["median"] >= ASYNC_RATIO and ours["variation"] <= STEADY_SLACK * plain["variation"]
    return met, (
        f"{part['tasks']} tasks, {part['pairs']} pairs: RefreshingAsyncClient "
        f"{ratio['median']:.3f}{_TIMES} the plain client's requests/s (lowest{_DASH}highest "
        f"{ratio['low']:.3f}{_DASH}{ratio['high']:.3f}); variation run to run "
        f"{ours['variation']:.3f}, plain {plain['variation']:.3f}"
    )


def mixed_storm_callers_spared(part: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether no caller of any front end saw a 401 or another error in any run of the mixed
    storm; and the 401s each front end's callers saw."""
    totals = _mixed_totals(part)
    met = not any(entry["errors"] for run in part["runs"] for entry in run["front_ends"])
    return met, "401s reaching callers over the runs: " + ", ".join(
        f"{label} {entry['caller_401s']} of {entry['requests']}"
        + (f" (and {entry['other']} other errors)" if entry["other"] else "")
        for label, entry in totals.items()
    )


def mixed_storm_refreshed_once(part: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether every run of the mixed storm asked the token endpoint at most once per due
    token, presented no refresh token twice and heard from every worker; and the figures."""
    runs = part["runs"]
    met = all(
        run["token_calls"] <= run["refreshes_due"]
        and not run["reuse_detections"]
        and not run["grant_revoked"]
        and not run["lost_workers"]
        for run in runs
    )
    return met, "token calls/due, reuse detections: " + ", ".join(
        f"{run['token_calls']}/{run['refreshes_due']}, {run['reuse_detections']}" for run in runs
    )


def _async_client(part: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return next(client for client in part["clients"] if client["key"] == key)


def _async_common_path_summary(part: Mapping[str, Any]) -> str:
    ratio = part["speed_vs_plain"]
    speeds = "; ".join(
        f"{c['label']} {_low_high(c['requests_per_second'], 0)} requests/s (variation "
        f"{c['variation']:.3f})"
        for c in part["clients"]
    )
    return (
        f"httpx async common path, {part['tasks']} tasks on one client: "
        f"RefreshingAsyncClient {ratio['median']:.2f}{_TIMES} the requests/s of a plain "
        f"`httpx.AsyncClient` with a fixed header (median of {part['pairs']} alternating "
        f"pairs, {_low_high(ratio, 2)}); run to run, {speeds}."
    )


def _low_high(values: Mapping[str, float], digits: int) -> str:
    return f"{values['low']:.{digits}f}{_DASH}{values['high']:.{digits}f}"


def _async_common_path(part: Mapping[str, Any], spread: Spread) -> Section:
    rows = [
        (
            c["label"],
            f"{c['requests_per_second']['median']:.0f} ({_low_high(c['requests_per_second'], 0)})",
            f"{c['variation']:.3f}",
            f"{c['cpu_us_per_request']:.0f}",
            spread(part["speed_vs_plain"]) if c["key"] == OURS_KEY else "1",
        )
        for c in part["clients"]
    ]
    text = (
        f"The async front end beside the sync figure above: {part['tasks']} asyncio tasks "
        "call the API back to back through one client, against one loopback server in its "
        f"own process, for {part['seconds']:g} s per run; each of {part['pairs']} pairs of "
        "runs has RefreshingAsyncClient and a plain `httpx.AsyncClient` with a fixed "
        "`Authorization` header in turn, the order swapped from one pair to the next. Both "
        f"have httpx's default pool ({part['connections']} connections, "
        f"{part['kept_alive']} kept alive when idle). Tokens live "
        "an hour, so no client refreshes. Requests per second: median (lowest"
        f"{_DASH}highest) of the runs; *variation* is their standard deviation over their "
        "mean, how unsteady a client is from run to run. Ours against plain is pair by pair: "
        f"median (lowest{_DASH}highest)."
    )
    return Section(
        "httpx async common path: many tasks with a valid token",
        text,
        (
            "client",
            f"requests/s (lowest{_DASH}highest)",
            "variation run to run",
            "client CPU µs/request (median)",
            f"requests/s vs plain (lowest{_DASH}highest)",
        ),
        rows,
    )


def _mixed_totals(part: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Each front end's requests, 401s reaching callers and other errors over the runs."""
    totals: dict[str, dict[str, int]] = {}
    for run in part["runs"]:
        for entry in run["front_ends"]:
            total = totals.setdefault(entry["label"], {"requests": 0, "caller_401s": 0, "other": 0})
            total["requests"] += entry["requests"]
            total["caller_401s"] += entry["caller_401s"]
            total["other"] += sum(entry["errors"].values()) - entry["caller_401s"]
    return totals


def _mixed_storm_summary(part: Mapping[str, Any]) -> str:
    runs = part["runs"]
    totals = ", ".join(
        f"{label} {entry['caller_401s']} of {entry['requests']}"
        for label, entry in _mixed_totals(part).items()
    )
    return (
        f"Mixed storm, every front end on one token file, {part['ttl']:g}-second tokens, "
        f"{len(runs)} runs: 401s reaching callers {totals}; "
        f"{sum(run['token_calls'] for run in runs)} token calls for "
        f"{sum(run['refreshes_due'] for run in runs)} due tokens, "
        f"{sum(run['reuse_detections'] for run in runs)} reuse detections."
    )


def _mixed_storm(part: Mapping[str, Any], errors: Errors) -> Section:
    ends = part["runs"][0]["front_ends"] if part["runs"] else []
    rows = [
        (
            str(number),
            *(
                f"{entry['successes']} of {entry['requests']} ok; errors {errors(entry['errors'])}"
                for entry in run["front_ends"]
            ),
            f"{run['token_calls']} / {run['refreshes_due']}",
            str(run["reuse_detections"]),
            "**yes**" if run["grant_revoked"] else "no",
            str(run["api_401s"]),
        )
        for number, run in enumerate(part["runs"], start=1)
    ]
    shapes = ", ".join(
        f"{e['processes']} {e['label']} process{'es' if e['processes'] > 1 else ''} of "
        f"{e['callers']} {'tasks' if e['key'] == 'asyncio' else 'threads'}"
        for e in ends
    )
    text = (
        f"Every front end at once on one token file: {shapes}, calling the API back to back "
        f"for {part['seconds']:g} s per run (the asyncio process's client with a pool of 20 "
        f"connections). Tokens live {part['ttl']:g} s and, as oidc-provider does, end at the "
        "whole second of issue plus their life, up to a second before a client counting from "
        "its request expects; every client refreshes them at half their life; the refresh "
        "tokens are single-use and rotate, and presenting one twice revokes the grant; the "
        f"token endpoint answers in {1000 * part['token_delay']:.0f} ms. Each "
        "front end's cell counts what its callers saw: an *error* is anything but a 200 (a "
        "401 there is one the client handed back instead of curing it). *API 401s* are the "
        "API's refusals of a dead token over all processes, cured (a refresh or a sibling's "
        "token, and a replay) or not. *Due* counts the tokens that came due until the last "
        "request ended."
    )
    return Section(
        "Mixed storm: every front end on one token file",
        text,
        (
            "run",
            *(f"{e['label']} callers" for e in ends),
            "token calls / due",
            "reuse detected",
            "grant revoked",
            "API 401s",
        ),
        rows,
    )
