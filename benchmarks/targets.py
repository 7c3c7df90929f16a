"""The issue's targets, checked against a run's results (the data in ``results.json``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .httpx_report import (
    ASYNC_RATIO,
    STEADY_SLACK,
    async_common_path_kept_up,
    common_path_faster,
    mixed_storm_callers_spared,
    mixed_storm_refreshed_once,
)
from .versus_static import summary

Results = Mapping[str, Any]

EXTRA_LIMIT_MS = 10.0  # waiting callers: p99 beyond the refresh's own round trip
VERSUS_RATIO = 0.95  # the storm's successful requests against a static token's, at least
VERSUS_P99_RATIO = 1.2  # the storm's p99 latency against a static token's, at most
# Scaling is flat when no request waits for a refresh: its p99 stays under this share of the
# token endpoint's response time.
FLAT_SHARE = 0.1
_PEERS = ("requests_oauthlib", "authlib", "google_auth", "interceptor")
_VARIANT = {"ours_at_expiry": " leeway=0", "ours_redis": " Redis"}


@dataclass(frozen=True)
class Target:
    """One target, whether the run met it, and the figures behind the verdict."""

    name: str
    met: bool
    detail: str
    correctness: bool = False  # errors, duplicate refreshes, reuse: not a matter of speed


def check(results: Results) -> list[Target]:
    """The issue's targets that the parts present in ``results`` can decide, then the
    correctness checks (which ``--strict`` enforces)."""
    found: list[Target] = []
    if results.get("versus_static", {}).get("shapes"):
        found.append(_versus_static(results["versus_static"]["shapes"]))
    if "overhead" in results:
        found.append(_common_path(results["overhead"]["clients"], results["overhead"]["stubbed"]))
    waiting = [c for c in results.get("storm_latency", []) if c["library"] == "ours_at_expiry"]
    if waiting:
        found.append(_waiting_callers(waiting))
    if "httpx_overhead" in results:
        found.append(
            Target(
                "httpx common path: RefreshingClient at least as fast as a plain "
                "`httpx.Client` with a fixed header",
                *common_path_faster(results["httpx_overhead"]),
            )
        )
    if "async_overhead" in results:
        found.append(
            Target(
                f"httpx async common path: RefreshingAsyncClient at least {ASYNC_RATIO:g}x a "
                "plain `httpx.AsyncClient` with a fixed header (median of alternating runs), "
                f"and as steady (run-to-run variation at most {STEADY_SLACK:g}x plain's)",
                *async_common_path_kept_up(results["async_overhead"]),
            )
        )
    if "mixed_storm" in results:
        found.append(
            Target(
                "mixed storm (every front end on one token file, short tokens): no 401 or "
                "other error reaching a caller of any front end, asyncio included",
                *mixed_storm_callers_spared(results["mixed_storm"]),
            )
        )
    if "scaling" in results:
        found.append(_scaling(results["scaling"], results["meta"]["plan"]["token_delay"]))
    parts = {
        "storm": results.get("storm", []),
        "storm against a static token": _versus_cells(results),
        "storm latency": results.get("storm_latency", []),
        "scaling": results.get("scaling", []),
        "Redis storm": results.get("redis_storm", []),
        "async storm": results.get("async_storm", []),
    }
    for label, part in parts.items():
        cells = [c for c in part if c["library"].startswith("ours")]
        if cells:
            found.append(_refresh_once(cells, label))
    if "mixed_storm" in results:
        found.append(
            Target(
                "mixed storm: one token call per expiry, zero reuse",
                *mixed_storm_refreshed_once(results["mixed_storm"]),
                correctness=True,
            )
        )
    return found


def _versus_cells(results: Results) -> list[Mapping[str, Any]]:
    """Every run of the storm against a static token, both clients."""
    shapes = results.get("versus_static", {}).get("shapes", [])
    return [cell for entry in shapes for pair in entry["pairs"] for cell in pair.values()]


def _versus_static(shapes: Iterable[Mapping[str, Any]]) -> Target:
    figures, met = [], True
    for entry in shapes:
        s = summary(entry)
        ratio, p99 = s["ratio"], s["p99_ratio"]
        good = (
            ratio["median"] >= VERSUS_RATIO
            and p99["median"] <= VERSUS_P99_RATIO
            and not s["ours_errors"]
            and s["token_calls"] <= s["due"]
            and not s["reuse"]
        )
        met = met and good
        figures.append(
            f"{entry['server']} {entry['processes']}x{entry['threads']}: "
            f"{ratio['median']:.3f} ({ratio['low']:.3f}-{ratio['high']:.3f}), p99 "
            f"{p99['median']:.2f}x, {s['ours_errors']} errors, "
            f"{s['token_calls']}/{s['due']} token calls/due" + ("" if good else " **short**")
        )
    return Target(
        f"1. storm against a static token: at least {VERSUS_RATIO:g}x its successful "
        f"requests/s, p99 within {VERSUS_P99_RATIO:g}x, zero errors, one token call "
        "per due token, at every shape",
        met,
        "median (lowest-highest) of the runs: " + "; ".join(figures),
    )


def _common_path(
    clients: Iterable[Mapping[str, Any]], stubbed: Iterable[Mapping[str, Any]]
) -> Target:
    cost = {c["key"]: c["cpu_vs_plain"]["median"] for c in clients}
    bare = {c["key"]: c["cpu_vs_plain"]["median"] for c in stubbed}
    cheaper = all(cost["ours"] <= cost[key] and bare["ours"] <= bare[key] for key in _PEERS)
    peers = ", ".join(f"{key} {cost[key]:.3f} ({bare[key]:.3f})" for key in _PEERS)
    return Target(
        "2. common path: client CPU per request at or below every peer's, over "
        "loopback and with the transport stubbed out",
        cheaper,
        f"CPU per request vs the plain session, loopback (stubbed): ours "
        f"{cost['ours']:.3f} ({bare['ours']:.3f}), {peers}",
    )


def _waiting_callers(cells: Iterable[Mapping[str, Any]]) -> Target:
    cells = list(cells)
    extras = [c["storm"]["extra"]["p99"] for c in cells]
    shown = ", ".join(
        f"{c['processes']}x{c['threads']}: " + ("no request waited" if e is None else f"{e:.1f} ms")
        for c, e in zip(cells, extras, strict=True)
    )
    return Target(
        f"3. waiting callers (leeway=0): p99 extra beyond the refresh at most "
        f"{EXTRA_LIMIT_MS:g} ms",
        all(e is not None and e <= EXTRA_LIMIT_MS for e in extras),
        f"p99 extra {shown}",
    )


def _scaling(cells: Iterable[Mapping[str, Any]], token_delay: float) -> Target:
    mine = sorted((c for c in cells if c["library"] == "ours"), key=lambda c: c["processes"])
    limit = 1000 * token_delay * FLAT_SHARE
    flat = all(
        c["token_calls"] <= c["refreshes_due"]
        and not c["errors"]
        and (c["latency"]["p99"] or 0.0) <= limit
        for c in mine
    )
    shown = ", ".join(
        f"{c['processes']}: {c['token_calls']}/{c['refreshes_due']}, "
        f"{c['latency']['p99'] or 0.0:.1f} ms"
        for c in mine
    )
    return Target(
        f"4. scaling to {mine[-1]['processes']} processes: one token call per due "
        f"token and p99 under {limit:g} ms (no request waits for a refresh) at every "
        "count",
        flat,
        f"processes: calls/due, p99: {shown}",
    )


def _refresh_once(cells: Iterable[Mapping[str, Any]], part: str) -> Target:
    cells = list(cells)
    bad = [
        _shape(c)
        for c in cells
        if c["errors"]
        or c["reuse_detections"]
        or c["grant_revoked"]
        or c["token_calls"] > c["refreshes_due"]
        or c["lost_workers"]
    ]
    calls = ", ".join(f"{_shape(c)}: {c['token_calls']}/{c['refreshes_due']}" for c in cells)
    return Target(
        f"{part}: zero errors, one token call per expiry, zero reuse",
        not bad,
        f"token calls/due {calls}" + (f"; failed at {', '.join(bad)}" if bad else ""),
        correctness=True,
    )


def _shape(cell: Mapping[str, Any]) -> str:
    return f"{cell['processes']}x{cell['threads']}{_VARIANT.get(cell['library'], '')}"
