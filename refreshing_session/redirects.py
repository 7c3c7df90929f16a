"""The redirect rule shared by every front end: which redirect hops must not get the token
even under the prefixes.

A redirect may steer a request that changes something (a POST, say) from a page outside the
prefixes, or from another origin, into the API. The token must not follow it there: the
request was not the caller's to the API, and the page that redirected it chose its target. Safe
methods (GET, HEAD) may follow, as a link may.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .adapter import Prefixes

# Methods a redirect from outside the prefixes may carry into them with the token.
SAFE_METHODS = frozenset({"GET", "HEAD"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def steered_in(prefixes: Prefixes, method: str, origin: str, url: str) -> bool:
    """Whether a redirect from the URL ``origin`` brings ``method``, one that may change
    something, to ``url`` from outside ``prefixes`` or from another origin."""
    return method.upper() not in SAFE_METHODS and (
        not prefixes.match(origin) or crosses_origin(origin, url)
    )


def crosses_origin(old: str, new: str) -> bool:
    """Whether a redirect from ``old`` to ``new`` leaves the origin (scheme, host, port); an
    upgrade from http on port 80 to https on port 443 of the same host does not. As requests'
    ``Session.should_strip_auth`` decides; a URL whose origin cannot be read crosses."""
    before, after = _origin(old), _origin(new)
    if before is None or after is None:
        return True
    upgrade = before == ("http", after[1], 80) and after[::2] == ("https", 443)
    return before != after and not upgrade


def _origin(url: str) -> tuple[str, str, int | None] | None:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    return (scheme, parts.hostname, port) if parts.hostname else None
