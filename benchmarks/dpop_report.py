"""The report's DPoP part (the common path with a proof per request, :mod:`.dpop_overhead`), as
headings, text and table rows that :mod:`benchmarks.report` lays out, and its summary line."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .dpop_overhead import ALGORITHMS
from .httpx_report import Number, Section

Results = Mapping[str, Any]
Spread = Callable[[Mapping[str, float], int], str]  # a median (quartiles), with some digits


def dpop_sections(results: Results, spread: Spread, number: Number) -> list[Section]:
    """The DPoP sections (over loopback, then the clients' own work) when ``results`` hold
    the part, its figures shown with the report's ``spread`` and ``number``."""
    if "dpop_overhead" not in results:
        return []
    part = results["dpop_overhead"]
    loopback = (
        f"{part['rounds']} interleaved rounds of {part['requests_per_round']} GET requests "
        "per session against one loopback LocalAuthServer in its own process, which checks "
        "every proof (signature, `htm`, `htu`, `iat`, `jti`, `ath`, the token's key). The "
        "sessions differ only in the token their store holds: a bearer token, or one bound "
        "to an EC P-256 key (ES256) or to an Ed25519 key (EdDSA) and stored with it. Ratios "
        "are per round against the bearer session of the same round: median (quartiles); "
        "*CPU µs above bearer* is the client CPU a DPoP request takes above a bearer one, "
        "round by round. The requests/s include the server's check of each proof (Python, "
        "on the same 2 cores), and a client that waits longer for its answers spends more "
        "CPU waking up: the next table leaves only the client's own work. 1-minute load "
        f"average {number(part['load_before'], 2)} before this part, "
        f"{number(part['load_after'], 2)} after."
    )
    stubbed = (
        f"The same sessions with the transport stubbed out (`HTTPAdapter.send` returns a "
        f"canned 200), {part['stubbed_requests_per_round']} requests per round: the proof is "
        "built and signed as before, but nothing is sent. *µs to sign* is the signer alone "
        f"(`DPoPKey.proof` for a resource request), {part['proofs_per_round']} proofs per "
        f"algorithm in each of {part['rounds']} rounds, the algorithms taking turns: the "
        "price of DPoP is that proof, its claims built and signed for every request."
    )
    return [
        Section(
            "DPoP: the common path with a proof per request",
            loopback,
            (
                "session",
                "requests/s",
                "requests/s vs bearer",
                "client CPU µs/request",
                "CPU vs bearer",
                "CPU µs above bearer",
            ),
            [
                (
                    client["label"],
                    f"{client['requests_per_second']['median']:.0f}",
                    spread(client["speed_vs_plain"], 3),
                    f"{client['cpu_us_per_request']['median']:.0f}",
                    spread(client["cpu_vs_plain"], 3),
                    _above(part["extra_cpu_us"], client, spread),
                )
                for client in part["clients"]
            ],
        ),
        Section(
            "DPoP: the client's own work",
            stubbed,
            ("session", "CPU µs/request", "CPU vs bearer", "CPU µs above bearer", "µs to sign"),
            [
                (
                    client["label"],
                    f"{client['cpu_us_per_request']['median']:.0f}",
                    spread(client["cpu_vs_plain"], 3),
                    _above(part["stubbed_extra_cpu_us"], client, spread),
                    _signing(part["proof_cpu_us"], client, number),
                )
                for client in part["stubbed"]
            ],
        ),
    ]


def dpop_summary(results: Results) -> list[str]:
    """The headline bullet of the DPoP part, when ``results`` hold it."""
    if "dpop_overhead" not in results:
        return []
    part = results["dpop_overhead"]
    costs = ", ".join(
        f"{algorithm} {part['stubbed_extra_cpu_us'][client]['median']:.0f} µs "
        f"(signing alone {part['proof_cpu_us'][algorithm]['median']:.0f} µs; over loopback, "
        f"{part['extra_cpu_us'][client]['median']:.0f} µs)"
        for client, algorithm in ALGORITHMS.items()
    )
    return [
        "DPoP common path, the client's CPU per request above a bearer request, with the "
        f"transport stubbed out (medians of {part['rounds']} interleaved rounds): {costs}."
    ]


def _above(extra: Mapping[str, Any], client: Mapping[str, Any], spread: Spread) -> str:
    """A DPoP session's CPU µs per request above the bearer session's; blank for bearer."""
    return spread(extra[client["key"]], 0) if client["key"] in ALGORITHMS else ""


def _signing(signing: Mapping[str, Any], client: Mapping[str, Any], number: Number) -> str:
    """The µs to sign one proof with a DPoP session's algorithm; blank for bearer."""
    algorithm = ALGORITHMS.get(client["key"])
    return "" if algorithm is None else number(signing[algorithm]["median"], 0)
