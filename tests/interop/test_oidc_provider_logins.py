"""Interop: logins, client authentication and discovery against node oidc-provider over HTTPS
(login_server.mjs, see conftest.py). The test plays the browser through the provider's own
login, consent and device pages; nothing of the provider is faked."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import runpy
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from refreshing_session import (
    ClientCredentialsRefresher,
    ClientRejected,
    OAuth2Refresher,
    RefreshFailed,
    TokenFile,
)
from refreshing_session.browser_login import BrowserLogin

from ..support.processes import ROOT
from .conftest import LoginProvider

RESOURCE = "https://api.interop.test"
OFFLINE = "openid offline_access"


@pytest.fixture(autouse=True)
def quiet_transport(caplog: pytest.LogCaptureFixture) -> None:
    """The browser's URLs hold codes and states, which urllib3 logs at DEBUG: not recorded."""
    caplog.set_level(logging.INFO, logger="urllib3")


class _Forms(HTMLParser):
    """The forms of a page: each one's action, method and named inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((named.get("action", ""), named.get("method", "get"), {}))
        elif tag == "input" and self.forms and "name" in named:
            self.forms[-1][2][named["name"]] = named.get("value", "")


class Browser:
    """A person at a browser: opens pages and submits the forms the provider shows."""

    def __init__(self, provider: LoginProvider) -> None:
        self.http = requests.Session()
        # Per request: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self.verify = str(provider.ca_file)

    def open(self, url: str) -> requests.Response:
        return self.http.get(url, timeout=20, verify=self.verify)

    def submit(self, page: requests.Response, **values: str) -> requests.Response:
        forms = _Forms()
        forms.feed(page.text)
        assert forms.forms, f"no form on {page.url}: {page.text[:300]}"
        action, method, inputs = forms.forms[0]
        assert method.lower() == "post"
        return self.http.post(
            urljoin(page.url, action), data={**inputs, **values}, timeout=20, verify=self.verify
        )

    def sign_in_and_consent(self, page: requests.Response) -> requests.Response:
        """The provider's login page (any login and password), then its consent page."""
        assert 'name="login"' in page.text, "the provider's login page"
        consent = self.submit(page, login="interop-user", password="any")
        assert 'name="prompt" value="consent"' in consent.text, "the provider's consent page"
        return self.submit(consent)


# --- discovery -----------------------------------------------------------------------------------


def test_discovery_finds_the_providers_endpoints(login_provider: LoginProvider) -> None:
    refresher = OAuth2Refresher.from_issuer(
        login_provider.issuer, "native", session=login_provider.session()
    )
    issuer = login_provider.issuer
    assert refresher.token_url == issuer + "/token"
    assert refresher.client.endpoint("authorization_endpoint") == issuer + "/auth"
    assert refresher.client.endpoint("device_authorization_endpoint") == issuer + "/device/auth"
    assert refresher.client.endpoint("revocation_endpoint") == issuer + "/token/revocation"


def test_an_issuer_the_document_does_not_name_is_refused(login_provider: LoginProvider) -> None:
    # The same server under another name: its document names https://127.0.0.1:PORT.
    other_name = login_provider.issuer.replace("127.0.0.1", "localhost")
    with pytest.raises(ClientRejected, match="names the issuer") as caught:
        OAuth2Refresher.from_issuer(other_name, "native", session=login_provider.session())
    assert caught.value.error == "issuer_mismatch"


def test_without_the_private_ca_discovery_fails_clearly(login_provider: LoginProvider) -> None:
    untrusting = requests.Session()
    untrusting.trust_env = False
    with pytest.raises(RefreshFailed, match="could not reach the discovery document"):
        OAuth2Refresher.from_issuer(login_provider.issuer, "native", session=untrusting)


# --- authorization code with PKCE, through the provider's own pages -------------------------------


def test_browser_login_through_the_providers_login_and_consent_pages(
    login_provider: LoginProvider,
) -> None:
    refresher = OAuth2Refresher.from_issuer(
        login_provider.issuer, "native", scope=OFFLINE, session=login_provider.session()
    )
    authorization = refresher.client.endpoint("authorization_endpoint")
    assert authorization is not None
    browser = Browser(login_provider)
    finished: list[requests.Response] = []

    def person(url: str) -> None:
        finished.append(browser.sign_in_and_consent(browser.open(url)))

    def open_browser(url: str) -> None:
        threading.Thread(target=person, args=(url,), daemon=True).start()

    token = BrowserLogin(refresher, authorization, open_browser=open_browser, timeout=30)(
        lambda url: None
    )
    assert finished[0].url.startswith("http://127.0.0.1:"), "the provider sent it back home"
    assert "Signed in" in finished[0].text
    assert token.refresh_token, "the provider gives native clients a refresh token"
    # Without prompt=consent the provider grants no offline_access: refresh without a scope.
    renewed = OAuth2Refresher(refresher.token_url, "native", session=login_provider.session())(
        token
    )
    assert renewed.access_token != token.access_token
    assert renewed.refresh_token != token.refresh_token, "the provider rotates it"


# --- the device flow, end to end through the command line -----------------------------------------


def test_device_login_through_the_command_line(
    login_provider: LoginProvider, tmp_path: Path
) -> None:
    target = tmp_path / "device.json"
    command = [
        sys.executable,
        "-m",
        "refreshing_session",
        "login",
        "--device",
        "--issuer",
        login_provider.issuer,
        "--client-id",
        "native",
        "--scope",
        OFFLINE,
        "--token-file",
        str(target),
    ]
    environment = {**os.environ, "REQUESTS_CA_BUNDLE": str(login_provider.ca_file)}
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=environment,
    ) as login:
        assert login.stdout is not None
        shown = login.stdout.readline()
        match = re.search(r"open (\S+) and enter the code (\S+)", shown)
        assert match, shown + (login.stderr.read() if login.stderr else "")
        browser = Browser(login_provider)
        confirm = browser.submit(browser.open(match.group(1)), user_code=match.group(2))
        done = browser.sign_in_and_consent(browser.submit(confirm))
        assert "Sign-in Success" in done.text or "success" in done.text.lower()
        out, err = login.communicate(timeout=60)
    assert login.returncode == 0, out + err
    token = TokenFile(target).read()
    assert token is not None
    assert token.token.refresh_token


# --- client authentication: private_key_jwt, tls_client_auth; resource indicators ----------------


def claims_of(jwt: str) -> dict[str, object]:
    """The payload of a JWT access token (its signature is the provider's business here)."""
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@pytest.fixture
def jwt_refresher(login_provider: LoginProvider) -> ClientCredentialsRefresher:
    return login_provider.client_credentials(
        "jwt", private_key=login_provider.jwt_key_pem, key_id="interop-key-1"
    )


def test_private_key_jwt_gets_a_token(jwt_refresher: ClientCredentialsRefresher) -> None:
    assert jwt_refresher.new_token().access_token
    assert jwt_refresher.new_token().access_token, "a second assertion, with a fresh jti"


def test_client_secret_jwt_gets_a_token_and_a_wrong_secret_is_rejected(
    login_provider: LoginProvider,
) -> None:
    def client(secret: str) -> ClientCredentialsRefresher:
        return login_provider.client_credentials("hmac", secret, auth_method="client_secret_jwt")

    assert client("interop-hmac-secret-of-at-least-32-bytes").new_token().access_token
    with pytest.raises(ClientRejected, match="invalid_client"):
        client("interop-hmac-secret-of-at-least-32-bytez").new_token()


def test_a_resource_indicator_gives_a_token_for_that_audience(
    login_provider: LoginProvider,
) -> None:
    refresher = login_provider.client_credentials(
        "jwt",
        private_key=login_provider.jwt_key_pem,
        key_id="interop-key-1",
        scope="api:read",
        extra_params={"resource": RESOURCE},
    )
    claims = claims_of(refresher.new_token().access_token)
    assert claims["aud"] == RESOURCE
    assert claims["scope"] == "api:read"


def test_the_documented_recipe_works(login_provider: LoginProvider) -> None:
    recipe = runpy.run_path(str(ROOT / "examples" / "providers.py"))
    made = recipe["clients"](
        login_provider.issuer,
        str(login_provider.ca_file),
        login_provider.jwt_key_pem,
        str(login_provider.mtls_cert),
    )
    assert claims_of(made["service"].new_token().access_token)["aud"] == RESOURCE
    assert made["certificate"].new_token().access_token
    assert made["person"].client.endpoint("authorization_endpoint")


def test_a_key_the_provider_does_not_know_is_rejected(login_provider: LoginProvider) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = login_provider.client_credentials(
        "jwt",
        key_id="interop-key-1",
        private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    with pytest.raises(ClientRejected, match="invalid_client"):
        stranger.new_token()


def test_tls_client_auth_presents_the_certificate(login_provider: LoginProvider) -> None:
    refresher = login_provider.client_credentials("mtls", client_cert=str(login_provider.mtls_cert))
    assert refresher.auth_method == "tls_client_auth"
    assert refresher.new_token().access_token


def test_a_certificate_from_another_ca_is_rejected(login_provider: LoginProvider) -> None:
    stranger = login_provider.client_credentials(
        "mtls", client_cert=str(login_provider.stranger_cert)
    )
    with pytest.raises(ClientRejected, match="invalid_client"):
        stranger.new_token()
