"""Client authentication with signed assertions (RFC 7523): private_key_jwt and
client_secret_jwt, checked by a token endpoint that verifies them with another library
(jwcrypto), as a real server would; and the assertion is a secret no error may hold."""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwk, jws  # type: ignore[import-untyped]

from refreshing_session import ClientCredentialsRefresher, ClientRejected, OAuth2Refresher, Token
from refreshing_session.client_auth import ASSERTION_TYPE, ClientAuthentication

from .support.recording import RecordingEndpoint

CLIENT_ID = "jwt-client"
SHARED_SECRET = "a-shared-secret-of-at-least-32-bytes!"


def issuing(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    return 200, {
        "access_token": "at-" + form.get("client_assertion", "")[-8:],
        "token_type": "Bearer",
        "expires_in": 300,
    }


@pytest.fixture
def endpoint() -> Iterator[RecordingEndpoint]:
    with RecordingEndpoint(issuing) as server:
        yield server


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def verified_claims(
    assertion: str, key: jwk.JWK, algorithm: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of ``assertion`` once its signature is verified by jwcrypto."""
    token = jws.JWS()
    token.deserialize(assertion)
    token.verify(key, alg=algorithm)
    return token.jose_header, json.loads(token.payload)


def public_jwk(private: Any) -> jwk.JWK:
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return jwk.JWK.from_pem(pem)


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [
        ("RS256", rsa_key),
        ("PS256", rsa_key),
        ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
    ],
)
def test_private_key_jwt_signs_a_fresh_short_assertion_the_server_can_verify(
    endpoint: RecordingEndpoint, algorithm: str, make_key: Callable[[], Any]
) -> None:
    key = make_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    refresher = ClientCredentialsRefresher(
        endpoint.url, CLIENT_ID, private_key=pem, key_id="key-2026", algorithm=algorithm, retries=0
    )
    assert refresher.auth_method == "private_key_jwt"
    first, second = refresher.new_token(), refresher.new_token()
    assert first.access_token != second.access_token
    jtis = []
    for headers, form in endpoint.requests:
        assert "Authorization" not in headers
        assert form["client_assertion_type"] == ASSERTION_TYPE
        assert form["client_id"] == CLIENT_ID
        assert "client_secret" not in form
        header, claims = verified_claims(form["client_assertion"], public_jwk(key), algorithm)
        assert header == {"alg": algorithm, "kid": "key-2026", "typ": "JWT"}
        assert (claims["iss"], claims["sub"], claims["aud"]) == (CLIENT_ID, CLIENT_ID, endpoint.url)
        assert 0 < claims["exp"] - claims["iat"] <= 60, "a short-lived assertion"
        jtis.append(claims["jti"])
    assert len(set(jtis)) == 2, "each assertion has its own jti, so none can be replayed"


def test_a_key_object_works_as_well_as_a_pem(endpoint: RecordingEndpoint) -> None:
    key = rsa_key()
    refresher = OAuth2Refresher(endpoint.url, CLIENT_ID, private_key=key, retries=0)
    refresher(Token("at", refresh_token="rt"))
    [(_, form)] = endpoint.requests
    header, _ = verified_claims(form["client_assertion"], public_jwk(key), "RS256")
    assert "kid" not in header, "no key id was given"
    assert form["refresh_token"] == "rt"


def test_client_secret_jwt_signs_with_the_shared_secret(endpoint: RecordingEndpoint) -> None:
    refresher = ClientCredentialsRefresher(
        endpoint.url, CLIENT_ID, SHARED_SECRET, auth_method="client_secret_jwt", retries=0
    )
    refresher.new_token()
    [(headers, form)] = endpoint.requests
    secret = jwk.JWK.from_password(SHARED_SECRET)
    _, claims = verified_claims(form["client_assertion"], secret, "HS256")
    assert claims["aud"] == endpoint.url
    assert SHARED_SECRET not in json.dumps([headers, form]), "the secret itself is never sent"


def test_a_rejected_assertion_is_absent_from_the_error_even_when_the_server_echoes_it() -> None:
    def echoing(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return 401, {
            "error": "invalid_client",
            "error_description": f"bad assertion {form.get('client_assertion')}",
        }

    with RecordingEndpoint(echoing) as hostile:
        refresher = ClientCredentialsRefresher(
            hostile.url, CLIENT_ID, private_key=rsa_key(), retries=0
        )
        with pytest.raises(ClientRejected) as caught:
            refresher.new_token()
        [(_, form)] = hostile.requests
    assertion = form["client_assertion"]
    signature = assertion.rsplit(".", 1)[-1]
    kept = (
        str(caught.value),
        caught.value.response.text if caught.value.response else "",
        pickle.dumps(caught.value),
    )
    for where in kept:
        text = where.decode("latin-1") if isinstance(where, bytes) else where
        assert signature not in text, "the error kept a usable client assertion"


def test_assertions_are_signed_concurrently_each_with_its_own_jti() -> None:
    auth = ClientAuthentication(CLIENT_ID, private_key=rsa_key())
    found: list[str] = []
    lock = threading.Lock()

    def sign() -> None:
        for _ in range(20):
            claims = json.loads(
                jws.base64url_decode(auth.assertion("https://a.test/t").split(".")[1])
            )
            with lock:
                found.append(claims["jti"])

    workers = [threading.Thread(target=sign) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert len(found) == 80
    assert len(set(found)) == 80, "a jti repeated"


INVALID: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "jwt-without-key": ({"auth_method": "private_key_jwt"}, ValueError, "needs a private_key"),
    "key-with-secret-method": (
        {"client_secret": "s", "auth_method": "client_secret_post", "private_key": "unused"},
        ValueError,
        "only used with private_key_jwt",
    ),
    "not-a-key": (
        {"private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"},
        ValueError,
        "not an unencrypted PEM private key",
    ),
    "es256-on-rsa": (
        {"private_key": "RSA", "algorithm": "ES256"},
        ValueError,
        "does not suit this key; use RS256 or PS256",
    ),
    "hs-on-key": (
        {"client_secret": "s", "auth_method": "client_secret_jwt", "algorithm": "RS256"},
        ValueError,
        "HS256",
    ),
    "kid-without-jwt": (
        {"client_secret": "s", "key_id": "k"},
        ValueError,
        "only used with client_secret_jwt or private_key_jwt",
    ),
    "tls-without-cert": ({"auth_method": "tls_client_auth"}, ValueError, "needs a client_cert"),
    "cert-not-paths": ({"client_cert": ("a", 1)}, TypeError, "(certificate, key) pair"),
    "certificate-without-key": (
        {"client_secret": "s", "key_certificate": "x"},
        ValueError,
        "only used with private_key_jwt",
    ),
    "not-a-certificate": (
        {"private_key": "RSA", "key_certificate": "c2VjcmV0"},
        ValueError,
        "not a PEM certificate",
    ),
    "jwt-secret-missing": (
        {"auth_method": "client_secret_jwt"},
        ValueError,
        "needs a client_secret",
    ),
}


@pytest.mark.parametrize(("options", "error", "message"), INVALID.values(), ids=INVALID.keys())
def test_invalid_client_authentication_is_refused_with_what_to_fix(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    if options.get("private_key") == "RSA":
        options = {**options, "private_key": rsa_key()}
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        OAuth2Refresher("https://auth.example.com/token", CLIENT_ID, **options)
    assert "c2VjcmV0" not in str(caught.value), "the key's text is never quoted"


def test_the_repr_shows_neither_key_nor_secret() -> None:
    key = rsa_key()
    refresher = OAuth2Refresher("https://auth.example.com/token", CLIENT_ID, private_key=key)
    assert "private_key_jwt" in repr(refresher)
    assert "RSAPrivateKey" not in repr(refresher.client.auth)
    assert SHARED_SECRET not in repr(
        OAuth2Refresher(
            "https://auth.example.com/token",
            CLIENT_ID,
            SHARED_SECRET,
            auth_method="client_secret_jwt",
        ).client.auth
    )


def test_a_pickled_jwt_refresher_still_signs(endpoint: RecordingEndpoint) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    refresher = ClientCredentialsRefresher(endpoint.url, CLIENT_ID, private_key=key, retries=0)
    pickle.loads(pickle.dumps(refresher)).new_token()
    [(_, form)] = endpoint.requests
    verified_claims(form["client_assertion"], public_jwk(key), "ES256")


def test_self_signed_tls_client_auth_sends_the_certificate_and_only_the_client_id() -> None:
    # The provider matches the certificate against the client's registered keys: the request
    # carries it as tls_client_auth does (tested against a real TLS server in
    # test_corporate_network.py), and nothing else.
    auth = ClientAuthentication(
        CLIENT_ID, "self_signed_tls_client_auth", client_cert=("client.pem", "client-key.pem")
    )
    form: dict[str, str] = {}
    headers: dict[str, str] = {}
    auth.apply(form, headers, audience="https://auth.example.com/token")
    assert (form, headers, auth.cert) == (
        {"client_id": CLIENT_ID},
        {},
        ("client.pem", "client-key.pem"),
    )


def test_a_key_certificate_names_the_key_by_its_thumbprints(endpoint: RecordingEndpoint) -> None:
    import hashlib

    import trustme

    issued = trustme.CA().issue_cert("svc.example.com")
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    certificate = issued.cert_chain_pems[0].bytes()
    der = x509.load_pem_x509_certificate(certificate).public_bytes(serialization.Encoding.DER)
    refresher = ClientCredentialsRefresher(
        endpoint.url, CLIENT_ID, private_key=key, key_certificate=certificate, retries=0
    )
    refresher.new_token()
    [(_, form)] = endpoint.requests
    header, _ = verified_claims(
        form["client_assertion"], public_jwk(key), refresher.client.auth.algorithm or ""
    )

    def thumbprint(digest: str) -> str:
        raw = hashlib.new(digest, der).digest()
        return jws.base64url_encode(raw)  # type: ignore[no-any-return]

    assert header["x5t"] == thumbprint("sha1")
    assert header["x5t#S256"] == thumbprint("sha256")
