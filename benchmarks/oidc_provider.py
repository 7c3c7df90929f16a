"""node oidc-provider as a storm's authorization server: the interop tests' server
(``tests/interop/oidc_provider/server.mjs``), started on a loopback port for the run.

Its refresh tokens rotate, a refresh token presented twice revokes the grant, and it keeps
token times in whole seconds. It needs Node.js and the interop tests' install (``npm ci`` in
that folder); :func:`unavailable` says what is missing. It is started and stopped (by its pid)
with the interop tests' helpers.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from refreshing_session.testing import TokenCall

from .authserver import Counters

FOLDER = Path(__file__).resolve().parent.parent / "tests" / "interop" / "oidc_provider"
_HTTP_TIMEOUT = 10.0
_CLIENT = "basic"  # the registered client that authenticates with client_secret_basic


def unavailable() -> str | None:
    """What keeps the provider from starting here, or None when it can start."""
    if shutil.which("node") is None:
        return "node oidc-provider needs Node.js on PATH"
    if not (FOLDER / "node_modules" / "oidc-provider").is_dir():
        return f"node oidc-provider is not installed: run `npm ci` in {FOLDER}"
    return None


class OidcProvider:
    """A running provider as a storm cell's :class:`~benchmarks.storm.AuthServer`."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.api_url, self.token_url = base_url + "/api/", base_url + "/token"
        client = self._get("/test/clients")[_CLIENT]
        self.client_id, self.client_secret = client["client_id"], client["client_secret"]

    def grant(self) -> dict[str, object]:
        """A fresh grant for the client, as a login would leave it."""
        answer = requests.post(
            self.base_url + "/test/grant", json={"client_id": self.client_id}, timeout=_HTTP_TIMEOUT
        )
        answer.raise_for_status()
        grant: dict[str, object] = answer.json()
        return grant

    def counters(self) -> Counters:
        """The provider's counters so far; a refresh token presented again counts as a reuse
        (the provider's own reuse detection is one kind of it)."""
        stats = self._get("/test/stats")
        return Counters(
            sum(stats["token_requests"].values()),
            stats["refresh_tokens_presented_again"],
            stats["grants_revoked"],
            stats["api_unauthorized"],
        )

    def token_calls(self) -> list[TokenCall]:
        """Not timed by this server: no request counts as waiting for a refresh."""
        return []

    def _get(self, path: str) -> Any:
        answer = requests.get(self.base_url + path, timeout=_HTTP_TIMEOUT)
        answer.raise_for_status()
        return answer.json()


@contextmanager
def oidc_provider(access_ttl: int) -> Iterator[OidcProvider]:
    """Run the provider with ``access_ttl``-second access tokens; stop it, by its pid, on exit.
    Raises RuntimeError when it cannot start here."""
    problem = unavailable()
    if problem is not None:
        raise RuntimeError(problem)
    # Imported here: the interop tests' helpers import pytest, which other benchmarks do
    # without.
    from tests.interop.servers import start_server, stop_server

    with tempfile.TemporaryDirectory(prefix="refreshing-session-bench-oidc-") as folder:
        process, port = start_server(
            [shutil.which("node") or "node", "server.mjs", "0"],
            name="node oidc-provider",
            cwd=FOLDER,
            log=Path(folder) / "server.log",
            env={"ACCESS_TOKEN_TTL": str(access_ttl)},
        )
        try:
            yield OidcProvider(f"http://127.0.0.1:{port}")
        finally:
            stop_server(process)


def version() -> str:
    """The installed oidc-provider's version, or "not installed"."""
    try:
        manifest = json.loads(
            (FOLDER / "node_modules" / "oidc-provider" / "package.json").read_text(encoding="utf-8")
        )
    except (OSError, ValueError):
        return "not installed"
    return str(manifest.get("version", "unknown"))
