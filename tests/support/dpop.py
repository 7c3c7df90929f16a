"""DPoP helpers that several test files share: :func:`ath`, the access token hash a proof must
carry, computed here from RFC 9449 apart from the library's own code, so that it can judge it;
and :func:`dpop_grant`, a DPoP login at LocalAuthServer."""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import replace

from refreshing_session import Token
from refreshing_session.dpop import DPoPKey
from refreshing_session.testing import LocalAuthServer


def ath(access_token: str) -> str:
    """The ``ath`` a proof for ``access_token`` must carry: its SHA-256, base64url, unpadded."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def dpop_grant(
    server: LocalAuthServer,
    key: DPoPKey,
    client_id: str = "client",
    *,
    bound_to: str = "",
    stored: bool = True,
) -> Token:
    """Log ``client_id`` in at ``server`` with DPoP; return its new token, bound to ``key`` (or
    to the key whose thumbprint is ``bound_to``) and stored with ``key`` (or, unless ``stored``,
    with no key)."""
    requested_at = time.time()
    answer = server.issue_token(client_id, dpop_jkt=bound_to or key.jkt)
    token = Token.from_response(answer, requested_at=requested_at)
    assert token.is_dpop, "the server answered a DPoP login with a bearer token"
    return replace(token, dpop_key=key.private_pem() if stored else None)
