"""A ``redis-server`` of the benchmarks' own, for the measurements that keep the token in Redis.

It is started with the tests' helper (:class:`tests.support.redis_servers.RedisServer`: a free
loopback port, its files in a folder of ours, no snapshots) and stopped by its pid, so it needs
``redis-server`` on PATH and the ``redis`` package (``pip install -e '.[test]'``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MISSING = (
    "redis-server is not on PATH (Debian: apt-get install redis-server), and the Redis "
    "measurements start their own"
)


def redis_server_found() -> bool:
    """Whether ``redis-server`` can be started here."""
    return shutil.which("redis-server") is not None


@contextmanager
def local_redis(folder: Path) -> Iterator[str]:
    """Run a ``redis-server`` with its files in ``folder``; yield its URL; stop it on exit."""
    # Imported here: the tests' helper imports pytest, which the other benchmarks do not need.
    from tests.support.redis_servers import RedisServer

    server = RedisServer(folder)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
