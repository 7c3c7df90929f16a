"""A token store's lock held by someone else: another thread, which a file lock excludes as it
would another process (a lock on a separate descriptor), and which the other stores exclude as
they would another host."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from refreshing_session import TokenStore

HOLD_TIMEOUT = 5.0  # to take the lock, and to see it taken, on a loaded machine
HOLD_AT_MOST = 10.0  # a bound on the holding thread, should the block never end


@contextmanager
def lock_held(store: TokenStore) -> Iterator[None]:
    """Hold ``store``'s lock from another thread for the block; let go when the block ends."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.lock(HOLD_TIMEOUT, lambda: False):
            taken.set()
            release.wait(HOLD_AT_MOST)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(HOLD_TIMEOUT), "the other thread never got the lock"
    try:
        yield
    finally:
        release.set()
        holder.join(HOLD_TIMEOUT)
