"""The mixed storm of tests/test_front_end_storm.py against node oidc-provider: requests, httpx
and asyncio processes share one token file through several expiries of the provider's 4-second
rotating tokens, which it ends at the whole second they were issued in plus 4 s. (4, not 2, for
the reason tests/test_front_end_storm.py gives: an asyncio replay on a loaded machine can take
the second that a rounded token has left once it is due. The requests-only storm runs on
2-second tokens, in test_oidc_provider.py.) It runs with bearer tokens, and with DPoP for the
public client, whose refresh tokens are bound to the key stored with the token: every front end
signs its proofs with that key and follows the provider's nonces (see dpop_storms.py)."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from refreshing_session import Token, TokenFile
from refreshing_session.dpop import DPoPKey

from ..support.processes import run_storm
from ..test_dpop_storm import with_dpop
from ..test_front_end_storm import CONNECTIONS, MIXED
from .conftest import ACCESS_TTL, OidcProvider
from .dpop_storms import assert_dpop_storm, dpop_figures

SECONDS = 7.5
THREADS, TASKS = 2, 100  # per requests or httpx process; per asyncio process
CALLERS = (len(MIXED) - 2) * THREADS + 2 * TASKS  # MIXED ends with 2 asyncio processes


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
    # DPoP tokens go to the userinfo endpoint, which checks their proofs; /api/items does not.
    url = provider.userinfo_url if client.dpop else provider.items_url
    key = DPoPKey.generate() if client.dpop else None
    path = tmp_path / "token.json"
    job: dict[str, object] = {
        "api": url if client.dpop else provider.api_url,
        "url": url,
        "file": str(path),
        "token_url": provider.token_url,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "auth_method": client.auth_method,
        "threads": THREADS,
        "tasks": TASKS,
        "connections": CONNECTIONS,
    }
    logins: list[tuple[Token, float]] = []

    def log_in() -> float:
        requested_at = time.time()
        logins.append((provider.issue_grant(client, key), requested_at))
        TokenFile(path).write(logins[0][0])
        return requested_at

    before = provider.stats()
    programs = [with_dpop(program) for program in MIXED] if client.dpop else MIXED
    outputs = run_storm(job, len(MIXED), SECONDS, tmp_path, log_in, programs=programs)
    [(first, start)] = logins
    elapsed = time.time() - start
    seen = provider.stats().since(before)
    per_process = [Counter(json.loads(out)) for out in outputs]
    outcomes: Counter[str] = sum(per_process, Counter())
    first_due = first.refresh_due_at(30.0)
    assert first_due is not None
    due = math.floor(elapsed / (first_due - start))
    refreshes = seen.token_successes["refresh_token"]  # DPoP: besides the nonce retries
    figures = {
        "seconds": round(elapsed, 2),
        "outcomes": dict(outcomes),
        "per_process": [dict(counts) for counts in per_process],
        "api_401s": seen.api_unauthorized,
        "refreshes": refreshes,
        "tokens_due": due,
        "reuse_detections": seen.reuse_detections,
        "presented_again": seen.refresh_tokens_presented_again,
        **(dpop_figures(seen, key) if key else {}),
    }
    record_property("figures", figures)
    print(figures)  # shown when this fails
    assert all(counts["200"] > 0 for counts in per_process), "a process made no successful call"
    assert set(outcomes) == {"200"}, figures
    assert 3 <= refreshes <= due, figures
    assert seen.reuse_detections == 0
    assert seen.refresh_tokens_presented_again == 0
    assert seen.grants_revoked == 0
    if key is None:
        assert seen.token_errors == Counter(), figures
    else:
        assert_dpop_storm(
            seen, key, answered=outcomes["200"], processes=len(MIXED), callers=CALLERS
        )
