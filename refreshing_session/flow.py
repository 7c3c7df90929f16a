"""The 401 flow, transport-neutral: what one hop under the prefixes does with the keeper.

Send the keeper's token; when the answer is a 401 that a new token may cure (see
:mod:`refreshing_session.guard`), get the token to replay with, and replay once if the body can
be sent again. :func:`bearer_flow` is a generator that says each step and leaves the doing to a
front end: :class:`Send` a request with a token (and send back whether the answer refused it),
or :class:`Call` the keeper (a blocking call, which async front ends run off the event loop).
The answer the caller gets is the last one received.

Every front end drives this one flow: :func:`drive` runs it in the calling thread (requests,
httpx's sync transport); ``refreshing_session.httpx`` runs it as an httpx auth flow.
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


# The steps are named tuples, not frozen dataclasses: as immutable, and built at half the cost
# on every request.
class Send(NamedTuple):
    """Send the request with ``token``; answer with whether the response refused it."""

    token: Token


class Call(NamedTuple):
    """Run ``function`` (a keeper call, which may wait for locks or refresh) and answer with
    what it returns. A ``shareable`` call may answer every request that asks for it while it
    runs: its answer does not depend on the request."""

    function: Callable[[], Any]
    shareable: bool = False


Flow = Generator[Send | Call, Any, None]


def bearer_flow(keeper: TokenKeeper, path: str, replayable: bool) -> Flow:
    """The steps of one request for ``path``: send it with the current token, and after a 401
    that a new token may cure, replay it once with the token the keeper gives, if the body is
    ``replayable``."""
    token: Token = yield Call(keeper.current, shareable=True)
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
    answer: _R | None = None
    try:
        step = next(flow)
        while True:
            if isinstance(step, Call):
                step = flow.send(step.function())
                continue
            if answer is not None:
                release(answer)
                answer = None
            answer = send(step.token)
            step = flow.send(refused(answer))
    except StopIteration:
        assert answer is not None, "the flow ended before sending the request"
        return answer
    except BaseException:
        if answer is not None:
            release(answer)
        raise
