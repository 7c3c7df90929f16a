"""The 401 flow, transport-neutral: what one hop under the prefixes does with the keeper.

Send the keeper's token; when the answer is a 401 that a new token may cure (see
:mod:`refreshing_session.guard`), get the token to replay with, and replay once if the body can
be sent again. :func:`bearer_flow` is a generator that says each step and leaves the doing to a
pump: :class:`Send` a request with a token (and send back whether the answer refused it), or
:class:`Call` the keeper (a blocking call).

There is one pump per concurrency model. :func:`exchanges` runs the keeper calls in the calling
thread and hands out the tokens to send; :func:`drive` sends them with a front end's function
(the requests adapter, the httpx sync client), and httpx's sync auth flow iterates it.
:mod:`refreshing_session.async_flow` is the async pump. Each closes the flow in ``finally``.
The answer the caller gets is the last one received.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from functools import partial
from typing import Any, NamedTuple, TypeVar

from .keeper import TokenKeeper
from .token import Token

logger = logging.getLogger(__name__)
_R = TypeVar("_R")
_T = TypeVar("_T")


# The steps are named tuples, not frozen dataclasses: as immutable, and built at half the cost
# on every request.
class Send(NamedTuple):
    """Send the request with ``token``; answer with whether the response refused it."""

    token: Token


class Call(NamedTuple):
    """Run ``function`` (a keeper call, which may wait for locks or refresh) and answer with
    what it returns. A ``shareable`` call may answer every request that asks for it while it
    runs: its answer does not depend on the request. ``at_once``, when given, answers without
    blocking, or returns None when only ``function`` can (async pumps try it on the loop)."""

    function: Callable[[], Any]
    shareable: bool = False
    at_once: Callable[[], Any] | None = None


Flow = Generator[Send | Call, Any, None]


def bearer_flow(keeper: TokenKeeper, path: str, replayable: bool) -> Flow:
    """The steps of one request for ``path``: send it with the current token, and after a 401
    that a new token may cure, replay it once with the token the keeper gives, if the body is
    ``replayable``."""
    token: Token = yield Call(keeper.current, shareable=True, at_once=keeper.current_at_once)
    if not (yield Send(token)):
        keeper.worked(token, path)
        return
    replacement: Token | None = yield Call(partial(keeper.after_unauthorized, token, path))
    if replacement is None:
        return
    if not replayable:
        logger.info("401 for a body that cannot be sent again: token refreshed, 401 returned")
        yield Call(partial(keeper.replayed, replacement, path, refused=None))
        return
    refused = yield Send(replacement)
    yield Call(partial(keeper.replayed, replacement, path, refused=refused))


def exchanges(flow: Flow, refused: Callable[[_R], bool]) -> Generator[Token, _R, None]:
    """The pump for threads: run ``flow``, its keeper calls in this thread; yield each token to
    send a request with, and receive the answer (``refused`` says whether it refused the
    token). Closes ``flow`` however it ends."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Call):
                step = flow.send(step.function())
            else:
                step = flow.send(refused((yield step.token)))
    except StopIteration:
        return
    finally:
        flow.close()


def drive(
    flow: Flow,
    send: Callable[[Token], _R],
    refused: Callable[[_R], bool],
    release: Callable[[_R], None],
) -> _R:
    """Run ``flow`` in this thread: ``send`` sends the request with a token and returns the
    answer, ``refused`` says whether an answer refused the token, and ``release`` frees an
    answer that will not be returned (before the replay, or when a step raises). Return the
    last answer."""
    pump = exchanges(flow, refused)
    answer: _R | None = None
    try:
        token = next(pump)
        while True:
            answer = send(token)
            token = pump.send(answer)
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
    """A shallow copy of a plain object (several times cheaper than ``copy.copy``): front ends
    send a copy of the caller's request with the token, so the caller's never holds it."""
    twin: _T = object.__new__(type(thing))
    twin.__dict__.update(thing.__dict__)
    return twin
