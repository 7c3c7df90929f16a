"""The local authorization server as the benchmarks use it.

:func:`api_server` runs a server in a separate process, so that its CPU time is not charged to
the client being measured. (The storm runs LocalAuthServer in its own process; its
``token_calls()`` tell which API requests were waiting for a refresh.) :class:`Counters` holds
what any storm's authorization server counted, and :func:`storm_counts` turns a storm's share of
them into its figures.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from refreshing_session import Token, TokenStore
from refreshing_session.testing import LocalAuthServer, ServerStats

from .clients import Endpoint

# The server process stops by itself after this long, even if the benchmark died.
_SERVE_LIMIT = 900.0
_STOP_TIMEOUT = 5.0


def write_grant(store: TokenStore, grant: dict[str, object]) -> Token:
    """Log in: write the server's token response ``grant`` to ``store``; return the token."""
    token = Token.from_response(grant, requested_at=time.time())
    store.write(token)
    return token


@dataclass(frozen=True)
class RunningServer:
    """Where a server started by :func:`api_server` listens, the grant it issued, and the
    grants bound to the DPoP keys it was given (in their order)."""

    api_url: str
    token_url: str
    grant: dict[str, object]
    dpop_grants: tuple[dict[str, object], ...] = ()


@contextmanager
def api_server(access_ttl: float, dpop_jkts: Sequence[str] = ()) -> Iterator[RunningServer]:
    """Run a :class:`LocalAuthServer` in a spawned process; stop it on exit. For each DPoP key
    thumbprint of ``dpop_jkts`` it also issues a grant bound to that key."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(
        target=_serve, args=(theirs, access_ttl, tuple(dpop_jkts)), daemon=True
    )
    process.start()
    try:
        if not ours.poll(60):
            raise RuntimeError("the benchmark's API server did not start within 60 s")
        api_url, token_url, grant, dpop_grants = ours.recv()
        yield RunningServer(api_url, token_url, grant, tuple(dpop_grants))
    finally:
        ours.send("stop")
        process.join(_STOP_TIMEOUT)
        if process.is_alive():
            process.terminate()
            process.join(_STOP_TIMEOUT)


@dataclass(frozen=True)
class Counters:
    """What an authorization server counted: token-endpoint calls, refresh tokens presented
    more than once, grants revoked, and API calls refused with a 401."""

    token_calls: int
    reuse_detections: int
    grants_revoked: int
    api_401s: int

    @classmethod
    def of(cls, stats: ServerStats) -> Counters:
        """The counters of a :class:`LocalAuthServer`'s ``stats``."""
        return cls(
            stats.token_requests,
            stats.reuse_detections,
            stats.revoked_grants,
            stats.api_unauthorized,
        )

    def since(self, earlier: Counters) -> Counters:
        """What was counted after ``earlier``."""
        return Counters(
            self.token_calls - earlier.token_calls,
            self.reuse_detections - earlier.reuse_detections,
            self.grants_revoked - earlier.grants_revoked,
            self.api_401s - earlier.api_401s,
        )


def refreshes_due(seconds: float, interval: float) -> int:
    """How many tokens came due in ``seconds`` for a client that refreshes every ``interval``
    seconds (at least one: the grant's own)."""
    return max(1, int(seconds // interval))


@dataclass(frozen=True)
class StormGrant:
    """A storm's start on a :class:`LocalAuthServer`: the endpoint its clients share, the
    server's counters just before the grant, and when the grant was written
    (``time.perf_counter()``, the same clock in every process on one machine)."""

    endpoint: Endpoint
    before: Counters
    granted: float


def grant_storm(server: LocalAuthServer, folder: str, ttl: float, token_delay: float) -> StormGrant:
    """Start a storm on ``server``, whose tokens live ``ttl`` seconds: slow its token endpoint
    down to answer in ``token_delay`` seconds, and write a fresh grant to a token file in
    ``folder`` for clients that refresh at half a token's life. Call it once the storm's
    workers are up, so that its clock counts no start-up."""
    server.slow_token_endpoint(token_delay)
    endpoint = Endpoint(
        server.api_url, server.token_url, os.path.join(folder, "token.json"), margin=ttl / 2
    )
    before = Counters.of(server.stats())
    write_grant(endpoint.store(), server.issue_token())
    return StormGrant(endpoint, before, time.perf_counter())


def storm_counts(counted: Counters, ttl: float, seconds: float, took: float) -> dict[str, Any]:
    """What a storm on ``ttl``-second tokens refreshed at half their life cost the server,
    from what it ``counted`` during the storm: token calls, against the tokens that came due
    while requests took them (for ``seconds``, or ``took`` seconds when a request started
    before the deadline took its token after it), reuse detections, whether the grant was
    revoked, and the API's 401s."""
    due = refreshes_due(max(seconds, took), ttl / 2)
    return {
        "token_calls": counted.token_calls,
        "refreshes_due": due,
        "calls_per_due": counted.token_calls / due,
        "reuse_detections": counted.reuse_detections,
        "grant_revoked": counted.grants_revoked > 0,
        "api_401s": counted.api_401s,
    }


@contextmanager
def granted_api(access_ttl: float) -> Iterator[tuple[RunningServer, Endpoint]]:
    """:func:`api_server` with its grant written to a token file of a temporary folder: the
    server and the endpoint the clients work against (the token outlives a common-path run,
    so the margin is a fixed minute)."""
    with (
        tempfile.TemporaryDirectory(prefix="refreshing-session-bench-") as folder,
        api_server(access_ttl) as server,
    ):
        endpoint = Endpoint(
            server.api_url, server.token_url, os.path.join(folder, "token.json"), margin=60.0
        )
        write_grant(endpoint.store(), server.grant)
        yield server, endpoint


def _serve(connection: Connection, access_ttl: float, dpop_jkts: tuple[str, ...]) -> None:
    with LocalAuthServer(access_ttl=access_ttl) as server:
        bound = [server.issue_token(dpop_jkt=jkt) for jkt in dpop_jkts]
        connection.send((server.api_url, server.token_url, server.issue_token(), bound))
        connection.poll(_SERVE_LIMIT)
