"""The common path with DPoP: the cost of one API request with a valid DPoP-bound token, against
the same request with a bearer token.

A DPoP request carries a new proof, a JWT signed for that very request (RFC 9449 section 7), so
it costs one signature more than a bearer request; this part puts a price on it per request,
for ES256 (an EC P-256 key, the default) and EdDSA (an Ed25519 key). Three RefreshingSessions,
alike but for the token each one's store holds (bearer, bound to a P-256 key, bound to an
Ed25519 key), send GET requests to one loopback LocalAuthServer in its own process, which
checks every proof. They take turns round after round as in :mod:`benchmarks.overhead`, and
each round's DPoP figures are divided by the bearer session's of the same round. Over loopback
the server's check of each proof slows the DPoP sessions down, and a client that waits longer
for its answers spends more CPU on waking up; so, as in :mod:`benchmarks.overhead`, a second
series stubs the transport out (a canned 200), leaving only the clients' own work: there the
difference is the price of a proof. A third series times the signer alone
(:meth:`DPoPKey.proof`, the algorithms taking turns too). The machine's load before and after
the part is recorded with it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from refreshing_session import OAuth2Refresher, RefreshingSession, Token, TokenFile
from refreshing_session.dpop import DPoPKey

from .authserver import RunningServer, api_server
from .overhead import Batch, ClientCost, cost, interleaved, stubbed_transport
from .settings import Plan
from .stats import Spread, load_average

_TOKEN_TTL = 3600.0  # no refresh during the measurement
BEARER = "bearer"
# The DPoP sessions by key, with the algorithm of their key.
ALGORITHMS = {"dpop_es256": "ES256", "dpop_eddsa": "EdDSA"}
LABELS = {
    BEARER: "RefreshingSession, bearer token",
    "dpop_es256": "RefreshingSession, DPoP (ES256)",
    "dpop_eddsa": "RefreshingSession, DPoP (EdDSA)",
}


@dataclass(frozen=True)
class DPoPOverheadResult:
    """The DPoP common path's outcome: per client over loopback and with the transport stubbed
    out (ratios against the bearer session), the client CPU a DPoP request takes above a bearer
    one in each, and the CPU one proof's signature takes, by algorithm; in microseconds,
    medians and quartiles over rounds."""

    rounds: int
    requests_per_round: int
    clients: list[ClientCost]  # the bearer session first; "vs_plain" means against it here
    extra_cpu_us: dict[str, Spread]  # per request, above the bearer session's, by client key
    stubbed_requests_per_round: int
    stubbed: list[ClientCost]  # the same, with the transport stubbed out
    stubbed_extra_cpu_us: dict[str, Spread]
    proofs_per_round: int
    proof_cpu_us: dict[str, Spread]  # to sign one proof, by algorithm
    load_before: float | None
    load_after: float | None


def run_dpop_overhead(plan: Plan, progress: Callable[[str], None]) -> DPoPOverheadResult:
    """Measure the bearer and the two DPoP sessions over the plan's ``dpop_rounds``
    interleaved rounds of ``dpop_requests`` requests each, then of ``stubbed_requests`` with
    the transport stubbed out, then the signer alone over ``dpop_rounds`` rounds of
    ``dpop_proofs`` proofs per algorithm."""
    rounds, requests, proofs = plan.dpop_rounds, plan.dpop_requests, plan.dpop_proofs
    stubbed_requests = plan.stubbed_requests
    load_before = load_average()
    keys = {client: DPoPKey.generate(algorithm) for client, algorithm in ALGORITHMS.items()}
    with (
        tempfile.TemporaryDirectory(prefix="refreshing-session-bench-dpop-") as folder,
        api_server(_TOKEN_TTL, [key.jkt for key in keys.values()]) as server,
    ):
        url = server.api_url + "items"
        sessions = _sessions(server, keys, Path(folder))
        try:
            batches = interleaved(sessions, url, rounds, requests, progress)
            with stubbed_transport():
                stubbed = interleaved(sessions, url, rounds, stubbed_requests, progress)
        finally:
            for session in sessions.values():
                session.close()
    token = str(server.dpop_grants[0]["access_token"])
    signing = _signing({ALGORITHMS[c]: key for c, key in keys.items()}, url, token, rounds, proofs)
    return DPoPOverheadResult(
        rounds=rounds,
        requests_per_round=requests,
        clients=_costs(batches),
        extra_cpu_us=_extra_cpu(batches),
        stubbed_requests_per_round=stubbed_requests,
        stubbed=_costs(stubbed),
        stubbed_extra_cpu_us=_extra_cpu(stubbed),
        proofs_per_round=proofs,
        proof_cpu_us=signing,
        load_before=load_before,
        load_after=load_average(),
    )


def _sessions(
    server: RunningServer, keys: Mapping[str, DPoPKey], folder: Path
) -> dict[str, RefreshingSession]:
    """The three sessions, each on a token file of its own holding its grant (a DPoP grant
    stored with its key, as a login with DPoP leaves it)."""
    grants: dict[str, tuple[Mapping[str, object], DPoPKey | None]] = {
        BEARER: (server.grant, None),
        **{
            client: (grant, keys[client])
            for client, grant in zip(ALGORITHMS, server.dpop_grants, strict=True)
        },
    }
    sessions = {}
    for client, (grant, key) in grants.items():
        store = TokenFile(folder / f"{client}.json")
        token = Token.from_response(grant, requested_at=time.time())
        store.write(token if key is None else replace(token, dpop_key=key.private_pem()))
        refresher = OAuth2Refresher(server.token_url, "client", "secret", dpop=key is not None)
        sessions[client] = RefreshingSession(server.api_url, store=store, refresher=refresher)
    return sessions


def _costs(batches: Mapping[str, list[Batch]]) -> list[ClientCost]:
    """Each session's cost, against the bearer session's of the same rounds."""
    return [cost(client, LABELS[client], batches[client], batches[BEARER]) for client in LABELS]


def _extra_cpu(batches: Mapping[str, list[Batch]]) -> dict[str, Spread]:
    """Each DPoP session's client CPU per request above the bearer session's of the same
    round, in µs."""
    return {
        client: Spread.of(
            [
                1e6 * (mine.cpu / mine.requests - bearer.cpu / bearer.requests)
                for mine, bearer in zip(batches[client], batches[BEARER], strict=True)
            ]
        )
        for client in ALGORITHMS
    }


def _signing(
    keys: Mapping[str, DPoPKey], url: str, access_token: str, rounds: int, proofs: int
) -> dict[str, Spread]:
    """The CPU one resource-request proof takes to sign, in µs, by algorithm: ``rounds``
    rounds of ``proofs`` proofs, the algorithms taking turns."""
    order = list(keys)
    times: dict[str, list[float]] = {algorithm: [] for algorithm in order}
    for round_number in range(rounds):
        shift = round_number % len(order)
        for algorithm in order[shift:] + order[:shift]:
            key = keys[algorithm]
            started = time.process_time()
            for _ in range(proofs):
                key.proof("GET", url, access_token=access_token)
            times[algorithm].append(1e6 * (time.process_time() - started) / proofs)
    return {algorithm: Spread.of(values) for algorithm, values in times.items()}
