"""The Reliability table names only tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

from .support.scenarios import SCENARIOS


def test_every_scenario_names_tests_that_exist() -> None:
    sources = "".join(path.read_text() for path in Path(__file__).parent.rglob("test_*.py"))
    defined = set(re.findall(r"^(?:async )?def (test_\w+)\(", sources, re.MULTILINE))
    named = {test for scenario in SCENARIOS.values() for test in scenario.tests}
    assert named - defined == set()
