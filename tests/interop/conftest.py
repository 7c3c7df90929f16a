"""Fixtures for the interop tests: node oidc-provider, installed with npm and started for real.

``tests/interop/oidc_provider`` holds the server (``server.mjs``) and its pinned dependencies
(``package-lock.json``). The session installs them with ``npm ci`` (skipped when the installed
tree already matches the lock file), starts ``node server.mjs <port>`` on a free loopback port,
waits for its ``READY <port>`` line and stops it, by its own pid, at the end. Without node or
npm the tests are skipped, or fail when the ``CI`` environment variable is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Unpack
from urllib.parse import quote_plus

import pytest
import requests
from filelock import FileLock

from refreshing_session import ClientCredentialsRefresher, OAuth2Refresher, Token, TokenFile
from refreshing_session.dpop import DPoPKey
from refreshing_session.oauth_client import ClientOptions

from ..support.processes import unavailable
from .servers import RealServer, start_server, stop_server

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
INSTALL_TIMEOUT = 300.0  # seconds for npm ci
# Seconds; ttl.AccessToken and ttl.ClientCredentials of the server. Not 2: oidc-provider keeps
# iat and exp in whole seconds, so a token answered with expires_in 2 may die barely 1 s after
# it was issued, just when the session refreshes it (halfway through its life), and a request
# sent just before that refresh could meet a 401. With 4, a token lives at least 3 s on the
# server and is refreshed after 2 s: a request that takes it just before has a second to reach
# the server, which a replay in an asyncio process of 100 tasks needs on a loaded machine (see
# tests/test_front_end_storm.py).
ACCESS_TTL = 4
# Seconds; the storm's provider (storm_oidc_provider) has 2-second tokens, so that the storm
# meets exactly that: tokens dying early, which the session must cure without a caller seeing it.
STORM_ACCESS_TTL = 2
MINIMUM_NODE = 20
_STAMP = ".refreshing-session-interop-installed"


@dataclass(frozen=True)
class Client:
    """A client registered with the provider: confidential, or public (``auth_method``
    ``none``, no secret). A ``dpop`` client must send a DPoP proof with every token request."""

    client_id: str
    client_secret: str | None
    auth_method: str
    dpop: bool

    def refresher(self, token_url: str, **options: Any) -> OAuth2Refresher:
        """A refresher for this client, with DPoP on for a ``dpop`` client."""
        return OAuth2Refresher(
            token_url,
            self.client_id,
            self.client_secret,
            auth_method=self.auth_method,
            dpop=self.dpop,
            **options,
        )

    @property
    def secret(self) -> str:
        """A confidential client's secret."""
        assert self.client_secret is not None, f"{self.client_id} is a public client"
        return self.client_secret

    def authenticate(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Keyword arguments for ``requests.post`` that authenticate this client, written here
        independently of the library (RFC 6749 section 2.3.1 for Basic)."""
        if self.auth_method == "none":
            return {"data": {**form, "client_id": self.client_id}}
        if self.auth_method == "client_secret_post":
            return {"data": {**form, "client_id": self.client_id, "client_secret": self.secret}}
        return {
            "data": dict(form),
            "auth": (quote_plus(self.client_id), quote_plus(self.secret)),
        }


@dataclass(frozen=True)
class Stats:
    """The server's counters (see ``stats`` in server.mjs for how each is counted)."""

    token_requests: Counter[str]  # by grant_type
    token_successes: Counter[str]  # by grant_type
    token_errors: Counter[str]  # by error code
    client_auth: Counter[str]  # by the method a request used
    reuse_detections: int
    refresh_tokens_presented_again: int
    grants_revoked: int
    api_ok: int
    api_unauthorized: int
    userinfo_ok: int
    userinfo_errors: Counter[str]  # by error code
    userinfo_error_details: Counter[str]  # by the provider's reason
    dpop_proofs: Counter[str]  # by the thumbprint of the proof's key
    dpop_jti_repeated: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Stats:
        values: dict[str, Any] = {}
        for field in fields(cls):
            value = data[field.name]
            values[field.name] = Counter(value) if isinstance(value, dict) else int(value)
        return cls(**values)

    def since(self, earlier: Stats) -> Stats:
        """What was counted after ``earlier`` was taken."""
        values: dict[str, Any] = {}
        for field in fields(self):
            now, then = getattr(self, field.name), getattr(earlier, field.name)
            values[field.name] = now - then
        return Stats(**values)

    @property
    def refreshes(self) -> int:
        """refresh_token grant requests, answered or refused."""
        return self.token_requests["refresh_token"]

    @property
    def token_calls(self) -> int:
        return sum(self.token_requests.values())

    def assert_no_reuse(self) -> None:
        """No refresh token was presented twice, and the provider revoked no grant."""
        assert self.reuse_detections == 0
        assert self.refresh_tokens_presented_again == 0
        assert self.grants_revoked == 0


@dataclass(frozen=True)
class OidcProvider(RealServer):
    """A running node oidc-provider, and helpers to drive it from tests."""

    access_ttl: int
    clients: Mapping[str, Client]  # by role: "basic", "post", "odd"
    version: str

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def revocation_url(self) -> str:
        return self.base_url + "/token/revocation"

    @property
    def userinfo_url(self) -> str:
        """The provider's userinfo endpoint: the resource that checks DPoP-bound tokens (a
        proof for each request, its nonce, its ``ath``, the token's key)."""
        return self.base_url + "/me"

    def resource_for(self, client: Client) -> str:
        """What callers with ``client``'s tokens call in a storm: /api/items, or for a DPoP
        client the userinfo endpoint, which checks their proofs (/api/items does not)."""
        return self.userinfo_url if client.dpop else self.items_url

    def storm_job(self, client: Client, token_file: Path, **extra: object) -> dict[str, object]:
        """The job of a storm program (tests/support/processes.py) whose callers call
        ``resource_for(client)`` with ``client``'s tokens, kept in ``token_file`` or where
        ``extra`` says (a Redis store), with ``extra``'s threads and tasks."""
        url = self.resource_for(client)
        return {
            "api": url,
            "url": url,
            "file": str(token_file),
            "token_url": self.token_url,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "auth_method": client.auth_method,
            **extra,
        }

    def issue_grant(self, client: Client, dpop_key: DPoPKey | None = None) -> Token:
        """A fresh grant for ``client``, as a login would leave it: access and refresh token.
        With ``dpop_key``, as a login with DPoP would: the tokens bound to that key (the
        refresh token only for a public client), stored with it."""
        requested_at = time.time()
        asked: dict[str, str] = {"client_id": client.client_id}
        if dpop_key is not None:
            asked["jkt"] = dpop_key.jkt
        response = requests.post(self.base_url + "/test/grant", json=asked, timeout=10)
        response.raise_for_status()
        token = Token.from_response(response.json(), requested_at=requested_at)
        assert token.is_dpop == (dpop_key is not None), token.token_type
        return token if dpop_key is None else replace(token, dpop_key=dpop_key.private_pem())

    def write_grant(self, path: Path, client: Client) -> Token:
        """Log in: write a fresh grant for ``client`` to the token file ``path``."""
        token = self.issue_grant(client)
        TokenFile(path).write(token)
        return token

    def stats(self) -> Stats:
        response = requests.get(self.base_url + "/test/stats", timeout=10)
        response.raise_for_status()
        return Stats.from_json(response.json())

    def destroy_access_token(self, access_token: str) -> None:
        """Make the server forget one access token; its grant and refresh token stay valid."""
        response = requests.post(
            self.base_url + "/test/destroy-access-token",
            json={"access_token": access_token},
            timeout=10,
        )
        response.raise_for_status()
        assert response.json() == {"destroyed": True}

    def revoke(self, token: str, hint: str, client: Client) -> None:
        """RFC 7009 revocation through the provider's own revocation endpoint."""
        response = requests.post(
            self.revocation_url,
            timeout=10,
            **client.authenticate({"token": token, "token_type_hint": hint}),
        )
        assert response.status_code == 200, response.text

    def accepts(self, access_token: str) -> bool:
        """Whether the protected resource takes ``access_token`` now."""
        response = requests.get(
            self.items_url, timeout=10, headers={"Authorization": "Bearer " + access_token}
        )
        assert response.status_code in (200, 401), response.status_code
        return response.status_code == 200


def _toolchain() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable(
            "the interop tests need Node.js and npm on PATH "
            f"(node: {node or 'missing'}, npm: {npm or 'missing'})"
        )
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < MINIMUM_NODE:
        unavailable(
            f"the interop tests need Node.js {MINIMUM_NODE} or newer, found "
            f"{version or 'an unknown version'} at {node}"
        )
    return node, npm


def _install(npm: str) -> None:
    """``npm ci`` from the lock file (``npm install`` if there is none), unless node_modules
    already holds exactly that install. A file lock keeps concurrent test runs from installing
    over each other."""
    lock_file = PROVIDER_DIR / "package-lock.json"
    manifest = (PROVIDER_DIR / "package.json").read_bytes()
    has_lock = lock_file.exists()
    wanted = hashlib.sha256(manifest + (lock_file.read_bytes() if has_lock else b"")).hexdigest()
    stamp = PROVIDER_DIR / "node_modules" / _STAMP
    folder_id = hashlib.sha256(str(PROVIDER_DIR).encode()).hexdigest()[:12]
    guard = Path(tempfile.gettempdir()) / f"refreshing-session-interop-npm-{folder_id}.lock"
    with FileLock(guard, timeout=INSTALL_TIMEOUT):
        if has_lock and stamp.exists() and stamp.read_text() == wanted:
            return
        command = [
            npm,
            "ci" if has_lock else "install",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
        ]
        try:
            done = subprocess.run(
                command,
                cwd=PROVIDER_DIR,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"`{' '.join(command[1:])}` in {PROVIDER_DIR} took over {INSTALL_TIMEOUT:.0f} s",
                pytrace=False,
            )
        if done.returncode != 0:
            pytest.fail(
                f"`{' '.join(command[1:])}` in {PROVIDER_DIR} failed "
                f"({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}",
                pytrace=False,
            )
        if has_lock:
            stamp.write_text(wanted)


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """node oidc-provider on 127.0.0.1 with ACCESS_TTL-second tokens, shared by the whole test
    session."""
    with _running_provider(tmp_path_factory, ACCESS_TTL) as provider:
        yield provider


@pytest.fixture(scope="session")
def storm_oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """A second node oidc-provider, with STORM_ACCESS_TTL-second tokens, for the storms."""
    with _running_provider(tmp_path_factory, STORM_ACCESS_TTL) as provider:
        yield provider


@contextlib.contextmanager
def _running_provider(
    tmp_path_factory: pytest.TempPathFactory, access_ttl: int
) -> Iterator[OidcProvider]:
    """Install (if needed) and start node oidc-provider whose access tokens live
    ``access_ttl`` seconds; stop it, by its own pid, on exit."""
    node, npm = _toolchain()
    _install(npm)
    version = _installed_version()
    log = tmp_path_factory.mktemp("oidc-provider") / "server.log"
    process, port = start_server(
        [node, "server.mjs", "0"],
        name="node oidc-provider",
        cwd=PROVIDER_DIR,
        log=log,
        env={"ACCESS_TOKEN_TTL": str(access_ttl)},
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        answer = requests.get(base_url + "/test/clients", timeout=10)
        answer.raise_for_status()
        clients = {role: Client(**client) for role, client in answer.json().items()}
        assert {"dpop", "public"} <= set(clients), "server.mjs registers the DPoP clients"
        yield OidcProvider(base_url, access_ttl, clients, version)
    finally:
        stop_server(process)


def _installed_version() -> str:
    manifest = PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json"
    return str(json.loads(manifest.read_text())["version"])


@dataclass(frozen=True)
class LoginProvider:
    """node oidc-provider over HTTPS (login_server.mjs): its issuer, the private CA that signed
    its certificate, the jwt client's private key (PEM) and the mtls client's certificate."""

    issuer: str
    ca_file: Path
    jwt_key_pem: bytes
    mtls_cert: Path
    stranger_cert: Path  # from another CA: the provider must refuse it

    def session(self) -> requests.Session:
        """A session that trusts the provider's private CA."""
        http = requests.Session()
        http.verify = str(self.ca_file)
        return http

    def client_credentials(
        self, client_id: str, client_secret: str | None = None, **options: Unpack[ClientOptions]
    ) -> ClientCredentialsRefresher:
        """A client credentials refresher for ``client_id``, its endpoints discovered from the
        provider through :meth:`session`, with ``options``; no retries: a refusal is the
        answer a test looks for."""
        given: ClientOptions = {"session": self.session(), "retries": 0, **options}
        return ClientCredentialsRefresher.from_issuer(
            self.issuer, client_id, client_secret, **given
        )


@pytest.fixture(scope="session")
def login_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginProvider]:
    """node oidc-provider on https://127.0.0.1 with a certificate from a private CA made now,
    for the browser, device, private_key_jwt, tls_client_auth and discovery tests."""
    import trustme
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwcrypto import jwk  # type: ignore[import-untyped]

    node, npm = _toolchain()
    _install(npm)
    folder = tmp_path_factory.mktemp("login-provider")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    served = ca.issue_cert("127.0.0.1", "localhost")
    served.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    served.private_key_pem.write_to_path(str(folder / "key.pem"))
    ca.issue_cert("mtls.interop.test").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "mtls.pem")
    )
    trustme.CA().issue_cert("mtls.interop.test").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "stranger.pem")
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = json.loads(jwk.JWK.from_pem(pem).export_public())
    jwks = json.dumps({"keys": [{**public, "kid": "interop-key-1", "use": "sig"}]})
    process, port = start_server(
        [node, "login_server.mjs", "0"],
        name="node oidc-provider (logins)",
        cwd=PROVIDER_DIR,
        log=folder / "server.log",
        env={
            "TLS_CERT": str(folder / "cert.pem"),
            "TLS_KEY": str(folder / "key.pem"),
            "TLS_CA": str(folder / "ca.pem"),
            "JWT_CLIENT_JWKS": jwks,
        },
    )
    try:
        yield LoginProvider(
            f"https://127.0.0.1:{port}",
            folder / "ca.pem",
            pem,
            folder / "mtls.pem",
            folder / "stranger.pem",
        )
    finally:
        stop_server(process)
