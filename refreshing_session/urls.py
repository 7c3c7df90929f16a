"""Which URLs get the token: every URL rule of the package, each written once.

- :class:`Prefixes` says whether a URL lies under the API's prefixes, however a server may read
  its path (dot segments, ``%2e``, servlet ``;parameters``, ``%2F``, empty segments).
- :func:`steered_in` says whether a redirect hop must not get the token even under the
  prefixes: a request that changes something (a POST, say), steered into the API from a page
  outside the prefixes or from another origin. Safe methods (GET, HEAD) may follow, as a link
  may.
- :func:`check_endpoint_url` refuses an endpoint or prefix that is not an absolute https URL
  (plain http only on the loopback interface, or where the caller allows it).

Every front end and the authorization-server client use these; none has rules of its own.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

# The schemes that may carry the token, with their default ports.
DEFAULT_PORTS = {"http": 80, "https": 443}
# Methods a redirect from outside the prefixes may carry into them with the token.
SAFE_METHODS = frozenset({"GET", "HEAD"})
# Percent-encoded slashes, which lenient servers read as "/".
_ENCODED_SLASH = re.compile("%2f", re.IGNORECASE)

_Origin = tuple[str, str, int]


class Prefixes:
    """The URL prefixes that receive the token.

    A URL matches when its scheme, host and port equal a prefix's, and its path is the
    prefix's path or lies below it at a ``/`` boundary, however a server reads the path: with
    its dot segments removed (``%2e`` read as ``.``, and a segment's ``;parameters`` ignored, as
    Tomcat, Jetty and Spring route ``/api/..;/pub/``), and also with ``%2F`` read as ``/`` and
    empty segments merged. Text tricks such as ``https://api.example.com.evil.test/``,
    ``https://api.example.com@evil.test/`` or ``https://api.example.com/v1/%2e%2e/pub/`` never
    match. Plain http prefixes are refused unless on the loopback interface or
    ``allow_insecure_http`` is set.
    """

    def __init__(self, prefixes: str | Iterable[str], *, allow_insecure_http: bool = False) -> None:
        items = [prefixes] if isinstance(prefixes, str) else list(prefixes)
        if not items:
            raise ValueError("give at least one API prefix, such as 'https://api.example.com/'")
        self._rules = tuple(_rule(prefix, allow_insecure_http) for prefix in items)
        self._given = tuple(prefix.strip() for prefix in items)
        self.urls = tuple(dict.fromkeys(self._given))
        self.mount_points = tuple(
            dict.fromkeys(
                point for origin, base in self._rules for point in _mount_points(origin, base)
            )
        )
        # A URL that starts with one of these, and has no ".." to climb with, is under a prefix.
        self._plainly_under = tuple(point + "/" for point in self.mount_points)

    def match(self, url: str) -> bool:
        """Return True when ``url`` may receive the token."""
        # Only ".." segments (also written with %2e) can climb out of a prefix.
        if (
            url.startswith(self._plainly_under)
            and ".." not in url
            and "%2e" not in url
            and "%2E" not in url
        ):
            return True
        try:
            origin, path = _origin_and_path(url)
        except ValueError:
            return False
        return self._first_rule(origin, path) is not None

    def prefix_for(self, url: str) -> str | None:
        """Return the prefix, as given, that ``url`` lies under (the first, if several), or
        None when it may not receive the token."""
        try:
            origin, path = _origin_and_path(url)
        except ValueError:
            return None
        index = self._first_rule(origin, path)
        return None if index is None else self._given[index]

    def _first_rule(self, origin: _Origin, path: str) -> int | None:
        views = _server_views(path)
        for index, (rule_origin, base) in enumerate(self._rules):
            if origin == rule_origin and all(_is_below(view, base) for view in views):
                return index
        return None

    def __repr__(self) -> str:
        return f"Prefixes({list(self.urls)!r})"


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
    try:
        before, after = _origin_and_path(old)[0], _origin_and_path(new)[0]
    except ValueError:
        return True
    upgrade = before == ("http", after[1], 80) and after[::2] == ("https", 443)
    return before != after and not upgrade


def origin(url: str) -> str:
    """``url``'s origin as written in a DPoP proof's ``htu`` and as the key of a server's
    nonces: ``scheme://host[:port]``, scheme and host in lower case, no default port. Raises
    ValueError for a URL that is not absolute http(s)."""
    try:
        return _written(_origin_and_path(url)[0])
    except ValueError:
        raise ValueError("a DPoP proof is for an absolute http(s) URL") from None


def check_endpoint_url(name: str, url: object, allow_insecure_http: bool) -> None:
    """Raise TypeError or ValueError, naming ``name``, unless ``url`` is an absolute https URL
    (or http on the loopback interface, or anywhere with ``allow_insecure_http``)."""
    if not isinstance(url, str):
        raise TypeError(f"{name} must be a string, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{name} must be an absolute http(s) URL, got {url!r}")
    if parts.scheme == "http" and not (allow_insecure_http or is_loopback(parts.hostname)):
        raise ValueError(
            f"{name} {url!r} is plain http: secrets would cross the network unencrypted. "
            "Use https, or pass allow_insecure_http=True if this is deliberate"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names the loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _rule(prefix: str, allow_insecure_http: bool) -> tuple[_Origin, str]:
    """Return a prefix's origin and its path without the trailing slash."""
    if not isinstance(prefix, str):
        raise TypeError(f"an API prefix must be a string, got {type(prefix).__name__}")
    try:
        origin, path = _origin_and_path(prefix.strip())
    except ValueError:
        raise ValueError(
            f"API prefix {prefix!r} must be an absolute http(s) URL such as "
            "'https://api.example.com/v1/'"
        ) from None
    check_endpoint_url("API prefix", prefix.strip(), allow_insecure_http)
    return origin, _server_views(path)[0].rstrip("/")


def _mount_points(origin: _Origin, base: str) -> tuple[str, ...]:
    """Where to mount a transport for a prefix: requests picks adapters by the URL's text, so
    a default port is mounted both written and left out."""
    explicit = _written(origin, with_port=True) + base
    plain = _written(origin) + base
    return (plain, explicit) if plain != explicit else (explicit,)


def _written(origin: _Origin, *, with_port: bool = False) -> str:
    """``scheme://host[:port]``: an IPv6 host in brackets, the port left out when it is the
    scheme's default (unless ``with_port``)."""
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    default = port == DEFAULT_PORTS[scheme]
    return f"{scheme}://{host}" if default and not with_port else f"{scheme}://{host}:{port}"


def _is_below(path: str, base: str) -> bool:
    return path == base or path.startswith(base + "/")


def _server_views(path: str) -> tuple[str, ...]:
    """The ways a server may read ``path``: as RFC 3986 section 5.2.4 says (dot segments
    removed, with ``%2e`` read as ``.`` and a servlet's ``;parameters`` ignored), and, when the
    path holds an encoded slash or an empty segment, as lenient servers do (``%2F`` read as
    ``/``, empty segments merged)."""
    strict = _remove_dot_segments(path.split("/")[1:])
    if "//" not in path and not _ENCODED_SLASH.search(path):
        return (strict,)
    lenient = [segment for segment in _ENCODED_SLASH.sub("/", path).split("/") if segment]
    return strict, _remove_dot_segments(lenient)


def _remove_dot_segments(segments: list[str]) -> str:
    """The absolute path made of ``segments`` after removing its "." and ".." segments (a
    segment is one whatever ``;parameters`` follow it: ``..;jsessionid=x`` climbs)."""
    kept: list[str] = []
    ends_in_dots = False
    for segment in segments:
        dots = segment.replace("%2e", ".").replace("%2E", ".").split(";", 1)[0]
        ends_in_dots = dots in (".", "..")
        if dots == "..":
            if kept:
                kept.pop()
        elif dots != ".":
            kept.append(segment)
    return "/" + "/".join([*kept, ""] if ends_in_dots else kept)


def _origin_and_path(url: str) -> tuple[_Origin, str]:
    """A URL's (scheme, host, port) and path; raises ValueError for one that is not an
    absolute http(s) URL with a host and a valid port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(url)
    port = parts.port or DEFAULT_PORTS[scheme]
    return (scheme, parts.hostname.lower(), port), parts.path or "/"
