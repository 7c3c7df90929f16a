"""The warning for a migration that fails silently: credentials of the caller's, set once for
every request (``session.headers["Authorization"]``, ``session.auth``, an httpx client's
``headers=`` or ``auth=``), keep the refreshed token off the prefixes. The caller's credentials
win by design, so without a word every API request would go out with the old, hard-coded one.
"""

from __future__ import annotations

import logging

from .urls import Prefixes

logger = logging.getLogger(__name__)


class ShadowedToken:
    """Warns, once per prefix, that a client-wide credential keeps the token off ``prefixes``."""

    def __init__(self, prefixes: Prefixes) -> None:
        self._prefixes = prefixes
        self._warned: set[str] = set()

    def check(self, url: str, setting: str) -> None:
        """Warn (at WARNING) if ``url`` is under a prefix not yet warned about: ``setting``,
        the client-wide credential that the request carries, keeps the token off it."""
        prefix = self._prefixes.prefix_for(url)
        if prefix is None or prefix in self._warned:
            return
        self._warned.add(prefix)
        logger.warning(
            "%s is set, so requests under %s carry it instead of the refreshed token, and a "
            "401 there is not refreshed for: delete the line that sets %s (the token is added "
            "for you)",
            setting,
            prefix,
            setting,
        )
