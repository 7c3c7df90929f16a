"""The mixed storm of tests/test_front_end_storm.py against node oidc-provider: requests, httpx
and asyncio processes share one token file through several expiries of the provider's 4-second
rotating tokens, which it ends at the whole second they were issued in plus 4 s. (4, not 2, for
the reason tests/test_front_end_storm.py gives: an asyncio replay on a loaded machine can take
the second that a rounded token has left once it is due. The requests-only storm runs on
2-second tokens, in test_oidc_provider.py.) It runs with bearer tokens, and with DPoP for the
public client, whose refresh tokens are bound to the key stored with the token: every front end
signs its proofs with that key and follows the provider's nonces (see provider_storms.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from refreshing_session import TokenFile
from refreshing_session.dpop import DPoPKey

from ..support.storms import report, storm_through_expiries
from ..test_dpop_storm import with_dpop
from ..test_front_end_storm import ASYNC_STORM, CONNECTIONS, MIXED
from .conftest import ACCESS_TTL, OidcProvider
from .provider_storms import assert_provider_storm, provider_figures

SECONDS = 7.5
THREADS, TASKS = 2, 100  # per requests or httpx process; per asyncio process
CALLERS = sum(TASKS if program is ASYNC_STORM else THREADS for program in MIXED)


@pytest.mark.timeout(120, func_only=True)
@pytest.mark.parametrize("role", ["basic", "public"], ids=["bearer", "dpop-public"])
def test_requests_httpx_and_asyncio_processes_share_the_providers_rotating_tokens(
    oidc_provider: OidcProvider,
    tmp_path: Path,
    role: str,
    record_property: Callable[[str, object], None],
) -> None:
    provider = oidc_provider
    assert provider.access_ttl == ACCESS_TTL == 4
    client = provider.clients[role]
    key = DPoPKey.generate() if client.dpop else None
    path = tmp_path / "token.json"
    job = provider.storm_job(client, path, threads=THREADS, tasks=TASKS, connections=CONNECTIONS)
    before = provider.stats()
    programs = [with_dpop(program) for program in MIXED] if client.dpop else MIXED
    storm = storm_through_expiries(
        job, programs, SECONDS, tmp_path, TokenFile(path), lambda: provider.issue_grant(client, key)
    )
    seen = provider.stats().since(before)
    figures = storm.figures(client=role, **provider_figures(seen, key))
    report(figures, record_property)
    storm.assert_every_caller_got_200s(figures)
    assert_provider_storm(seen, key, storm, figures, processes=len(MIXED), callers=CALLERS)
