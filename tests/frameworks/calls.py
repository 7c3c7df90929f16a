"""The code the frameworks run: a ``RefreshingSession`` built once, at import, as an
application builds its own, and the calls their workers make with it.

The test sets the environment before it starts a framework: ``FRAMEWORKS_API_URL`` (the local
server's API prefix), ``FRAMEWORKS_TOKEN_URL`` and ``FRAMEWORKS_TOKEN_FILE``, the file every
worker shares. The session's client is ``client``/``secret``, LocalAuthServer's default.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from refreshing_session import OAuth2Refresher, RefreshingSession

API_URL = os.environ["FRAMEWORKS_API_URL"]
# The process that imported this module and built the session: a worker whose pid differs
# inherited the session from the parent that forked it.
BUILT_IN = os.getpid()
GATHER_TIMEOUT = 30.0  # seconds a worker waits for its siblings

session = RefreshingSession(
    API_URL,
    token_file=os.environ["FRAMEWORKS_TOKEN_FILE"],
    refresher=OAuth2Refresher(os.environ["FRAMEWORKS_TOKEN_URL"], "client", "secret"),
)


def call_api() -> tuple[str, int, int]:
    """GET a resource under the prefix with the module's session. Returns what the caller saw
    (the status, or the name of the exception raised), this process's pid, and the pid of the
    process that built the session."""
    try:
        outcome = str(session.get(API_URL + "items", timeout=10).status_code)
    except Exception as error:  # the test counts every kind of failure a caller would see
        outcome = type(error).__name__
    return outcome, os.getpid(), BUILT_IN


def gather(folder: str, workers: int, worker: int) -> bool:
    """Sign in as ``worker`` (a pid) in ``folder``, then wait until ``workers`` distinct
    workers have: run as a task or job that each worker takes one of, it proves they are all up
    and busy at once. Returns whether they all came within GATHER_TIMEOUT seconds."""
    Path(folder, str(worker)).touch()
    give_up = time.monotonic() + GATHER_TIMEOUT
    while len(list(Path(folder).iterdir())) < workers:
        if time.monotonic() > give_up:
            return False
        time.sleep(0.01)
    return True


def gather_processes(folder: str, workers: int) -> bool:
    """:func:`gather` signed by this process: for pools whose processes run the tasks."""
    return gather(folder, workers, os.getpid())


def gather_parents(folder: str, workers: int) -> bool:
    """:func:`gather` signed by the parent process: for RQ, whose workers fork a work horse
    for each job."""
    return gather(folder, workers, os.getppid())
