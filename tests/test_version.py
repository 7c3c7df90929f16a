"""The version is written once, and the command line says it; the CLI loads the demo only for
``demo``."""

from __future__ import annotations

import configparser
import subprocess
import sys
from importlib import metadata

import refreshing_session

from .support.processes import ROOT


def test_the_version_is_written_once_and_the_metadata_reads_it() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["metadata"]["version"] == "attr: refreshing_session.__version__"
    assert metadata.version("refreshing-session") == refreshing_session.__version__, (
        "the installed metadata is stale: reinstall with pip install -e '.[test]'"
    )


def test_refreshing_session_version_prints_the_package_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "refreshing_session", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"refreshing-session {refreshing_session.__version__}\n"


LOADED_BY_THE_DEMO = ("refreshing_session.demo", "refreshing_session.testing")
PROBE = f"""
import sys
from refreshing_session.cli import main
try:
    main(["status", "--help"])
except SystemExit:
    pass
print(sorted(set(sys.modules) & set({LOADED_BY_THE_DEMO!r})))
"""


def test_commands_other_than_demo_do_not_load_the_demo_or_the_test_server() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]", "the CLI imported the demo at start"
