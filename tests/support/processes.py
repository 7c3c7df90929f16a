"""Helpers for tests that run real processes: start them, wait for conditions, collect output."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NoReturn

import pytest

from refreshing_session import RefreshingSession
from refreshing_session.testing import LocalAuthServer

ROOT = Path(__file__).resolve().parents[2]

# Makes job["count"] requests to job["path"] and prints each outcome: a status or an error name.
REQUESTS = """
from refreshing_session import OAuth2Refresher, RefreshingSession
session = RefreshingSession(job["api"], token_file=job["file"],
                            refresher=OAuth2Refresher(job["token_url"], "client", "secret"))
outcomes = []
for _ in range(job.get("count", 1)):
    try:
        response = session.get(job["api"] + job.get("path", "items"), timeout=10)
        outcomes.append(str(response.status_code))
    except Exception as error:
        outcomes.append(type(error).__name__)
print(" ".join(outcomes))
"""

# Runs job["threads"] threads on one shared session, each calling job["url"] until job["until"]
# (epoch seconds), or once with job["once"]. The session shares job["file"], or with
# job["redis"] only the Redis key job["key"]. With job["go"], each worker first touches a file
# in job["ready"] and waits (60 s at most) for the deadline to be written to job["go"], so that
# all start together. Prints what the callers saw, as JSON: a status code or an exception's
# name, counted.
STORM = """
import collections, os, threading, time
from pathlib import Path
import refreshing_session as rs
store = (rs.RedisTokenStore(job["redis"], job["key"], lock_ttl=job["lock_ttl"])
         if "redis" in job else rs.TokenFile(job["file"]))
session = rs.RefreshingSession(job["api"], store=store, refresher=rs.OAuth2Refresher(
    job["token_url"], job.get("client_id", "client"), job.get("client_secret", "secret"),
    auth_method=job.get("auth_method")))
if "go" in job:
    Path(job["ready"], str(os.getpid())).touch()
    give_up = time.monotonic() + 60
    while not Path(job["go"]).exists() and time.monotonic() < give_up:
        time.sleep(0.005)
    job["until"] = float(Path(job["go"]).read_text())
outcomes = collections.Counter()
lock = threading.Lock()
def work():
    while time.time() < job["until"]:
        try:
            outcome = str(session.get(job["url"], timeout=10).status_code)
        except Exception as error:
            outcome = type(error).__name__
        with lock:
            outcomes[outcome] += 1
        if job.get("once"):
            return
threads = [threading.Thread(target=work) for _ in range(job["threads"])]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(outcomes))
"""


def job_for(server: LocalAuthServer, token_file: Path, **extra: object) -> dict[str, object]:
    """The job the REQUESTS program expects, for ``server`` and ``token_file``."""
    return {"api": server.api_url, "file": str(token_file), "token_url": server.token_url, **extra}


def use_session(session: RefreshingSession, url: str) -> int:
    """GET ``url`` with ``session`` and return the status: a task for a process pool."""
    return session.get(url, timeout=10).status_code


def use_in_child_processes(session: RefreshingSession, url: str, method: str) -> list[int]:
    """Send ``session`` to a pool of 2 processes started with ``method`` and GET ``url`` 4
    times there; return the statuses."""
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        return list(pool.map(use_session, [session] * 4, [url] * 4, timeout=60))


def unavailable(message: str) -> NoReturn:
    """Skip the test because a tool it needs is missing, except in CI, where that must fail
    the run instead."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(
            f"{message} (the CI environment variable is set, so this fails instead of skipping)",
            pytrace=False,
        )
    pytest.skip(message)


def wait_for(
    condition: Callable[[], bool],
    timeout: float = 10.0,
    why: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds, saying ``why()`` (a
    function, so that it tells the state at the failure) or that the condition never held."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, why() if why else "condition not reached in time"
        time.sleep(0.01)


def start_process(code: str, job: dict[str, object]) -> subprocess.Popen[str]:
    """Start a fresh interpreter running ``code``, with ``job`` as a dict named ``job``."""
    program = f"import json, sys\njob = json.loads(sys.argv[1])\n{code}"
    return subprocess.Popen(
        [sys.executable, "-c", program, json.dumps(job)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_storm(
    job: dict[str, object],
    processes: int,
    seconds: float,
    folder: Path,
    log_in: Callable[[], float],
    programs: Sequence[str] = (),
) -> list[str]:
    """Run the STORM program in ``processes`` processes that start together, however long the
    machine takes to start them: once every one is ready, ``log_in()`` writes the first token
    and returns when it was requested, and the storm runs ``seconds`` from that moment.
    ``programs`` names each process's program instead (programs that start as STORM does).
    Returns what each process printed; a process that fails or does not start fails the test."""
    ready, go = folder / "ready", folder / "go"
    ready.mkdir()
    job = {**job, "ready": str(ready), "go": str(go)}
    workers = [start_process(code, job) for code in programs or [STORM] * processes]
    try:
        wait_for(
            lambda: (
                len(list(ready.iterdir())) == processes
                or any(worker.poll() is not None for worker in workers)
            ),
            timeout=60,
        )
        assert all(worker.poll() is None for worker in workers), "a worker did not start"
        deadline = log_in() + seconds
        signal = go.with_name("go.tmp")
        signal.write_text(repr(deadline))
        signal.replace(go)  # atomic: workers never read a half-written deadline
        outputs = []
        for worker in workers:
            out, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err[-3000:]
            outputs.append(out)
        return outputs
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def run_in_processes(code: str, count: int, job: dict[str, object]) -> list[str]:
    """Run ``code`` in ``count`` processes at once; return what each printed."""
    processes = [start_process(code, job) for _ in range(count)]
    outputs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
            outputs.append(out.strip())
    finally:
        for process in processes:  # a failure or a timeout leaves none running
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs
