"""What the storms against node oidc-provider check of what the provider counted, with bearer
tokens and with DPoP (RFC 9449).

With DPoP, the provider requires a nonce in every proof (server.mjs), so each process's first
token request and each caller's first API request meet a nonce challenge, answered by one
replay. The storm programs (tests/support/processes.py, tests/test_front_end_storm.py) build
their refresher from the job; ``with_dpop`` (tests/test_dpop_storm.py) turns DPoP on in them.
"""

from __future__ import annotations

from collections import Counter

from refreshing_session.dpop import DPoPKey

from ..support.storms import Storm
from .conftest import Stats

NONCE = "use_dpop_nonce"


def provider_figures(seen: Stats, key: DPoPKey | None) -> dict[str, object]:
    """What the provider counted during a storm (``seen``): 401s at the API, token endpoint
    calls, refreshes granted, refresh tokens presented again, reuse detected; with ``key``
    (a DPoP storm's), the DPoP figures too (:func:`dpop_figures`)."""
    return {
        "api_401s": seen.api_unauthorized,
        "token_calls": seen.token_calls,
        "refreshes": seen.token_successes["refresh_token"],
        "reuse_detections": seen.reuse_detections,
        "presented_again": seen.refresh_tokens_presented_again,
        **(dpop_figures(seen, key) if key else {}),
    }


def assert_provider_storm(
    seen: Stats,
    key: DPoPKey | None,
    storm: Storm,
    figures: dict[str, object],
    *,
    processes: int,
    callers: int,
) -> None:
    """Check what the provider counted (``seen``) during ``storm``, which ``processes``
    processes of ``callers`` callers in all ran: it granted 3 refreshes at least and at most
    one per token that came due, no refresh token came twice and no grant was revoked; without
    a DPoP ``key``, every token request was a granted refresh; with one, what
    :func:`assert_dpop_storm` checks. Failures quote ``figures``."""
    refreshes = seen.token_successes["refresh_token"]  # DPoP: besides the nonce retries
    assert 3 <= refreshes <= storm.tokens_due, figures
    seen.assert_no_reuse()
    if key is None:
        assert seen.token_requests == Counter({"refresh_token": refreshes}), figures
        assert seen.token_errors == Counter(), figures
        return
    answered = storm.outcomes["200"]
    assert_dpop_storm(seen, key, answered=answered, processes=processes, callers=callers)


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
