"""The issue's targets, checked against a run's results (the data in ``results.json``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .httpx_report import common_path_faster

Results = Mapping[str, Any]

EXTRA_LIMIT_MS = 10.0
_PEERS_ON_COMMON_PATH = ("requests_oauthlib", "authlib")
_VARIANT = {"ours_at_expiry": " leeway=0", "ours_redis": " Redis"}


@dataclass(frozen=True)
class Target:
    """One target, whether the run met it, and the figures behind the verdict."""

    name: str
    met: bool
    detail: str
    correctness: bool = False  # errors, duplicate refreshes, reuse: not a matter of speed


def check(results: Results) -> list[Target]:
    """Every target that the parts present in ``results`` can decide."""
    found: list[Target] = []
    if "overhead" in results:
        found += _common_path(results["overhead"]["clients"], results["overhead"]["stubbed"])
    if "httpx_overhead" in results:
        found.append(Target("httpx common path: RefreshingClient at least as fast as a plain "
                            "`httpx.Client` with a fixed header",
                            *common_path_faster(results["httpx_overhead"])))
    for part, label in (("storm", "storm"), ("storm_latency", "storm latency"),
                        ("scaling", "scaling"), ("redis_storm", "Redis storm"),
                        ("async_storm", "async storm")):
        cells = [c for c in results.get(part, []) if c["library"].startswith("ours")]
        if cells:
            found.append(_refresh_once(cells, label))
    cells = results.get("storm_latency", [])
    if cells:
        found.append(_storm_latency(cells))
    return found


def _common_path(clients: Iterable[Mapping[str, Any]],
                 stubbed: Iterable[Mapping[str, Any]]) -> list[Target]:
    cost = {c["key"]: c["cpu_vs_plain"]["median"] for c in clients}
    speed = {c["key"]: c["speed_vs_plain"]["median"] for c in clients}
    bare = {c["key"]: c["cpu_vs_plain"]["median"] for c in stubbed}
    peers = ", ".join(f"{key} {cost[key]:.3f} ({bare[key]:.3f})"
                      for key in _PEERS_ON_COMMON_PATH)
    return [
        Target("common path: at least as fast as the plain session",
               cost["ours"] <= 1.0 and speed["ours"] >= 1.0,
               f"loopback: CPU per request {cost['ours']:.3f}x plain, requests/s "
               f"{speed['ours']:.3f}x; stubbed transport: CPU {bare['ours']:.3f}x"),
        Target("common path: cheaper than requests-oauthlib and Authlib",
               all(cost["ours"] < cost[key] for key in _PEERS_ON_COMMON_PATH),
               f"CPU per request vs plain, loopback (stubbed): ours {cost['ours']:.3f} "
               f"({bare['ours']:.3f}), {peers}"),
    ]


def _refresh_once(cells: Iterable[Mapping[str, Any]], part: str) -> Target:
    cells = list(cells)
    bad = [_shape(c) for c in cells
           if c["errors"] or c["reuse_detections"] or c["grant_revoked"]
           or c["token_calls"] > c["refreshes_due"] or c["lost_workers"]]
    calls = ", ".join(f"{_shape(c)}: {c['token_calls']}/{c['refreshes_due']}" for c in cells)
    return Target(f"{part}: zero errors, one token call per expiry, zero reuse", not bad,
                  f"token calls/due {calls}" + (f"; failed at {', '.join(bad)}" if bad else ""),
                  correctness=True)


def _shape(cell: Mapping[str, Any]) -> str:
    return f"{cell['processes']}x{cell['threads']}{_VARIANT.get(cell['library'], '')}"


def _storm_latency(cells: Iterable[Mapping[str, Any]]) -> Target:
    cells = list(cells)
    worst = max((c["storm"]["extra"]["p99"] or 0.0) for c in cells)
    shown = ", ".join(f"{_shape(c)}: {c['storm']['extra']['p99']:.1f} ms"
                      for c in cells if c["storm"]["extra"]["p99"] is not None)
    return Target(f"storm latency: p99 extra at most {EXTRA_LIMIT_MS:g} ms over the refresh",
                  worst <= EXTRA_LIMIT_MS, f"p99 extra {shown}")
