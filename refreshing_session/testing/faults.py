"""Fault injection for the token endpoint: canned answers, dropped connections, random
failures and delays, scheduled by the tests and taken one per token request."""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass

from .checks import check_non_negative
from .messages import Response


@dataclass
class Fault:
    """A canned answer for the next ``remaining`` token requests."""

    response: Response | None  # None: drop the connection without answering
    remaining: int


@dataclass
class _RandomFailures:
    """Fail each token request with probability ``share``, but never two in a row."""

    response: Response
    share: float
    draw: random.Random
    failed_last: bool = False

    def next_fault(self) -> Fault | None:
        failing = not self.failed_last and self.draw.random() < self.share
        self.failed_last = failing
        return Fault(self.response, 0) if failing else None


class TokenEndpointFaults:
    """The faults and the delay scheduled for the token endpoint; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._random_failures: _RandomFailures | None = None
        self._delay = 0.0

    def add(self, response: Response | None, times: int) -> None:
        """Answer the next ``times`` token requests with ``response`` (None: drop them), after
        the faults already queued. Raises ValueError for a negative ``times``."""
        check_non_negative("times", times)
        if times:
            with self._lock:
                self._faults.append(Fault(response, times))

    def fail_at_random(self, response: Response, share: float, seed: int | None) -> None:
        """From now on answer a share of token requests with ``response``, never two in a row
        (``share`` 0 stops it); ``seed`` makes the draws repeatable."""
        with self._lock:
            self._random_failures = (
                _RandomFailures(response, share, random.Random(seed)) if share else None
            )

    def set_delay(self, seconds: float) -> None:
        """Delay every later token request by ``seconds``; raises ValueError below zero."""
        check_non_negative("seconds", seconds)
        with self._lock:
            self._delay = seconds

    def delay(self) -> float:
        """Return how long to hold a token request before processing it."""
        with self._lock:
            return self._delay

    def take(self) -> Fault | None:
        """Return the fault for this token request, or None to process it."""
        with self._lock:
            if not self._faults:
                random_failures = self._random_failures
                return None if random_failures is None else random_failures.next_fault()
            fault = self._faults[0]
            fault.remaining -= 1
            if not fault.remaining:
                self._faults.popleft()
            return fault
