"""The entry point: ``python -m benchmarks [--quick] [--parts ...] [--out DIR]``.

The ``redis_storm`` part runs only when named: it needs ``redis-server``, which the other parts
(and CI's smoke) do without. A run of some parts into a folder that holds results already
replaces those parts' figures and keeps the others, noting which parts ran when.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .async_overhead import run_async_overhead
from .async_storm import run_async_storm
from .charts import write_charts
from .clients import AT_EXPIRY, LIBRARIES, OURS, OURS_ON_REDIS, Library
from .dpop_overhead import run_dpop_overhead
from .httpx_overhead import run_httpx_overhead
from .local_redis import MISSING, redis_server_found
from .mixed_storm import run_mixed_storm
from .oidc_provider import version as oidc_provider_version
from .overhead import PROFILED, run_overhead
from .pages import REPORTS, write_between_markers
from .report import markdown, sections
from .settings import FULL, QUICK, Plan
from .stats import load_average
from .storm import Cell, as_dict, describe, run_cell
from .targets import check
from .versus_static import run_versus_static

DEFAULT_PARTS = (
    "overhead",
    "storm",
    "versus_static",
    "storm_latency",
    "scaling",
    "httpx_overhead",
    "async_overhead",
    "async_storm",
    "mixed_storm",
    "dpop_overhead",
)
PARTS = (*DEFAULT_PARTS, "redis_storm")
RESULTS = Path(__file__).resolve().parent / "results"
QUICK_RESULTS = Path(tempfile.gettempdir()) / "refreshing-session-bench-quick"
# The performance page (docs/reports/performance.md) takes the report of a run into RESULTS;
# its chart links are relative to the page.
PAGE, PAGE_CHARTS = REPORTS / "performance.md", "../../benchmarks/results/"
_VERSIONS = (
    "refreshing-session",
    "requests",
    "urllib3",
    "filelock",
    "requests-oauthlib",
    "oauthlib",
    "Authlib",
    "google-auth",
    "httpx",
    "httpx-auth",
)

Progress = Callable[[str], None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; write results.json, results.md, the charts and the profile (and,
    for a run into the default folder, the performance page of the documentation)."""
    arguments = _parser().parse_args(argv)
    folder = Path(arguments.out or (QUICK_RESULTS if arguments.quick else RESULTS))
    if arguments.from_json:
        results = json.loads(Path(arguments.from_json).read_text(encoding="utf-8"))
    else:
        missing = _missing_peers()
        if missing:
            print(f"missing {', '.join(missing)}: pip install -e '.[bench]'", file=sys.stderr)
            return 2
        if "redis_storm" in arguments.parts and not redis_server_found():
            print(MISSING, file=sys.stderr)
            return 2
        plan = QUICK if arguments.quick else FULL
        results = _kept_with(
            run(plan, arguments.parts, _command(arguments), _progress), folder / "results.json"
        )
    _write(results, folder)
    targets = check(results)
    for target in targets:
        print(f"{'met    ' if target.met else 'NOT MET'}  {target.name}: {target.detail}")
    broken = any(target.correctness and not target.met for target in targets)
    return 1 if arguments.strict and broken else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of about 10 seconds, for CI"
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(DEFAULT_PARTS),
        help="run only these parts (default: all but redis_storm, the storm "
        "with the file and with the Redis store, which needs "
        "redis-server)",
    )
    parser.add_argument(
        "--out",
        help=f"results folder (default: {RESULTS}; with --quick, "
        f"{QUICK_RESULTS}, so that a smoke run never replaces real results)",
    )
    parser.add_argument(
        "--from-json",
        metavar="PATH",
        help="do not measure: redraw the report and charts from a results.json",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when RefreshingSession surfaces an error, refreshes a "
        "token twice or sets off reuse detection (for CI)",
    )
    return parser


def _command(arguments: argparse.Namespace) -> str:
    command = "python -m benchmarks" + (" --quick" if arguments.quick else "")
    if list(arguments.parts) != list(DEFAULT_PARTS):
        command += " --parts " + " ".join(arguments.parts)
    return command


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _missing_peers() -> list[str]:
    missing = []
    for library in LIBRARIES:
        for module in library.modules:
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(module)
    return missing


def run(plan: Plan, parts: Sequence[str], command: str, progress: Progress) -> dict[str, Any]:
    """Run the chosen ``parts`` of ``plan``, in the order of :data:`PARTS`; return the results
    as plain data."""
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": _meta(plan, command)}
    for part in PARTS:
        if part in parts:
            results[part] = _MEASURES[part](plan, progress)
    results["meta"]["total_seconds"] = round(time.perf_counter() - started, 1)
    results["meta"]["load_after"] = load_average()
    plain: dict[str, Any] = _plain(results)
    return plain


def _kept_with(results: dict[str, Any], previous: Path) -> dict[str, Any]:
    """``results`` of a run of some parts, over the ``previous`` results of the folder (when it
    holds any): the parts that ran replace theirs, the others stay, and the meta data says in
    ``later_runs`` which of the figures come from a later run: when, by which command, and at
    which load."""
    parts = [key for key in results if key != "meta"]
    if set(DEFAULT_PARTS) <= set(parts) or not previous.exists():
        return results
    kept: dict[str, Any] = json.loads(previous.read_text(encoding="utf-8"))
    meta = results["meta"]
    this_run = {
        key: meta[key] for key in ("command", "date", "total_seconds", "load_before", "load_after")
    }
    earlier = [
        {**run, "parts": [part for part in run["parts"] if part not in parts]}
        for run in kept["meta"].get("later_runs", [])
    ]
    kept["meta"]["later_runs"] = [
        *(run for run in earlier if run["parts"]),
        {**this_run, "parts": parts},
    ]
    return {**kept, **{key: results[key] for key in parts}}


def _storm(plan: Plan, progress: Progress) -> list[dict[str, Any]]:
    """The storm: every library at every storm shape, back to back."""
    return _run_cells(_storm_cells(plan, LIBRARIES), plan, plan.storm_seconds, progress)


def _redis_storm(plan: Plan, progress: Progress) -> list[dict[str, Any]]:
    """The storm's shapes for RefreshingSession on the token file, then on Redis, side by
    side."""
    cells = _storm_cells(plan, (OURS, OURS_ON_REDIS))
    return _run_cells(cells, plan, plan.storm_seconds, progress)


def _storm_cells(plan: Plan, libraries: Sequence[Library]) -> list[Cell]:
    """Each of ``libraries`` at each of the plan's storm shapes, back to back."""
    return [
        Cell(library.key, processes, threads)
        for processes, threads in plan.storm_shapes
        for library in libraries
    ]


def _storm_latency(plan: Plan, progress: Progress) -> list[dict[str, Any]]:
    """RefreshingSession and its refresh-at-expiry variant at each latency shape, paced to
    the plan's latency rate over all threads."""
    cells = [
        Cell(key, processes, threads, rate=plan.latency_rate / (processes * threads))
        for processes, threads in plan.latency_shapes
        for key in (OURS.key, AT_EXPIRY.key)
    ]
    return _run_cells(cells, plan, plan.latency_seconds, progress)


def _scaling(plan: Plan, progress: Progress) -> list[dict[str, Any]]:
    """One paced thread per process, over more and more processes (peers up to the plan's
    limit), at the plan's scaling rate over all processes."""
    cells = [
        Cell(library.key, processes, 1, rate=plan.scaling_rate / processes)
        for processes in plan.scaling_processes
        for library in LIBRARIES
        if library is OURS or processes <= plan.peer_scaling_limit
    ]
    return _run_cells(cells, plan, plan.storm_seconds, progress)


def _run_cells(
    cells: Sequence[Cell], plan: Plan, seconds: float, progress: Progress
) -> list[dict[str, Any]]:
    results = []
    for cell in cells:
        result = run_cell(cell, plan.storm_ttl, seconds, plan.token_delay)
        progress(
            f"{cell.library} {cell.processes}x{cell.threads}"
            f"{' paced' if cell.rate else ''}: {describe(result)}"
        )
        results.append(as_dict(result))
    return results


# How each part is measured from the plan; every part's results become plain data (see _plain).
_MEASURES: dict[str, Callable[[Plan, Progress], object]] = {
    "overhead": run_overhead,
    "storm": _storm,
    "versus_static": run_versus_static,
    "storm_latency": _storm_latency,
    "scaling": _scaling,
    "httpx_overhead": run_httpx_overhead,
    "async_overhead": run_async_overhead,
    "async_storm": run_async_storm,
    "mixed_storm": run_mixed_storm,
    "dpop_overhead": run_dpop_overhead,
    "redis_storm": _redis_storm,
}


def _meta(plan: Plan, command: str) -> dict[str, Any]:
    return {
        "command": command,
        "plan": asdict(plan),
        "load_before": load_average(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": _cpu_model(),
            "platform": platform.platform(terse=True),
            "python": platform.python_version(),
        },
        "versions": {
            **{name: _version(name) for name in _VERSIONS},
            "oidc-provider (node)": oidc_provider_version(),
        },
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _plain(value: Any) -> Any:
    """``value`` as JSON data: a dataclass instance as the dict of its fields, NaN as None (so
    that the JSON is standard)."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _write(results: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (folder / "results.md").write_text(markdown(results, charts=""), encoding="utf-8")
    if folder.resolve() == RESULTS:
        write_between_markers(PAGE, "performance", sections(results, PAGE_CHARTS, level=2))
    write_charts(results, folder)
    profiles = results.get("overhead", {}).get("profiles", {})
    if profiles:
        text = "\n\n".join(f"=== {key} ===\n{profiles[key]}" for key in PROFILED)
        (folder / "profile.txt").write_text(text, encoding="utf-8")
    storm_profiles = results.get("versus_static", {}).get("profiles", {})
    if storm_profiles:
        text = "\n\n".join(f"=== {key} ===\n{text}" for key, text in storm_profiles.items())
        (folder / "storm_profile.txt").write_text(text, encoding="utf-8")
    _progress(f"results written to {folder}")
