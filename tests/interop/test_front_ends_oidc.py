"""The mixed storm of tests/test_front_end_storm.py against node oidc-provider: requests, httpx
and asyncio processes share one token file through several expiries of the provider's 3-second
rotating tokens, which it ends at the whole second they were issued in plus 3 s. (3, not 2, for
the reason tests/test_front_end_storm.py gives: an asyncio replay on a loaded machine can take
the second that a rounded 2-second token has left. The requests-only storm runs on 2-second
tokens, in test_oidc_provider.py.)"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from refreshing_session import Token

from ..support.processes import run_storm
from ..test_front_end_storm import CONNECTIONS, MIXED
from .conftest import ACCESS_TTL, OidcProvider

SECONDS = 7.5


@pytest.mark.timeout(120, func_only=True)
def test_requests_httpx_and_asyncio_processes_share_the_providers_rotating_tokens(
    oidc_provider: OidcProvider, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    provider = oidc_provider
    assert provider.access_ttl == ACCESS_TTL == 3
    client = provider.clients["basic"]
    path = tmp_path / "token.json"
    job: dict[str, object] = {
        "api": provider.api_url,
        "url": provider.items_url,
        "file": str(path),
        "token_url": provider.token_url,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "auth_method": client.auth_method,
        "threads": 2,
        "tasks": 200,
        "connections": CONNECTIONS,
    }
    logins: list[tuple[Token, float]] = []

    def log_in() -> float:
        requested_at = time.time()
        logins.append((provider.write_grant(path, client), requested_at))
        return requested_at

    before = provider.stats()
    outputs = run_storm(job, len(MIXED), SECONDS, tmp_path, log_in, programs=MIXED)
    [(first, start)] = logins
    elapsed = time.time() - start
    seen = provider.stats().since(before)
    per_process = [Counter(json.loads(out)) for out in outputs]
    outcomes: Counter[str] = sum(per_process, Counter())
    first_due = first.refresh_due_at(30.0)
    assert first_due is not None
    due = math.floor(elapsed / (first_due - start))
    figures = {
        "seconds": round(elapsed, 2),
        "outcomes": dict(outcomes),
        "per_process": [dict(counts) for counts in per_process],
        "api_401s": seen.api_unauthorized,
        "refreshes": seen.refreshes,
        "tokens_due": due,
        "reuse_detections": seen.reuse_detections,
        "presented_again": seen.refresh_tokens_presented_again,
    }
    record_property("figures", figures)
    print(figures)  # shown when this fails
    assert all(counts["200"] > 0 for counts in per_process), "a process made no successful call"
    assert set(outcomes) == {"200"}, figures
    assert 3 <= seen.refreshes <= due, figures
    assert seen.reuse_detections == 0
    assert seen.refresh_tokens_presented_again == 0
    assert seen.grants_revoked == 0
