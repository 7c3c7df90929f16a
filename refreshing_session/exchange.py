"""One bounded exchange with an authorization server, and the clean copy of its answer that an
error keeps.

A POST to a token, device authorization or revocation endpoint (or the GET of a discovery
document) ends within its timeout in all
(connecting, sending and every read, whatever pace the server keeps) and reads at most
:data:`MAX_ANSWER` bytes of answer, decompressed. The answer it returns, and the copies that
errors keep, hold no part of the request but its method and URL: the client's credentials,
refresh tokens and device codes stay out of anything an error tracker may capture.

The caller is released at the deadline; the exchange itself ends then too when it runs on a
:func:`watched_pool` (its socket is shut down, before the answer's headers as after them), so
a slow server cannot pile up threads and sockets. A grant's successful answer that has begun
is the exception: it holds the only copy of the new refresh token, so it is read to its end
in the background (:class:`~refreshing_session.errors.AnswerUnderway`).
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import requests
import requests.adapters
from requests.structures import CaseInsensitiveDict
from urllib3 import BaseHTTPResponse, HTTPConnectionPool, HTTPResponse, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError, NewConnectionError, ReadTimeoutError

from .errors import AnswerUnderway, RefreshFailed, excerpt, redact
from .token import Token

MAX_ANSWER = 1024 * 1024  # bytes, decompressed: a token answer is a few KiB
# Seconds from its start that a 2xx answer cut off by the caller's deadline is read on in the
# background: it holds the only copy of the new refresh token.
ANSWER_LIMIT = 60.0
_CHUNK = 16 * 1024
_KEPT_BODY = 4096  # characters of the answer an error keeps: enough for any OAuth error JSON
_TRANSPORT_ERRORS = (requests.RequestException, HTTPError, OSError)
# A read that timed out ends as the deadline does, whichever came first.
_TIMEOUTS = (requests.exceptions.ReadTimeout, ReadTimeoutError, TimeoutError)
_running = threading.local()  # .call: the exchange that the current worker thread runs


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
    underway: Callable[[requests.Response], Token] | None = None,
) -> requests.Response:
    """Send ``request`` (a form POST, or a GET) through the connection pool and adapters of
    ``http``, with the ``network`` settings (``verify``, ``cert``, ``proxies``), and return the
    answer, its body read, within ``timeout`` seconds in all. Nothing of ``http``'s own
    headers, auth or cookies goes with it, nor ~/.netrc; redirects are not followed.

    Raises RefreshFailed, naming ``endpoint`` and never showing ``secrets``, when no answer
    came (its cause a clean copy of the transport's error, NotConnected when nothing was
    sent), when the answer was not complete within ``timeout``, or when it was larger than
    MAX_ANSWER.

    With ``underway`` (a grant's: what makes a token of the whole answer), a 2xx answer whose
    status line and headers arrived in time but whose body did not is not dropped: it is read
    on in the background for up to ANSWER_LIMIT seconds from the start, and AnswerUnderway
    raised, whose ``finish()`` returns ``underway`` of the whole answer.
    """
    secrets = tuple(secrets)
    call = _Call(http, request, network, timeout)
    # A worker thread, so that the caller stops waiting at the deadline even while requests is
    # inside a read it cannot interrupt (a status line or headers sent a byte at a time).
    worker = threading.Thread(target=call.run, name="token endpoint exchange", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive() and underway is not None and call.began_well():
        raise AnswerUnderway(
            f"{endpoint} was too slow: its answer began ({call.status}) but did not end "
            f"within {timeout:g} s; it is read on in the background for up to "
            f"{ANSWER_LIMIT:g} s",
            finish=_finisher(worker, call, underway, endpoint, secrets),
        )
    if worker.is_alive():
        call.abandon()
    return call.outcome(endpoint, secrets, timeout)


def watched_pool() -> requests.Session:
    """A session for exchanges whose adapters (:class:`WatchedAdapter`) let a deadline reach
    the socket: an abandoned exchange ends at once, whatever the server keeps sending."""
    pool = requests.Session()
    for prefix in ("https://", "http://"):
        pool.mount(prefix, WatchedAdapter())
    return pool


def _finisher(
    worker: threading.Thread,
    call: _Call,
    underway: Callable[[requests.Response], Token],
    endpoint: str,
    secrets: tuple[str | None, ...],
) -> Callable[[float], Token]:
    """The ``finish(timeout)`` of an AnswerUnderway: waits for ``worker`` to read the rest of
    ``call``'s answer, and returns ``underway`` of it."""

    def finish(timeout: float) -> Token:
        worker.join(timeout)
        if worker.is_alive():
            raise RefreshFailed(
                f"the rest of {endpoint}'s answer did not come within {timeout:g} s more; "
                "it is still read on: call finish() again to wait longer"
            )
        return underway(call.outcome(endpoint, secrets, ANSWER_LIMIT))

    return finish


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
        self._limit = time.monotonic() + ANSWER_LIMIT
        self._lock = threading.Lock()  # abandon() against watch() and the stream's arrival
        self._abandoned = False
        self._socket: socket.socket | None = None
        self._stream: BaseHTTPResponse | None = None
        self.status: int | None = None  # once the answer's status line and headers arrived
        self.answer: requests.Response | None = None
        self.too_large: int | None = None  # the status of an answer larger than MAX_ANSWER
        self.failure: Exception | None = None

    def run(self) -> None:
        """In the worker thread: send the request and read the answer; keep the answer, or
        why there is none."""
        _running.call = self
        try:
            # Prepared apart from the session, so that none of its headers, auth or cookies
            # (which may be an API's credentials) reach the authorization server; sent by its
            # adapter, not by Session.send, which reads a redirect's whole body unbounded.
            prepared = self._request.prepare()
            adapter = self._http.get_adapter(prepared.url or "")
            with adapter.send(
                prepared, stream=True, timeout=self._timeout, **self._network
            ) as response:
                self._began(response)
                body = self._read(response.raw)
        except Exception as error:  # handed to the caller's thread, which decides
            self.failure = error
            return
        finally:
            _running.call = None
        if body is None:
            self.too_large = response.status_code
        else:
            self.answer = _copy(response, response.headers, body, response.url)

    def began_well(self) -> bool:
        """Whether a 2xx answer began: its status line and headers arrived."""
        return self.status is not None and 200 <= self.status < 300

    def _began(self, response: requests.Response) -> None:
        with self._lock:
            self._stream = response.raw
            self.status = response.status_code
            abandoned = self._abandoned
        if abandoned:
            self.abandon()

    def _read(self, stream: BaseHTTPResponse) -> bytes | None:
        """The decompressed body, or None when it is larger than MAX_ANSWER. Decompresses a
        chunk at a time, so a small compressed answer cannot inflate past the limit in memory.
        Raises TimeoutError when the answer lasts past ANSWER_LIMIT."""
        body = bytearray()
        while not self._abandoned:
            if time.monotonic() > self._limit:
                raise TimeoutError(f"no complete answer within {ANSWER_LIMIT:g} s")
            chunk = stream.read1(_CHUNK, decode_content=True)
            if not chunk:
                break
            body += chunk
            if len(body) > MAX_ANSWER:
                return None
        return bytes(body)

    def watch(self, sock: socket.socket) -> None:
        """Know ``sock`` as this exchange's connection, so that abandon() can shut it down
        before the answer's headers arrived too; shut it down now if it came too late."""
        with self._lock:
            self._socket = sock
            abandoned = self._abandoned
        if abandoned:
            self.abandon()

    def abandon(self) -> None:
        """Stop the worker: no more reads, and the one in progress ends now (at once when the
        socket is known; else when the answer's headers are in, or its read times out)."""
        with self._lock:
            self._abandoned = True
            sock, stream = self._socket, self._stream
        # ValueError, RuntimeError: the connection is already closed or released.
        with contextlib.suppress(ValueError, RuntimeError, OSError):
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            elif stream is not None:
                stream.shutdown()

    def outcome(
        self, endpoint: str, secrets: Iterable[str | None], timeout: float
    ) -> requests.Response:
        """The complete answer; raises the RefreshFailed that says why there is none (see
        :func:`send`), ``timeout`` being the time it had."""
        if self.answer is not None and not self._abandoned:
            return self.answer
        if self.too_large is not None:
            raise RefreshFailed(
                f"{endpoint} answered {self.too_large} with more than "
                f"{MAX_ANSWER // 1024 // 1024} MiB, which no token answer needs; "
                "refused, try again later"
            )
        if self._abandoned or isinstance(self.failure, _TIMEOUTS):
            raise RefreshFailed(
                f"{endpoint} was too slow: no complete answer within {timeout:g} s; try again later"
            )
        assert self.failure is not None
        if not isinstance(self.failure, _TRANSPORT_ERRORS):
            raise self.failure  # a bug, not the server's doing: as if the call were not threaded
        raise RefreshFailed(
            f"could not reach {endpoint} ({type(self.failure).__name__}); try again later"
        ) from _clean_cause(self.failure, secrets)


class _Watched(HTTPConnection):
    """A urllib3 connection that, before it reads an answer, tells the exchange running in
    this thread (if any) its socket."""

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 does
        call: _Call | None = getattr(_running, "call", None)
        if call is not None and self.sock is not None:
            call.watch(self.sock)
        return super().getresponse()


class _WatchedHTTPS(_Watched, HTTPSConnection):
    """The TLS twin of :class:`_Watched` (its getresponse, HTTPSConnection's connect)."""


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _Watched


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


_WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": _WatchedHTTPPool,
    "https": _WatchedHTTPSPool,
}


class WatchedAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose connections (direct, or through an HTTP proxy) show the exchange
    running in their thread their socket, so that its deadline can shut the socket down
    before the answer's headers arrived: an abandoned exchange's worker ends at once instead
    of following a server that sends its headers a byte at a time."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """The pool manager of HTTPAdapter, building watched pools."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """HTTPAdapter's manager for ``proxy``, building watched pools (a SOCKS proxy's keep
        their own connections, unwatched)."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


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
    # Response.raw is the public way in; read at once, so that the copy keeps its body.
    copy.raw = io.BytesIO(body)
    copy.content  # noqa: B018
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
