"""DPoP helpers that several test files share: :func:`ath`, the access token hash a proof must
carry, computed here from RFC 9449 apart from the library's own code, so that it can judge it."""

from __future__ import annotations

import base64
import hashlib


def ath(access_token: str) -> str:
    """The ``ath`` a proof for ``access_token`` must carry: its SHA-256, base64url, unpadded."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
