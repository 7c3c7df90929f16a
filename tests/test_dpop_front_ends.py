"""DPoP (RFC 9449) over every front end: requests, httpx sync and async, and RefreshingAuth on
plain httpx clients. A DPoP token goes as ``Authorization: DPoP <token>`` with a fresh proof of
the key stored with it; a nonce challenge costs one replay, never a refresh; a server that asks
for nonces forever costs one replay per request; an ``invalid_token`` follows the 401 rules; a
streamed body is never sent twice; redirect hops get proofs of their own, and a hop outside the
prefixes gets neither the token nor a proof; a token bound to another key is an error that says
so.

The servers say what was sent: LocalAuthServer (DPoP on, nonces required) checks and records
every proof; :class:`DPoPRecorder` (the prefix attacker's server of test_attack_prefixes, which
can also ask for nonces forever) plays the resource server or the attacker and keeps every
``Authorization`` scheme and ``DPoP`` header it received. Each proof is decoded here, its
signature checked with the key it embeds, apart from the library's own code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from itertools import count
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal

from refreshing_session import ClientRejected, OAuth2Refresher, TokenFile
from refreshing_session.dpop import DPoPKey, key_of
from refreshing_session.guard import MAX_WASTED
from refreshing_session.testing import DPoPProof, LocalAuthServer

from .conftest import expire, stored
from .support.dpop import ath, dpop_grant
from .support.front_end_checks import check_a_401_no_refresh_cures_costs_one_refresh_per_token
from .support.front_ends import ALL, HOP_BY_HOP, ClientFactory, client_factory
from .support.hostile import served
from .test_attack_prefixes import HostileServer, Seen
from .test_dpop import decoded, jwt_access_token

NONCE_CHALLENGE = 'DPoP error="use_dpop_nonce", error_description="nonce required"'
# RefreshingAuth sees only a request's first hop: httpx builds the redirect hops itself and
# carries every header on but Authorization (dropped across origins), the DPoP proof included.
AUTH_SEES_ONE_HOP = pytest.mark.xfail(
    strict=True,
    reason="httpx copies the first hop's DPoP header onto every redirect hop; an httpx.Auth "
    "never sees those hops",
)


@pytest.fixture
def server() -> Iterator[LocalAuthServer]:
    """The authorization server and API, as oidc-provider with DPoP on and nonces required."""
    with LocalAuthServer(dpop=True, dpop_nonce=True) as running:
        yield running


@pytest.fixture
def key() -> DPoPKey:
    return DPoPKey.generate()


@pytest.fixture
def token_file(tmp_path: Path, server: LocalAuthServer, key: DPoPKey) -> Path:
    path = tmp_path / "token.json"
    TokenFile(path).write(dpop_grant(server, key))
    return path


@pytest.fixture
def make_client(
    kind: str, portal: BlockingPortal, server: LocalAuthServer, token_file: Path
) -> Iterator[ClientFactory]:
    refresher = OAuth2Refresher(server.token_url, "client", "secret", dpop=True)
    yield from client_factory(
        kind,
        portal,
        {"prefixes": server.api_url, "token_file": token_file, "refresher": refresher},
    )


def api_proofs(server: LocalAuthServer) -> list[DPoPProof]:
    return [proof for proof in server.dpop_proofs() if proof.endpoint == "api"]


# --- the recording server: a resource server, or the attacker --------------------------------


class DPoPRecorder(HostileServer):
    """The prefix attacker's server (it records every request, with the DPoP headers it carried,
    and answers the paths in ``redirects`` with a redirect); with ``nonce_forever``, it answers
    every other path with a 401 nonce challenge carrying a new nonce each time (``n-1``,
    ``n-2``, ...)."""

    def __init__(
        self, redirects: Mapping[str, tuple[int, str]] | None = None, *, nonce_forever: bool = False
    ) -> None:
        self.nonce_forever = nonce_forever
        self._nonces = count(1)
        super().__init__(redirects)

    def answer(self, seen: Seen) -> tuple[int, dict[str, str]]:
        """Record ``seen``; return the redirect or the nonce challenge to answer it with."""
        status, headers = super().answer(seen)
        if not self.nonce_forever or seen.routed in self.redirects:
            return status, headers
        with self._lock:
            nonce = f"n-{next(self._nonces)}"
        return 401, {"WWW-Authenticate": NONCE_CHALLENGE, "DPoP-Nonce": nonce}

    def proofs_outside(self, prefix: str) -> list[str]:
        """The routed paths outside ``prefix`` that received a token or a proof."""
        with self._lock:
            return [
                seen.routed
                for seen in self.seen
                if (seen.scheme or seen.proofs) and not seen.routed.startswith(prefix)
            ]


recorder = served(DPoPRecorder)  # the resource server
attacker = served(DPoPRecorder)  # another origin


# --- a DPoP token at work ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL)
def test_a_dpop_token_goes_with_a_fresh_proof_of_its_key_on_every_request(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, key: DPoPKey, token_file: Path
) -> None:
    client = make_client()
    for _ in range(3):
        assert client.request("GET", server.api_url + "items?page=2#top").status == 200
    proofs = api_proofs(server)
    # The first proof had no nonce and was answered with one; each later one carried it.
    assert [proof.problem for proof in proofs] == ["nonce is required in the DPoP proof"] + [
        None
    ] * 3
    assert (server.stats().api_ok, server.stats().token_requests) == (3, 0)
    expected = {
        "htm": "GET",
        "htu": server.api_url + "items",
        "ath": ath(stored(token_file).access_token),
    }
    for proof in proofs:  # decoded by the server, its signature checked with the key it embeds
        header, claims = proof.header, proof.claims
        assert (header["typ"], header["alg"], "d" in header["jwk"]) == ("dpop+jwt", "ES256", False)
        assert {name: claims[name] for name in expected} == expected
        assert proof.jkt == key.jkt
    assert "nonce" not in proofs[0].claims
    assert {proof.claims["nonce"] for proof in proofs[1:]} == {server.dpop_nonce()}
    assert len({proof.claims["jti"] for proof in proofs}) == 4, "a proof was sent twice"


@pytest.mark.parametrize("kind", ALL)
def test_each_nonce_challenge_costs_one_replay_no_token_call_and_nothing_of_the_guard(
    kind: str, make_client: ClientFactory, server: LocalAuthServer
) -> None:
    """More nonce rotations than the guard allows wasted refreshes: none is counted, so an
    invalid_token afterwards still gets its refresh."""
    client = make_client()
    rounds = MAX_WASTED + 3
    for _ in range(rounds):
        assert client.request("GET", server.api_url + "items").status == 200
        server.rotate_dpop_nonce()
    stats = server.stats()
    assert (stats.dpop_nonce_challenges, stats.api_unauthorized) == (rounds, rounds)
    assert (stats.api_ok, stats.token_requests) == (rounds, 0), "a nonce challenge cost more"
    server.revoke_access_tokens()
    assert client.request("GET", server.api_url + "items").status == 200
    assert server.stats().refreshes == 1


@pytest.mark.parametrize("kind", ALL)
def test_a_server_that_asks_for_a_nonce_forever_costs_one_replay_per_request(
    kind: str, make_client: ClientFactory, server: LocalAuthServer
) -> None:
    with DPoPRecorder(nonce_forever=True) as api:
        client = make_client(prefixes=api.origin + "/api/")
        for _ in range(2):
            answer = client.request("GET", api.origin + "/api/items")
            assert answer.status == 401, "the nonce challenge did not reach the caller"
        assert len(api.seen) == 4, f"{len(api.seen)} requests for 2 calls: a nonce loop"
        nonces = [decoded(seen.proofs[0])[1].get("nonce") for seen in api.seen]
    # Each replay carries the nonce just given; the next call starts with the latest one.
    assert nonces == [None, "n-1", "n-2", "n-3"]
    assert {seen.scheme for seen in api.seen} == {"dpop"}
    assert server.stats().token_requests == 0, "a nonce challenge was taken for a dead token"


@pytest.mark.parametrize("kind", ALL)
def test_an_invalid_token_with_dpop_refreshes_once_and_replays_once_with_the_body(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, key: DPoPKey, token_file: Path
) -> None:
    client = make_client()
    assert client.request("GET", server.api_url + "items").status == 200
    server.revoke_access_tokens()
    answer = client.request("POST", server.api_url + "items", body=b"payload")
    assert (answer.status, answer.json()["body"]) == (200, "payload")
    assert server.stats().refreshes == 1
    renewed = stored(token_file)
    assert (renewed.is_dpop, key_of(renewed)) == (True, key), "the new token lost its key"
    last = api_proofs(server)[-1]
    assert (last.problem, last.jkt, last.claims["htm"]) == (None, key.jkt, "POST")
    assert last.claims["ath"] == ath(renewed.access_token), "the replay's proof is the old token's"


@pytest.mark.parametrize("kind", ALL)
def test_an_invalid_token_that_a_refresh_cannot_fix_costs_one_refresh_per_token(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, key: DPoPKey
) -> None:
    """The guard holds with DPoP as with bearer tokens (an invalid_token is a 401 to refresh),
    and every proof, before the guard's one refresh and after it, is of the stored key."""
    check_a_401_no_refresh_cures_costs_one_refresh_per_token(make_client, server)
    assert {proof.jkt for proof in api_proofs(server)} == {key.jkt}


@pytest.mark.parametrize("kind", ALL)
def test_a_streamed_body_is_never_replayed_for_a_nonce(
    kind: str, make_client: ClientFactory, server: LocalAuthServer
) -> None:
    client = make_client()
    answer = client.request("POST", server.api_url + "upload", chunks=[b"one", b"two"])
    assert answer.status == 401
    assert answer.json()["error"] == "use_dpop_nonce"  # the challenge's body is still readable
    assert (server.stats().api_unauthorized, server.stats().api_ok) == (1, 0)
    # The nonce is remembered all the same: the caller's next try goes through at once.
    answer = client.request("POST", server.api_url + "upload", chunks=[b"one", b"two"])
    assert (answer.status, answer.json()["body"]) == (200, "onetwo")
    assert (server.stats().dpop_nonce_challenges, server.stats().token_requests) == (1, 0)


@pytest.mark.parametrize("kind", ALL)
def test_a_streamed_body_is_never_replayed_after_a_refresh(
    kind: str, make_client: ClientFactory, server: LocalAuthServer
) -> None:
    client = make_client()
    assert client.request("GET", server.api_url + "items").status == 200  # learns the nonce
    server.revoke_access_tokens()
    answer = client.request("POST", server.api_url + "upload", chunks=[b"one", b"two"])
    assert answer.status == 401
    assert (server.stats().refreshes, server.stats().api_ok) == (1, 1)


# --- redirects, hop by hop ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", HOP_BY_HOP)
@pytest.mark.parametrize("status", [302, 307])
def test_each_redirect_hop_inside_the_prefixes_gets_a_proof_for_its_own_url(
    kind: str, status: int, make_client: ClientFactory, recorder: DPoPRecorder, token_file: Path
) -> None:
    recorder.redirects["/api/start"] = (status, "/api/moved?page=2")
    recorder.redirects["/api/moved"] = (status, recorder.origin + "/api/end")
    answer = make_client(prefixes=recorder.origin + "/api/").request(
        "GET", recorder.origin + "/api/start"
    )
    assert (answer.status, answer.redirects) == (200, [status, status])
    assert [seen.routed for seen in recorder.seen] == ["/api/start", "/api/moved", "/api/end"]
    assert all(seen.scheme == "dpop" and len(seen.proofs) == 1 for seen in recorder.seen)
    claims = [decoded(seen.proofs[0])[1] for seen in recorder.seen]
    assert [each["htu"] for each in claims] == [
        recorder.origin + seen.routed for seen in recorder.seen
    ]
    assert {each["ath"] for each in claims} == {ath(stored(token_file).access_token)}
    assert len({each["jti"] for each in claims}) == 3, "a hop reused another hop's proof"


@pytest.mark.parametrize(
    "kind", [*HOP_BY_HOP, *(pytest.param(k, marks=AUTH_SEES_ONE_HOP) for k in ALL[3:])]
)
@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_to_another_origin_gets_neither_the_token_nor_a_proof(
    kind: str,
    status: int,
    make_client: ClientFactory,
    recorder: DPoPRecorder,
    attacker: DPoPRecorder,
) -> None:
    recorder.redirects["/api/start"] = (status, attacker.origin + "/api/steal")
    make_client(prefixes=recorder.origin + "/api/").request("GET", recorder.origin + "/api/start")
    assert [seen.routed for seen in attacker.seen] == ["/api/steal"], "the hop never came"
    assert attacker.seen[0].scheme is None, "the token went to another origin"
    assert len(attacker.seen[0].proofs) == 0, "a DPoP proof went to another origin"


@pytest.mark.parametrize("kind", HOP_BY_HOP)
@pytest.mark.parametrize("target", ["/pub/steal", "/api/../pub/steal", "/api/%2e%2e/pub/steal"])
def test_a_redirect_out_of_the_prefixes_on_the_same_origin_gets_neither_token_nor_proof(
    kind: str, target: str, make_client: ClientFactory, recorder: DPoPRecorder
) -> None:
    recorder.redirects["/api/start"] = (307, recorder.origin + target)
    make_client(prefixes=recorder.origin + "/api/").request("GET", recorder.origin + "/api/start")
    assert [seen.routed for seen in recorder.seen] == ["/api/start", "/pub/steal"]
    assert recorder.proofs_outside("/api/") == [], "a token or a proof reached /pub/"


# --- a token bound to another key ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL)
def test_a_token_answered_bound_to_another_key_is_an_error_that_says_so(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, key: DPoPKey, token_file: Path
) -> None:
    """The token endpoint answers a JWT access token whose cnf.jkt names another key than the
    proof's: the exchange refuses it, and the front end's caller gets that error."""
    other = DPoPKey.generate()
    expire(token_file)
    before = token_file.read_bytes()
    body = {"access_token": jwt_access_token(other.jkt), "token_type": "DPoP", "expires_in": 60}
    server.fail_token_endpoint(200, body=json.dumps(body).encode(), content_type="application/json")
    with pytest.raises(ClientRejected) as raised:
        make_client().request("GET", server.api_url + "items")
    assert f"is bound to the key {other.jkt}, not to the proof's key {key.jkt}" in str(raised.value)
    assert token_file.read_bytes() == before, "the mis-bound token was stored"
    assert server.stats().api_ok == 0


@pytest.mark.parametrize("kind", ALL)
def test_a_stored_token_bound_to_another_key_is_cured_by_one_refresh_binding_it_to_the_key(
    kind: str, make_client: ClientFactory, server: LocalAuthServer, key: DPoPKey, tmp_path: Path
) -> None:
    """A confidential client's token stored with a key it is not bound to: the API refuses the
    proof (invalid_token, failed jkt verification), and the one refresh that follows binds the
    new token to the stored key, as oidc-provider does for a confidential client."""
    path = tmp_path / "mismatched.json"
    TokenFile(path).write(dpop_grant(server, key, bound_to=DPoPKey.generate().jkt))
    answer = make_client(token_file=path).request("GET", server.api_url + "items")
    assert answer.status == 200
    assert server.stats().refreshes == 1
    assert key_of(stored(path)) == key
    assert [proof.problem for proof in api_proofs(server) if proof.problem] == [
        "nonce is required in the DPoP proof",
        "failed jkt verification",
    ]
