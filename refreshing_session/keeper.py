"""TokenKeeper: one refresh per token, whatever the number of threads and processes.

The keeper holds the last token it read and hands it out while it is valid, noticing a
sibling's new token through the store's cheap version check (one ``stat`` for a token file).
When the token is due (or was refused with a 401), the keeper takes a thread lock, then the
store's lock, re-reads the store, and *renews* the token only if the store still holds the
*stale* one that was due: otherwise someone else already renewed it, and the keeper *adopts*
that token without calling the token endpoint. The new token is stored only over the version it
replaces (the store's compare-and-swap), so a token written meanwhile (a login, or a refresh by
a holder whose lock had expired) is never overwritten.

Its state, per process, is five named values, each replaced whole, never changed in place:

- ``_snapshot``: the :class:`Snapshot` last read from the store (None before the first read);
- ``_kept``: a :class:`KeptToken`, a renewed token the store could not take yet (or None);
- ``_cool_down``: a :class:`CoolDown`, the last failed renewal, which later attempts wait out;
- ``_proof``: a :class:`Proof`, the token this process last saw working and where it did;
- ``_busy``: a :class:`BusyLock`, the lock an early refresh last found taken.

A thread lock guards the renewals; a fork gives the child fresh values (a new thread lock
included).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from .errors import (
    AnswerUnderway,
    ClientRejected,
    LockTimeout,
    LoginRequired,
    RefreshFailed,
    TokenError,
    TokenStoreError,
)
from .guard import Guard, path_key
from .refreshers import Refresher, TokenSource, first_token, refreshed
from .store import Snapshot, TokenStore, Version
from .token import Token

logger = logging.getLogger(__name__)

REFUSED = "refresh_refused"  # the stored refresh token was refused: siblings give up at once
_LONGEST_COOL_DOWN = 30.0
_SAVE_RETRY = 1.0
# A refresh the command line asked for: store the new token now, or say it could not be.
_STORE_NOW_TRIES = 4
# Paths where the current token worked, remembered per process (a bound for APIs with ids
# in their paths).
_PATHS_REMEMBERED = 64
# A cure is recorded only if the locks come soon: a caller's answer must not wait for it.
_BOOKKEEPING_WAIT = 0.5
# After an early refresh found the lock taken, the next try waits until the store changes or
# this long has passed: the holder is renewing a token that is still valid, and every failed
# try costs a file-lock call on a request that needs none.
_BUSY_PAUSE = 0.05
# The longest wait for the rest of an answer the deadline cut off (the exchange's own limit,
# its ANSWER_LIMIT, ends it sooner).
_LONGEST_ANSWER = 120.0
_HOW_TO_LOG_IN = "(`refreshing-session login --help` says how), or write a token there"

# A fork copies each thread lock in whatever state another thread held it: children get new
# ones. (The store's lock is taken afresh for each refresh.)
_KEEPERS: weakref.WeakSet[TokenKeeper] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for keeper in list(_KEEPERS):
        keeper._thread_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Busy(LockTimeout):
    """The lock is taken and this caller chose not to wait."""


class _Underway(Exception):
    """A refresh whose successful answer the deadline cut off (``error``): ``complete`` waits
    for the rest and stores its token, under the locks the renewal holds."""

    def __init__(self, error: AnswerUnderway, complete: Callable[[], Token]) -> None:
        super().__init__()
        self.error = error
        self.complete = complete

    def complete_later(self, locks: ExitStack) -> None:
        """Complete in a thread of its own, which releases ``locks`` when done."""

        def run() -> None:
            with locks, suppress(RefreshFailed):  # logged by complete()
                self.complete()

        threading.Thread(target=run, name="refresh answer underway", daemon=True).start()


@dataclass(frozen=True)
class CoolDown:
    """The last failed renewal of the ``stale`` token, and when the next may be tried.

    A still-valid token waits half the time it has left; an expired one a pause that doubles
    with each failure up to 30 s; a rejected client 30 s at once.
    """

    stale: Token | None
    error: TokenError
    failed_at: float
    retry_at: float
    failures: int = 1

    def after(self, stale: Token | None, error: TokenError, now: float) -> CoolDown:
        """The cool-down after another failure to renew ``stale`` at ``now``."""
        failures = self.failures + 1 if stale == self.stale else 1
        return CoolDown(stale, error, now, now + _pause(stale, error, failures, now), failures)

    def holds(self, stale: Token | None, now: float) -> bool:
        """True while a renewal of ``stale`` must still wait."""
        return stale == self.stale and now < self.retry_at


def _pause(stale: Token | None, error: TokenError, failures: int, now: float) -> float:
    if stale is not None and stale.expires_at is not None and stale.expires_at > now:
        return (stale.expires_at - now) / 2
    if isinstance(error, ClientRejected):
        return _LONGEST_COOL_DOWN
    return min(_LONGEST_COOL_DOWN, 0.5 * 2.0 ** (failures - 1))


_NO_COOL_DOWN = CoolDown(None, TokenError(), float("-inf"), float("-inf"), failures=0)


@dataclass(frozen=True)
class KeptToken:
    """A renewed token the store could not take: ``snapshot`` holds it, its notes and the
    store version it replaces, the version of ``replaces``. The keeper uses it, and stores it
    at ``retry_at`` or later, as long as the store still holds ``replaces`` (its refresh
    token is spent, so the renewed token must not be dropped)."""

    snapshot: Snapshot
    replaces: Token | None
    retry_at: float


@dataclass(frozen=True)
class Proof:
    """The token this process last saw working (``token``), and the ``paths`` where it did: a
    401 at one of them means that token died, whatever the guard says of the path."""

    token: Token | None = None
    paths: frozenset[str] = frozenset()

    def after_working(self, token: Token, path: str) -> Proof:
        """The proof once ``token`` worked at ``path`` (at most ``_PATHS_REMEMBERED`` paths,
        a bound for APIs with ids in their paths)."""
        if token is not self.token and token != self.token:
            return Proof(token, frozenset((path,)))
        if path in self.paths or len(self.paths) >= _PATHS_REMEMBERED:
            return self
        return Proof(token, self.paths | {path})

    def holds(self, token: Token, path: str) -> bool:
        """Did ``token`` itself work at ``path``?"""
        return path in self.paths and token == self.token


@dataclass(frozen=True)
class BusyLock:
    """An early refresh found the lock taken while the store was at ``version``: it is not
    tried again at that version before ``until``."""

    version: Version | None
    until: float

    def holds(self, version: Version | None, now: float) -> bool:
        """True while an early refresh at store ``version`` must not be tried."""
        return now < self.until and version == self.version


_NOT_BUSY = BusyLock(None, float("-inf"))


class TokenKeeper:
    """Gives out a valid access token from one token store, refreshing it under the locks.

    :param login_command: the command that logs in, named in the messages that say to log in
        (None: general advice).
    :param clock: the wall clock (seconds since the epoch), replaceable in tests.
    """

    def __init__(
        self,
        store: TokenStore,
        refresher: Refresher | None,
        *,
        leeway: float,
        lock_timeout: float,
        on_refresh: Callable[[Token], object] | None = None,
        login_command: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.refresher = refresher
        self.leeway = leeway
        self.lock_timeout = lock_timeout
        self.on_refresh = on_refresh
        self.login_command = login_command
        self.clock = clock
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._snapshot: Snapshot | None = None
        self._kept: KeptToken | None = None
        self._cool_down = _NO_COOL_DOWN
        self._proof = Proof()
        self._busy = _NOT_BUSY
        self._thread_lock = threading.Lock()
        _KEEPERS.add(self)

    def current(self) -> Token:
        """Return a token to send now, refreshing it first if it is due.

        When an early refresh fails while the token is still valid, the failure is logged
        and the valid token returned. Raises LoginRequired, RefreshFailed, ClientRejected,
        TokenStoreError or LockTimeout when no usable token can be had.
        """
        now = self.clock()
        if self._kept is not None and now >= self._kept.retry_at:
            self._retry_keeping()
        snapshot = self._load()
        if snapshot is None:
            return self._renew_or_adopt(None, "there is no token yet")
        token = snapshot.token
        due = token.refresh_due_at(self.leeway)
        if due is None or now < due:
            return token
        if token.expires_at is not None and now >= token.expires_at:
            return self._renew_or_adopt(token, f"it expired {now - token.expires_at:.1f} s ago")
        return self._refresh_early(token, snapshot.version)

    def current_at_once(self) -> Token | None:
        """The token :meth:`current` would return, when it can be had without blocking: the
        token in hand is not yet due, none is kept, and the store, one whose version check
        never blocks (``version_never_blocks``, as a token file's ``fstat``), still holds it.
        Else None: only :meth:`current` can say (async front ends then call it in a thread)."""
        snapshot = self._snapshot
        if (
            snapshot is None
            or self._kept is not None
            or not getattr(self.store, "version_never_blocks", False)
        ):
            return None
        due = snapshot.token.refresh_due_at(self.leeway)
        if due is not None and self.clock() >= due:
            return None
        return snapshot.token if self.store.version() == snapshot.version else None

    def after_unauthorized(self, sent: Token, path: str, replayable: bool = True) -> Token | None:
        """A request for ``path`` sent with ``sent`` got a 401 that a new token may cure:
        return the token to replay it with, or None when the 401 goes back to the caller.

        A sibling's newer token is adopted (renewed first when it is due already: servers
        may end it early, and the replay is the request's last chance); otherwise the token is
        renewed, unless the guard (see :mod:`refreshing_session.guard`) says a refresh did not
        help at this path.
        """
        key = path_key(path)
        snapshot = self._load()
        died = self._proof.holds(sent, path)
        if (
            snapshot is not None
            and snapshot.token == sent
            and not died
            and not Guard.of(snapshot.notes).may_refresh(key, replayable=replayable)
        ):
            logger.debug("holding a 401 back: refreshing did not help at this path (guard)")
            return None
        # A renewal for a 401 passes the guard on, counting that path as pending; for a 401
        # where the very token worked, the path is in no doubt and the guard goes on unchanged.
        successor = _unchanged if died else partial(Guard.successor, key=key)
        replacement = self._renew_or_adopt(sent, "a 401 refused it", next_guard=successor)
        if replacement == sent:
            return None
        due = replacement.refresh_due_at(self.leeway)
        if due is not None and self.clock() >= due:
            replacement = self._renew_or_adopt(replacement, "the token adopted for a replay is due")
        return replacement

    def worked(self, token: Token, path: str) -> None:
        """A request for ``path`` sent with ``token`` got an answer other than a curable 401:
        from now on a 401 for it at ``path`` means it died, whatever the guard says of that
        path (it accepted this very token there). At other paths the guard's limit holds."""
        self._proof = self._proof.after_working(token, path)

    def replayed(self, token: Token, path: str, *, refused: bool | None) -> None:
        """Record how the replay with ``token`` after a 401 at ``path`` was answered: when
        not ``refused``, the refresh cured that path, and later 401s there may refresh again.
        None: the request could not be replayed, so whether the refresh helped there is
        unknown (the path is untried: see :class:`Guard`). Never raises: the caller's answer is
        in hand, and this is bookkeeping."""
        if refused:
            return
        if refused is False:
            self.worked(token, path)
        key = path_key(path)
        change = Guard.cured if refused is False else Guard.unanswered
        try:
            snapshot = self._load()
            if snapshot is None:
                return
            guard = Guard.of(snapshot.notes)
            if change(guard, key) == guard:
                return
            with self._exclusive(timeout=_BOOKKEEPING_WAIT):
                self._record(change, key)
        except TokenError as error:
            logger.warning("could not record how a refresh for a 401 went: %s", error)

    def install(self, token: Token) -> Token:
        """Store ``token`` as the grant's token, whatever is stored now (a login), under the
        locks, so no refresh in flight can overwrite it; return it."""
        with self._exclusive():
            self._snapshot = self.store.write(token)
            self._kept = None
            self._cool_down = _NO_COOL_DOWN
        return token

    def refresh_now(self) -> Token:
        """Refresh the stored token now, due or not, under the locks (or get a first one from
        a TokenSource refresher); return the new token, once stored.

        Raises LoginRequired when there is no token, or the refresh token is refused; and
        TokenStoreError when the new token cannot be stored even after a few tries: its
        predecessor's refresh token is spent then, and this process is about to end."""
        with self._exclusive():
            try:
                token = self._redeem(self._store_kept_and_read_locked(), Guard())
            except _Underway as underway:
                token = underway.complete()  # a command waits for its answer, as long as it takes
            for _ in range(_STORE_NOW_TRIES):
                if self._kept is None:
                    return token
                time.sleep(_SAVE_RETRY / _STORE_NOW_TRIES)
                self._store_kept_and_read_locked()
        raise TokenStoreError(
            f"the new token could not be stored in {self.store.location} "
            f"(see the log); {self._log_in('again')} once it works"
        )

    def remove(self, before: Callable[[Token], object] | None = None) -> Token | None:
        """Under the locks, pass the stored token to ``before`` (a revocation, say), then
        remove it from the store; return it, or None when there was none or it was unreadable.
        When ``before`` raises, the token stays; without ``before``, an unreadable token is
        removed too."""
        with self._exclusive():
            try:
                snapshot = self._store_kept_and_read_locked()
            except TokenStoreError:
                if before is not None:
                    raise
                snapshot = None  # unreadable: removing it is what the caller wants
            if snapshot is not None and before is not None:
                before(snapshot.token)
            self.store.delete()
            self._snapshot = self._kept = None
        return None if snapshot is None else snapshot.token

    # --- renewing or adopting -------------------------------------------------------------------

    def _refresh_early(self, token: Token, version: Version | None) -> Token:
        """Refresh a token that is due but still valid (the store holds it at ``version``); on
        any trouble, keep using it."""
        now = self.clock()
        if self._cool_down.holds(token, now) or self._busy.holds(version, now):
            return token
        try:
            return self._renew_or_adopt(token, "it is due", wait=False)
        except _Busy:
            logger.debug("skipping the early refresh: another thread or process holds the lock")
            self._busy = BusyLock(version, now + _BUSY_PAUSE)
            return token
        except TokenError as error:
            if not self._cool_down.holds(token, self.clock()):  # a store or lock failure
                self._cool_down = self._cool_down.after(token, error, self.clock())
            logger.warning(
                "early refresh failed, going on with the current token (valid %.1f s more): %s",
                (token.expires_at or 0) - self.clock(),
                error,
            )
            return token

    def _renew_or_adopt(
        self,
        stale: Token | None,
        reason: str,
        *,
        next_guard: Callable[[Guard], Guard] = lambda _: Guard(),
        wait: bool = True,
    ) -> Token:
        """Renew ``stale`` (None: there is no token) unless someone already did, and return the
        token to use: a sibling's, a new one, or ``stale`` itself when the guard holds a 401
        back. ``next_guard`` gives the renewed token's guard from the stored one's: a fresh one
        by default, as a scheduled renewal starts the count afresh."""
        self._raise_while_cooling_down(stale)
        deadline = time.monotonic() + (self.lock_timeout if wait else 0.0)
        with ExitStack() as locks:
            locks.enter_context(self._thread_locked(wait))
            # Waiters adopt a token written meanwhile, by a thread or a process, at once.
            adopted = self._adoptable(stale)
            if adopted is not None:
                return adopted

            def renewed_meanwhile() -> bool:
                return self._adoptable(stale) is not None

            if self._took_store_lock(locks, deadline, renewed_meanwhile):
                try:
                    return self._renew_or_adopt_locked(stale, reason, next_guard)
                except _Underway as underway:
                    # The locks go with the answer: no one redeems the spent refresh token
                    # while it is read, and everyone adopts the token it holds.
                    underway.complete_later(locks.pop_all())
                    raise underway.error from None
            adopted = self._adoptable(stale)
            if adopted is None:
                raise self._timeout("another process", wait)
            return adopted

    def _renew_or_adopt_locked(
        self, stale: Token | None, reason: str, next_guard: Callable[[Guard], Guard]
    ) -> Token:
        snapshot = self._store_kept_and_read_locked()
        if snapshot is not None and snapshot.token != stale:
            logger.debug(
                "adopting token %s renewed by another thread or process", snapshot.token.fingerprint
            )
            return snapshot.token
        # (The guard that allowed the renewal only relaxes meanwhile.)
        guard = Guard() if snapshot is None else next_guard(Guard.of(snapshot.notes))
        logger.debug("refreshing the token in %s: %s", self.store.location, reason)
        try:
            return self._redeem(snapshot, guard)
        except (RefreshFailed, ClientRejected) as error:
            # (An answer underway comes as _Underway, no failure to wait out: waiters adopt
            # the token it holds.)
            self._cool_down = self._cool_down.after(stale, error, self.clock())
            raise

    def _adoptable(self, stale: Token | None) -> Token | None:
        """The stored token, if it is no longer ``stale``: someone else renewed it."""
        snapshot = self._load()
        if snapshot is None or snapshot.token == stale:
            return None
        logger.debug(
            "adopting token %s written by another thread or process", snapshot.token.fingerprint
        )
        return snapshot.token

    def _redeem(self, snapshot: Snapshot | None, guard: Guard) -> Token:
        """Call the refresher for the stored token (or for a first token), store the result
        with ``guard`` in its notes, and return the token to use."""
        if snapshot is None:
            return self._first_token()
        refused = snapshot.notes.get(REFUSED)
        if refused:
            raise LoginRequired(
                f"the refresh token in {self.store.location} was refused "
                f"earlier ({refused}); {self._log_in('again')}"
            )
        if self.refresher is None:
            python = "" if self.login_command else ", or pass refresher="
            raise LoginRequired(
                f"the token in {self.store.location} has expired and this "
                f"session has no refresher; {self._log_in('again')}{python}"
            )
        old = snapshot.token
        try:
            new = refreshed(self.refresher, old, self.clock)
        except LoginRequired as error:
            return self._after_refusal(snapshot, error)
        except AnswerUnderway as error:
            raise _Underway(error, partial(self._complete, error, guard, snapshot)) from None
        logger.info(
            "refreshed the access token in %s (%s -> %s)",
            self.store.location,
            old.fingerprint,
            new.fingerprint,
        )
        return self._announce(new, self._save(new, guard.notes(), snapshot).token)

    def _first_token(self) -> Token:
        if not isinstance(self.refresher, TokenSource):
            # A program's own login command is the advice; a library user may pick a refresher.
            machine = (
                "; or use a ClientCredentialsRefresher"
                if self.refresher is None and self.login_command is None
                else ""
            )
            raise LoginRequired(
                f"there is no token in {self.store.location}; {self._log_in('first')}{machine}"
            )
        token = first_token(self.refresher, self.clock)
        logger.info("storing a new grant in %s", self.store.location)
        return self._announce(token, self._save(token, None, replacing=None).token)

    def _log_in(self, when: str) -> str:
        """``log in first`` or ``log in again``, and how."""
        how = _HOW_TO_LOG_IN if self.login_command is None else f"with `{self.login_command}`"
        return f"log in {when} {how}"

    def _announce(self, new: Token, kept: Token) -> Token:
        """Tell ``on_refresh`` about ``new`` if it is the token kept; return the token kept."""
        if kept == new and self.on_refresh is not None:
            try:
                self.on_refresh(new)
            except Exception as error:  # a user's callback must not fail the request
                logger.warning("the on_refresh callback raised %s; ignored", type(error).__name__)
        return kept

    def _complete(self, underway: AnswerUnderway, guard: Guard, replacing: Snapshot) -> Token:
        """Under the locks: wait for the rest of the answer ``underway`` and store its token
        over ``replacing``; return the token to use. Raises RefreshFailed when the answer
        breaks: the refresh token may have been spent then (see the docs' limits)."""
        try:
            new = underway.finish(_LONGEST_ANSWER)
        except RefreshFailed as error:
            logger.error(
                "the token endpoint's answer that the deadline cut off could not be completed "
                "(%s); the refresh token in %s may be spent",
                error,
                self.store.location,
            )
            raise
        logger.info("stored the refreshed token whose answer came after the deadline")
        return self._announce(new, self._save(new, guard.notes(), replacing).token)

    def _after_refusal(self, refused: Snapshot, error: LoginRequired) -> Token:
        """Adopt a token written meanwhile (by a login, say); else record the refusal for the
        siblings and raise. A store that changed since it was read is never overwritten."""
        latest = self.store.read()
        if latest is not None and latest.token != refused.token:
            self._snapshot = latest
            return latest.token
        if latest is not None:
            self._save(refused.token, {**refused.notes, REFUSED: str(error)}, refused)
        raise LoginRequired(f"{error} ({self.store.location})", response=error.response) from None

    def _record(self, change: Callable[[Guard, str], Guard], key: str) -> None:
        """Under the locks: apply ``change`` at the path ``key`` to the stored token's guard
        (the same token, with new notes: a sibling keeping a token that replaces it still
        does)."""
        snapshot = self.store.read()
        if snapshot is None:
            return
        guard = Guard.of(snapshot.notes)
        changed = change(guard, key)
        if changed != guard:
            saved = self.store.replace(
                snapshot.token, changed.notes(snapshot.notes), snapshot.version
            )
            self._snapshot = saved or self._snapshot

    # --- the store ------------------------------------------------------------------------------

    def _save(
        self, token: Token, notes: Mapping[str, Any] | None, replacing: Snapshot | None
    ) -> Snapshot:
        """Store ``token`` over the snapshot ``replacing`` (None: over no token), and return
        the snapshot to use.

        A token stored meanwhile (a login by hand, say) wins and is adopted. If the store
        fails, the token is kept in memory, used, and stored again later: a renewed token is
        never dropped, since its predecessor's refresh token is spent.
        """
        try:
            saved = self.store.replace(token, notes, _version(replacing))
            if saved is None:
                latest = self.store.read()
                if latest is not None:
                    logger.info(
                        "%s changed during the refresh; using its token", self.store.location
                    )
                    self._snapshot, self._kept = latest, None
                    return latest
                saved = self.store.write(token, notes)  # removed meanwhile: ours is the grant
        except TokenStoreError as error:
            logger.error(
                "could not save the refreshed token, keeping it in memory and trying again: %s",
                error,
            )
            self._kept = KeptToken(
                Snapshot(token, _version(replacing), dict(notes or {})),
                None if replacing is None else replacing.token,
                self.clock() + _SAVE_RETRY,
            )
            return self._kept.snapshot
        self._snapshot, self._kept = saved, None
        return saved

    def _retry_keeping(self) -> None:
        """Try to store the kept token now, if no one holds the locks."""
        assert self._kept is not None
        self._kept = replace(self._kept, retry_at=self.clock() + _SAVE_RETRY)
        try:
            with self._thread_locked(wait=False), ExitStack() as held:
                if self._took_store_lock(held, time.monotonic(), lambda: False):
                    self._store_kept_and_read_locked()
        except TokenError as error:
            logger.debug("could not save the kept token yet: %s", error)

    def _store_kept_and_read_locked(self) -> Snapshot | None:
        """Under the locks: store the kept token if the store still holds what it replaces,
        and return the token to work from: the kept one (stored now, if the store allows), or
        the store's own."""
        snapshot = self.store.read()
        kept = self._still_kept(snapshot)
        if kept is not None:
            return self._save(kept.snapshot.token, kept.snapshot.notes, snapshot)
        self._snapshot = snapshot
        return snapshot

    def _still_kept(self, stored: Snapshot | None) -> KeptToken | None:
        """The kept token, re-based on ``stored`` when that still holds the token it replaces
        (perhaps with new notes); else None, and it is dropped: a newer token was stored."""
        kept = self._kept
        if kept is None or _version(stored) == kept.snapshot.version:
            return kept
        if stored is not None and stored.token == kept.replaces:
            self._kept = replace(kept, snapshot=replace(kept.snapshot, version=stored.version))
        else:
            self._kept = None
        return self._kept

    def _load(self) -> Snapshot | None:
        """Return the token to use now: the kept one while the store still holds what it
        replaces, else the stored one, re-read only when the store's version changed."""
        version = self.store.version()
        kept = self._kept
        if kept is not None and kept.snapshot.version != version:
            kept = self._still_kept(self.store.read())  # rare: only while a token is kept
        if kept is not None:
            return kept.snapshot
        if version is None:
            return None
        snapshot = self._snapshot
        if snapshot is None or snapshot.version != version:
            snapshot = self._snapshot = self.store.read()
        return snapshot

    # --- waiting --------------------------------------------------------------------------------

    def _raise_while_cooling_down(self, stale: Token | None) -> None:
        cool_down = self._cool_down
        now = self.clock()
        if cool_down.holds(stale, now):
            logger.debug(
                "re-raising the renewal failure of %.1f s ago during its back-off",
                now - cool_down.failed_at,
            )
            raise cool_down.error.restated(
                f"{cool_down.error} (not retried for another {cool_down.retry_at - now:.1f} s)"
            )

    @contextmanager
    def _exclusive(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the thread lock and the store's lock, waiting up to ``timeout`` (by default
        ``lock_timeout``) for both."""
        deadline = time.monotonic() + (self.lock_timeout if timeout is None else timeout)
        with self._thread_locked(wait=True, until=deadline), ExitStack() as held:
            if not self._took_store_lock(held, deadline, lambda: False):
                raise self._timeout("another process", wait=True)
            yield

    def _took_store_lock(
        self, held: ExitStack, deadline: float, stop_waiting: Callable[[], bool]
    ) -> bool:
        """Take the store's lock into ``held``, waiting until the monotonic ``deadline`` or
        until ``stop_waiting()``; return False when it could not be had."""
        try:
            entered = held.enter_context(
                self.store.lock(max(0.0, deadline - time.monotonic()), stop_waiting)
            )
        except LockTimeout:
            return False
        if entered is False:  # a store written for 0.1, whose lock yielded False when not had
            warnings.warn(
                f"{type(self.store).__name__}.lock yielded False: a store's lock now raises "
                "LockTimeout when it cannot be had (see the CHANGELOG)",
                DeprecationWarning,
                stacklevel=2,
            )
            return False
        return True

    @contextmanager
    def _thread_locked(self, wait: bool, until: float | None = None) -> Iterator[None]:
        """Hold this keeper's thread lock, waiting until the monotonic time ``until`` (by
        default ``lock_timeout`` from now; not at all without ``wait``: then raise _Busy if it
        is taken)."""
        timeout = self.lock_timeout if until is None else max(0.0, until - time.monotonic())
        acquired = (
            self._thread_lock.acquire(timeout=timeout)
            if wait
            else self._thread_lock.acquire(blocking=False)
        )
        if not acquired:
            raise self._timeout("another thread", wait)
        try:
            yield
        finally:
            self._thread_lock.release()

    def _timeout(self, holder: str, wait: bool) -> LockTimeout:
        if not wait:
            return _Busy(f"{holder} holds the lock of {self.store.location}")
        return LockTimeout(
            f"{holder} held the lock of {self.store.location} for more than "
            f"lock_timeout={self.lock_timeout} s; the token endpoint may be slow "
            "or hung"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "refresher": self.refresher,
            "leeway": self.leeway,
            "lock_timeout": self.lock_timeout,
            "on_refresh": self.on_refresh,
            "login_command": self.login_command,
            "clock": self.clock,
        }

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_process_state()


def _unchanged(guard: Guard) -> Guard:
    return guard


def _version(snapshot: Snapshot | None) -> Version | None:
    return None if snapshot is None else snapshot.version
