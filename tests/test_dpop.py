"""DPoP (RFC 9449) below the front ends: the key and its proofs, the nonce memory, the token
exchange with proofs (nonce retry, token type, refusals about the proof), and the key stored
with the token in a token file and in Redis, where another process signs with it.

Against LocalAuthServer on 127.0.0.1, whose DPoP checks are written apart from the client's.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import stat
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwk as jwcrypto_jwk  # type: ignore[import-untyped]

from refreshing_session import (
    ClientCredentialsRefresher,
    ClientRejected,
    LoginRequired,
    OAuth2Refresher,
    RefreshFailed,
    Token,
    TokenFile,
)
from refreshing_session.dpop import DPoPKey, Nonces, access_token_hash, asks_for_nonce, htu, key_of
from refreshing_session.oauth_client import OAuthClient
from refreshing_session.testing import LocalAuthServer

from .support.dpop import ath, dpop_grant
from .support.processes import run_in_processes
from .support.redis_servers import RedisServer

ACCESS = "at-Hq3Lr8Vx2Nm5Kp7Tz"
PUBLIC = {"client": "secret", "public": None}


def decoded(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of ``proof``, its signature checked with the key it embeds."""
    header = jwt.get_unverified_header(proof)
    key = jwt.PyJWK(header["jwk"], header["alg"]).key
    claims = jwt.decode(proof, key, algorithms=[header["alg"]], options={"verify_iat": False})
    return header, claims


def secret_parts(key: DPoPKey) -> list[str]:
    """Fragments of ``key``'s private part that must never show: its PEM body and ``d``."""
    pem_body = "".join(key.private_pem().splitlines()[1:-1])
    private = serialization.load_pem_private_key(key.private_pem().encode(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    d = private.private_numbers().private_value.to_bytes(32, "big")
    return [pem_body[10:50], base64.urlsafe_b64encode(d).rstrip(b"=").decode()]


def assert_hidden(key: DPoPKey, *texts: str | bytes) -> None:
    for text in texts:
        shown = text if isinstance(text, str) else text.decode("latin-1")
        for part in secret_parts(key):
            assert part not in shown, "a part of the private key showed"


# ------------------------------------------------------------------ the key and its proofs


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_a_proof_is_a_dpop_jwt_signed_by_the_key_it_embeds(algorithm: str) -> None:
    key = DPoPKey.generate(algorithm)
    before = int(time.time())
    header, claims = decoded(key.proof("GET", "https://api.example/items?page=2#top"))
    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == algorithm
    assert "d" not in header["jwk"]
    assert header["jwk"] == dict(key.public_jwk)
    assert set(claims) == {"htm", "htu", "iat", "jti"}
    assert claims["htm"] == "GET"
    assert claims["htu"] == "https://api.example/items"
    assert before <= claims["iat"] <= int(time.time())
    assert len(base64.urlsafe_b64decode(claims["jti"] + "==")) * 8 >= 128


def test_the_thumbprint_is_rfc_7638s() -> None:
    key = DPoPKey.generate()
    assert key.jkt == jwcrypto_jwk.JWK(**key.public_jwk).thumbprint()


def test_every_proof_has_a_new_jti() -> None:
    key = DPoPKey.generate()
    jtis = {decoded(key.proof("POST", "https://as.example/token"))[1]["jti"] for _ in range(500)}
    assert len(jtis) == 500


def test_a_resource_proof_carries_the_access_tokens_hash_and_the_nonce() -> None:
    key = DPoPKey.generate()
    _, claims = decoded(key.proof("PUT", "https://api.example/x", access_token=ACCESS, nonce="n-1"))
    assert claims["ath"] == ath(ACCESS) == access_token_hash(ACCESS)
    assert claims["nonce"] == "n-1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://API.Example:443/a/b?q=1#f", "https://api.example/a/b"),
        ("http://127.0.0.1:80", "http://127.0.0.1/"),
        ("http://user:pw@[::1]:8080/p;x?y", "http://[::1]:8080/p;x"),
        ("HTTPS://h.example:8443/%7Euser", "https://h.example:8443/%7Euser"),
    ],
)
def test_htu_is_the_url_without_query_fragment_or_credentials(url: str, expected: str) -> None:
    assert htu(url) == expected


@pytest.mark.parametrize("url", ["ftp://h.example/x", "/relative", "https:///nohost"])
def test_a_proof_for_a_url_that_is_not_absolute_http_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="absolute http"):
        DPoPKey.generate().proof("GET", url)


def test_a_key_round_trips_through_pem_and_pickle() -> None:
    key = DPoPKey.generate()
    assert DPoPKey.from_pem(key.private_pem()) == key
    assert pickle.loads(pickle.dumps(key)) == key


def test_nonces_are_remembered_per_origin() -> None:
    nonces = Nonces()
    assert nonces.remember("https://as.example/token", {"DPoP-Nonce": "n-1"}) == "n-1"
    assert nonces.remember("https://as.example/token", {}) is None
    assert nonces.remember("https://as.example/x", {"DPoP-Nonce": 'bad"nonce'}) is None
    assert nonces.get("https://AS.example:443/other?q") == "n-1"
    assert nonces.get("https://as.example:8443/token") is None
    nonces.remember(
        "https://as.example/", requests.structures.CaseInsensitiveDict({"dpop-nonce": "n-2"})
    )
    assert nonces.get("https://as.example/token") == "n-2"
    assert pickle.loads(pickle.dumps(nonces)).get("https://as.example/") is None


def test_a_nonce_challenge_is_a_401_saying_use_dpop_nonce_with_a_nonce() -> None:
    challenge = {"WWW-Authenticate": 'DPoP error="use_dpop_nonce", algs="ES256"'}
    assert asks_for_nonce(401, {**challenge, "DPoP-Nonce": "n"})
    assert not asks_for_nonce(401, challenge)
    assert not asks_for_nonce(400, {**challenge, "DPoP-Nonce": "n"})
    assert not asks_for_nonce(
        401, {"WWW-Authenticate": 'DPoP error="invalid_token"', "DPoP-Nonce": "n"}
    )


# ------------------------------------------------------------------ the key file


def key_file(folder: Path, mode: int = 0o600, key: Any = None) -> Path:
    """A PEM file of ``key`` (a new P-256 key by default) with ``mode``."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    path = folder / "dpop.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(mode)
    return path


def test_a_private_key_file_of_ones_own_is_used(tmp_path: Path, server: LocalAuthServer) -> None:
    path = key_file(tmp_path)
    client = OAuthClient(server.token_url, "client", "secret", dpop=True, dpop_key=path)
    assert client.proof_key() == DPoPKey.from_file(path)


@pytest.mark.parametrize(
    ("mode", "said"), [(0o644, "chmod 600"), (0o640, "chmod 600"), (0o620, "chmod go-w")]
)
def test_a_key_file_others_can_read_or_change_is_refused(
    tmp_path: Path, mode: int, said: str
) -> None:
    with pytest.raises(ValueError, match=said) as caught:
        DPoPKey.from_file(key_file(tmp_path, mode))
    assert "the DPoP key file" in str(caught.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can plant another user's file")
def test_a_key_file_planted_by_another_user_is_refused(tmp_path: Path) -> None:
    path = key_file(tmp_path)
    os.chown(path, 65534, 65534)
    with pytest.raises(ValueError, match="belongs to another user"):
        DPoPKey.from_file(path)
    own = tmp_path / "own"
    own.mkdir()
    link = tmp_path / "link.pem"
    link.symlink_to(key_file(own))
    os.lchown(link, 65534, 65534)
    with pytest.raises(ValueError, match="symbolic link that belongs to another user"):
        DPoPKey.from_file(link)


@pytest.mark.parametrize(
    ("key", "said"),
    [
        (rsa.generate_private_key(65537, 2048), "an RSA key, not an EC P-256"),
        (ec.generate_private_key(ec.SECP384R1()), "an EC key on secp384r1, not an EC P-256"),
    ],
)
def test_a_key_file_of_another_kind_of_key_is_refused(tmp_path: Path, key: Any, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        DPoPKey.from_file(key_file(tmp_path, key=key))


def test_a_missing_or_garbled_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the DPoP key file"):
        DPoPKey.from_file(tmp_path / "missing.pem")
    garbled = tmp_path / "garbled.pem"
    garbled.write_text("-----BEGIN PRIVATE KEY-----\nnot-a-key-Xq9\n-----END PRIVATE KEY-----\n")
    garbled.chmod(0o600)
    with pytest.raises(ValueError, match="not an unencrypted PEM private key") as caught:
        DPoPKey.from_file(garbled)
    assert "not-a-key-Xq9" not in str(caught.value)


def test_a_key_file_without_dpop_is_a_mistake(tmp_path: Path, server: LocalAuthServer) -> None:
    with pytest.raises(ValueError, match="only used with dpop=True"):
        OAuthClient(server.token_url, "client", "secret", dpop_key=key_file(tmp_path))


# ------------------------------------------------------------------ the token exchange


def test_a_dpop_grant_answers_a_bound_token_that_carries_its_key() -> None:
    with LocalAuthServer(dpop=True, dpop_nonce=True) as server:
        token = ClientCredentialsRefresher(server.token_url, "client", "secret", dpop=True)(
            Token("unused")
        )
        key = key_of(token)
        assert token.is_dpop
        assert key is not None
        proofs = server.dpop_proofs()
        # The first proof had no nonce and was told to use one; the retry carried it.
        assert [proof.problem for proof in proofs] == [
            "nonce is required in the DPoP proof",
            None,
        ]
        assert {proof.jkt for proof in proofs} == {key.jkt}
        assert "nonce" not in proofs[0].claims
        assert proofs[1].claims["nonce"]
        assert proofs[0].claims["jti"] != proofs[1].claims["jti"]
        assert {proof.claims["htu"] for proof in proofs} == {server.token_url}
        assert server.stats().token_requests == 2
        # The key signs the resource request the bound token needs.
        nonce = server.dpop_nonce()
        proof = key.proof(
            "GET", server.api_url + "items", access_token=token.access_token, nonce=nonce
        )
        headers = {"Authorization": token.authorization, "DPoP": proof}
        assert requests.get(server.api_url + "items?x=1", headers=headers, timeout=5).ok


def test_the_next_grant_uses_the_nonce_it_was_given_without_a_retry() -> None:
    with LocalAuthServer(dpop_nonce=True) as server:
        refresher = ClientCredentialsRefresher(server.token_url, "client", "secret", dpop=True)
        first = refresher.new_token()
        refresher(first)
        assert server.stats().token_requests == 3  # a retry for the first grant only


@pytest.mark.timeout(30)
def test_a_server_that_asks_for_a_nonce_forever_costs_one_retry() -> None:
    with LocalAuthServer() as server:
        body = json.dumps({"error": "use_dpop_nonce", "error_description": "nonce is required"})
        server.fail_token_endpoint(
            400,
            body=body.encode(),
            content_type="application/json",
            headers={"DPoP-Nonce": "always-new"},
            times=50,
        )
        refresher = OAuth2Refresher(server.token_url, "client", "secret", dpop=True, retries=5)
        with pytest.raises(RefreshFailed, match="nonce again, after the one retry") as caught:
            refresher(Token(ACCESS, refresh_token="rt-Pq4Ns7Wd"))
        assert not isinstance(caught.value, LoginRequired)
        assert server.stats().token_requests == 2


def canned_token(server: LocalAuthServer, token_type: str) -> None:
    """Make the token endpoint answer its next request 200 with a token of ``token_type``."""
    body = json.dumps({"access_token": ACCESS, "token_type": token_type, "expires_in": 60})
    server.fail_token_endpoint(200, body=body.encode(), content_type="application/json")


def test_a_bearer_token_answered_to_a_dpop_request_is_an_error_that_says_so(
    server: LocalAuthServer,
) -> None:
    canned_token(server, "Bearer")
    refresher = ClientCredentialsRefresher(server.token_url, "client", "secret", dpop=True)
    with pytest.raises(ClientRejected, match=r"not DPoP-bound \(token_type 'Bearer'"):
        refresher.new_token()


def test_a_dpop_token_answered_without_a_proof_is_an_error_that_says_so(
    server: LocalAuthServer,
) -> None:
    canned_token(server, "DPoP")
    refresher = ClientCredentialsRefresher(server.token_url, "client", "secret")
    with pytest.raises(ClientRejected, match="no DPoP proof was sent; pass dpop=True"):
        refresher.new_token()


def test_a_public_client_refreshes_with_the_key_its_token_is_stored_with() -> None:
    key = DPoPKey.generate()
    with LocalAuthServer(clients=PUBLIC) as server:
        refresher = OAuth2Refresher(server.token_url, "public", dpop=True)
        token = dpop_grant(server, key, "public")
        for _ in range(3):
            token = refresher(token)
            assert key_of(token) == key
            assert token.is_dpop
        assert [proof.jkt for proof in server.dpop_proofs()] == [key.jkt] * 3


def test_an_invalid_grant_about_a_wrong_key_is_not_a_dead_grant() -> None:
    """oidc-provider answers "grant request is invalid" to a public client's proof signed with
    another key than its refresh token's: that must not be read as a refused refresh token,
    which would send every process sharing it to log in again."""
    key = DPoPKey.generate()
    with LocalAuthServer(clients=PUBLIC) as server:
        refresher = OAuth2Refresher(server.token_url, "public", dpop=True)
        unkeyed = dpop_grant(server, key, "public", stored=False)
        with pytest.raises(ClientRejected, match="refused the DPoP proof, not the grant") as caught:
            refresher(unkeyed)
        assert "came without the key it is bound to" in str(caught.value)
        assert "grant request is invalid" in str(caught.value)
        assert server.dpop_proofs()[-1].problem == "failed jkt verification"
        # The grant lives on: its own key refreshes it.
        keyed = replace(unkeyed, dpop_key=key.private_pem())
        assert refresher(keyed).is_dpop


def jwt_access_token(jkt: str) -> str:
    """An access token that is a JWT bound to the key ``jkt`` (as some servers issue)."""
    return jwt.encode({"cnf": {"jkt": jkt}, "exp": time.time() + 60}, "k" * 32, algorithm="HS256")


@pytest.mark.parametrize(
    ("description", "previous", "which"),
    [
        ("DPoP proof JWT Replay detected", {}, "the server's description names the proof"),
        ("grant request is invalid", {"cnf": "other-jkt"}, "but the token is bound to other-jkt"),
    ],
)
def test_an_invalid_grant_that_says_or_shows_it_is_the_proof_is_not_a_dead_grant(
    server: LocalAuthServer, description: str, previous: dict[str, str], which: str
) -> None:
    body = json.dumps({"error": "invalid_grant", "error_description": description}).encode()
    server.fail_token_endpoint(400, body=body, content_type="application/json")
    key = DPoPKey.generate()
    access = jwt_access_token(previous["cnf"]) if previous else ACCESS
    token = Token(access, "DPoP", "rt-Xw3Lq8Zn", dpop_key=key.private_pem())
    with pytest.raises(ClientRejected, match="refused the DPoP proof, not the grant") as caught:
        OAuth2Refresher(server.token_url, "client", "secret", dpop=True)(token)
    assert which in str(caught.value)
    assert caught.value.error == "invalid_grant"


def test_a_dpop_token_refreshed_without_a_proof_is_not_a_dead_grant() -> None:
    with LocalAuthServer(dpop=True) as server:
        token = Token.from_response(server.issue_token(dpop_jkt="x"), requested_at=time.time())
        with pytest.raises(ClientRejected, match="carried no proof; pass dpop=True"):
            OAuth2Refresher(server.token_url, "client", "secret")(token)


def test_an_invalid_grant_for_a_dead_refresh_token_is_still_login_required() -> None:
    key = DPoPKey.generate()
    with LocalAuthServer(clients=PUBLIC) as server:
        token = dpop_grant(server, key, "public")
        server.revoke_all()
        with pytest.raises(LoginRequired, match="rejected the refresh token"):
            OAuth2Refresher(server.token_url, "public", dpop=True)(token)


def test_an_invalid_proof_is_a_rejected_client(server: LocalAuthServer) -> None:
    server.set_clock_offset(1000)  # the proofs' iat is too old for the server
    refresher = ClientCredentialsRefresher(server.token_url, "client", "secret", dpop=True)
    with pytest.raises(ClientRejected, match="the server found the proof invalid"):
        refresher.new_token()


# ------------------------------------------------------------------ secrecy


def test_the_private_key_never_shows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = key_file(tmp_path)
    key = DPoPKey.from_file(path)
    with LocalAuthServer(dpop_nonce=True) as server:
        client = OAuthClient(server.token_url, "client", "secret", dpop=True, dpop_key=path)
        token = client.grant({"grant_type": "client_credentials"}, resend_safe=True)
        canned_token(server, "Bearer")
        with pytest.raises(ClientRejected) as caught:
            client.grant({"grant_type": "client_credentials"}, resend_safe=True)
    error = caught.value
    assert key_of(token) == key
    assert_hidden(
        key,
        repr(key),
        str(key),
        repr(client),
        repr(token),
        str(token),
        str(error),
        repr(error),
        pickle.dumps(error),
        caplog.text,
        "".join(str(proof) for proof in server.dpop_proofs()),
    )


# ------------------------------------------------------------------ the key with the token

# Refreshes the token in job["store"] (a token file, or job["redis"] and job["key"]) with a
# DPoP refresher, stores the new one, and prints the thumbprint of the key it carries.
REFRESH_IN_ANOTHER_PROCESS = """
import refreshing_session as rs
from refreshing_session.dpop import key_of
store = (rs.RedisTokenStore(job["redis"], job["key"]) if "redis" in job
         else rs.TokenFile(job["file"]))
snapshot = store.read()
refresher = rs.OAuth2Refresher(job["token_url"], "public", dpop=True)
new = refresher(snapshot.token)
store.write(new)
print(key_of(new).jkt)
"""


def refresh_elsewhere(job: Mapping[str, object]) -> str:
    """Run REFRESH_IN_ANOTHER_PROCESS in a fresh interpreter; return what it printed."""
    return run_in_processes(REFRESH_IN_ANOTHER_PROCESS, 1, dict(job))[0]


@pytest.mark.timeout(60)
def test_the_key_is_stored_with_the_token_in_a_private_file_and_used_by_another_process(
    tmp_path: Path,
) -> None:
    with LocalAuthServer(clients=PUBLIC, dpop_nonce=True) as server:
        key = DPoPKey.generate()
        path = tmp_path / "token.json"
        TokenFile(path).write(dpop_grant(server, key, "public"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text())["dpop_key"] == key.private_pem()
        job = {"file": str(path), "token_url": server.token_url}
        assert refresh_elsewhere(job) == key.jkt
        assert refresh_elsewhere(job) == key.jkt
        stored = TokenFile(path).read()
        assert stored is not None
        assert key_of(stored.token) == key
        assert stored.token.is_dpop
        accepted = [proof for proof in server.dpop_proofs() if proof.problem is None]
        assert [proof.jkt for proof in accepted] == [key.jkt, key.jkt]
        assert server.stats().refreshes == 2
        assert server.stats().invalid_grants == 0


@pytest.mark.timeout(60)
def test_the_key_is_stored_with_the_token_in_redis_and_used_by_another_process(
    redis_server: RedisServer,
) -> None:
    from refreshing_session import RedisTokenStore

    with LocalAuthServer(clients=PUBLIC) as server:
        key = DPoPKey.generate()
        store = RedisTokenStore(redis_server.url, "dpop-test")
        store.write(dpop_grant(server, key, "public"))
        job = {"redis": redis_server.url, "key": "dpop-test", "token_url": server.token_url}
        assert refresh_elsewhere(job) == key.jkt
        snapshot = RedisTokenStore(redis_server.url, "dpop-test").read()
        assert snapshot is not None
        assert key_of(snapshot.token) == key
        assert [proof.jkt for proof in server.dpop_proofs()] == [key.jkt]
        assert server.stats().refreshes == 1
