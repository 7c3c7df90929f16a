"""BearerAdapter: the transport that adds the token, and replays a request once after a 401.

The adapter decides on every send, redirect hops included, whether the URL is under one of the
API prefixes. Only then does the token go out; the caller's own Authorization always wins, and a
request marked with :func:`withhold_token` never gets it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from requests.exceptions import ChunkedEncodingError, ContentDecodingError
from requests.structures import CaseInsensitiveDict
from requests.utils import rewind_body

from .flow import bearer_flow, drive
from .guard import refresh_may_cure, refresh_statuses
from .keeper import TokenKeeper
from .refreshers import check_endpoint_url
from .token import Token

# HTTPAdapter.send's settings, typed as requests documents them (its own aliases live in a
# private module, missing from some of the versions we support).
_TimeoutType = float | tuple[float | None, float | None] | None
_VerifyType = bool | str
_CertType = str | tuple[str, str] | None

_T = TypeVar("_T")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_NO_TOKEN = "_refreshing_session_no_token"
_TOKEN_COPY = "_refreshing_session_token_copy"
# Percent-encoded slashes, which lenient servers read as "/".
_ENCODED_SLASH = re.compile("%2f", re.IGNORECASE)


class Prefixes:
    """The URL prefixes that receive the token.

    A URL matches when its scheme, host and port equal a prefix's, and its path is the
    prefix's path or lies below it at a ``/`` boundary, however a server reads the path: with
    its dot segments removed (``%2e`` read as ``.``), and also with ``%2F`` read as ``/`` and
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
        self.urls = tuple(dict.fromkeys(prefix.strip() for prefix in items))
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
        views = _server_views(path)
        return any(
            origin == rule_origin and all(_is_below(view, base) for view in views)
            for rule_origin, base in self._rules
        )

    def __repr__(self) -> str:
        return f"Prefixes({list(self.urls)!r})"


class BearerAdapter(HTTPAdapter):
    """An HTTPAdapter that sends the keeper's token to URLs under ``prefixes``.

    A 401 answer (or one of another status of ``refresh_on``) to a request that carried the
    token triggers one refresh (or adoption of a sibling's newer token) and one replay; the
    replay's answer is returned whatever it is.
    A body that cannot be rewound is not replayed: the refresh happens, and the 401 is returned
    with its body intact. Other URLs, and requests that already carry an Authorization header,
    pass through as with a plain HTTPAdapter.
    """

    __attrs__: list[str] = [*HTTPAdapter.__attrs__, "prefixes", "keeper", "refresh_on"]  # noqa: RUF012 (typed as in requests)

    def __init__(
        self,
        prefixes: Prefixes,
        keeper: TokenKeeper,
        *,
        refresh_on: Iterable[int] = (401,),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prefixes = prefixes
        self.keeper = keeper
        self.refresh_on = refresh_statuses(refresh_on)

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: _TimeoutType = None,
        verify: _VerifyType = True,
        cert: _CertType = None,
        proxies: dict[str, str] | None = None,
    ) -> Response:
        """Send ``request``, with the token when its URL is under a prefix; return the response."""
        settings = (stream, timeout, verify, cert, proxies)
        if token_withheld(request) or not self.prefixes.match(request.url or ""):
            return super().send(request, *settings)
        flow = bearer_flow(self.keeper, urlsplit(request.url or "").path, _replayable(request))
        return drive(flow, partial(self._send_with, request, settings), self._refused, _release)

    def _send_with(
        self, request: PreparedRequest, settings: tuple[Any, ...], token: Token
    ) -> Response:
        """Send a copy of ``request`` with ``token``, its body from the start."""
        if _is_stream(request) and _replayable(request):
            rewind_body(request)
        return super().send(_with_token(request, token), *settings)

    def _refused(self, response: Response) -> bool:
        """Was the token refused in a way that a new token may cure?"""
        return refresh_may_cure(response.status_code, response.headers, self.refresh_on)


def withhold_token(request: PreparedRequest) -> None:
    """Mark ``request`` as one that gets no token, wherever it goes."""
    setattr(request, _NO_TOKEN, True)


def token_withheld(request: PreparedRequest) -> bool:
    """Whether ``request`` gets no token: it was marked with :func:`withhold_token`, or it
    carries an Authorization of the caller's own (one the adapter did not add)."""
    return getattr(request, _NO_TOKEN, False) is True or (
        "Authorization" in request.headers and not getattr(request, _TOKEN_COPY, False)
    )


def shallow_copy(thing: _T) -> _T:
    """A shallow copy of a plain object; several times cheaper than copy.copy."""
    twin: _T = object.__new__(type(thing))
    twin.__dict__.update(thing.__dict__)
    return twin


def _with_token(request: PreparedRequest, token: Token) -> PreparedRequest:
    # A copy: the caller's request (which requests reuses for redirects) never holds the token.
    # Shallow but for the headers: PreparedRequest.copy() would also copy the cookie jar.
    authorized = shallow_copy(request)
    authorized.headers = _copied(request.headers)
    authorized.headers["Authorization"] = token.authorization
    setattr(authorized, _TOKEN_COPY, True)
    return authorized


def _copied(headers: CaseInsensitiveDict[_T]) -> CaseInsensitiveDict[_T]:
    if type(headers) is not CaseInsensitiveDict:
        return headers.copy()
    # copy() adds the headers back one at a time; copying the store that holds them (as it
    # has in every requests since 1.0) costs a fifth of that, on every API request.
    copied: CaseInsensitiveDict[_T] = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
    copied._store = headers._store.copy()
    return copied


def _is_stream(request: PreparedRequest) -> bool:
    return request.body is not None and not isinstance(
        request.body, (bytes, bytearray, memoryview, str)
    )


def _replayable(request: PreparedRequest) -> bool:
    """Bytes replay as they are; a stream only if requests recorded where it started."""
    return not _is_stream(request) or isinstance(getattr(request, "_body_position", None), int)


def _release(response: Response) -> None:
    """Read and close a response we will not return, so its connection goes back to the pool."""
    try:
        response.content  # noqa: B018
    except (ChunkedEncodingError, ContentDecodingError, RuntimeError):
        response.raw.read(decode_content=False)
    response.close()


def _rule(prefix: str, allow_insecure_http: bool) -> tuple[tuple[str, str, int], str]:
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


def _mount_points(origin: tuple[str, str, int], base: str) -> tuple[str, ...]:
    """Where to mount the adapter for a prefix: requests picks adapters by the URL's text, so
    a default port is mounted both written and left out."""
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    explicit = f"{scheme}://{host}:{port}{base}"
    return (f"{scheme}://{host}{base}", explicit) if port == _DEFAULT_PORTS[scheme] else (explicit,)


def _is_below(path: str, base: str) -> bool:
    return path == base or path.startswith(base + "/")


def _server_views(path: str) -> tuple[str, ...]:
    """The ways a server may read ``path``: as RFC 3986 section 5.2.4 says (dot segments
    removed, with ``%2e`` read as ``.``), and, when the path holds an encoded slash or an empty
    segment, as lenient servers do (``%2F`` read as ``/``, empty segments merged)."""
    strict = _remove_dot_segments(path.split("/")[1:])
    if "//" not in path and not _ENCODED_SLASH.search(path):
        return (strict,)
    lenient = [segment for segment in _ENCODED_SLASH.sub("/", path).split("/") if segment]
    return strict, _remove_dot_segments(lenient)


def _remove_dot_segments(segments: list[str]) -> str:
    """The absolute path made of ``segments`` after removing its "." and ".." segments."""
    kept: list[str] = []
    ends_in_dots = False
    for segment in segments:
        dots = segment.replace("%2e", ".").replace("%2E", ".")
        ends_in_dots = dots in (".", "..")
        if dots == "..":
            if kept:
                kept.pop()
        elif dots != ".":
            kept.append(segment)
    return "/" + "/".join([*kept, ""] if ends_in_dots else kept)


def _origin_and_path(url: str) -> tuple[tuple[str, str, int], str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(url)
    port = parts.port or _DEFAULT_PORTS[scheme]
    return (scheme, parts.hostname.lower(), port), parts.path or "/"
