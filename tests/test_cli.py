"""The refreshing-session command: status and the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from refreshing_session.cli import main

from .conftest import stored
from .processes import ROOT


def test_status_describes_the_token_without_secrets(
        token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(token_file)]) == 0
    out = capsys.readouterr().out
    token = stored(token_file)
    for expected in ("Bearer", token.fingerprint, "present", "0600", "(in 6", str(token_file)):
        assert expected in out
    assert token.access_token not in out
    assert token.refresh_token
    assert token.refresh_token not in out


def test_status_json_is_one_object(token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--json", str(token_file)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["refresh_token"] == "present"
    assert report["mode"] == "0600"
    assert report["refresh_refused"] is None


def test_status_of_a_missing_file_says_to_log_in(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path / "nothing.json")]) == 1
    assert "log in" in capsys.readouterr().err


def test_status_of_a_corrupt_file_names_it(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.json"
    path.write_text("[]")
    assert main(["status", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


def test_bad_demo_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--processes", "0"])
    assert "more than 0" in capsys.readouterr().err


@pytest.mark.timeout(90)
def test_the_demo_prints_plain_progress_and_a_summary_when_not_on_a_terminal() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "refreshing_session", "demo", "--processes", "2", "--threads",
         "2", "--seconds", "3"],
        capture_output=True, text=True, timeout=80, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\r" not in result.stdout
    assert result.stdout.startswith("progress")
    assert "reuse detections: 0" in result.stdout
    assert result.stdout.rstrip().endswith("result: OK")

