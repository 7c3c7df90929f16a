"""What the storms against node oidc-provider check when they run with DPoP (RFC 9449).

The provider requires a nonce in every proof (server.mjs), so each process's first token request
and each caller's first API request meet a nonce challenge, answered by one replay. The storm
programs (tests/support/processes.py, tests/test_front_end_storm.py) build their refresher from
the job; :func:`with_dpop` makes them pass ``dpop=job["dpop"]`` too.
"""

from __future__ import annotations

from collections import Counter

from refreshing_session.dpop import DPoPKey

from .conftest import Stats

NONCE = "use_dpop_nonce"


def dpop_figures(seen: Stats, key: DPoPKey) -> dict[str, object]:
    """The DPoP part of a storm's figures: the server's nonce challenges, and how many proofs
    it received signed by the login's key (its thumbprint), by any other, and with a ``jti``
    seen before."""
    proofs = Counter(seen.dpop_proofs)
    return {
        "token_nonce_challenges": seen.token_errors[NONCE],
        "api_nonce_challenges": seen.userinfo_errors[NONCE],
        "api_errors": dict(seen.userinfo_error_details),
        "proofs_with_the_login_key": proofs.pop(key.jkt, 0),
        "proofs_with_other_keys": sum(proofs.values()),
        "jti_repeated": seen.dpop_jti_repeated,
    }


def assert_dpop_storm(
    seen: Stats, key: DPoPKey, *, answered: int, processes: int, callers: int
) -> None:
    """Check the DPoP side of a storm that ``processes`` processes of ``callers`` callers in
    all ran, whose callers saw ``answered`` 200s and nothing else: every token request and API
    request carried a proof signed by ``key`` (the one the login stored with the token), no
    proof's ``jti`` came twice, each token request refused for a nonce was sent once more and
    granted, at most one per process (a nonce lasts minutes, and a process's refresher keeps
    it), each API answer the callers saw was the userinfo endpoint's 200 (after at most one
    nonce challenge: the library gives a second one back to the caller, who saw none), and
    at most one challenge met each caller."""
    figures = dpop_figures(seen, key)
    refreshes = seen.token_successes["refresh_token"]
    api_requests = seen.userinfo_ok + sum(seen.userinfo_errors.values())
    assert figures["proofs_with_other_keys"] == 0, figures
    assert figures["proofs_with_the_login_key"] == seen.token_calls + api_requests, figures
    assert figures["jti_repeated"] == 0, figures
    assert set(seen.token_errors) <= {NONCE}, figures
    assert seen.token_requests == Counter({"refresh_token": refreshes + seen.token_errors[NONCE]})
    # (The token endpoint may send none: a process's refresher and front ends share one
    # memory of nonces, and the provider's API and token endpoint share one origin and nonce.)
    assert seen.token_errors[NONCE] <= min(processes, refreshes), figures
    assert seen.userinfo_ok == answered, figures
    # invalid_token: a token the provider ended early (whole seconds), cured by a refresh.
    assert set(seen.userinfo_errors) <= {NONCE, "invalid_token"}, figures
    assert 0 < seen.userinfo_errors[NONCE] <= callers, figures
