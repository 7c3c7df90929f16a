"""The async pump of the 401 flow (see :mod:`refreshing_session.flow`), for asyncio and trio.

A keeper call that can be answered without blocking (the token in hand is valid and the store
unchanged) is answered on the event loop; any other runs in a worker thread, so the loop never
waits for a lock, a file or a refresh. A task cancelled meanwhile is cancelled once the call
returns, so a refresh it started is always completed and stored, and no lock is left held.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from .errors import TokenError
from .flow import Call, Flow, Seen

_R = TypeVar("_R")


async def async_exchanges(
    flow: Flow, seen: Callable[[_R], Seen], off_loop: OffLoop
) -> AsyncGenerator[Mapping[str, str], _R]:
    """The pump for async code: run ``flow``, its keeper calls through ``off_loop``; yield the
    headers to send each request with, and receive the answer (``seen`` reads its status and
    headers). Closes ``flow`` however it ends."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Call):
                step = flow.send(await off_loop.run(step))
            else:
                step = flow.send(seen((yield step.headers)))
    except StopIteration:
        return
    finally:
        flow.close()


async def async_drive(
    flow: Flow,
    send: Callable[[Mapping[str, str]], Awaitable[_R]],
    seen: Callable[[_R], Seen],
    release: Callable[[_R], Awaitable[None]],
    off_loop: OffLoop,
) -> _R:
    """:func:`~refreshing_session.flow.drive` for async code: return the last answer."""
    pump = async_exchanges(flow, seen, off_loop)
    answer: _R | None = None
    try:
        headers = await anext(pump)
        while True:
            answer = await send(headers)
            headers = await pump.asend(answer)
            await release(answer)  # a replay follows: this answer will not be returned
            answer = None
    except StopAsyncIteration:
        assert answer is not None, "the flow ended before sending the request"
        return answer
    except BaseException:
        if answer is not None:
            await release(answer)
        raise
    finally:
        await pump.aclose()


class OffLoop:
    """Runs the flow's keeper calls: on the loop when the call can answer at once, else in a
    worker thread. A shareable call (the current token) is made once for all the tasks of an
    event loop that ask while it runs: a burst of requests costs one thread hop, not one each,
    and its error (the leader's) reaches every task that waited for it."""

    def __init__(self) -> None:
        self._running: dict[tuple[object, Callable[[], Any]], _Running] = {}

    async def run(self, call: Call) -> Any:
        """Return what ``call`` returns; a cancellation waits for a call in a thread to
        return."""
        if call.at_once is not None:
            answer = call.at_once()
            if answer is not None:
                return answer
        if not call.shareable:
            return await anyio.to_thread.run_sync(call.function)
        key = (anyio.lowlevel.current_token(), call.function)
        while True:
            running = self._running.get(key)
            if running is None:
                return await self._lead(key, call.function)
            await running.done.wait()
            if running.error is not None:
                error = running.error
                raise error.restated(str(error)) if isinstance(error, TokenError) else error
            if running.succeeded:
                return running.result
            # The leading task was cancelled before its call started: ask again.

    async def _lead(
        self, key: tuple[object, Callable[[], Any]], function: Callable[[], Any]
    ) -> Any:
        running = self._running[key] = _Running(anyio.Event())
        try:
            running.result = await anyio.to_thread.run_sync(function)
            running.succeeded = True
            return running.result
        except Exception as error:
            running.error = error
            raise
        finally:
            del self._running[key]
            running.done.set()


@dataclass
class _Running:
    """A shared call in flight, and once ``done`` is set, its outcome."""

    done: anyio.Event
    succeeded: bool = False
    result: Any = None
    error: Exception | None = None
