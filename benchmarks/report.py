"""The Markdown report, built from a run's results (the data written to ``results.json``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .clients import AT_EXPIRY, BY_KEY, LIBRARIES, OURS_ON_REDIS, PLAIN
from .dpop_report import dpop_sections, dpop_summary
from .httpx_report import (
    COMMON_PATH_HEADER,
    common_path_rows,
    httpx_sections,
    httpx_summary,
    usage_rows,
)
from .targets import check
from .versus_static import summary

Results = Mapping[str, Any]
TIMES, DASH = "\u00d7", "\u2013"


def markdown(results: Results, charts: str, level: int = 2) -> str:
    """The whole report under a heading of ``level``; chart links start with ``charts`` (a
    folder ending in ``/``)."""
    return f"{'#' * level} Performance\n\n{sections(results, charts, level + 1)}"


def sections(results: Results, charts: str, level: int) -> str:
    """The report without its title, for a page that has its own: the summary, then one
    section per part, with headings of ``level``."""
    head = "#" * level
    parts = [_about(results), _summary(results)]
    for own in _OWN_PARTS:
        if own.key in results:
            parts += [f"{head} {own.title}", own.text(results)]
            if own.chart is not None:
                parts.append(f"![{own.chart}]({charts}{own.key}.svg)")
    for part in [
        *httpx_sections(results, _spread, _errors, _number),
        *dpop_sections(results, _spread, _number),
    ]:
        parts += [f"{head} {part.title}", part.text + "\n\n" + _table(part.header, part.rows)]
    parts += [
        f"{head} Targets",
        _targets(results),
        f"{head} How each library is used",
        _usage(results),
    ]
    return "\n\n".join(parts) + "\n"


@dataclass(frozen=True)
class _OwnPart:
    """A part of the report laid out here (the httpx and DPoP parts come as :class:`Section`):
    the key of its results, its title, its text built from the whole results, and the alt
    text of its chart, ``<key>.svg`` (see :mod:`benchmarks.charts`), when it has one."""

    key: str
    title: str
    text: Callable[[Results], str]
    chart: str | None = None


def _about(results: Results) -> str:
    meta = results["meta"]
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    return (
        f"Produced by `{meta['command']}` in {meta['total_seconds']:.0f} s on "
        f"{meta['machine']['cores']} cores ({meta['machine']['cpu']}), "
        f"{meta['machine']['platform']}, Python {meta['machine']['python']}, on "
        f"{meta['date']}; 1-minute load average {_number(meta['load_before'], 2)} before "
        f"the run, {_number(meta['load_after'], 2)} after. Every server listens on "
        f"127.0.0.1. Versions: {versions}.{_later_runs(meta)}"
    )


def _later_runs(meta: Mapping[str, Any]) -> str:
    """Which parts' figures come from a later run of those parts alone, and its conditions."""
    return "".join(
        f" The figures of {', '.join(f'`{part}`' for part in run['parts'])} come from a later "
        f"run, `{run['command']}` in {run['total_seconds']:.0f} s on {run['date']}; 1-minute "
        f"load average {_number(run['load_before'], 2)} before it, "
        f"{_number(run['load_after'], 2)} after."
        for run in meta.get("later_runs", [])
    )


def _summary(results: Results) -> str:
    """The headline figures, one bullet per part that ran."""
    bullets = []
    if "overhead" in results:
        bullets.append(_overhead_summary(results["overhead"]))
    if "storm" in results:
        bullets += [
            _storm_summary(results["storm"], key)
            for key in dict.fromkeys(c["library"] for c in results["storm"])
        ]
    if results.get("versus_static", {}).get("shapes"):
        bullets.append(_versus_summary(results["versus_static"]["shapes"]))
    if "storm_latency" in results:
        bullets.append(_latency_summary(results["storm_latency"]))
    if "scaling" in results:
        bullets.append(_scaling_summary(results["scaling"]))
    if "redis_storm" in results:
        bullets.append(_storm_summary(results["redis_storm"], OURS_ON_REDIS.key))
    bullets += httpx_summary(results) + dpop_summary(results)
    return "In short:\n\n" + "\n".join(f"- {bullet}" for bullet in bullets)


def _overhead_summary(overhead: Mapping[str, Any]) -> str:
    bare = {c["key"]: c["cpu_vs_plain"]["median"] for c in overhead["stubbed"]}
    costs = ", ".join(
        f"{c['label']} {c['cpu_vs_plain']['median']:.3f}{TIMES} ({bare[c['key']]:.3f}{TIMES})"
        for c in overhead["clients"][1:]
    )
    return (
        "Common path, client CPU per request against the plain session over loopback "
        f"(and with the transport stubbed out): {costs}."
    )


def _storm_summary(cells: Sequence[Mapping[str, Any]], key: str) -> str:
    mine = [c for c in cells if c["library"] == key]
    revoked = sum(1 for c in mine if c["grant_revoked"])
    return (
        f"Storm, {BY_KEY[key].label}: {sum(c['requests'] for c in mine)} requests in "
        f"{len(mine)} cells, {sum(sum(c['errors'].values()) for c in mine)} errors "
        f"surfaced, {sum(c['token_calls'] for c in mine)} token-endpoint calls for "
        f"{sum(c['refreshes_due'] for c in mine)} due tokens, "
        f"{sum(c['reuse_detections'] for c in mine)} reuse detections, grant revoked in "
        f"{revoked} of {len(mine)} cells."
    )


def _versus_summary(shapes: Sequence[Mapping[str, Any]]) -> str:
    ratios = ", ".join(
        f"{e['server']} {e['processes']}{TIMES}{e['threads']} "
        f"{summary(e)['ratio']['median']:.3f}{TIMES}"
        for e in shapes
    )
    return (
        "Storm against a static token, RefreshingSession's successful requests per second "
        f"against the static client's (median of the runs): {ratios}."
    )


def _latency_summary(cells: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for key in dict.fromkeys(c["library"] for c in cells):
        worst = max(
            (
                c["storm"]["extra"]["p99"]
                for c in cells
                if c["library"] == key and c["storm"]["extra"]["p99"] is not None
            ),
            default=None,
        )
        handoff = max(
            (
                c["storm"]["handoff"]["p99"]
                for c in cells
                if c["library"] == key and c["storm"]["handoff"]["p99"] is not None
            ),
            default=None,
        )
        shown = (
            "no request waited"
            if worst is None
            else (
                f"worst p99 extra {worst:.1f} ms (token in hand {_number(handoff)} ms after the "
                "answer)"
            )
        )
        parts.append(f"{BY_KEY[key].label}: {shown}")
    return (
        "Requests that arrive during a refresh, latency beyond the token endpoint's own "
        f"time: {'; '.join(parts)}."
    )


def _scaling_summary(cells: Sequence[Mapping[str, Any]]) -> str:
    mine = sorted((c for c in cells if c["library"] == "ours"), key=lambda c: c["processes"])
    ratios = [c["calls_per_due"] for c in mine]
    return (
        f"Scaling, RefreshingSession from {mine[0]['processes']} to "
        f"{mine[-1]['processes']} processes: token calls per due token "
        f"{min(ratios):.2f}{DASH}{max(ratios):.2f}, p99 latency "
        f"{_number(mine[0]['latency']['p99'])} ms to {_number(mine[-1]['latency']['p99'])} "
        "ms."
    )


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value: float | None, digits: int = 1) -> str:
    return DASH if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _spread(spread: Mapping[str, float], digits: int = 3) -> str:
    return (
        f"{spread['median']:.{digits}f} ({spread['low']:.{digits}f}{DASH}"
        f"{spread['high']:.{digits}f})"
    )


def _overhead(results: Results) -> str:
    overhead = results["overhead"]
    loopback = _table(COMMON_PATH_HEADER, common_path_rows(overhead["clients"], _spread))
    bare = [
        (c["label"], f"{c['cpu_us_per_request']['median']:.1f}", _spread(c["cpu_vs_plain"]))
        for c in overhead["stubbed"]
    ]
    stubbed = _table(("client", "CPU µs/request", "CPU vs plain"), bare)
    return (
        f"{overhead['rounds']} interleaved rounds of {overhead['requests_per_round']} "
        "GET requests per client against one loopback server in its own process. Ratios "
        "are per round against the plain session of the same round: median (quartiles). "
        "CPU time is the client process's own, the steadier figure on a shared machine."
        f"\n\n{loopback}\n\nThe same clients with the transport stubbed out "
        "(`HTTPAdapter.send` returns a canned 200), "
        f"{overhead['stubbed_requests_per_round']} requests per round: only the clients' "
        "own work is left, so the differences are not diluted by sockets and HTTP "
        f"parsing.\n\n{stubbed}"
    )


def _storm_setup(plan: dict[str, Any]) -> str:
    """The storm's conditions, which the Redis storm shares."""
    return (
        f"Tokens live {plan['storm_ttl']:g} s; the refresh tokens are single-use and rotate, "
        "and presenting one twice revokes the grant. The token endpoint answers in "
        f"{1000 * plan['token_delay']:.0f} ms, as a remote one would. Each cell runs "
        f"{plan['storm_seconds']:g} s."
    )


def _storm_part(results: Results) -> str:
    """The storm's conditions, then its table."""
    return f"{_storm_intro(results)}\n\n{_storm(results['storm'])}"


def _storm_intro(results: Results) -> str:
    plan = results["meta"]["plan"]
    return (
        f"P processes {TIMES} T threads call the API back to back, sharing one token file. "
        f"{_storm_setup(plan)} *Due* is the number of tokens that came due under each "
        "library's own refresh policy (half the token's life for RefreshingSession, "
        "Authlib and google-auth as configured here; expiry for requests-oauthlib and the "
        "interceptor), so one call per due token is the ideal. Authlib keeps `expires_at` "
        "in whole seconds and so refreshes on whole-second boundaries: it may make one call "
        "more than the due count without any duplicate (a duplicate shows as a reuse "
        "detection). Latency is over successful requests."
    )


def _redis_storm_part(results: Results) -> str:
    """The Redis storm's conditions, then its table."""
    return f"{_redis_storm_intro(results)}\n\n{_storm(results['redis_storm'])}"


def _redis_storm_intro(results: Results) -> str:
    setup = _storm_setup(results["meta"]["plan"])
    return (
        f"The storm's shapes, for RefreshingSession alone. {setup} At each shape the "
        "processes run once sharing a token file, then once with "
        "`store=RedisTokenStore(url, key)` on a redis-server of its own (on loopback, "
        "started for the cell), so that the processes share nothing but Redis. *Due* is the "
        "tokens that came due at half their life. Latency is over successful requests."
    )


def _storm(cells: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            f"{c['processes']}{TIMES}{c['threads']}",
            BY_KEY[c["library"]].label,
            str(c["successes"]),
            _errors(c["errors"]),
            f"{c['token_calls']} / {c['refreshes_due']}",
            str(c["reuse_detections"]),
            "**yes**" if c["grant_revoked"] else "no",
            " / ".join(_number(c["latency"][k]) for k in ("p50", "p99", "max")),
        )
        for c in cells
    ]
    return _table(
        (
            f"P{TIMES}T",
            "library",
            "successes",
            "errors surfaced",
            "token calls / due",
            "reuse detected",
            "grant revoked",
            "latency p50 / p99 / max ms",
        ),
        rows,
    )


def _errors(errors: Mapping[str, int]) -> str:
    if not errors:
        return "0"
    kinds = ", ".join(
        f"{kind} {count}" for kind, count in sorted(errors.items(), key=lambda item: -item[1])
    )
    return f"{sum(errors.values())} ({kinds})"


def _versus(results: Results) -> str:
    plan, part = results["meta"]["plan"], results["versus_static"]
    rows = []
    for entry in part["shapes"]:
        s = summary(entry)
        rows.append(
            (
                entry["server"],
                f"{entry['processes']}{TIMES}{entry['threads']}",
                str(s["runs"]),
                f"{s['static_per_second']:.0f} / {s['ours_per_second']:.0f}",
                _spread(s["ratio"]),
                _share(s["server_share"]),
                _share(s["ours_share"]),
                f"{s['static_p99']:.1f} / {s['ours_p99']:.1f}",
                _spread(s["p99_ratio"], 2),
                f"{s['static_cpu']:.0f} / {s['ours_cpu']:.0f}",
                f"{s['static_errors']} / {s['ours_errors']}",
                f"{s['token_calls']} / {s['due']}",
                str(s["api_401s"]),
                str(s["reuse"]),
            )
        )
    table = _table(
        (
            "server",
            f"P{TIMES}T",
            "runs",
            "successful requests/s, static / ours",
            f"ours vs static (lowest{DASH}highest)",
            "static beside a bystander's refreshes vs static alone",
            "ours vs static beside a bystander's refreshes",
            "p99 ms, static / ours",
            "p99 ours vs static",
            "client CPU µs/request, static / ours",
            "errors, static / ours",
            "token calls / due",
            "API 401s (replayed)",
            "refresh tokens presented twice",
        ),
        rows,
    )
    skipped = "".join(
        f" Not run here against {name}: {reason}." for name, reason in part["skipped"].items()
    )
    return (
        f"P processes {TIMES} T threads call the API back to back, as in the storm; in "
        f"each pair of runs, the static client (a plain `requests.Session` with a fixed "
        f"header whose token outlives the run) and RefreshingSession (tokens of "
        f"{plan['storm_ttl']:g} s, refreshed at half their life, single-use refresh tokens) "
        f"run in turn, {plan['versus_seconds']:g} s each, the order swapped from one pair "
        f"to the next. Against LocalAuthServer (a fresh one per run) the token endpoint "
        f"answers in {1000 * plan['token_delay']:.0f} ms; against node oidc-provider (the "
        "interop tests' server, which also checks every API call's token) it takes its own "
        "time, and the static client's token comes from a second provider whose tokens "
        "live an hour. Ratios are run by run: median, then lowest and highest. The "
        "whole cost of refreshing is in them: the token endpoint's work, which no client "
        "avoids, and ours around it. *Client CPU* is the worker processes' CPU time per "
        "request (both clients pay requests' own work); `storm_profile.txt` beside the "
        "results holds a profiled run of each client. Against node oidc-provider each "
        "pair has a third run: the static client while a bystander thread redeems a "
        "refresh token of its own grant as often as RefreshingSession refreshes. Beside "
        "the static client alone, it shows the server's own work per refresh, which no "
        "client avoids; RefreshingSession beside it shows what is left, which is ours."
        + skipped
        + "\n\n"
        + table
    )


def _share(spread: Mapping[str, float]) -> str:
    return DASH if math.isnan(spread["median"]) else _spread(spread)


def _latency(results: Results) -> str:
    plan = results["meta"]["plan"]
    rows = [
        (
            f"{c['processes']}{TIMES}{c['threads']}",
            BY_KEY[c["library"]].label,
            str(c["storm"]["refreshes"]),
            _number(c["storm"]["refresh"]["p50"]),
            str(c["storm"]["waiting"]["count"]),
            " / ".join(_number(c["storm"]["waiting"][k]) for k in ("p50", "p99")),
            " / ".join(_number(c["storm"]["extra"][k]) for k in ("p50", "p99", "max")),
            _number(c["storm"]["after_answer"]["p99"]),
            " / ".join(_number(c["storm"]["handoff"][k]) for k in ("p50", "p99")),
            " / ".join(_number(c["storm"]["calm"][k]) for k in ("p50", "p99")),
        )
        for c in results["storm_latency"]
    ]
    table = _table(
        (
            f"P{TIMES}T",
            "client",
            "refreshes",
            "refresh on the server p50 ms",
            "waiting requests",
            "their latency p50 / p99 ms",
            "extra p50 / p99 / max ms",
            "after the answer p99 ms",
            "token in hand after the answer p50 / p99 ms",
            "calm requests p50 / p99 ms",
        ),
        rows,
    )
    return (
        f"RefreshingSession, paced at {plan['latency_rate']:g} requests/s in all (so the "
        "machine is not saturated), same tokens and token endpoint as the storm. With its "
        "defaults it refreshes at half the token's life and, while one caller refreshes, "
        "the others go on with the still-valid token; with `leeway=0` it refreshes only "
        "at expiry, so every request that arrives meanwhile waits on the locks: the worst "
        "case, also met after a 401 or a long idle spell. A request "
        "*waits* when it starts while a token request is being served. *Extra* is its "
        "latency minus that token request's own time on the server; *after the answer* is "
        "the time from the token endpoint's answer to the caller's response (lock "
        "hand-over, file read and the API call itself, which queues behind all the others "
        "released at the same moment); *token in hand* is the part of it until the client "
        "had the new token, without the API call. *Calm* requests overlapped no refresh: "
        f"the API call's own cost under the same load. {plan['latency_seconds']:g} s per "
        "cell.\n\n" + table
    )


def _scaling(results: Results) -> str:
    plan = results["meta"]["plan"]
    cells = results["scaling"]
    processes = sorted({c["processes"] for c in cells})
    keys = [lib.key for lib in LIBRARIES if any(c["library"] == lib.key for c in cells)]
    found = {(c["library"], c["processes"]): c for c in cells}
    rows = [[str(p)] + [_scaling_cell(found.get((key, p))) for key in keys] for p in processes]
    header = ["processes", *(BY_KEY[key].label for key in keys)]
    return (
        f"One thread per process; {plan['scaling_rate']:g} requests/s in all, shared "
        f"evenly by the processes; {plan['storm_seconds']:g} s per cell; same tokens and "
        "token endpoint as the storm. Each cell: token calls / due, p99 latency in ms, and "
        "errors surfaced.\n\n" + _table(header, rows)
    )


def _scaling_cell(cell: Mapping[str, Any] | None) -> str:
    if cell is None:
        return DASH
    errors = sum(cell["errors"].values())
    return (
        f"{cell['token_calls']} / {cell['refreshes_due']}, {_number(cell['latency']['p99'])}"
        f" ms, {errors} errors"
    )


def _targets(results: Results) -> str:
    rows = [(t.name, "met" if t.met else "**not met**", t.detail) for t in check(results)]
    return _table(("target", "result", "figures"), rows)


def _usage(results: Results) -> str:
    on_redis = (OURS_ON_REDIS,) if "redis_storm" in results else ()
    rows = [(lib.label, lib.usage) for lib in (PLAIN, *LIBRARIES, AT_EXPIRY, *on_redis)]
    if "httpx_overhead" in results or "async_storm" in results:
        rows += usage_rows()
    return (
        "Peers load the shared token file when they are built and save each new token "
        "through their documented token-update hook; none of them re-reads the file.\n\n"
        + _table(("library", "used as"), rows)
    )


# The report's own parts, in their order.
_OWN_PARTS = (
    _OwnPart("overhead", "Common path: one request with a valid token", _overhead, "common path"),
    _OwnPart("storm", "Refresh storm", _storm_part, "refresh storm"),
    _OwnPart("versus_static", "Refresh storm against a static token", _versus),
    _OwnPart("storm_latency", "Storm latency: requests that arrive during a refresh", _latency),
    _OwnPart("scaling", "Scaling with processes", _scaling, "scaling"),
    _OwnPart("redis_storm", "Refresh storm with the token in Redis", _redis_storm_part),
)
