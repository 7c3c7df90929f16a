"""pytest plugin, loaded beside a class swap: the prefix and token file that the swapped classes
get, and the proof that the swap took.

The prefix is on a reserved name that no test URL uses, so every request goes the way a request
outside the prefixes goes: the drop-in promise is that it behaves as with the dependency's own
class. The token file is a path in a folder of the run's own; no request ever reads it.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pytest

#: No test URL is under it (".invalid" is reserved by RFC 2606).
PREFIX = "https://refreshing-session.invalid/"

_token_folder = tempfile.TemporaryDirectory(prefix="refreshing-dropin-")
#: The swapped classes' token file.
TOKEN_FILE = Path(_token_folder.name, "token.json")

#: How many of ours the tests built, by class name: none means the swap did not take, and the
#: run proves nothing.
built = Counter[str]()


def pytest_report_header() -> str:
    """Say in the run's header that classes are swapped."""
    return f"refreshing_session drop-in: classes swapped, prefix {PREFIX}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many of ours the tests built."""
    counts = ", ".join(f"{count} {name}" for name, count in sorted(built.items()))
    terminalreporter.write_line(f"refreshing_session drop-in: built {counts or 'none'}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run if the tests built none of ours: then the swap did not take."""
    if session.testscollected and not built:
        raise pytest.UsageError(
            "the tests built none of the swapped classes: the swap did not take"
        )


def pytest_unconfigure() -> None:
    """Remove the token folder."""
    _token_folder.cleanup()
