"""Storm latency: how much longer a request takes when it arrives while a refresh is in flight.

A request is *waiting* when it started while a successful token request was being served. For
those, ``extra`` is the request's latency minus that token request's own duration on the server
(the issue's measure), and ``after_answer`` is the time from the token endpoint's answer to the
caller's response (stricter: it holds the lock hand-over, the file read and the API call itself).
``handoff`` is the part of it until the client had the token in hand (RefreshingSession only):
the lock hand-over and the file read, without the API call and the server's queue.
*Calm* requests overlapped no token request at all; their latency is the API call's own cost
under the same load, the floor for ``after_answer``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Protocol

from refreshing_session.testing import TokenCall

from .stats import Latency


@dataclass(frozen=True)
class StormLatency:
    """Latency of requests that waited for a refresh, against the refresh's own duration."""

    refreshes: int  # successful token requests
    refresh: Latency  # their duration on the server
    waiting: Latency  # successful requests that started during one of them
    extra: Latency  # waiting requests: latency minus the refresh's duration
    after_answer: Latency  # waiting requests: from the refresh's answer to the response
    handoff: Latency  # waiting requests: from the refresh's answer to the token in hand
    calm: Latency  # successful requests that overlapped no token request


class RequestTimes(Protocol):
    """Every request's start, duration, outcome and token-in-hand time (NaN: unknown)."""

    starts: list[float]
    durations: list[float]
    outcomes: list[str]
    ready: list[float]


def storm_latency(log: RequestTimes, calls: Sequence[TokenCall]) -> StormLatency:
    """Classify every successful request against the token requests (sorted by start)."""
    refreshes = [call for call in calls if call.status == 200]
    refresh_starts = [call.started for call in refreshes]
    call_starts = [call.started for call in calls]
    reach = list(accumulate((call.answered for call in calls), max))
    extra: list[float] = []
    after: list[float] = []
    calm: list[float] = []
    waiting: list[float] = []
    handoff: list[float] = []
    for start, duration, outcome, ready in zip(
        log.starts, log.durations, log.outcomes, log.ready, strict=True
    ):
        if outcome != "ok":
            continue
        refresh = _in_flight(refreshes, refresh_starts, start)
        if refresh is not None:
            waiting.append(duration)
            extra.append(duration - (refresh.answered - refresh.started))
            after.append(start + duration - refresh.answered)
            if not math.isnan(ready):
                handoff.append(ready - refresh.answered)
        elif not _overlaps(call_starts, reach, start, start + duration):
            calm.append(duration)
    return StormLatency(
        len(refreshes),
        Latency.of([c.answered - c.started for c in refreshes]),
        Latency.of(waiting),
        Latency.of(extra),
        Latency.of(after),
        Latency.of(handoff),
        Latency.of(calm),
    )


def _in_flight(
    calls: Sequence[TokenCall], starts: Sequence[float], moment: float
) -> TokenCall | None:
    """The token request that started last before ``moment``, if it was still being served."""
    index = bisect_right(starts, moment) - 1
    if index >= 0 and moment < calls[index].answered:
        return calls[index]
    return None


def _overlaps(starts: Sequence[float], reach: Sequence[float], begin: float, end: float) -> bool:
    """Whether any token request was being served between ``begin`` and ``end``; ``reach[i]``
    is the latest answer among the first ``i + 1`` token requests."""
    index = bisect_left(starts, end) - 1
    return index >= 0 and reach[index] > begin
