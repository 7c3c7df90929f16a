"""One bounded exchange with an authorization server, and the clean copy of its answer that an
error keeps.

A POST to a token, device authorization or revocation endpoint (or the GET of a discovery
document) ends within its timeout in all
(connecting, sending and every read, whatever pace the server keeps) and reads at most
:data:`MAX_ANSWER` bytes of answer, decompressed. The answer it returns, and the copies that
errors keep, hold no part of the request but its method and URL: the client's credentials,
refresh tokens and device codes stay out of anything an error tracker may capture.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import HTTPError, NewConnectionError, ReadTimeoutError

from .errors import RefreshFailed, excerpt, redact

MAX_ANSWER = 1024 * 1024  # bytes, decompressed: a token answer is a few KiB
_CHUNK = 16 * 1024
_KEPT_BODY = 4096  # characters of the answer an error keeps: enough for any OAuth error JSON
_TRANSPORT_ERRORS = (requests.RequestException, HTTPError, OSError)
# A read that timed out ends as the deadline does, whichever came first.
_READ_TIMEOUTS = (requests.exceptions.ReadTimeout, ReadTimeoutError)


class NotConnected(requests.exceptions.ConnectionError):
    """No connection could be opened, so no byte of the request was sent: sending it again is
    safe. The cause of a RefreshFailed, standing in for the transport's own error (which holds
    the request, credentials included)."""


def send(
    http: requests.Session,
    request: requests.Request,
    *,
    network: Mapping[str, Any],
    timeout: float,
    endpoint: str,
    secrets: Iterable[str | None],
) -> requests.Response:
    """Send ``request`` (a form POST, or a GET) through the connection pool and adapters of
    ``http``, with the ``network`` settings (``verify``, ``cert``, ``proxies``), and return the
    answer, its body read, within ``timeout`` seconds in all. Nothing of ``http``'s own
    headers, auth or cookies goes with it, nor ~/.netrc; redirects are not followed.

    Raises RefreshFailed, naming ``endpoint`` and never showing ``secrets``, when no answer
    came (its cause a clean copy of the transport's error, NotConnected when nothing was
    sent), when the answer was not complete within ``timeout``, or when it was larger than
    MAX_ANSWER.
    """
    call = _Call(http, request, network, timeout)
    # A worker thread, so that the caller stops waiting at the deadline even while requests is
    # inside a read it cannot interrupt (a status line or headers sent a byte at a time).
    worker = threading.Thread(target=call.run, name="token endpoint exchange", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive() or isinstance(call.failure, _READ_TIMEOUTS):
        call.abandon()
        raise RefreshFailed(
            f"{endpoint} was too slow: no complete answer within {timeout:g} s; try again later"
        )
    if call.answer is not None:
        return call.answer
    if call.too_large is not None:
        raise RefreshFailed(
            f"{endpoint} answered {call.too_large} with more than "
            f"{MAX_ANSWER // 1024 // 1024} MiB, which no token answer needs; "
            "refused, try again later"
        )
    assert call.failure is not None
    if not isinstance(call.failure, _TRANSPORT_ERRORS):
        raise call.failure  # a bug, not the server's doing: as if the call were not threaded
    raise RefreshFailed(
        f"could not reach {endpoint} ({type(call.failure).__name__}); try again later"
    ) from _clean_cause(call.failure, secrets)


class _Call:
    """One request, run in a worker thread: its answer, or why there is none."""

    def __init__(
        self,
        http: requests.Session,
        request: requests.Request,
        network: Mapping[str, Any],
        timeout: float,
    ) -> None:
        self._http = http
        self._request = request
        self._network = dict(network)
        self._timeout = timeout
        self._abandoned = threading.Event()
        self._stream: BaseHTTPResponse | None = None
        self.answer: requests.Response | None = None
        self.too_large: int | None = None  # the status of an answer larger than MAX_ANSWER
        self.failure: Exception | None = None

    def run(self) -> None:
        try:
            # Prepared apart from the session, so that none of its headers, auth or cookies
            # (which may be an API's credentials) reach the authorization server; sent by its
            # adapter, not by Session.send, which reads a redirect's whole body unbounded.
            prepared = self._request.prepare()
            adapter = self._http.get_adapter(prepared.url or "")
            with adapter.send(
                prepared, stream=True, timeout=self._timeout, **self._network
            ) as response:
                self._stream = response.raw
                body = self._read(response.raw)
        except Exception as error:  # handed to the caller's thread, which decides
            self.failure = error
            return
        if body is None:
            self.too_large = response.status_code
        else:
            self.answer = _copy(response, response.headers, body, response.url)

    def _read(self, stream: BaseHTTPResponse) -> bytes | None:
        """The decompressed body, or None when it is larger than MAX_ANSWER. Decompresses a
        chunk at a time, so a small compressed answer cannot inflate past the limit in memory."""
        body = bytearray()
        while not self._abandoned.is_set():
            chunk = stream.read1(_CHUNK, decode_content=True)
            if not chunk:
                break
            body += chunk
            if len(body) > MAX_ANSWER:
                return None
        return bytes(body)

    def abandon(self) -> None:
        """Stop the worker: no more reads, and the one in progress ends now."""
        self._abandoned.set()
        if self._stream is not None:
            # ValueError, RuntimeError: the connection is already closed or released.
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                self._stream.shutdown()


def kept_for_error(response: requests.Response, secrets: Iterable[str | None]) -> requests.Response:
    """A copy of ``response`` for an error to keep: its status, reason, URL, headers and an
    excerpt of its body (its start, on one line), with ``secrets`` and token-shaped fields
    redacted and cookies dropped. Its request says only the method and the URL."""
    secrets = tuple(secrets)
    body = excerpt(response.content, secrets, limit=_KEPT_BODY)
    headers = {
        name: redact(value, secrets)
        for name, value in response.headers.items()
        if name.lower() != "set-cookie"
    }
    kept = _copy(response, headers, body.encode(), redact(response.url, secrets))
    kept.encoding = "utf-8"
    return kept


def _copy(
    source: requests.Response, headers: Mapping[str, str], body: bytes, url: str
) -> requests.Response:
    """A detached response: ``source``'s status with ``headers`` and ``body``, no connection,
    no cookies, and a request that names only the method and ``url``."""
    copy = requests.Response()
    copy.status_code = source.status_code
    copy.reason = source.reason
    copy.url = url
    copy.headers = CaseInsensitiveDict(headers)
    copy.encoding = source.encoding
    copy.elapsed = source.elapsed
    copy._content = body
    copy._content_consumed = True
    method = source.request.method if source.request is not None else None
    copy.request = requests.PreparedRequest()
    copy.request.prepare_method(method or "POST")
    copy.request.prepare_url(url, None)
    copy.request.prepare_headers(None)
    return copy


def _clean_cause(error: Exception, secrets: Iterable[str | None]) -> Exception:
    """A stand-in for the transport's ``error`` with its text (redacted), but without the
    request, the connection or the pool it holds."""
    text = redact(str(error), secrets)
    if _never_sent(error):
        return NotConnected(text)
    if isinstance(error, requests.RequestException):
        return type(error)(text)
    return requests.exceptions.ConnectionError(f"{type(error).__name__}: {text}")


def _never_sent(error: Exception) -> bool:
    """True when the request failed before any byte of it could reach the server."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, NewConnectionError)


def skip_netrc(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A no-op auth: passing it keeps requests from adding ~/.netrc credentials."""
    return request
