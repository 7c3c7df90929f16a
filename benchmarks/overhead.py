"""The common path: the cost of one API request with a valid token, per client.

The server runs in its own process, so the client's CPU time is its own. Clients take turns in
every round (A B C ... then B C ... A), so machine noise hits them alike; each round's figures
are divided by the plain session's figures of the same round, and the medians and quartiles of
those ratios are reported. A second series replaces the transport (``HTTPAdapter.send``) with a
canned answer, which leaves only the clients' own work: there the differences are not diluted
by sockets and HTTP parsing, and the profile shows the hot path itself.
"""

from __future__ import annotations

import cProfile
import gc
import io
import os
import pstats
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter

import refreshing_session

from .authserver import granted_api
from .clients import LIBRARIES, PLAIN, Library
from .settings import Plan
from .stats import Spread

_TOKEN_TTL = 3600.0  # no refresh during the measurement
_WARMUP_REQUESTS = 50
_PROFILE_ROWS = 25
_CANNED_BODY = b'{"ok": true}'
# The functions to show by cumulative time: ours, and the requests steps they sit in.
_FOCUS = (
    r"refreshing_session[/\\]|\(get_netrc_auth\)|sessions.py:\d+\((request|"
    r"prepare_request|send|merge_environment_settings)\)|adapters.py:\d+\(send\)"
)
PROFILED = ("ours", "plain")


class _Answer(Protocol):
    @property
    def status_code(self) -> int: ...


class Getter(Protocol):
    """A client that sends GET requests: a ``requests.Session`` or an ``httpx.Client``."""

    def get(self, url: str, *, timeout: float) -> _Answer: ...


@dataclass(frozen=True)
class Batch:
    """``requests`` calls that took ``seconds`` of wall time and ``cpu`` seconds of CPU."""

    seconds: float
    cpu: float
    requests: int

    @property
    def per_second(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


@dataclass(frozen=True)
class ClientCost:
    """One client's common-path cost over all rounds."""

    key: str
    label: str
    requests_per_second: Spread
    cpu_us_per_request: Spread
    speed_vs_plain: Spread  # requests per second / plain's, round by round (above 1: faster)
    cpu_vs_plain: Spread  # CPU per request / plain's, round by round (below 1: cheaper)


@dataclass(frozen=True)
class OverheadResult:
    """The common-path benchmark's outcome, and the profiles of the hot path."""

    rounds: int
    requests_per_round: int
    clients: list[ClientCost]  # over loopback
    stubbed_requests_per_round: int
    stubbed: list[ClientCost]  # with the transport stubbed out
    profiles: dict[str, str]  # pstats text of the stubbed hot path, by client key


def run_overhead(plan: Plan, progress: Callable[[str], None]) -> OverheadResult:
    """Measure every client against one loopback server, interleaved."""
    clients = (PLAIN, *LIBRARIES)
    with granted_api(_TOKEN_TTL) as (server, endpoint):
        url = server.api_url + "items"
        sessions = {library.key: library.factory(endpoint) for library in clients}
        try:
            loopback = interleaved(
                sessions, url, plan.overhead_rounds, plan.overhead_requests, progress
            )
            with stubbed_transport():
                stubbed = interleaved(
                    sessions, url, plan.overhead_rounds, plan.stubbed_requests, progress
                )
                profiles = {
                    key: _profile(sessions[key], url, plan.profile_requests) for key in PROFILED
                }
        finally:
            for session in sessions.values():
                session.close()
    return OverheadResult(
        plan.overhead_rounds,
        plan.overhead_requests,
        _costs(clients, loopback),
        plan.stubbed_requests,
        _costs(clients, stubbed),
        profiles,
    )


def interleaved(
    sessions: Mapping[str, Getter],
    url: str,
    rounds: int,
    count: int,
    progress: Callable[[str], None],
) -> dict[str, list[Batch]]:
    """Run the rounds of ``count`` requests; in round ``r`` the clients start at the r-th."""
    keys = list(sessions)
    for key in keys:
        measure(sessions[key], url, _WARMUP_REQUESTS)
    batches: dict[str, list[Batch]] = {key: [] for key in keys}
    for round_number in range(rounds):
        shift = round_number % len(keys)
        for key in keys[shift:] + keys[:shift]:
            batches[key].append(measure(sessions[key], url, count))
        progress(f"common path round {round_number + 1}/{rounds} ({count} requests each)")
    return batches


@contextmanager
def stubbed_transport() -> Iterator[None]:
    """Answer every request with a canned 200 instead of sending it (in this process)."""
    original = HTTPAdapter.send

    def canned(
        self: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        response = requests.Response()
        response.status_code, response._content = 200, _CANNED_BODY
        response.headers["Content-Type"] = "application/json"
        response.request, response.url = request, request.url or ""
        return response

    HTTPAdapter.send = canned  # type: ignore[method-assign]
    try:
        yield
    finally:
        HTTPAdapter.send = original  # type: ignore[method-assign]


def _costs(clients: Sequence[Library], batches: Mapping[str, list[Batch]]) -> list[ClientCost]:
    return [
        cost(library.key, library.label, batches[library.key], batches[PLAIN.key])
        for library in clients
    ]


def measure(session: Getter, url: str, count: int) -> Batch:
    """Make ``count`` requests to ``url``; every one must succeed."""
    gc.collect()
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(count):
        response = session.get(url, timeout=10)
        if response.status_code != 200:
            raise RuntimeError(f"{type(session).__name__} got HTTP {response.status_code}")
    return Batch(time.perf_counter() - started, time.process_time() - cpu_started, count)


def cost(key: str, label: str, batches: Sequence[Batch], plain: Sequence[Batch]) -> ClientCost:
    """A client's cost from its ``batches``, against the ``plain`` client's of the same
    rounds."""
    speed = [b.per_second for b in batches]
    cpu = [b.cpu / b.requests for b in batches]
    plain_speed = [b.per_second for b in plain]
    plain_cpu = [b.cpu / b.requests for b in plain]
    return ClientCost(
        key=key,
        label=label,
        requests_per_second=Spread.of(speed),
        cpu_us_per_request=Spread.of([1e6 * c for c in cpu]),
        speed_vs_plain=Spread.of([s / p for s, p in zip(speed, plain_speed, strict=True)]),
        cpu_vs_plain=Spread.of([c / p for c, p in zip(cpu, plain_cpu, strict=True)]),
    )


def _profile(session: requests.Session, url: str, count: int) -> str:
    """Profile ``count`` requests; return our functions and the requests steps around them by
    cumulative time, then the top entries by own time."""
    profiler = cProfile.Profile()
    profiler.runcall(measure, session, url, count)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    print(f"{count} requests: refreshing_session and the requests steps around it", file=text)
    stats.sort_stats("cumulative").print_stats(_FOCUS, _PROFILE_ROWS)
    print(f"{count} requests: the top entries by own time", file=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(_PROFILE_ROWS)
    return without_folders(text.getvalue())


def without_folders(text: str) -> str:
    """Drop the install folders from the profile's file names."""
    for module in (requests, refreshing_session):
        folder = os.path.dirname(os.path.dirname(os.path.abspath(module.__file__ or "")))
        text = text.replace(folder + os.sep, "")
    return text
