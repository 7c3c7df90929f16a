"""Run every Reliability scenario RUNS times and write the reliability report's table.

    python -m tests.support.reliability [--runs 3] [--soak-seconds 60]
        [--page docs/reports/reliability.md]

Each run is a full pytest run of the tests marked ``scenario`` (see tests/support/scenarios.py).
The table replaces what stands between the reliability markers of the page, and is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.pages import REPORTS, write_between_markers

from .scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--soak-seconds", type=float, default=60.0)
    parser.add_argument("--page", type=Path, default=REPORTS / "reliability.md")
    arguments = parser.parse_args()
    started = time.monotonic()
    results: dict[str, Counter[str]] = {name: Counter() for name in SCENARIOS}
    figures: dict[str, Any] = {}
    for run in range(arguments.runs):
        print(f"run {run + 1} of {arguments.runs} ...", file=sys.stderr)
        outcome = _run_once(arguments.soak_seconds)
        for name, counts in outcome["results"].items():
            results[name].update(counts)
        figures = outcome["figures"]
    table = _render(results, figures, arguments.runs, time.monotonic() - started)
    write_between_markers(arguments.page, "reliability", table)
    print(table)
    return 0 if all(set(counts) <= {"passed", "skipped"} for counts in results.values()) else 1


def _run_once(soak_seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "reliability.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-n",
                "0",  # one worker: the report's figures are gathered in this process
                "-m",
                "scenario",
                f"--reliability-json={report}",
            ],
            cwd=ROOT,
            check=False,
            timeout=1800,
            env={**os.environ, "REFRESHING_SESSION_SOAK_SECONDS": str(soak_seconds)},
        )
        outcome: dict[str, Any] = json.loads(report.read_text())
        return outcome


def _render(
    results: dict[str, Counter[str]], figures: dict[str, Any], runs: int, elapsed: float
) -> str:
    lines = [
        f"Produced by `python -m tests.support.reliability --runs {runs}` "
        f"({elapsed / 60:.0f} min on {os.cpu_count()} cores); each case is one test or one "
        "parametrized variant.",
        "",
        "| fault or bad input | what must hold | cases run | outcome |",
        "|---|---|---|---|",
    ]
    for name, scenario in SCENARIOS.items():
        counts = results[name]
        run = sum(counts.values())
        failed = run - counts["passed"] - counts["skipped"]
        skipped = f", {counts['skipped']} skipped (as root)" if counts["skipped"] else ""
        verdict = f"{counts['passed']} passed{skipped}" if not failed else f"**{failed} FAILED**"
        lines.append(f"| {name} | {scenario.holds} | {run} | {verdict} |")
    lines += [
        "",
        "Figures of the last run's storms and soak:",
        "",
        "| run | requests | caller failures | token-endpoint calls (allowed) | "
        "reuse detections | faults injected |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_figures_row(name.split(":")[0], report) for name, report in figures.items()]
    return "\n".join(lines)


def _figures_row(name: str, report: dict[str, Any]) -> str:
    """The figures row of one run: the soak's and the concurrency tests' keys, or a storm's
    (tests/support/storms.py: what its callers saw, and the server's count of token calls
    under the name its test gives it)."""
    outcomes = report.get("outcomes", {})
    failures = report.get("caller_failures", report["requests"] - outcomes.get("200", 0))
    calls = next(
        report[key] for key in ("token_endpoint_calls", "token_calls", "refreshes") if key in report
    )
    allowed = report.get("allowed_calls", report["tokens_due"])
    injected = ", ".join(f"{count} {fault}" for fault, count in report.get("injected", {}).items())
    return (
        f"| {name} | {report['requests']} | {failures} | {calls} ({allowed}) | "
        f"{report['reuse_detections']} | {injected or 'none'} |"
    )


if __name__ == "__main__":
    raise SystemExit(main())
