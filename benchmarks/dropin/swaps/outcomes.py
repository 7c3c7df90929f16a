"""pytest plugin: write every test's outcome to the JSON file named by the environment variable
``DROPIN_OUTCOMES``, as ``{node id: "passed" | "failed" | "skipped"}``: a test failed if any of
its phases (setup, call, teardown) did; an expected failure (xfail) counts as skipped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_outcomes: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record the outcome of each phase; a failure wins over what another phase said."""
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped:
        _outcomes.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        _outcomes.setdefault(report.nodeid, "passed")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A module that cannot be collected is a failure under its own node id."""
    if report.failed:
        _outcomes[report.nodeid] = "failed"


def pytest_sessionfinish() -> None:
    """Write the outcomes."""
    Path(os.environ["DROPIN_OUTCOMES"]).write_text(json.dumps(_outcomes, indent=1, sort_keys=True))
