"""Interop: RefreshingSession against node oidc-provider, started for real (see conftest.py).

The provider rotates the refresh token on every refresh and treats a consumed one presented
again as theft: it revokes the whole grant. Its access tokens live ACCESS_TTL seconds (the
storms': STORM_ACCESS_TTL, 2), with no clock tolerance, counted from the whole second they were
issued in. Each test compares the server's counters before and after (``Stats.since``).
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from refreshing_session import (
    ClientCredentialsRefresher,
    ClientRejected,
    LoginRequired,
    RefreshingSession,
    Token,
    TokenFile,
)
from refreshing_session.dpop import DPoPKey, key_of

from ..conftest import expire, stored
from ..support.processes import REQUESTS, STORM, run_in_processes, wait_for
from ..support.storms import report, shared_store, storm_through_expiries
from ..test_dpop_storm import with_dpop
from .conftest import STORM_ACCESS_TTL, Client, OidcProvider
from .provider_storms import assert_provider_storm, provider_figures

GRANT_SCOPE = "openid offline_access"
RESERVED = set(":%+ ")  # RFC 6749 2.3.1: must be form-encoded before Basic


def _session(provider: OidcProvider, path: Path, client: Client) -> RefreshingSession:
    return RefreshingSession(
        provider.api_url, token_file=path, refresher=client.refresher(provider.token_url)
    )


def _logged_in(provider: OidcProvider, folder: Path, role: str) -> tuple[Client, Path, Token]:
    """The client of ``role``, logged in: a fresh grant for it written to a token file in
    ``folder``. Returns the client, the file and the grant."""
    client = provider.clients[role]
    path = folder / "token.json"
    return client, path, provider.write_grant(path, client)


def _requested_at(token: Token) -> float:
    """When the request that obtained ``token`` was sent."""
    assert token.expires_at is not None
    assert token.lifetime is not None
    return token.expires_at - token.lifetime


@pytest.mark.timeout(30, func_only=True)
@pytest.mark.parametrize("role", ["basic", "post"])
def test_proactive_refresh_with_each_client_auth_method(
    oidc_provider: OidcProvider, tmp_path: Path, role: str
) -> None:
    client, path, first = _logged_in(oidc_provider, tmp_path, role)
    before = oidc_provider.stats()
    statuses: Counter[int] = Counter()
    with _session(oidc_provider, path, client) as session:
        # About 100 calls a second until the server has seen two refreshes: at least one
        # whole token lifetime, since a token is refreshed halfway through its life.
        while oidc_provider.stats().since(before).refreshes < 2:
            assert time.time() - _requested_at(first) < 20, "no second refresh within 20 s"
            statuses[session.get(oidc_provider.items_url, timeout=10).status_code] += 1
            time.sleep(0.01)
        statuses[session.get(oidc_provider.items_url, timeout=10).status_code] += 1
    elapsed = time.time() - _requested_at(first)
    seen = oidc_provider.stats().since(before)

    assert set(statuses) == {200}
    assert elapsed >= oidc_provider.access_ttl
    assert seen.token_requests == Counter({"refresh_token": 2})
    assert seen.token_successes == Counter({"refresh_token": 2})
    assert seen.client_auth == Counter({client.auth_method: 2})
    assert seen.token_errors == Counter()
    # Refreshed before expiry: the API never refused a token.
    assert seen.api_unauthorized == 0
    assert seen.api_ok == sum(statuses.values())
    seen.assert_no_reuse()
    latest = stored(path)
    assert latest.refresh_token not in (None, first.refresh_token)  # rotated
    assert latest.scope == GRANT_SCOPE


@pytest.mark.timeout(20, func_only=True)
@pytest.mark.parametrize("stale", ["never issued", "destroyed by the server"])
def test_reactive_refresh_after_a_401(
    oidc_provider: OidcProvider, tmp_path: Path, stale: str
) -> None:
    client = oidc_provider.clients["basic"]
    grant = oidc_provider.issue_grant(client)
    if stale == "destroyed by the server":
        oidc_provider.destroy_access_token(grant.access_token)
        access_token = grant.access_token
    else:
        access_token = "never-issued-" + secrets.token_hex(8)
    assert not oidc_provider.accepts(access_token)
    path = tmp_path / "token.json"
    # Valid for an hour as far as the client knows: only the 401 can make it refresh.
    TokenFile(path).write(
        Token(
            access_token,
            refresh_token=grant.refresh_token,
            expires_at=time.time() + 3600,
            lifetime=3600,
            scope=grant.scope,
        )
    )
    before = oidc_provider.stats()
    with _session(oidc_provider, path, client) as session:
        first = session.get(oidc_provider.items_url, timeout=10)
        second = session.get(oidc_provider.items_url, timeout=10)
    seen = oidc_provider.stats().since(before)

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["client_id"] == client.client_id
    assert seen.api_unauthorized == 1  # the first try; then one refresh and one replay
    assert seen.api_ok == 2
    assert seen.token_requests == Counter({"refresh_token": 1})
    assert seen.token_successes == Counter({"refresh_token": 1})
    seen.assert_no_reuse()
    latest = stored(path)
    assert latest.access_token != access_token
    assert latest.refresh_token not in (None, grant.refresh_token)


# Tokens live 2 s on the storm's provider and are refreshed halfway: six refreshes, three
# lifetimes, each token dying at the whole second it was issued in plus 2 s.
STORM_SECONDS = 6.0


# Each storm: the client (bearer, or DPoP: confidential, or public with its refresh token bound
# to the key), what the processes share, and processes x threads. The DPoP storms cover each
# client, each store and each size; not every combination, to keep the suite within its time
# (a 16x4 DPoP storm takes about 20 s on a loaded 2-core machine: every request is signed).
STORMS = [
    pytest.param("basic", "token file", 8, 2, id="bearer-file-8x2"),
    pytest.param("basic", "token file", 16, 4, id="bearer-file-16x4"),
    pytest.param("dpop", "token file", 8, 2, id="dpop-confidential-file-8x2"),
    pytest.param("public", "redis", 8, 2, id="dpop-public-redis-8x2"),
    pytest.param("public", "token file", 16, 4, id="dpop-public-file-16x4"),
]


@pytest.mark.timeout(120, func_only=True)
@pytest.mark.parametrize(("role", "shared", "processes", "threads"), STORMS)
def test_a_storm_on_2_second_tokens_shows_no_caller_an_error_and_redeems_each_refresh_once(
    storm_oidc_provider: OidcProvider,
    tmp_path: Path,
    role: str,
    shared: str,
    processes: int,
    threads: int,
    record_property: Callable[[str, object], None],
) -> None:
    """``processes`` x ``threads`` callers share one token file, or one Redis key, through
    several expiries of tokens that oidc-provider ends up to a second early: no caller sees an
    error (a 401 from a token that died early is cured by a refresh), no refresh token is
    presented twice, and the provider is asked at most once per token that came due. With a
    DPoP client, every request carries a proof signed by the one key stored with the token,
    and the provider's nonce challenges cost one replay each (see assert_dpop_storm)."""
    provider = storm_oidc_provider
    assert provider.access_ttl == STORM_ACCESS_TTL == 2
    client = provider.clients[role]
    key = DPoPKey.generate() if client.dpop else None
    programs = [with_dpop(STORM) if client.dpop else STORM] * processes
    with shared_store(shared, tmp_path) as (store, where):
        job = provider.storm_job(client, tmp_path / "token.json", threads=threads, **where)
        before = provider.stats()
        storm = storm_through_expiries(
            job, programs, STORM_SECONDS, tmp_path, store, lambda: provider.issue_grant(client, key)
        )
        seen = provider.stats().since(before)
        resource = provider.resource_for(client)
        refresher = client.refresher(provider.token_url)
        with RefreshingSession(resource, store=store, refresher=refresher) as session:
            assert session.get(resource, timeout=10).status_code == 200
        latest = store.read()

    figures = storm.figures(
        client=role,
        shared=shared,
        processes=processes,
        threads=threads,
        **provider_figures(seen, key),
    )
    report(figures, record_property)
    storm.assert_every_caller_got_200s(figures)
    callers = processes * threads
    assert_provider_storm(seen, key, storm, figures, processes=processes, callers=callers)
    assert latest is not None
    if key is not None:
        assert latest.token.is_dpop
        assert key_of(latest.token) == key, "the stored token no longer carries the login's key"


def _assert_siblings_refused(oidc_provider: OidcProvider, path: Path, client: Client) -> None:
    """Sessions that share the token file, in this process and in two others, raise
    LoginRequired from the refusal recorded in the file, without calling the token endpoint."""
    before = oidc_provider.stats()
    with _session(oidc_provider, path, client) as sibling, pytest.raises(LoginRequired):
        sibling.get(oidc_provider.items_url, timeout=10)
    outputs = run_in_processes(
        REQUESTS,
        2,
        {
            "api": oidc_provider.api_url,
            "file": str(path),
            "token_url": oidc_provider.token_url,
            "count": 2,
        },
    )
    assert outputs == ["LoginRequired LoginRequired"] * 2
    assert oidc_provider.stats().since(before).token_calls == 0


@pytest.mark.timeout(30, func_only=True)
def test_revoked_grant_raises_login_required_and_siblings_do_not_retry(
    oidc_provider: OidcProvider, tmp_path: Path
) -> None:
    client, path, grant = _logged_in(oidc_provider, tmp_path, "post")
    with _session(oidc_provider, path, client) as session:
        assert session.get(oidc_provider.items_url, timeout=10).status_code == 200
        before = oidc_provider.stats()
        assert grant.refresh_token is not None
        oidc_provider.revoke(grant.refresh_token, "refresh_token", client)  # RFC 7009
        with pytest.raises(LoginRequired) as refused:
            session.get(oidc_provider.items_url, timeout=10)
    seen = oidc_provider.stats().since(before)

    assert refused.value.response is not None
    assert refused.value.response.status_code == 400
    assert refused.value.response.json()["error"] == "invalid_grant"
    assert seen.grants_revoked == 1  # by the revocation
    assert seen.api_unauthorized == 1  # the access token went with the grant
    assert seen.token_requests == Counter({"refresh_token": 1})
    assert seen.token_errors == Counter({"invalid_grant": 1})
    assert seen.reuse_detections == seen.refresh_tokens_presented_again == 0
    _assert_siblings_refused(oidc_provider, path, client)


@pytest.mark.timeout(30, func_only=True)
def test_consumed_refresh_token_trips_reuse_detection_and_login_required(
    oidc_provider: OidcProvider, tmp_path: Path
) -> None:
    client, path, _ = _logged_in(oidc_provider, tmp_path, "basic")
    stale = expire(path)  # due now; a copy of it is kept, as a backup would be
    before = oidc_provider.stats()
    with _session(oidc_provider, path, client) as session:
        assert session.get(oidc_provider.items_url, timeout=10).status_code == 200
        rotated = stored(path)
        assert rotated.refresh_token != stale.refresh_token
        TokenFile(path).write(stale)  # the old copy comes back: its refresh token is spent
        with pytest.raises(LoginRequired):
            session.get(oidc_provider.items_url, timeout=10)
    seen = oidc_provider.stats().since(before)

    assert seen.token_requests == Counter({"refresh_token": 2})
    assert seen.token_successes == Counter({"refresh_token": 1})
    assert seen.token_errors == Counter({"invalid_grant": 1})
    assert seen.refresh_tokens_presented_again == 1
    assert seen.reuse_detections == 1
    assert seen.grants_revoked == 1
    # The provider revoked the whole grant: the newer access token died with it.
    assert not oidc_provider.accepts(rotated.access_token)
    _assert_siblings_refused(oidc_provider, path, client)


@pytest.mark.timeout(30, func_only=True)
def test_client_credentials_token_is_created_then_reacquired(
    oidc_provider: OidcProvider, tmp_path: Path
) -> None:
    client = oidc_provider.clients["basic"]
    path = tmp_path / "token.json"
    refresher = ClientCredentialsRefresher(
        oidc_provider.token_url,
        client.client_id,
        client.client_secret,
        auth_method=client.auth_method,
    )
    before = oidc_provider.stats()

    def grants() -> int:
        return oidc_provider.stats().since(before).token_requests["client_credentials"]

    with RefreshingSession(oidc_provider.api_url, token_file=path, refresher=refresher) as session:
        assert not path.exists()
        answer = session.get(oidc_provider.items_url, timeout=10)
        assert answer.status_code == 200
        assert answer.json()["kind"] == "ClientCredentials"
        first = stored(path)
        assert first.refresh_token is None
        # Re-acquired halfway through its life, while still in use.
        while grants() < 2:
            assert time.time() - _requested_at(first) < 15, "not re-acquired within 15 s"
            assert session.get(oidc_provider.items_url, timeout=10).status_code == 200
            time.sleep(0.01)
        second = stored(path)
        assert second.access_token != first.access_token
        # Idle until the server itself refuses that token, then use the session again.
        wait_for(lambda: not oidc_provider.accepts(second.access_token), timeout=15)
        assert session.get(oidc_provider.items_url, timeout=10).status_code == 200
    third = stored(path)
    seen = oidc_provider.stats().since(before)

    assert third.access_token not in (first.access_token, second.access_token)
    assert seen.token_requests == Counter({"client_credentials": 3})
    assert seen.token_successes == Counter({"client_credentials": 3})
    assert seen.client_auth == Counter({"client_secret_basic": 3})
    assert seen.api_unauthorized == 1  # the probe's; the session never sent an expired token


@pytest.mark.timeout(20, func_only=True)
def test_reserved_characters_in_basic_credentials(
    oidc_provider: OidcProvider, tmp_path: Path
) -> None:
    """RFC 6749 2.3.1: client_id and secret are form-encoded, then joined for HTTP Basic."""
    plain, odd = oidc_provider.clients["basic"], oidc_provider.clients["odd"]
    assert plain.auth_method == odd.auth_method == "client_secret_basic"
    for text in (plain.secret, odd.client_id, odd.secret):
        assert set(text) >= RESERVED
    before = oidc_provider.stats()
    # Control: Basic without the form-encoding (requests' own) is refused by the provider.
    for client in (plain, odd):
        naive = requests.post(
            oidc_provider.token_url,
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, client.secret),
            timeout=10,
        )
        assert naive.status_code in (400, 401), naive.text
        assert naive.json()["error"] in ("invalid_client", "invalid_request")

    machine = ClientCredentialsRefresher(
        oidc_provider.token_url, odd.client_id, odd.client_secret
    ).new_token()
    assert oidc_provider.accepts(machine.access_token)
    path = tmp_path / "token.json"
    oidc_provider.write_grant(path, odd)
    expire(path)
    with _session(oidc_provider, path, odd) as session:
        assert session.get(oidc_provider.items_url, timeout=10).status_code == 200
    seen = oidc_provider.stats().since(before)

    assert seen.token_successes == Counter({"client_credentials": 1, "refresh_token": 1})
    assert seen.client_auth == Counter({"client_secret_basic": 4})
    seen.assert_no_reuse()


@pytest.mark.timeout(20, func_only=True)
def test_wrong_secret_is_client_rejected_and_spends_no_refresh_token(
    oidc_provider: OidcProvider,
) -> None:
    client = oidc_provider.clients["post"]
    grant = oidc_provider.issue_grant(client)
    wrong = replace(client, client_secret=f"{client.client_secret}x")
    before = oidc_provider.stats()
    with pytest.raises(ClientRejected) as rejected:
        wrong.refresher(oidc_provider.token_url)(grant)
    assert rejected.value.error == "invalid_client"
    renewed = client.refresher(oidc_provider.token_url)(grant)  # the refresh token still works
    seen = oidc_provider.stats().since(before)

    assert oidc_provider.accepts(renewed.access_token)
    assert seen.token_errors == Counter({"invalid_client": 1})
    assert seen.token_successes == Counter({"refresh_token": 1})
    seen.assert_no_reuse()


def _key_file(folder: Path, key: DPoPKey) -> Path:
    """``key`` in a PEM file only its owner can read, as a dpop_key file must be."""
    path = folder / f"dpop-{key.jkt[:8]}.pem"
    path.write_text(key.private_pem())
    path.chmod(0o600)
    return path


@pytest.mark.timeout(20, func_only=True)
@pytest.mark.parametrize("mistake", ["another key", "no proof"])
def test_a_refresh_the_provider_refuses_for_its_dpop_proof_is_client_rejected_not_a_dead_grant(
    oidc_provider: OidcProvider, tmp_path: Path, mistake: str
) -> None:
    """oidc-provider answers a public client's refresh signed by a key its refresh token is
    not bound to, and a DPoP client's refresh without a proof, with invalid_grant ("grant
    request is invalid"), and the grant survives: the library says the proof was refused, not
    the grant (ClientRejected, not LoginRequired), and the right proof then refreshes."""
    client = oidc_provider.clients["public" if mistake == "another key" else "dpop"]
    key = DPoPKey.generate()
    grant = oidc_provider.issue_grant(client, key)
    before = oidc_provider.stats()
    if mistake == "another key":
        # A token stored without its key, and a dpop_key file that holds another one.
        stranger = _key_file(tmp_path, DPoPKey.generate())
        wrong = client.refresher(oidc_provider.token_url, dpop_key=stranger)
        given = replace(grant, dpop_key=None)
    else:
        wrong = replace(client, dpop=False).refresher(oidc_provider.token_url)
        given = grant
    with pytest.raises(ClientRejected) as rejected:
        wrong(given)
    renewed = client.refresher(oidc_provider.token_url)(grant)
    seen = oidc_provider.stats().since(before)

    assert "refused the DPoP proof, not the grant" in str(rejected.value)
    assert rejected.value.error == "invalid_grant"
    assert renewed.is_dpop
    assert key_of(renewed) == key
    assert seen.token_errors["invalid_grant"] == 1
    assert seen.token_successes == Counter({"refresh_token": 1})
    # The refused request did not spend the refresh token: presented again, and no reuse.
    assert seen.refresh_tokens_presented_again == 1
    assert seen.reuse_detections == seen.grants_revoked == 0
