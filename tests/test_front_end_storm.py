"""One store, every front end, several processes: requests, httpx sync and asyncio callers share
a grant (one token file, or one Redis key only) through several expiries of 4-second tokens that
the server rotates and, as oidc-provider does, ends at the whole second of issue plus 4 (up to a
second early). No caller sees an error, the token endpoint is asked at most once per token that
came due, and no refresh token is ever presented twice.

Why 4 seconds, and 100 tasks per asyncio process: a token is due at half its life (2 s here) and
the server may end it a second early, so a request that takes a token just before it is due has
a second to reach the server. A token that expires while the request carrying it is on its way
cannot be helped, however the keeper chose it: its replay is refused too when the replay takes
that long as well. On a loaded 2-core machine (8 storm processes beside another test), an asyncio
process of 200 tasks queued that long: with 3-second tokens, 1 request in 8,000 came back 401 in
CI. 100 tasks is the storm that issue 22 measured, and a second of margin is twice what it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from refreshing_session import Token
from refreshing_session.testing import LocalAuthServer

from .support.processes import STORM, job_for
from .support.storms import report, shared_store, storm_through_expiries

TTL = 4.0
SECONDS = 6.0
# Each asyncio process's connections: its tasks take turns. (httpx's pool, at its default
# of 100, spends much of a loaded 2-core machine's time scanning its queue.)
CONNECTIONS = 20
TASKS = 100

# The storm program's parts: everything but how the client is built and driven is STORM's.
_SESSION = "session = rs.RefreshingSession("
_START = 'if "go" in job:'
_LOOP = "outcomes = collections.Counter()"

HTTPX_STORM = "from refreshing_session.httpx import RefreshingClient\n" + STORM.replace(
    _SESSION, "session = RefreshingClient(timeout=10, prefixes="
)

# (Imported before the start signal: on a loaded machine, importing httpx after it can take
# much of a short storm.)
ASYNC_STORM = (
    STORM[: STORM.index(_SESSION)]
    + """
import asyncio
import httpx
from refreshing_session.httpx import RefreshingAsyncClient
"""
    + STORM[STORM.index(_START) : STORM.index(_LOOP)]
    + """
async def storm():
    outcomes = collections.Counter()
    client = RefreshingAsyncClient(job["api"], store=store, timeout=10,
                                   limits=httpx.Limits(max_connections=job["connections"]),
                                   refresher=rs.OAuth2Refresher(
                                       job["token_url"], job.get("client_id", "client"),
                                       job.get("client_secret", "secret"),
                                       auth_method=job.get("auth_method")))

    async def work():
        while time.time() < job["until"]:
            try:
                outcome = str((await client.get(job["url"])).status_code)
            except Exception as error:
                outcome = type(error).__name__
            outcomes[outcome] += 1

    async with client:
        await asyncio.gather(*(work() for _ in range(job["tasks"])))
    return outcomes

print(json.dumps(asyncio.run(storm())))
"""
)


# 4 requests processes x 2 threads, 2 httpx processes x 2 threads, 2 asyncio processes x TASKS
# tasks (the job's "threads" and "tasks").
MIXED = [STORM] * 4 + [HTTPX_STORM] * 2 + [ASYNC_STORM] * 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shared", ["token file", "redis"])
def test_requests_httpx_and_asyncio_processes_share_one_refresh_per_expiry(
    shared: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """4 requests processes x 2 threads, 2 httpx processes x 2 threads and 2 asyncio
    processes x 100 tasks on one token file, or on one Redis key only."""
    with (
        LocalAuthServer(access_ttl=TTL) as server,
        shared_store(shared, tmp_path) as (store, where),
    ):
        job = job_for(
            server,
            tmp_path / "token.json",
            url=server.api_url + "items",
            threads=2,
            tasks=TASKS,
            connections=CONNECTIONS,
            **where,
        )

        def log_in() -> Token:
            requested_at = time.time()
            return Token.from_response(server.issue_token(), requested_at=requested_at)

        storm = storm_through_expiries(job, MIXED, SECONDS, tmp_path, store, log_in)
        stats = server.stats()
    figures = storm.figures(
        shared=shared,
        processes={
            "requests": "4x2 threads",
            "httpx": "2x2 threads",
            "asyncio": f"2x{TASKS} tasks",
        },
        token_calls=stats.token_requests,
        api_401s=stats.api_unauthorized,
        reuse_detections=stats.reuse_detections,
    )
    report(figures, record_property)
    storm.assert_every_caller_got_200s(figures)
    assert storm.tokens_due >= 3, "the storm did not last through several expiries"
    assert 0 < stats.token_requests <= storm.tokens_due, figures
    assert stats.reuse_detections == 0
