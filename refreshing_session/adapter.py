"""BearerAdapter: the transport that adds the token, and replays a request once after a 401.

The adapter decides on every send, redirect hops included, whether the URL is under one of the
API prefixes. Only then does the token go out; the caller's own Authorization always wins, and a
request marked with :func:`withhold_token` never gets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from functools import partial
from typing import Any

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from requests.exceptions import (
    ChunkedEncodingError,
    ContentDecodingError,
    UnrewindableBodyError,
)
from requests.utils import rewind_body

from .credentials import Credentials
from .flow import Hop, Seen, bearer_flow, drive, with_headers
from .keeper import TokenKeeper
from .urls import Prefixes

# HTTPAdapter.send's settings, typed as requests documents them (its own aliases live in a
# private module, missing from some of the versions we support).
_TimeoutType = float | tuple[float | None, float | None] | None
_VerifyType = bool | str
_CertType = str | tuple[str, str] | None

_NO_TOKEN = "_refreshing_session_no_token"
_TOKEN_COPY = "_refreshing_session_token_copy"


class BearerAdapter(HTTPAdapter):
    """An HTTPAdapter that sends the keeper's token to URLs under ``prefixes``, with the
    ``credentials`` (see :class:`~refreshing_session.credentials.Credentials`).

    A 401 answer (or one of another status of the credentials' ``refresh_on``) to a request
    that carried the token triggers one refresh (or adoption of a sibling's newer token) and one
    replay; the replay's answer is returned whatever it is. A DPoP nonce challenge gets one
    replay with the nonce. A body that cannot be rewound is not replayed: the refresh happens,
    and the 401 is returned with its body intact. Other URLs, and requests that already carry
    an Authorization header, pass through as with a plain HTTPAdapter.
    """

    __attrs__: list[str] = [*HTTPAdapter.__attrs__, "prefixes", "keeper", "credentials"]  # noqa: RUF012 (typed as in requests)

    def __init__(
        self,
        prefixes: Prefixes,
        keeper: TokenKeeper,
        credentials: Credentials,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prefixes = prefixes
        self.keeper = keeper
        self.credentials = credentials

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
        url = request.url or ""
        if token_withheld(request) or not self.prefixes.match(url):
            return super().send(request, *settings)
        hop = Hop(request.method or "GET", url, _replayable(request))
        flow = bearer_flow(self.keeper, self.credentials, hop)
        return drive(flow, partial(self._send_with, request, settings), _seen, _release)

    def _send_with(
        self, request: PreparedRequest, settings: tuple[Any, ...], headers: Mapping[str, str]
    ) -> Response:
        """Send a copy of ``request`` with ``headers`` (the token's), its body from the start."""
        if _is_stream(request):
            with suppress(UnrewindableBodyError):  # (then it is sent once only)
                rewind_body(request)
        return super().send(_with_credentials(request, headers), *settings)


def withhold_token(request: PreparedRequest) -> None:
    """Mark ``request`` as one that gets no token, wherever it goes."""
    setattr(request, _NO_TOKEN, True)


def token_withheld(request: PreparedRequest) -> bool:
    """Whether ``request`` gets no token: it was marked with :func:`withhold_token`, or it
    carries an Authorization of the caller's own (one the adapter did not add)."""
    return getattr(request, _NO_TOKEN, False) is True or (
        "Authorization" in request.headers and not getattr(request, _TOKEN_COPY, False)
    )


def _with_credentials(request: PreparedRequest, headers: Mapping[str, str]) -> PreparedRequest:
    # Shallow but for the headers: PreparedRequest.copy() would also copy the cookie jar.
    authorized = with_headers(request, headers)
    setattr(authorized, _TOKEN_COPY, True)
    return authorized


def _seen(response: Response) -> Seen:
    return response.status_code, response.headers


def _is_stream(request: PreparedRequest) -> bool:
    return request.body is not None and not isinstance(
        request.body, (bytes, bytearray, memoryview, str)
    )


def _replayable(request: PreparedRequest) -> bool:
    """Bytes replay as they are; a stream only if requests can rewind it (it recorded where
    the stream started: rewinding before the first send moves it nowhere)."""
    if not _is_stream(request):
        return True
    try:
        rewind_body(request)
    except UnrewindableBodyError:
        return False
    return True


def _release(response: Response) -> None:
    """Read and close a response we will not return, so its connection goes back to the pool."""
    try:
        response.content  # noqa: B018
    except (ChunkedEncodingError, ContentDecodingError, RuntimeError):
        response.raw.read(decode_content=False)
    response.close()
