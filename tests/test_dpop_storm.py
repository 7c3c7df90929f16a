"""The DPoP storm: requests, httpx sync and asyncio processes share one DPoP-bound grant (one
token file, or one Redis key) through several expiries of 2-second tokens, against
LocalAuthServer with DPoP on and nonces required at the token endpoint and at the API. Then
every proof the library sent is read back from the server's record and checked: the key, the
``htu``, the ``jti`` across processes, the ``ath``, the ``iat``.

What must hold, as for bearer tokens: no caller sees an error, the token endpoint is asked at
most once per token that came due (besides the nonce retries: one per process at most, since
each process learns the token endpoint's nonce once), and no refresh token is presented twice.

The 16x4 variant runs in the reliability runs only (``python -m tests.support.reliability`` sets
``REFRESHING_SESSION_SOAK_SECONDS``): on 2 cores it takes half a minute."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from refreshing_session import Token
from refreshing_session.demo import DPOP_NONCE_PROBLEMS
from refreshing_session.dpop import DPoPKey
from refreshing_session.testing import DPoPProof, LocalAuthServer

from .support.dpop import ath, dpop_grant
from .support.processes import STORM, job_for
from .support.storms import report, shared_store, storm_through_expiries
from .test_front_end_storm import ASYNC_STORM, HTTPX_STORM

TTL = 2.0
# At 16 x 4 a replay waits its turn among 64 callers: a 2-second token that the server rounds
# down may live barely a second, less than a refresh and a replay take there (the bearer storm
# of test_front_end_storm says the same of its asyncio tasks).
TTL_16X4 = 3.0
SECONDS = 5.0
# A proof's iat is the whole second it was signed in, up to 1 s before it is sent; the server
# reads it later still: on a loaded 2-core machine, 8 processes and the server's threads take
# turns, and a signed request may wait a second or more in the server's queue.
IAT_SLACK = 2.0


# Imported before a process says it is ready: the asyncio program imports httpx after the start
# signal, and DPoP brings PyJWT and cryptography; on a loaded machine that took an asyncio
# process most of a 5-second storm.
PRELOAD = "import asyncio, httpx, jwt, refreshing_session.httpx, refreshing_session.dpop\n"


def with_dpop(program: str) -> str:
    """``program`` (a storm program) with a DPoP refresher, its modules imported first."""
    given = 'auth_method=job.get("auth_method")'
    assert program.count(given) == 1, "the storm program builds its refresher otherwise"
    return PRELOAD + program.replace(given, given + ", dpop=True")


def mixed(scale: int) -> list[str]:
    """``scale`` x (2 requests, 1 httpx, 1 asyncio) DPoP storm programs."""
    return [with_dpop(program) for program in (STORM, STORM, HTTPX_STORM, ASYNC_STORM)] * scale


@pytest.mark.timeout(180)
@pytest.mark.parametrize("shared", ["token file", "redis"])
def test_a_dpop_storm_of_8_processes_by_2_refreshes_once_per_expiry_with_right_proofs(
    shared: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """4 requests processes, 2 httpx and 2 asyncio, 2 threads or tasks each."""
    _storm(shared, tmp_path, record_property, scale=2, threads=2, ttl=TTL, seconds=SECONDS)


@pytest.mark.timeout(300)
@pytest.mark.skipif(
    "REFRESHING_SESSION_SOAK_SECONDS" not in os.environ,
    reason="the 16x4 DPoP storm runs in the reliability runs (python -m tests.support.reliability)",
)
@pytest.mark.parametrize("shared", ["token file", "redis"])
def test_a_dpop_storm_of_16_processes_by_4_refreshes_once_per_expiry_with_right_proofs(
    shared: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """8 requests processes, 4 httpx and 4 asyncio, 4 threads or tasks each; 3-second
    tokens."""
    _storm(shared, tmp_path, record_property, scale=4, threads=4, ttl=TTL_16X4, seconds=2 * SECONDS)


def _storm(
    shared: str,
    folder: Path,
    record_property: Callable[[str, object], None],
    *,
    scale: int,
    threads: int,
    ttl: float,
    seconds: float,
) -> None:
    """Run the mixed DPoP storm on the ``shared`` store; record and print its figures, then
    check what callers saw, what the server counted and every proof it received."""
    programs = mixed(scale)
    key = DPoPKey.generate()
    with (
        LocalAuthServer(access_ttl=ttl, dpop=True, dpop_nonce=True) as server,
        shared_store(shared, folder) as (store, where),
    ):
        job = job_for(
            server,
            folder / "token.json",
            url=server.api_url + "items?page=1",
            threads=threads,
            tasks=threads,
            connections=threads,
            **where,
        )
        storm = storm_through_expiries(
            job, programs, seconds, folder, store, lambda: dpop_grant(server, key)
        )
        stats = server.stats()
        proofs = server.dpop_proofs()
        snapshot = store.read()
    challenged = Counter(proof.endpoint for proof in proofs if proof.problem in DPOP_NONCE_PROBLEMS)
    token_nonces, api_nonces = challenged["token"], challenged["api"]
    figures = storm.figures(
        shared=shared,
        processes=f"{len(programs)} x {threads} (requests, httpx, asyncio)",
        token_calls=stats.token_requests,
        refreshes=stats.refreshes,
        token_nonce_retries=token_nonces,
        api_nonce_replays=api_nonces,
        api_401s=stats.api_unauthorized,
        proofs=len(proofs),
        reuse_detections=stats.reuse_detections,
    )
    report(figures, record_property)
    assert snapshot is not None, "the store lost the token"
    storm.assert_every_caller_got_200s(figures)
    assert storm.tokens_due >= 3, "the storm did not last through several expiries"
    assert 0 < stats.refreshes <= storm.tokens_due, figures
    assert stats.token_requests == stats.refreshes + token_nonces, figures
    assert token_nonces <= len(programs), "a process asked the token endpoint for a nonce twice"
    # Each thread or task's first request may be challenged before its process has a nonce.
    assert api_nonces <= len(programs) * threads, figures
    assert (stats.reuse_detections, stats.invalid_grants) == (0, 0), figures
    _check_proofs(proofs, key, server)
    _check_access_token_hashes(proofs, storm.first, snapshot.token, stats.refreshes)


def _check_proofs(proofs: list[DPoPProof], key: DPoPKey, server: LocalAuthServer) -> None:
    """Every proof: signed by the one key, for its own request, never sent twice, fresh."""
    problems = Counter(proof.problem for proof in proofs if proof.problem is not None)
    assert set(problems) <= DPOP_NONCE_PROBLEMS, f"proofs refused for more than a nonce: {problems}"
    assert {proof.jkt for proof in proofs} == {key.jkt}, "a proof was signed with another key"
    for proof in proofs:
        # The server recorded each request's URL without its query: the htu must be that.
        assert proof.claims["htu"] == proof.url, "a proof for another URL"
        assert proof.claims["htm"] == ("POST" if proof.endpoint == "token" else "GET")
    assert {proof.url for proof in proofs} == {server.token_url, server.api_url + "items"}
    jtis = Counter(proof.claims["jti"] for proof in proofs)
    assert jtis.most_common(1)[0][1] == 1, "a jti was sent twice"
    late = [proof.received_at - proof.claims["iat"] for proof in proofs]
    assert min(late) >= 0, "a proof signed in the future"
    assert max(late) < 1 + IAT_SLACK, f"a proof reached the server {max(late):.1f} s after its iat"


def _check_access_token_hashes(
    proofs: list[DPoPProof], first: Token, last: Token, refreshes: int
) -> None:
    """Every API proof carries an ath; the first and the last token's hashes, computed here,
    are among them, and there is one per token issued (each renewed token is used by the
    request that renewed it). The server checked each ath against the token it came with."""
    hashes = {proof.claims.get("ath") for proof in proofs if proof.endpoint == "api"}
    assert None not in hashes, "an API proof without ath"
    assert {ath(first.access_token), ath(last.access_token)} <= hashes
    assert len(hashes) == 1 + refreshes, f"{len(hashes)} access token hashes, {refreshes} refreshes"
