"""A Celery application whose tasks use the module-level session of :mod:`.calls`.

The worker's main process imports this module, and so builds the session, before its prefork
pool forks the processes that run the tasks. The broker is the Redis server at
``FRAMEWORKS_REDIS_URL``; the results are files in the folder ``FRAMEWORKS_RESULTS``.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery  # type: ignore[import-untyped]

from . import calls

app = Celery("frameworks", broker=os.environ["FRAMEWORKS_REDIS_URL"])
app.conf.update(
    # Files, not Redis: the test reads them without the Redis backend's subscriber, which
    # outlives the test's Redis server in the test's process.
    result_backend=Path(os.environ["FRAMEWORKS_RESULTS"]).as_uri(),
    # One task at a time per pool process, so that a burst of tasks spreads over the pool.
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)

# Registered without the decorator, which is untyped: mypy would make the functions untyped too.
call_api = app.task(name="frameworks.call_api")(calls.call_api)
gather = app.task(name="frameworks.gather")(calls.gather_processes)
