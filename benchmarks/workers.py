"""A spawned worker process for one job: it reports ready once its modules are imported (so
that no measurement counts an import), then does the job it is sent and answers with the
result."""

from __future__ import annotations

import importlib
import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

_READY = "ready"
GRACE = 60.0  # the longest a worker may take to start, or to answer after its job's end
_STOP_TIMEOUT = 5.0


@contextmanager
def spawned(
    modules: tuple[str, ...], work: Callable[[Any], Any], name: str
) -> Iterator[Connection]:
    """A spawned process with ``modules`` imported, waiting for its job on the connection
    yielded: it answers with ``work(job)`` (a module-level function, so that it can be sent).
    Raises RuntimeError, naming the worker ``name``, when it does not start; it is ended on
    exit if it has not finished by then."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve, args=(theirs, modules, work), daemon=True)
    process.start()
    try:
        if not ours.poll(GRACE) or ours.recv() != _READY:
            raise RuntimeError(f"the benchmark's worker for {name} did not start")
        yield ours
    finally:
        process.join(_STOP_TIMEOUT)
        if process.is_alive():
            process.terminate()
            process.join(_STOP_TIMEOUT)


def answer(connection: Connection, seconds: float) -> Any:
    """The answer of the worker at the other end of ``connection`` to a job that runs for
    ``seconds``; None when it sent none within ``seconds`` and :data:`GRACE`."""
    return connection.recv() if connection.poll(seconds + GRACE) else None


def _serve(connection: Connection, modules: tuple[str, ...], work: Callable[[Any], Any]) -> None:
    for module in modules:
        importlib.import_module(module)
    connection.send(_READY)
    if connection.poll(GRACE):
        connection.send(work(connection.recv()))
