"""The charts of a run, drawn from its results (the data written to ``results.json``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import svg
from .clients import BY_KEY, LIBRARIES

Results = Mapping[str, Any]
TIMES = "\u00d7"

SHORT = {
    "plain": "plain",
    "ours": "ours",
    "requests_oauthlib": "req-oauthlib",
    "authlib": "Authlib",
    "google_auth": "google-auth",
    "interceptor": "interceptor",
}


def write_charts(results: Results, folder: Path) -> list[Path]:
    """Write the SVG charts for the parts present in ``results``; return their paths."""
    drawings: dict[str, tuple[Callable[[Any], str], str]] = {
        "overhead.svg": (_overhead, "overhead"),
        "storm.svg": (_storm, "storm"),
        "scaling.svg": (_scaling, "scaling"),
    }
    written = []
    for name, (draw, part) in drawings.items():
        if part in results:
            path = folder / name
            path.write_text(draw(results[part]), encoding="utf-8")
            written.append(path)
    return written


def _legend(keys: Sequence[str]) -> dict[str, str]:
    return {key: BY_KEY[key].label for key in keys}


def _overhead(overhead: Mapping[str, Any]) -> str:
    figures = (
        ("loopback: requests/s (higher is faster)", "clients", "speed_vs_plain"),
        ("loopback: CPU per request (lower is cheaper)", "clients", "cpu_vs_plain"),
        ("stubbed transport: CPU per request", "stubbed", "cpu_vs_plain"),
    )
    panels = [
        svg.dots_panel(
            title,
            "ratio to the plain session (median, quartiles)",
            {c["key"]: _triple(c[field]) for c in overhead[series]},
            SHORT,
            reference=1.0,
        )
        for title, series, field in figures
    ]
    return svg.document(
        "Common path: one GET with a valid token, against a plain session",
        panels,
        _legend([c["key"] for c in overhead["clients"]]),
    )


def _triple(spread: Mapping[str, float]) -> tuple[float, float, float]:
    return spread["median"], spread["low"], spread["high"]


def _storm(cells: Sequence[Mapping[str, Any]]) -> str:
    shapes = list(dict.fromkeys((c["processes"], c["threads"]) for c in cells))
    keys = [lib.key for lib in LIBRARIES if any(c["library"] == lib.key for c in cells)]
    found = {(c["library"], (c["processes"], c["threads"])): c for c in cells}
    labels = [f"{p}{TIMES}{t}" for p, t in shapes]

    def series(figure: str) -> dict[str, list[float]]:
        return {key: [float(found[key, shape][figure]) for shape in shapes] for key in keys}

    panels = [
        svg.bars_panel(
            "token-endpoint calls per due token",
            "calls / due (log)",
            labels,
            series("calls_per_due"),
            log=True,
            reference=1.0,
        ),
        svg.bars_panel(
            "errors surfaced to callers",
            "errors (log; none: a stub at 1)",
            labels,
            {
                key: [float(sum(found[key, shape]["errors"].values())) for shape in shapes]
                for key in keys
            },
            log=True,
            floor=1.0,
        ),
    ]
    return svg.document(
        f"Refresh storm: processes {TIMES} threads sharing one token file",
        panels,
        _legend(keys),
        x_label=f"processes {TIMES} threads",
    )


def _scaling(cells: Sequence[Mapping[str, Any]]) -> str:
    processes = sorted({c["processes"] for c in cells})
    keys = [lib.key for lib in LIBRARIES if any(c["library"] == lib.key for c in cells)]
    found = {(c["library"], c["processes"]): c for c in cells}

    def series(pick: Any) -> dict[str, list[float | None]]:
        return {
            key: [pick(found[(key, p)]) if (key, p) in found else None for p in processes]
            for key in keys
        }

    panels = [
        svg.lines_panel(
            "token-endpoint calls per due token",
            "calls / due (log)",
            processes,
            series(lambda c: c["calls_per_due"]),
            log=True,
            reference=1.0,
        ),
        svg.lines_panel(
            "p99 latency", "ms (log)", processes, series(lambda c: c["latency"]["p99"]), log=True
        ),
    ]
    return svg.document(
        "Scaling: one thread per process, paced", panels, _legend(keys), x_label="processes"
    )
