"""MemoryStore: a token store in this process's memory, for tests of code that uses a keeper.

It keeps the promises of :class:`refreshing_session.TokenStore` that the keeper relies on:
every write gets a new version, ``replace`` stores only over the version it names
(compare-and-swap), notes travel with the token, and ``lock`` either holds an exclusive lock
or raises :class:`refreshing_session.LockTimeout`. Every method is safe to call from several
threads; keepers sharing one MemoryStore behave as processes sharing a token file.

Unlike the rest of :mod:`refreshing_session.testing`, this module is the client's side of the
test: it imports the client's store and error types, and :mod:`refreshing_session.testing`
loads it only when ``MemoryStore`` is asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from ..errors import LockTimeout
from ..store import Snapshot, Version
from ..token import Token

# Waiters look at stop_waiting() this often while the lock is held elsewhere.
_POLL = 0.005


class MemoryStore:
    """A :class:`~refreshing_session.TokenStore` in memory, holding ``token`` (and ``notes``)
    to begin with, if given.

    :param locked_writes: when True, a ``write``, ``replace`` or ``delete`` by a thread that
        does not hold the store's lock raises RuntimeError: for tests that check the code
        under test takes the lock before it changes the store.

    ``writes`` counts the tokens stored so far (the first ``token`` included). A thread that
    asks for the lock it already holds gets :class:`~refreshing_session.LockTimeout` at once,
    as a second file lock on the same file would after its timeout, so a test never waits on
    itself.
    """

    # version() reads a field: async front ends may ask it on the event loop.
    version_never_blocks = True

    def __init__(
        self,
        token: Token | None = None,
        notes: Mapping[str, Any] | None = None,
        *,
        locked_writes: bool = False,
    ) -> None:
        self.locked_writes = locked_writes
        self.writes = 0
        self._snapshot: Snapshot | None = None
        self._guard = threading.RLock()
        self._released = threading.Condition(self._guard)
        self._holder: int | None = None
        if token is not None:
            self._store(token, notes)

    @property
    def location(self) -> str:
        """``the memory store``, for messages."""
        return "the memory store"

    def version(self) -> Version | None:
        """Return the stored token's version (a count of writes), or None when there is none."""
        with self._guard:
            return None if self._snapshot is None else self._snapshot.version

    def read(self) -> Snapshot | None:
        """Return the stored token with its notes and version, or None when there is none."""
        with self._guard:
            return self._snapshot

    def write(self, token: Token, notes: Mapping[str, Any] | None = None) -> Snapshot:
        """Store ``token`` and ``notes`` whatever is stored now; return the new snapshot."""
        with self._guard:
            self._check_holder("write")
            return self._store(token, notes)

    def replace(
        self, token: Token, notes: Mapping[str, Any] | None, replacing: Version | None
    ) -> Snapshot | None:
        """Store ``token`` and ``notes`` only if the stored version is still ``replacing``;
        return the new snapshot, or None (storing nothing) when another token came since."""
        with self._guard:
            self._check_holder("replace")
            if self.version() != replacing:
                return None
            return self._store(token, notes)

    def delete(self) -> None:
        """Remove the stored token, if any."""
        with self._guard:
            self._check_holder("delete")
            self._snapshot = None

    @contextmanager
    def lock(self, timeout: float, stop_waiting: Callable[[], bool]) -> Iterator[None]:
        """Hold the store's exclusive lock for the context; raise LockTimeout when another
        thread holds it past ``timeout`` seconds, as soon as ``stop_waiting()`` is true while
        waiting, or at once when this thread holds it already."""
        me = threading.get_ident()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._guard:
            while self._holder is not None:
                if self._holder == me:
                    raise LockTimeout(
                        "the memory store's lock is held by this very thread: a second "
                        "acquisition would wait for itself"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0 or stop_waiting():
                    raise LockTimeout(f"the memory store's lock was not had in {timeout:.3g} s")
                self._released.wait(min(remaining, _POLL))
            self._holder = me
        try:
            yield
        finally:
            with self._guard:
                self._holder = None
                self._released.notify()

    def _store(self, token: Token, notes: Mapping[str, Any] | None) -> Snapshot:
        # A version is never reused, even after a delete: a compare-and-swap over a version
        # read before the delete must fail.
        self.writes += 1
        self._snapshot = Snapshot(token, self.writes, MappingProxyType(dict(notes or {})))
        return self._snapshot

    def _check_holder(self, change: str) -> None:
        if self.locked_writes and self._holder != threading.get_ident():
            raise RuntimeError(
                f"MemoryStore.{change} was called without holding the store's lock "
                "(locked_writes=True)"
            )

    def __repr__(self) -> str:
        return f"MemoryStore(version={self.version()!r}, writes={self.writes})"
