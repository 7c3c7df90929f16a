"""The 401 flow, transport-neutral: what one hop under the prefixes does with the keeper.

Send the keeper's token; when the answer is a 401 that a new token may cure (see
:mod:`refreshing_session.guard`), get the token to replay with, and replay once if the body can
be sent again. A DPoP nonce challenge is answered by one replay with the nonce, which is no
refresh (see :mod:`refreshing_session.credentials`). :func:`bearer_flow` is a generator that says
each step and leaves the doing to a pump: :class:`Send` the request with these headers (and
send back the answer's status and headers), or :class:`Call` the keeper (a blocking call).

There is one pump per concurrency model. :func:`exchanges` runs the keeper calls in the calling
thread and hands out the headers to send; :func:`drive` sends them with a front end's function
(the requests adapter, the httpx sync client), and httpx's sync auth flow iterates it.
:mod:`refreshing_session.async_flow` is the async pump. Each closes the flow in ``finally``.
The answer the caller gets is the last one received.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Mapping
from functools import partial
from typing import Any, NamedTuple, Protocol, TypeVar
from urllib.parse import urlsplit

from .credentials import Credentials, Verdict
from .keeper import TokenKeeper
from .token import Token

logger = logging.getLogger(__name__)
_R = TypeVar("_R")
_T = TypeVar("_T")


class _Headed(Protocol):
    headers: Any  # requests' CaseInsensitiveDict, httpx's Headers: both copy() and update()


_H = TypeVar("_H", bound=_Headed)

#: What a front end reads off an answer for the flow: its status and its headers.
Seen = tuple[int, Mapping[str, str]]


# The steps are named tuples, not frozen dataclasses: as immutable, and built at half the cost
# on every request.
class Send(NamedTuple):
    """Send the request with these ``headers`` added (Authorization, and a DPoP proof for a DPoP
    token); answer with what the front end sees of the answer (:data:`Seen`)."""

    headers: Mapping[str, str]


class Call(NamedTuple):
    """Run ``function`` (a keeper call, which may wait for locks or refresh) and answer with
    what it returns. A ``shareable`` call may answer every request that asks for it while it
    runs: its answer does not depend on the request. ``at_once``, when given, answers without
    blocking, or returns None when only ``function`` can (async pumps try it on the loop)."""

    function: Callable[[], Any]
    shareable: bool = False
    at_once: Callable[[], Any] | None = None


class Hop(NamedTuple):
    """One hop of a request: its method, its URL, and whether its body can be sent again."""

    method: str
    url: str
    replayable: bool


Flow = Generator[Send | Call, Any, None]
_Sending = Generator[Send, Seen, Verdict]


def bearer_flow(keeper: TokenKeeper, credentials: Credentials, hop: Hop) -> Flow:
    """The steps of one hop: send it with the current token, and after a 401 that a new token
    may cure, replay it once with the token the keeper gives, if the body is replayable."""
    path = urlsplit(hop.url).path
    token: Token = yield Call(keeper.current, shareable=True, at_once=keeper.current_at_once)
    verdict = yield from _sent(credentials, hop, token)
    if verdict is not Verdict.REFUSED:
        if verdict is Verdict.ACCEPTED:
            keeper.worked(token, path)
        return
    replacement: Token | None = yield Call(
        partial(keeper.after_unauthorized, token, path, hop.replayable)
    )
    if replacement is None:
        return
    if not hop.replayable:
        logger.info("401 for a body that cannot be sent again: token refreshed, 401 returned")
        yield Call(partial(keeper.replayed, replacement, path, refused=None))
        return
    verdict = yield from _sent(credentials, hop, replacement)
    refused = None if verdict is Verdict.NONCE else verdict is Verdict.REFUSED
    yield Call(partial(keeper.replayed, replacement, path, refused=refused))


def _sent(credentials: Credentials, hop: Hop, token: Token) -> _Sending:
    """Send the hop with ``token``; after a DPoP nonce challenge, once more with its nonce
    when the body can be sent again (a second challenge goes back to the caller). Return the
    verdict of the last answer."""
    verdict = credentials.verdict(
        hop.url, *(yield Send(credentials.headers(token, hop.method, hop.url)))
    )
    if verdict is Verdict.NONCE and hop.replayable:  # the verdict remembered the nonce
        headers = credentials.headers(token, hop.method, hop.url)
        verdict = credentials.verdict(hop.url, *(yield Send(headers)))
    return verdict


def exchanges(flow: Flow, seen: Callable[[_R], Seen]) -> Generator[Mapping[str, str], _R, None]:
    """The pump for threads: run ``flow``, its keeper calls in this thread; yield the headers
    to send each request with, and receive the answer (``seen`` reads its status and headers).
    Closes ``flow`` however it ends."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Call):
                step = flow.send(step.function())
            else:
                step = flow.send(seen((yield step.headers)))
    except StopIteration:
        return
    finally:
        flow.close()


def drive(
    flow: Flow,
    send: Callable[[Mapping[str, str]], _R],
    seen: Callable[[_R], Seen],
    release: Callable[[_R], None],
) -> _R:
    """Run ``flow`` in this thread: ``send`` sends the request with the headers given and
    returns the answer, ``seen`` reads an answer's status and headers, and ``release`` frees
    an answer that will not be returned (before a replay, or when a step raises). Return the
    last answer."""
    pump = exchanges(flow, seen)
    answer: _R | None = None
    try:
        headers = next(pump)
        while True:
            answer = send(headers)
            headers = pump.send(answer)
            release(answer)  # a replay follows: this answer will not be returned
            answer = None
    except StopIteration:
        assert answer is not None, "the flow ended before sending the request"
        return answer
    except BaseException:
        if answer is not None:
            release(answer)
        raise
    finally:
        pump.close()


def shallow_copy(thing: _T) -> _T:
    """A shallow copy of a plain object, several times cheaper than ``copy.copy``: a front end
    changes a copy of the caller's request, never the caller's (see :func:`with_headers`)."""
    twin: _T = object.__new__(type(thing))
    twin.__dict__.update(thing.__dict__)
    return twin


def with_headers(request: _H, headers: Mapping[str, str]) -> _H:
    """A copy of ``request`` (a front end's request object), shallow but for its headers, with
    ``headers`` added: the caller's request, which requests and httpx reuse for redirects,
    never holds the token."""
    authorized = shallow_copy(request)
    authorized.headers = request.headers.copy()
    authorized.headers.update(headers)
    return authorized
