"""The soak: a long storm with faults injected at random, through the demo's --chaos mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from .processes import ROOT

SECONDS = float(os.environ.get("REFRESHING_SESSION_SOAK_SECONDS", "60"))


@pytest.mark.timeout(SECONDS + 120)
def test_a_storm_with_random_faults_loses_nothing_and_leaks_no_reuse(
        record_property: Callable[[str, object], None]) -> None:
    """16 processes x 4 threads, 1-second tokens; slow endpoint, 503s and SIGKILLed workers."""
    result = subprocess.run(
        [sys.executable, "-m", "refreshing_session", "demo", "--chaos", "--seed", "7",
         "--processes", "16", "--threads", "4", "--ttl", "1", "--seconds", str(SECONDS),
         "--json"],
        capture_output=True, text=True, timeout=SECONDS + 110, cwd=ROOT, check=False)
    report = json.loads(result.stdout)
    record_property("figures", report)
    assert report["caller_failures"] == 0, report["failure_kinds"]
    assert report["reuse_detections"] == 0
    assert report["revoked_grants"] == 0
    assert report["grace_reuses"] <= report["injected"]["worker killed"]
    assert report["token_endpoint_calls"] <= report["allowed_calls"]
    assert set(report["injected"]) == {"slow endpoint", "503 answer", "worker killed"}
    assert report["token_file_intact"] is True
    assert report["successes"] > 1000
    assert result.returncode == 0
