"""The results of a drop-in run, written between the markers of the report page."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..pages import write_between_markers

if TYPE_CHECKING:
    from .run import Comparison, Run


def write_page(page: Path, comparisons: Sequence[Comparison], command: str, seconds: float) -> None:
    """Replace the text between the markers of ``page`` with the results of a run of
    ``command`` that took ``seconds``; raises ValueError if the page has no markers."""
    write_between_markers(page, "dropin", "\n".join(_results(comparisons, command, seconds)))


def _results(comparisons: Sequence[Comparison], command: str, seconds: float) -> list[str]:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"Produced by `{command}` on {when}: {seconds:.0f} s on {os.cpu_count()} cores, "
        "the virtualenvs included.",
        "",
        "| suite | stock: passed / failed / skipped | swapped: passed / failed / skipped "
        "| new failures |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {c.suite.name} {c.suite.version} | {_counts(c.stock)} | {_counts(c.swapped)} "
        f"| {len(c.new)}{_by_design(c)} |"
        for c in comparisons
    ]
    for comparison in comparisons:
        lines += _failures(comparison)
    return lines


def _failures(comparison: Comparison) -> list[str]:
    name = comparison.suite.name
    both = comparison.stock.having("failed") & comparison.swapped.having("failed")
    lines = ["", f"{name}, failing stock and swapped alike:", ""]
    lines += [f"- `{node}`" for node in sorted(both)] or ["- none"]
    lines += ["", f"{name}, failing swapped only:", ""]
    lines += [
        f"- `{node}`: {comparison.suite.by_design.get(node, 'not explained: not a drop-in')}"
        for node in sorted(comparison.new)
    ] or ["- none"]
    if comparison.flaky:
        lines += ["", f"{name}, failing swapped once but not when run again (flaky):", ""]
        lines += [f"- `{node}`" for node in sorted(comparison.flaky)]
    return lines


def _counts(run: Run) -> str:
    return " / ".join(str(len(run.having(outcome))) for outcome in ("passed", "failed", "skipped"))


def _by_design(comparison: Comparison) -> str:
    explained = len(comparison.new & comparison.suite.by_design.keys())
    return f" ({explained} by design)" if explained else ""
