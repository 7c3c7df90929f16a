"""The refresh storm: P processes x T threads share one token file for a fixed time.

A client that keeps its token in Redis instead (:data:`~benchmarks.clients.OURS_ON_REDIS`)
gets a ``redis-server`` of its own for each cell, and the processes share only that.

One runner serves every library: each worker process builds its client with the library's
factory (see :mod:`benchmarks.clients`) and its threads call the API back to back until the
deadline. The server counts token-endpoint calls and reuse detections, and times every token
request, so the requests that arrived while a refresh was in flight can be picked out.
"""

from __future__ import annotations

import cProfile
import importlib
import math
import multiprocessing
import os
import queue
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any, Protocol

import requests

from refreshing_session.testing import LocalAuthServer, TokenCall

from .authserver import Counters, refreshes_due, write_grant
from .clients import BY_KEY, Endpoint
from .latency import StormLatency, storm_latency
from .local_redis import local_redis
from .overhead import Getter
from .stats import Latency

_READY = "ready"
_START_TIMEOUT = 120.0  # the longest a worker waits for the start signal
_GRACE = 30.0  # the longest the parent waits for reports after the deadline
_JOIN_TIMEOUT = 5.0
_REQUEST_TIMEOUT = 5.0
_MAX_REQUESTS_PER_THREAD = 500_000
STATIC_TTL = 3600.0  # seconds: the static client's token outlives any cell


@dataclass(frozen=True)
class Cell:
    """One storm measurement: a library at a shape."""

    library: str
    processes: int
    threads: int
    rate: float | None = None  # requests per second per thread; None: back to back


@dataclass(frozen=True)
class _Job:
    """What each worker process of a cell runs."""

    library: str
    endpoint: Endpoint
    url: str
    threads: int
    interval: float  # seconds between one thread's requests; 0: back to back
    profile_folder: str | None = None  # set: each thread runs under cProfile, saved there


@dataclass
class RequestLog:
    """Every request a worker made: when it started, how long it took, and how it ended."""

    starts: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)  # token in hand (NaN: not measured)
    cpu: float = 0.0  # CPU seconds the worker processes spent while their threads ran

    def extend(self, other: RequestLog) -> None:
        """Append ``other``'s requests."""
        self.cpu += other.cpu
        self.starts += other.starts
        self.durations += other.durations
        self.outcomes += other.outcomes
        self.ready += other.ready


class _TokenClock:
    """Notes when each thread last got its token from a RefreshingSession's keeper, so that
    the lock hand-over can be told apart from the API call; other clients are not measured."""

    def __init__(self, session: requests.Session) -> None:
        self._local = threading.local()
        keeper = getattr(session, "keeper", None)
        if keeper is None:
            return
        original = keeper.current

        def current() -> Any:
            token = original()
            self._local.at = time.perf_counter()
            return token

        keeper.current = current

    def take(self) -> float:
        """When this thread's last request got its token (NaN if unknown); then forget it."""
        at: float = getattr(self._local, "at", math.nan)
        self._local.at = math.nan
        return at


@dataclass(frozen=True)
class CellResult:
    """What one cell measured."""

    library: str
    processes: int
    threads: int
    seconds: float  # from the grant to the deadline
    requests: int
    successes: int
    errors: dict[str, int]  # errors surfaced to callers, by kind
    token_calls: int
    refreshes_due: int  # tokens that came due under the library's own refresh policy
    reuse_detections: int
    grant_revoked: bool
    latency: Latency  # of successful requests
    storm: StormLatency
    lost_workers: int  # workers that sent no report (0 unless something hung)
    client_cpu_us: float  # the worker processes' CPU per request, in microseconds
    api_401s: int  # API calls the server refused with a 401 (a client may have replayed them)

    @property
    def calls_per_due(self) -> float:
        """Token-endpoint calls per token that came due; 1.0 is the ideal."""
        return self.token_calls / self.refreshes_due


class AuthServer(Protocol):
    """The authorization server and API a storm cell runs against."""

    api_url: str
    token_url: str
    client_id: str
    client_secret: str

    def grant(self) -> dict[str, object]:
        """A fresh grant, as a login would leave it: the token endpoint's answer."""

    def counters(self) -> Counters:
        """Its counters so far."""

    def token_calls(self) -> list[TokenCall]:
        """The timing of every token request so far, oldest first (empty when not known)."""


class LocalServer:
    """A :class:`LocalAuthServer` as a storm cell's :class:`AuthServer`; its grants' first
    access tokens live ``grant_ttl`` seconds (None: as long as every other token)."""

    client_id, client_secret = "client", "secret"

    def __init__(self, server: LocalAuthServer, grant_ttl: float | None = None) -> None:
        self._server, self._grant_ttl = server, grant_ttl
        self.api_url, self.token_url = server.api_url, server.token_url

    def grant(self) -> dict[str, object]:
        """A fresh grant (see :meth:`LocalAuthServer.issue_token`)."""
        return self._server.issue_token(access_ttl=self._grant_ttl)

    def counters(self) -> Counters:
        """The server's counters so far."""
        return Counters.of(self._server.stats())

    def token_calls(self) -> list[TokenCall]:
        """Every token request so far."""
        return self._server.token_calls()


def run_cell(
    cell: Cell, ttl: float, seconds: float, token_delay: float, profile_folder: str | None = None
) -> CellResult:
    """Run ``cell`` against a fresh LocalAuthServer and grant with ``ttl``-second tokens (a
    client that cannot refresh gets one that outlives the cell); the token endpoint takes
    ``token_delay`` seconds to answer, as a remote one would. See :func:`run_cell_on` for
    ``profile_folder``."""
    with LocalAuthServer(access_ttl=ttl) as server:
        server.slow_token_endpoint(token_delay)
        grant_ttl = None if BY_KEY[cell.library].refreshes else STATIC_TTL
        return run_cell_on(cell, LocalServer(server, grant_ttl), ttl, seconds, profile_folder)


def run_cell_on(
    cell: Cell, server: AuthServer, ttl: float, seconds: float, profile_folder: str | None = None
) -> CellResult:
    """Run ``cell`` against ``server``, whose tokens live ``ttl`` seconds, for ``seconds``;
    with ``profile_folder``, every thread runs under cProfile and saves its profile there."""
    with (
        tempfile.TemporaryDirectory(prefix="refreshing-session-bench-") as folder,
        _redis_for(cell, Path(folder)) as redis_url,
    ):
        endpoint = Endpoint(
            server.api_url,
            server.token_url,
            os.path.join(folder, "token.json"),
            margin=ttl / 2,
            client_id=server.client_id,
            client_secret=server.client_secret,
            redis_url=redis_url,
        )
        job = _Job(
            cell.library,
            endpoint,
            server.api_url + "items",
            cell.threads,
            interval=1 / cell.rate if cell.rate else 0.0,
            profile_folder=profile_folder,
        )
        with _Crew(job, cell.processes) as crew:
            crew.wait_ready()
            before = server.counters()
            write_grant(endpoint.store(), server.grant())
            issued = time.perf_counter()
            crew.start(issued + seconds)
            log, lost = crew.collect(issued + seconds + _GRACE)
        counted = server.counters().since(before)
        return _result(cell, log, lost, counted, server.token_calls(), ttl, run=seconds)


def _redis_for(cell: Cell, folder: Path) -> AbstractContextManager[str | None]:
    """A redis-server's URL while the cell runs if its client keeps the token in Redis, else
    None."""
    if BY_KEY[cell.library].on_redis:
        return local_redis(folder / "redis")
    return nullcontext()


def _result(
    cell: Cell,
    log: RequestLog,
    lost: int,
    counted: Counters,
    calls: Sequence[TokenCall],
    ttl: float,
    run: float,
) -> CellResult:
    interval = ttl / 2 if BY_KEY[cell.library].refreshes_early else ttl
    outcomes = Counter(log.outcomes)
    ok = [d for d, outcome in zip(log.durations, log.outcomes, strict=True) if outcome == "ok"]
    return CellResult(
        library=cell.library,
        processes=cell.processes,
        threads=cell.threads,
        seconds=round(run, 2),
        requests=len(log.outcomes),
        successes=outcomes["ok"],
        errors={kind: count for kind, count in sorted(outcomes.items()) if kind != "ok"},
        token_calls=counted.token_calls,
        refreshes_due=refreshes_due(run, interval),
        reuse_detections=counted.reuse_detections,
        grant_revoked=counted.grants_revoked > 0,
        latency=Latency.of(ok),
        storm=storm_latency(log, calls),
        lost_workers=lost,
        client_cpu_us=1e6 * log.cpu / max(1, len(log.outcomes)),
        api_401s=counted.api_401s,
    )


class _Crew:
    """The worker processes of one cell; every one is stopped when the crew is closed."""

    def __init__(self, job: _Job, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._starts: multiprocessing.Queue[float] = context.Queue()
        self._reports: multiprocessing.Queue[str | RequestLog] = context.Queue()
        self._processes: list[SpawnProcess] = [
            context.Process(target=_worker, args=(job, self._starts, self._reports), daemon=True)
            for _ in range(processes)
        ]

    def __enter__(self) -> _Crew:
        for process in self._processes:
            process.start()
        return self

    def __exit__(self, *_: object) -> None:
        for process in self._processes:
            process.join(_JOIN_TIMEOUT)
            if process.is_alive():
                process.terminate()
                process.join(_JOIN_TIMEOUT)

    def wait_ready(self) -> None:
        """Wait until every worker has imported its library; raise if one died or hung."""
        waiting, give_up_at = len(self._processes), time.perf_counter() + _START_TIMEOUT
        while waiting:
            try:
                message = self._reports.get(timeout=0.5)
            except queue.Empty:
                dead = [p.exitcode for p in self._processes if p.exitcode is not None]
                if dead or time.perf_counter() > give_up_at:
                    raise RuntimeError(
                        f"benchmark workers did not start (exit codes {dead})"
                    ) from None
                continue
            if message != _READY:
                raise RuntimeError(f"a benchmark worker failed to start: {message}")
            waiting -= 1

    def start(self, deadline: float) -> None:
        """Let every worker go; they stop at ``deadline`` (``time.perf_counter``)."""
        for _ in self._processes:
            self._starts.put(deadline)

    def collect(self, give_up_at: float) -> tuple[RequestLog, int]:
        """Gather the workers' logs; return them and the number of workers that sent none."""
        log, missing = RequestLog(), len(self._processes)
        while missing:
            try:
                message = self._reports.get(timeout=max(0.1, give_up_at - time.perf_counter()))
            except queue.Empty:
                break
            if isinstance(message, str):
                raise RuntimeError(f"a benchmark worker failed: {message}")
            log.extend(message)
            missing -= 1
        return log, missing


def _worker(
    job: _Job,
    starts: multiprocessing.Queue[float],
    reports: multiprocessing.Queue[str | RequestLog],
) -> None:
    library = BY_KEY[job.library]
    for module in library.modules:
        importlib.import_module(module)
    reports.put(_READY)
    try:
        deadline = starts.get(timeout=_START_TIMEOUT)
    except queue.Empty:
        return
    try:
        session = library.factory(job.endpoint)
        log = _hammer(session, job, deadline)
    except Exception as error:
        reports.put(f"{library.label}: {error!r}")
        return
    reports.put(log)


def _hammer(session: requests.Session, job: _Job, deadline: float) -> RequestLog:
    """Call the API from ``job.threads`` threads until ``deadline``; return every request."""
    logs = [RequestLog() for _ in range(job.threads)]
    clock = _TokenClock(session)
    loop = _loop if job.profile_folder is None else _profiled_loop
    workers = [
        threading.Thread(target=loop, args=(session, job, deadline, log, clock), daemon=True)
        for log in logs
    ]
    cpu_started = time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(0.0, deadline - time.perf_counter()) + _GRACE)
    merged = _merged(logs)
    merged.cpu = time.process_time() - cpu_started
    return merged


def _profiled_loop(
    session: requests.Session, job: _Job, deadline: float, log: RequestLog, clock: _TokenClock
) -> None:
    """:func:`_loop` under cProfile (which sees only its own thread), timed by the thread's CPU
    clock, so that waiting on sockets and locks costs nothing; the profile is saved in
    ``job.profile_folder``."""
    assert job.profile_folder is not None
    profiler = cProfile.Profile(time.thread_time)
    profiler.runcall(_loop, session, job, deadline, log, clock)
    profiler.dump_stats(
        os.path.join(job.profile_folder, f"{os.getpid()}-{threading.get_ident()}.prof")
    )


def _merged(logs: Iterable[RequestLog]) -> RequestLog:
    merged = RequestLog()
    for log in logs:
        merged.extend(log)
    return merged


def _loop(
    session: requests.Session, job: _Job, deadline: float, log: RequestLog, clock: _TokenClock
) -> None:
    """Call the API back to back, or paced every ``job.interval`` seconds from a random
    offset (a slot missed while a request was slow is skipped, not made up in a burst)."""
    next_at = time.perf_counter() + random.random() * job.interval
    for _ in range(_MAX_REQUESTS_PER_THREAD):
        if job.interval:
            time.sleep(max(0.0, min(next_at, deadline) - time.perf_counter()))
        started = time.perf_counter()
        if started >= deadline:
            return
        outcome = call_api(session, job.url, _REQUEST_TIMEOUT)
        log.durations.append(time.perf_counter() - started)
        log.starts.append(started)
        log.outcomes.append(outcome)
        log.ready.append(clock.take())
        next_at = max(next_at + job.interval, time.perf_counter())


def call_api(client: Getter, url: str, timeout: float) -> str:
    """Make one API call with ``client`` (a requests session or an httpx client); return "ok",
    "HTTP <status>" or the exception's class name."""
    try:
        response = client.get(url, timeout=timeout)
    except Exception as error:  # peers and httpx raise their own types, not RequestException
        return type(error).__name__
    return "ok" if response.status_code == 200 else f"HTTP {response.status_code}"


def describe(result: CellResult) -> str:
    """A one-line summary for progress output."""
    errors = sum(result.errors.values())
    return (
        f"{result.successes} ok, {errors} errors, {result.token_calls} token calls "
        f"({result.refreshes_due} due), {result.reuse_detections} reuse, "
        f"p99 {result.latency.p99:.1f} ms"
    )


def as_dict(result: CellResult) -> dict[str, Any]:
    """``result`` as plain data, with its derived figure."""
    return {**asdict(result), "calls_per_due": result.calls_per_due}
