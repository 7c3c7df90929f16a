"""The report's httpx parts (the common path and the async storm), as headings, text and table
rows that :mod:`benchmarks.report` lays out, and their targets."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .httpx_peers import HTTPX_CLIENTS

Results = Mapping[str, Any]
Spread = Callable[[Mapping[str, float]], str]  # a median (quartiles), as the report shows it
Errors = Callable[[Mapping[str, int]], str]  # errors by kind, as the report shows them
Number = Callable[[float | None, int], str]  # a figure with some digits, or a dash if none
_TIMES, _DASH = "\u00d7", "\u2013"
_OURS = "ours_httpx"


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
    if "async_storm" in results:
        found.append(_async_storm(results, errors, number))
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
    for cell in results.get("async_storm", []):
        bullets.append(
            f"Async storm, {cell['label']}, 1 process {_TIMES} {cell['threads']} "
            f"tasks: {cell['requests']} requests, {sum(cell['errors'].values())} "
            f"errors, {cell['token_calls']} token calls for {cell['refreshes_due']} "
            f"due tokens, {cell['reuse_detections']} reuse detections, grant "
            f"{'revoked' if cell['grant_revoked'] else 'kept'}."
        )
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


def _common_path(overhead: Mapping[str, Any], spread: Spread) -> Section:
    rows = [
        (
            c["label"],
            f"{c['requests_per_second']['median']:.0f}",
            spread(c["speed_vs_plain"]),
            f"{c['cpu_us_per_request']['median']:.0f}",
            spread(c["cpu_vs_plain"]),
        )
        for c in overhead["clients"]
    ]
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
        ("client", "requests/s", "requests/s vs plain", "client CPU µs/request", "CPU vs plain"),
        rows,
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
