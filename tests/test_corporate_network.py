"""The token endpoint on the user's network: a private CA and a forward proxy set on the session
alone (no environment variables) serve the refresh as they serve the API calls; the token
endpoint never gets the API's token, the caller's auth, headers or cookies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from refreshing_session import OAuth2Refresher, RefreshFailed, RefreshingSession

from .support.corporate import (
    API_HOST,
    API_URL,
    AUTH_HOST,
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_URL,
    CorporateNetwork,
)

_PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


@pytest.fixture(autouse=True)
def no_network_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the environment may help: the session's settings alone must do."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[CorporateNetwork]:
    with CorporateNetwork(tmp_path) as corporate:
        yield corporate


def session_on(
    network: CorporateNetwork, tmp_path: Path, session: requests.Session | None = None
) -> RefreshingSession:
    token_file = tmp_path / "token.json"
    token_file.write_text(json.dumps(network.grant()))
    refresher = OAuth2Refresher(
        TOKEN_URL, CLIENT_ID, CLIENT_SECRET, retries=0, timeout=5, session=session
    )
    return RefreshingSession(API_URL, token_file=token_file, refresher=refresher)


def corporate_settings(session: requests.Session, network: CorporateNetwork) -> None:
    session.verify = str(network.ca_file)
    session.proxies = {"https": network.proxy_url}


def test_the_refresh_goes_through_the_sessions_proxy_and_private_ca(
    network: CorporateNetwork, tmp_path: Path
) -> None:
    with session_on(network, tmp_path) as session:
        corporate_settings(session, network)  # set after the session was built
        answer = session.get(API_URL + "v1/items", timeout=5)
    assert answer.status_code == 200, answer.text
    assert network.generation == 1, "one refresh, through the proxy, trusted by the private CA"
    assert network.seen.api_bearers == ["Bearer at-1"]
    assert network.seen.tunnels[AUTH_HOST] >= 1, "the refresh went through the proxy"
    assert network.seen.tunnels[API_HOST] >= 1, "the API call went through the proxy"


def test_without_the_settings_the_refresh_fails_clearly_and_works_once_they_are_set(
    network: CorporateNetwork, tmp_path: Path
) -> None:
    with session_on(network, tmp_path) as session:
        with pytest.raises(RefreshFailed, match=f"could not reach the token endpoint {TOKEN_URL}"):
            session.keeper.refresh_now()
        session.proxies = {"https": network.proxy_url}
        with pytest.raises(RefreshFailed, match="SSLError"):
            session.keeper.refresh_now()  # the proxy, but not the private CA
        session.verify = str(network.ca_file)
        assert session.keeper.refresh_now().access_token == "at-1"
    assert network.generation == 1


def test_the_sessions_ca_wins_over_requests_ca_bundle_in_the_environment(
    network: CorporateNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "some-other-bundle.pem"))
    with session_on(network, tmp_path) as session:
        corporate_settings(session, network)
        assert session.keeper.refresh_now().access_token == "at-1"


def test_trust_env_false_on_the_session_keeps_the_environments_proxy_off_the_refresh(
    network: CorporateNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", network.proxy_url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(network.ca_file))
    with session_on(network, tmp_path) as session:
        assert session.keeper.refresh_now().access_token == "at-1", "trust_env reads them"
        session.trust_env = False
        with pytest.raises(RefreshFailed, match="could not reach"):
            session.keeper.refresh_now()
    assert network.generation == 1


def test_a_session_given_to_the_refresher_carries_the_refresh(
    network: CorporateNetwork, tmp_path: Path
) -> None:
    corporate = requests.Session()
    corporate_settings(corporate, network)
    with session_on(network, tmp_path, session=corporate) as session:
        # The RefreshingSession's own settings (none) do not replace the given session's.
        assert session.keeper.refresh_now().access_token == "at-1"
        assert session.keeper.refresh_now().access_token == "at-2"
    assert network.seen.tunnels[AUTH_HOST] == 1, "the given session's pool kept its connection"


def test_the_token_endpoint_gets_nothing_of_the_callers_credentials(
    network: CorporateNetwork, tmp_path: Path
) -> None:
    caller = requests.Session()
    corporate_settings(caller, network)
    caller.auth = ("caller", "caller-password")
    caller.headers["X-Api-Key"] = "caller-api-key"
    caller.cookies.set("sid", "caller-cookie", domain=AUTH_HOST)
    with session_on(network, tmp_path, session=caller) as session:
        corporate_settings(session, network)
        session.headers["Authorization"] = "Bearer the-callers-own"
        session.get(API_URL + "v1/items", timeout=5)  # the caller's Authorization: no token
        session.headers.pop("Authorization")
        assert session.get(API_URL + "v1/items", timeout=5).status_code == 200
    assert network.generation == 1
    [(headers, form)] = network.seen.token_requests
    sent = json.dumps([headers, form])
    for leaked in ("caller-password", "caller-api-key", "caller-cookie", "the-callers-own", "at-0"):
        assert leaked not in sent, f"the token endpoint got the caller's {leaked!r}"
    assert headers["Authorization"].startswith("Basic ")
    assert form == {"grant_type": "refresh_token", "refresh_token": "rt-0"}


@pytest.fixture
def mtls_network(tmp_path: Path) -> Iterator[CorporateNetwork]:
    with CorporateNetwork(tmp_path, require_client_cert=True) as corporate:
        yield corporate


def test_a_refreshing_session_cannot_carry_its_own_refresh(
    network: CorporateNetwork, tmp_path: Path
) -> None:
    with session_on(network, tmp_path) as api, pytest.raises(TypeError, match="plain"):
        # Its adapter would put the API's token on the grant, and refresh inside a refresh.
        OAuth2Refresher(TOKEN_URL, CLIENT_ID, CLIENT_SECRET, session=api)


def test_tls_client_auth_presents_the_client_certificate_and_no_secret(
    mtls_network: CorporateNetwork, tmp_path: Path
) -> None:
    certificate = mtls_network.client_cert(tmp_path)
    token_file = tmp_path / "token.json"
    token_file.write_text(json.dumps(mtls_network.grant()))
    refresher = OAuth2Refresher(
        TOKEN_URL,
        CLIENT_ID,
        auth_method="tls_client_auth",
        client_cert=str(certificate),
        retries=0,
        timeout=5,
    )
    with RefreshingSession(API_URL, token_file=token_file, refresher=refresher) as session:
        corporate_settings(session, mtls_network)
        assert session.keeper.refresh_now().access_token == "at-1"
    [(headers, form)] = mtls_network.seen.token_requests
    assert mtls_network.seen.client_subjects == [CLIENT_ID]
    assert "Authorization" not in headers
    assert form == {"grant_type": "refresh_token", "refresh_token": "rt-0", "client_id": CLIENT_ID}


def test_without_its_certificate_a_tls_client_is_refused_by_the_handshake(
    mtls_network: CorporateNetwork, tmp_path: Path
) -> None:
    with session_on(mtls_network, tmp_path) as session:
        corporate_settings(session, mtls_network)
        with pytest.raises(RefreshFailed, match="could not reach"):
            session.keeper.refresh_now()
    assert mtls_network.generation == 0
