"""The README's "works with Celery, RQ and gunicorn", tried with each: the real framework runs
two workers, which call the local server's API with a module-level ``RefreshingSession``
(tests/frameworks/calls.py) on one token file, through several expiries of 2-second tokens that
the server rotates, with reuse detection on.

Each test starts the framework and waits until both workers are serving, logs in (writes the
first token), then sends a burst of 4 tasks, jobs or requests (twice the workers) and waits for
their answers, again and again for 4 seconds. It passes as the storm tests do
(tests/test_front_end_storm.py): no caller error, no refresh token presented twice, and at most
one token-endpoint call per token that came due. A token is due halfway through its life (the
default leeway, 30 s, is capped there), so once a second from the login; the count is rounded
down over the time from the login to the end of the last burst. Tolerated, as there: API 401s
(a token the server ends at its whole second may die while a request carrying it is on its way;
the session refreshes and replays the request, and the caller never sees the 401), and fewer
calls than tokens due (the last token due may not be used again before the end).
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from celery import Celery  # type: ignore[import-untyped]
from redis import Redis
from rq import Queue
from rq.job import Job

from refreshing_session import Token, TokenFile
from refreshing_session.testing import LocalAuthServer, ServerStats

from .frameworks.services import Service, running, wait_until
from .support.redis_servers import RedisServer
from .support.storms import Storm

TTL = 2.0
SECONDS = 4.0  # of calls, from the login
WORKERS = 2
BURST = 2 * WORKERS  # calls in flight at once, so that every worker has work
MAX_BURSTS = 2000  # a bound on the loop, far above what 4 seconds allow
START_TIMEOUT = 60.0  # for the workers to be up, on a loaded machine
ANSWER_TIMEOUT = 20.0  # for the answers to one burst

# What a caller saw (a status or an exception's name), the pid of the process that called, and
# the pid of the process that built the session.
Call = tuple[str, int, int]


@dataclass
class Traffic:
    """What the callers saw, from the login to the end of the last burst: per process that
    called (pid 0 counts what the test's own HTTP client saw when it had no answer from a
    worker), and which processes built the sessions they used."""

    first: Token
    started: float
    ended: float = 0.0
    per_caller: dict[int, Counter[str]] = field(default_factory=dict)
    builders: set[int] = field(default_factory=set)

    def add(self, calls: list[Call]) -> None:
        """Count the calls of one burst."""
        for outcome, caller, builder in calls:
            self.per_caller.setdefault(caller, Counter())[outcome] += 1
            self.builders.add(builder)

    @property
    def callers(self) -> set[int]:
        """The pids of the processes that called."""
        return set(self.per_caller)

    @property
    def storm(self) -> Storm:
        """The calls as a storm from the login to the end of the last burst: its outcomes, its
        tokens due and its figures."""
        elapsed = self.ended - self.started
        return Storm(self.first, self.started, elapsed, list(self.per_caller.values()))


@dataclass
class TaskQueue:
    """Tasks (Celery) or jobs (RQ) sent to the workers by name, and their answers."""

    workers: list[Service]
    # A task's name and arguments: a handle (Celery's AsyncResult, RQ's Job).
    send: Callable[[str, tuple[object, ...]], Any]
    answer: Callable[[Any], object]  # a handle: the task's return value, None until then
    gather_task: str  # the name of calls.gather_processes or calls.gather_parents
    call_task: str  # the name of calls.call_api

    def run(self, name: str, arguments: list[tuple[object, ...]], timeout: float) -> list[object]:
        """Send one task ``name`` for each of ``arguments``; return their answers, in order."""
        handles = [self.send(name, each) for each in arguments]
        answers: list[object] = [None] * len(handles)

        def all_answered() -> bool:
            for index, handle in enumerate(handles):
                if answers[index] is None:
                    answers[index] = self.answer(handle)
            return all(answer is not None for answer in answers)

        wait_until(self.workers, all_answered, f"answers to {len(handles)} {name}", timeout)
        return answers

    def gather(self, folder: Path) -> None:
        """Wait until every worker has taken a task at the same time: all are up."""
        folder.mkdir()
        answers = self.run(self.gather_task, [(str(folder), WORKERS)] * WORKERS, START_TIMEOUT)
        assert answers == [True] * WORKERS, f"the {WORKERS} workers did not gather: {answers}"

    def burst(self) -> list[Call]:
        """Run BURST calls at once; return what each caller saw."""
        return [
            _as_call(answer) for answer in self.run(self.call_task, [()] * BURST, ANSWER_TIMEOUT)
        ]


@pytest.fixture
def auth_server() -> Iterator[LocalAuthServer]:
    """The local server, with 2-second tokens."""
    with LocalAuthServer(access_ttl=TTL) as server:
        yield server


@pytest.mark.timeout(120)
def test_celery_prefork_workers_refresh_once_per_due_token(
    auth_server: LocalAuthServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A Celery worker with a prefork pool of 2 processes, on a Redis broker. The worker imports
    the application, and so builds the session, before it forks the pool."""
    results = tmp_path / "results"
    results.mkdir()
    argv = ["-m", "celery", "--app", "tests.frameworks.celery_app", "worker", "--pool",
            "prefork", "--concurrency", str(WORKERS), "--optimization", "fair", "--loglevel",
            "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    env = _environment(
        auth_server,
        tmp_path,
        FRAMEWORKS_REDIS_URL=redis_server.url,
        FRAMEWORKS_RESULTS=str(results),
    )
    with (
        Celery(broker=redis_server.url, backend=results.as_uri()) as client,
        running("celery worker", argv, tmp_path / "celery.log", env) as worker,
    ):
        tasks = TaskQueue(
            [worker],
            send=lambda name, arguments: client.send_task(name, arguments),
            answer=lambda task: task.result if task.ready() else None,
            gather_task="frameworks.gather",
            call_task="frameworks.call_api",
        )
        tasks.gather(tmp_path / "ready")
        traffic = _calls(auth_server, tmp_path, tasks.burst)
    _check(traffic, auth_server.stats(), builders=1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("settings", "builders"),
    [([], 0), (["--config", "tests.frameworks.rq_settings"], WORKERS)],
    ids=["imported-by-each-horse", "preloaded"],
)
def test_rq_workers_refresh_once_per_due_token(
    settings: list[str],
    builders: int,
    auth_server: LocalAuthServer,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """Two RQ workers (``rq worker``), each forking a work horse per job. Either the horse
    imports the job's module, and so builds a session of its own, or (with settings that import
    the module) the worker built it at start and each horse inherits it."""
    argv = ["-c", "from rq.cli import main; main()", "worker", "--url", redis_server.url,
            *settings, "frameworks"]  # fmt: skip
    env = _environment(auth_server, tmp_path)
    with ExitStack() as stack:
        queue = Queue(
            "frameworks", connection=stack.enter_context(Redis.from_url(redis_server.url))
        )
        # Killed when done, without a warm shutdown: once a worker has run a job, its warm
        # shutdown may wait up to a minute (seen with rq 3.0: its pub/sub thread waits 60 s for
        # a message), and by then every job has been answered.
        workers = [
            stack.enter_context(
                running(f"rq worker {n}", argv, tmp_path / f"rq{n}.log", env, warm_shutdown=0)
            )
            for n in range(WORKERS)
        ]
        jobs = TaskQueue(
            workers,
            send=lambda name, arguments: queue.enqueue(name, *arguments),
            answer=_rq_answer,
            gather_task="tests.frameworks.calls.gather_parents",
            call_task="tests.frameworks.calls.call_api",
        )
        jobs.gather(tmp_path / "ready")
        traffic = _calls(auth_server, tmp_path, jobs.burst)
    _check(traffic, auth_server.stats(), builders=builders)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "worker_class",
    [["--worker-class", "sync"], ["--worker-class", "gthread", "--threads", "2"]],
    ids=["sync", "gthread"],
)
def test_gunicorn_preloaded_workers_refresh_once_per_due_token(
    worker_class: list[str], auth_server: LocalAuthServer, tmp_path: Path
) -> None:
    """gunicorn with 2 workers (sync, or gthread with 2 threads each) and ``--preload``: the
    master imports the WSGI application, and so builds the session, before it forks the
    workers. The test is the HTTP client, on a socket it binds and hands to gunicorn."""
    ready = tmp_path / "ready"
    ready.mkdir()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        argv = ["-m", "gunicorn", "--preload", "--workers", str(WORKERS), *worker_class,
                "--bind", f"fd://{listener.fileno()}", "--graceful-timeout", "5",
                "--config", "tests/frameworks/gunicorn_conf.py",
                "tests.frameworks.wsgi_app:app"]  # fmt: skip
        env = _environment(auth_server, tmp_path, FRAMEWORKS_READY=str(ready))
        log = tmp_path / "gunicorn.log"
        with (
            running("gunicorn", argv, log, env, pass_fds=(listener.fileno(),)) as gunicorn,
            ThreadPoolExecutor(BURST) as clients,
        ):
            booted = lambda: len(list(ready.iterdir())) == WORKERS  # noqa: E731
            wait_until([gunicorn], booted, "workers booted", START_TIMEOUT)
            traffic = _calls(auth_server, tmp_path, lambda: list(clients.map(_get, [url] * BURST)))
    _check(traffic, auth_server.stats(), builders=1)


def _environment(server: LocalAuthServer, folder: Path, **more: str) -> dict[str, str]:
    """What tests/frameworks/calls.py reads: the server's URLs and the shared token file."""
    return {
        "FRAMEWORKS_API_URL": server.api_url,
        "FRAMEWORKS_TOKEN_URL": server.token_url,
        "FRAMEWORKS_TOKEN_FILE": str(folder / "token.json"),
        **more,
    }


def _calls(server: LocalAuthServer, folder: Path, burst: Callable[[], list[Call]]) -> Traffic:
    """Log in (write the first token to the shared file), then run bursts for SECONDS."""
    started = time.time()
    first = Token.from_response(server.issue_token(), requested_at=started)
    TokenFile(folder / "token.json").write(first)
    traffic = Traffic(first, started)
    for _ in range(MAX_BURSTS):
        traffic.add(burst())
        if time.time() >= started + SECONDS:
            break
    traffic.ended = time.time()
    return traffic


def _check(traffic: Traffic, stats: ServerStats, *, builders: int) -> None:
    """Assert what the storm tests assert, that the calls came from several workers, and that
    the sessions they used were built by ``builders`` parent processes (0: each process that
    called built its own)."""
    storm = traffic.storm
    figures = storm.figures(
        processes_that_called=len(traffic.callers),
        processes_that_built_a_session=len(traffic.builders),
        token_calls=stats.token_requests,
        api_401s=stats.api_unauthorized,
        reuse_detections=stats.reuse_detections,
    )
    print(figures)  # shown with -s, and when the test fails
    assert set(storm.outcomes) == {"200"}, f"a caller saw an error: {figures}"
    assert stats.reuse_detections == 0, f"a refresh token was presented twice: {figures}"
    assert stats.revoked_grants == 0, figures
    assert storm.tokens_due >= 3, f"the calls did not last through several expiries: {figures}"
    assert 0 < stats.token_requests <= storm.tokens_due, f"too many token calls: {figures}"
    assert len(traffic.callers) >= WORKERS, f"not every worker made calls: {figures}"
    if builders:  # every worker used a session it inherited
        assert len(traffic.builders) == builders, figures
        assert traffic.builders.isdisjoint(traffic.callers), figures
    else:
        assert traffic.builders == traffic.callers, figures


def _as_call(answer: object) -> Call:
    """A Call from a task's answer (a list, once through Celery's JSON)."""
    assert isinstance(answer, list | tuple), f"not a call: {answer!r}"
    outcome, caller, builder = answer
    return str(outcome), int(caller), int(builder)


def _rq_answer(job: Job) -> object:
    """An RQ job's return value, or None while it has none."""
    result = job.latest_result()
    return None if result is None else result.return_value


def _get(url: str) -> Call:
    """GET ``url`` on a new connection (so that the requests spread over gunicorn's workers);
    return what the handler saw, or the client's own error."""
    try:
        response = requests.get(url, timeout=10)
    except requests.RequestException as error:
        return type(error).__name__, 0, 0
    if response.status_code != 200:
        return f"gunicorn answered {response.status_code}", 0, 0
    answer = response.json()
    return str(answer["outcome"]), int(answer["pid"]), int(answer["built_in"])
