"""pytest plugin: ``httpx.Client`` and ``httpx.AsyncClient`` become subclasses of
:class:`RefreshingClient` and :class:`RefreshingAsyncClient` for a whole test run, with the
prefix and token file of :mod:`.harness`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from refreshing_session.httpx import RefreshingAsyncClient, RefreshingClient

from .harness import PREFIX, TOKEN_FILE, built


# The classes bear httpx's names: tests parametrized by class get the same ids in both runs.
class Client(RefreshingClient):
    """An httpx.Client built as httpx's own is (keyword arguments only)."""

    def __init__(self, **arguments: Any) -> None:
        super().__init__(PREFIX, token_file=TOKEN_FILE, **arguments)
        built["Client"] += 1


class AsyncClient(RefreshingAsyncClient):
    """An httpx.AsyncClient built as httpx's own is (keyword arguments only)."""

    def __init__(self, **arguments: Any) -> None:
        super().__init__(PREFIX, token_file=TOKEN_FILE, **arguments)
        built["AsyncClient"] += 1


def pytest_configure(config: pytest.Config) -> None:
    """Swap the classes before any test module imports them. ``httpx.get()`` and its siblings
    build their client from the name in httpx's ``_api`` module, so it is swapped there too:
    a harness's substitution, which the library never does (it fails here, loudly, if httpx
    moves the name)."""
    api = httpx._api
    if getattr(api, "Client", None) is not httpx.Client:
        raise pytest.UsageError("httpx._api.Client is gone: update the drop-in harness")
    httpx.Client = Client  # type: ignore[misc]
    httpx.AsyncClient = AsyncClient  # type: ignore[misc]
    api.Client = Client  # type: ignore[attr-defined]
