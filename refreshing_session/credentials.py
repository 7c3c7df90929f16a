"""What a request under the prefixes carries, and what its answer says of it.

A bearer token goes as ``Authorization: Bearer <token>``. A DPoP token (RFC 9449) goes as
``Authorization: DPoP <token>`` with a fresh proof for the hop's own method and URL, signed by
the key the token is bound to (stored with it, or the refresher's ``dpop_key`` file's), carrying
the latest nonce the hop's origin sent. An answer is *accepted*, *refused* in a way a new token
may cure (see :mod:`refreshing_session.guard`), or a *nonce* challenge (RFC 9449 section 9),
which a replay with the nonce answers: no refresh, and never counted by the guard.

Transport-neutral: every front end sends what :meth:`Credentials.headers` gives and hands the
answer's status and headers to :meth:`Credentials.verdict`, both through the one flow.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping

from .dpop import DPoPKey, Nonces, asks_for_nonce, key_of
from .errors import ClientRejected
from .guard import refresh_may_cure
from .token import Token


class Verdict(enum.Enum):
    """What an answer says of the credentials it was sent with."""

    ACCEPTED = "accepted"  # anything but the two below: the token worked
    REFUSED = "refused"  # a status of refresh_on that a new token may cure
    NONCE = "nonce"  # a DPoP nonce challenge: send again with the nonce it carries


class Credentials:
    """The credentials of one front end: ``refresh_on``, the statuses that may mean the token
    died; ``fallback_key`` gives the key for a DPoP token stored without one (the refresher's
    ``dpop_key`` file's). Remembers each origin's latest DPoP nonce in ``nonces``: a memory of
    its own by default, or the refresher's, so that an origin that serves both the token
    endpoint and the API challenges a process once."""

    def __init__(
        self,
        refresh_on: Collection[int],
        fallback_key: Callable[[], DPoPKey | None] = lambda: None,
        nonces: Nonces | None = None,
    ) -> None:
        self.refresh_on = refresh_on
        self.nonces = Nonces() if nonces is None else nonces
        self._fallback_key = fallback_key

    def headers(self, token: Token, method: str, url: str) -> dict[str, str]:
        """The headers that carry ``token`` on a ``method`` request to ``url``: Authorization,
        and for a DPoP token a new ``DPoP`` proof with the latest nonce the origin sent.
        Raises ClientRejected when a DPoP token has no key to sign with."""
        if not token.is_dpop:
            return {"Authorization": token.authorization}
        key = key_of(token) or self._fallback_key()
        if key is None:
            raise ClientRejected(
                "the token is DPoP-bound but no key is stored with it; give the refresher "
                "dpop_key= (the key it is bound to) or log in again with DPoP"
            )
        proof = key.proof(
            method,
            url,
            access_token=token.access_token,
            nonce=self.nonces.get(url),
        )
        return {"Authorization": token.authorization, "DPoP": proof}

    def verdict(self, url: str, status: int, headers: Mapping[str, str]) -> Verdict:
        """What the answer (``status``, ``headers``) from ``url`` says of its credentials; a
        nonce it carries is remembered for the origin's next proofs."""
        self.nonces.remember(url, headers)
        if refresh_may_cure(status, headers, self.refresh_on):
            return Verdict.REFUSED
        if asks_for_nonce(status, headers):
            return Verdict.NONCE
        return Verdict.ACCEPTED

    def __repr__(self) -> str:
        return f"Credentials(refresh_on={sorted(self.refresh_on)!r})"
