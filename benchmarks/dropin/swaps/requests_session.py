"""pytest plugin: ``requests.Session`` becomes a subclass of :class:`RefreshingSession` for a
whole test run, with the prefix and token file of :mod:`.harness`; so does every session that
``requests.get()``, ``requests.session()`` and their siblings build (they look ``Session`` up
in ``requests.sessions`` at each call)."""

from __future__ import annotations

import pytest
import requests
import requests.sessions

from refreshing_session import RefreshingSession

from .harness import PREFIX, TOKEN_FILE, built


# The class bears requests' name, as the tests see it.
class Session(RefreshingSession):
    """A requests.Session built as requests' own is (no arguments)."""

    def __init__(self) -> None:
        super().__init__(PREFIX, token_file=TOKEN_FILE)
        built["Session"] += 1


def pytest_configure(config: pytest.Config) -> None:
    """Swap the class before any test module imports it."""
    requests.Session = Session  # type: ignore[misc]
    requests.sessions.Session = Session  # type: ignore[misc]
