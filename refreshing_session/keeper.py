"""TokenKeeper: one refresh per token, whatever the number of threads and processes.

The keeper holds the last token it read and hands it out while it is valid, noticing a
sibling's new token through the store's cheap version check (one ``stat`` for a token file).
When the token is due (or was refused with a 401), the keeper takes a thread lock, then the
store's lock, re-reads the store, and refreshes only if it still holds the token that was due:
otherwise someone else already refreshed it, and that token is adopted without calling the
token endpoint. The new token is stored only over the version it replaces, so a token written
meanwhile (a login, or a refresh by a holder whose lock had expired) is never overwritten.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import requests

from .errors import (
    ClientRejected,
    LockTimeout,
    LoginRequired,
    RefreshFailed,
    TokenError,
    TokenStoreError,
)
from .refreshers import Refresher, TokenSource
from .store import Snapshot, TokenStore, Version
from .token import Token

logger = logging.getLogger(__name__)

REFUSED = "refresh_refused"  # the stored refresh token was refused: siblings give up at once
FOR_A_401 = "obtained_for_a_401"  # this token replaced one refused with a 401
_LONGEST_COOL_DOWN = 30.0
_SAVE_RETRY = 1.0
# A refresh the command line asked for: store the new token now, or say it could not be.
_STORE_NOW_TRIES = 4

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


@dataclass(frozen=True)
class _Failure:
    """The last failed refresh of a token, and when the next attempt may be made."""

    stale: Token | None
    error: TokenError
    retry_at: float
    count: int


class TokenKeeper:
    """Gives out a valid access token from one token store, refreshing it under the locks."""

    # How a missing or refused grant's message says to log in; a profile names its command.
    login_hint = "log in first (`refreshing-session login --help` says how), or write a token there"

    def __init__(
        self,
        store: TokenStore,
        refresher: Refresher | None,
        *,
        leeway: float,
        lock_timeout: float,
        on_refresh: Callable[[Token], object] | None = None,
    ) -> None:
        self.store = store
        self.refresher = refresher
        self.leeway = leeway
        self.lock_timeout = lock_timeout
        self.on_refresh = on_refresh
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._snapshot: Snapshot | None = None
        # A refreshed token the file could not take yet, and the file version it replaces.
        self._unsaved: Snapshot | None = None
        self._save_retry_at = 0.0
        self._failure: _Failure | None = None
        self._thread_lock = threading.Lock()
        _KEEPERS.add(self)

    def current(self) -> Token:
        """Return a token to send now, refreshing it first if it is due.

        When an early refresh fails while the token is still valid, the failure is logged
        and the valid token returned. Raises LoginRequired, RefreshFailed, ClientRejected,
        TokenStoreError or LockTimeout when no usable token can be had.
        """
        if self._unsaved is not None and time.time() >= self._save_retry_at:
            self._retry_saving()
        snapshot = self._load()
        if snapshot is None:
            return self._replace(None)
        token = snapshot.token
        due = token.refresh_due_at(self.leeway)
        if due is None or time.time() < due:
            return token
        if token.expires_at is not None and time.time() >= token.expires_at:
            return self._replace(token)
        return self._refresh_early(token)

    def after_unauthorized(self, sent: Token) -> Token | None:
        """A request sent with ``sent`` got a 401: return the token to replay it with, or None
        when a refresh cannot cure this (then the 401 goes back to the caller).

        A token that was itself obtained because of a 401 is not refreshed because of another:
        if a fresh token is refused too, the endpoint's problem is not the token, and a flood
        of such 401s must not become a flood of refreshes. Its scheduled refresh starts over.
        """
        snapshot = self._load()
        if snapshot is not None and snapshot.token == sent and snapshot.notes.get(FOR_A_401):
            return None
        replacement = self._replace(sent, after_401=True)
        return None if replacement == sent else replacement

    def install(self, token: Token) -> Token:
        """Store ``token`` as the grant's token, whatever is stored now (a login), under the
        locks, so no refresh in flight can overwrite it; return it."""
        with self._exclusive():
            self._snapshot = self.store.write(token)
            self._unsaved = self._failure = None
        return token

    def refresh_now(self) -> Token:
        """Refresh the stored token now, due or not, under the locks (or get a first one from
        a TokenSource refresher); return the new token, once stored.

        Raises LoginRequired when there is no token, or the refresh token is refused; and
        TokenStoreError when the new token cannot be stored even after a few tries: its
        predecessor's refresh token is spent then, and this process is about to end."""
        with self._exclusive():
            snapshot = self._read_locked()
            token = self._redeem(snapshot, after_401=False)
            for _ in range(_STORE_NOW_TRIES):
                if self._unsaved is None:
                    return token
                time.sleep(_SAVE_RETRY / _STORE_NOW_TRIES)
                self._read_locked()  # stores the kept token if the store still allows it
        raise TokenStoreError(f"the new token could not be stored in {self.store.location} "
                              f"(see the log); {self._log_in_again} once it works")

    def remove(self, before: Callable[[Token], object] | None = None) -> Token | None:
        """Under the locks, pass the stored token to ``before`` (a revocation, say), then
        remove it from the store; return it, or None when there was none or it was unreadable.
        When ``before`` raises, the token stays; without ``before``, an unreadable token is
        removed too."""
        with self._exclusive():
            try:
                snapshot = self._read_locked()
            except TokenStoreError:
                if before is not None:
                    raise
                snapshot = None  # unreadable: removing it is what the caller wants
            if snapshot is not None and before is not None:
                before(snapshot.token)
            self.store.delete()
            self._snapshot = self._unsaved = None
        return None if snapshot is None else snapshot.token

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the thread lock and the store's lock, waiting up to ``lock_timeout``."""
        deadline = time.monotonic() + self.lock_timeout
        with self._thread_locked(wait=True), \
                self.store.lock(deadline - time.monotonic(), lambda: False) as held:
            if not held:
                raise self._timeout("another process", wait=True)
            yield

    def _refresh_early(self, token: Token) -> Token:
        """Refresh a token that is due but still valid; on any trouble, keep using it."""
        if self._cooling_down(token):
            return token
        try:
            return self._replace(token, wait=False)
        except _Busy:
            return token  # another thread or process is refreshing it right now
        except TokenError as error:
            if self._cooling_down(token) is None:  # a store or lock failure: pause all the same
                self._cool_down(token, error)
            logger.warning("early refresh failed, going on with the current token (valid "
                           "%.1f s more): %s", (token.expires_at or 0) - time.time(), error)
            return token

    def _replace(self, stale: Token | None, *, after_401: bool = False, wait: bool = True) -> Token:
        """Replace ``stale`` (None: there is no token file) unless someone already did, and
        return the token to use: ``stale`` itself after a 401 that a refresh cannot cure."""
        self._raise_while_cooling_down(stale)
        deadline = time.monotonic() + (self.lock_timeout if wait else 0.0)
        with self._thread_locked(wait):
            # Waiters adopt a token written meanwhile, by a thread or a process, at once.
            adopted = self._adoptable(stale)
            if adopted is not None:
                return adopted

            def replaced() -> bool:
                return self._adoptable(stale) is not None

            with self.store.lock(deadline - time.monotonic(), replaced) as held:
                if held:
                    return self._replace_locked(stale, after_401)
            adopted = self._adoptable(stale)
            if adopted is None:
                raise self._timeout("another process", wait)
            return adopted

    def _replace_locked(self, stale: Token | None, after_401: bool) -> Token:
        snapshot = self._read_locked()
        if snapshot is not None and snapshot.token != stale:
            return snapshot.token
        if after_401 and snapshot is not None and snapshot.notes.get(FOR_A_401):
            return snapshot.token
        try:
            return self._redeem(snapshot, after_401=after_401)
        except (RefreshFailed, ClientRejected) as error:
            self._cool_down(stale, error)
            raise

    def _adoptable(self, stale: Token | None) -> Token | None:
        """The stored token, if it is no longer ``stale``: someone else replaced it."""
        snapshot = self._load()
        if snapshot is None or snapshot.token == stale:
            return None
        logger.debug("adopting token %s written by another process", snapshot.token.fingerprint)
        return snapshot.token

    def _redeem(self, snapshot: Snapshot | None, *, after_401: bool) -> Token:
        """Call the refresher for the stored token (or for a first token) and store the result."""
        if snapshot is None:
            return self._first_token()
        refused = snapshot.notes.get(REFUSED)
        if refused:
            raise LoginRequired(f"the refresh token in {self.store.location} was refused "
                                f"earlier ({refused}); {self._log_in_again}")
        if self.refresher is None:
            raise LoginRequired(f"the token in {self.store.location} has expired and this "
                                f"session has no refresher; {self._log_in_again}, or pass "
                                "refresher=")
        old = snapshot.token
        try:
            new = self._call_refresher(old)
        except LoginRequired as error:
            return self._after_refusal(snapshot, error)
        logger.info("refreshed the access token in %s (%s -> %s)", self.store.location,
                    old.fingerprint, new.fingerprint)
        return self._announce(
            new, self._save(new, {FOR_A_401: True} if after_401 else None, snapshot.version))

    def _first_token(self) -> Token:
        if not isinstance(self.refresher, TokenSource):
            machine = "; or use a ClientCredentialsRefresher" if self.refresher is None else ""
            raise LoginRequired(f"there is no token in {self.store.location}; "
                                f"{self.login_hint}{machine}")
        token = self.refresher.new_token()
        logger.info("storing a new grant in %s", self.store.location)
        return self._announce(token, self._save(token, None, replacing=None))

    @property
    def _log_in_again(self) -> str:
        return "log in again" + self.login_hint.removeprefix("log in first")

    def _announce(self, new: Token, kept: Token) -> Token:
        """Tell ``on_refresh`` about ``new`` if it is the token kept; return the token kept."""
        if kept == new and self.on_refresh is not None:
            try:
                self.on_refresh(new)
            except Exception as error:  # a user's callback must not fail the request
                logger.warning("the on_refresh callback raised %s; ignored", type(error).__name__)
        return kept

    def _call_refresher(self, old: Token) -> Token:
        assert self.refresher is not None
        requested_at = time.time()
        try:
            answer = self.refresher(old)
        except TokenError:
            raise
        except requests.RequestException as error:
            raise RefreshFailed(f"the refresher failed ({type(error).__name__}); try again "
                                "later", response=error.response) from None
        return _as_token(answer, old, requested_at)

    def _after_refusal(self, refused: Snapshot, error: LoginRequired) -> Token:
        """Adopt a token written meanwhile (by a login, say); else record the refusal for the
        siblings and raise. A file that changed since it was read is never overwritten."""
        latest = self.store.read()
        if latest is not None and latest.token != refused.token:
            self._snapshot = latest
            return latest.token
        if latest is not None:
            self._save(refused.token, {**refused.notes, REFUSED: str(error)}, refused.version)
        raise LoginRequired(f"{error} ({self.store.location})",
                            response=error.response) from None

    def _save(self, token: Token, notes: Mapping[str, Any] | None,
              replacing: Version | None) -> Token:
        """Store ``token`` over the version ``replacing``, and return the token to use.

        A token stored meanwhile (a login by hand, say) wins and is adopted. If the store
        fails, the token is kept in memory, used, and stored again later: a refreshed token
        is never dropped, since its predecessor's refresh token is spent.
        """
        try:
            saved = self.store.replace(token, notes, replacing)
            if saved is None:
                latest = self.store.read()
                if latest is not None:
                    logger.info("%s changed during the refresh; using its token",
                                self.store.location)
                    self._snapshot = latest
                    return latest.token
                saved = self.store.write(token, notes)  # removed meanwhile: ours is the grant
            self._snapshot = saved
            self._unsaved = None
        except TokenStoreError as error:
            self._unsaved = Snapshot(token, replacing, notes or {})
            self._save_retry_at = time.time() + _SAVE_RETRY
            logger.error("could not save the refreshed token, keeping it in memory and trying "
                         "again: %s", error)
        return token

    def _retry_saving(self) -> None:
        self._save_retry_at = time.time() + _SAVE_RETRY
        try:
            with self._thread_locked(wait=False), \
                    self.store.lock(0.0, lambda: False) as held:
                if held:
                    self._read_locked()
        except TokenError as error:
            logger.debug("could not save the kept token yet: %s", error)

    def _read_locked(self) -> Snapshot | None:
        """Under the locks: the file's snapshot, or the token this process could not save yet
        (then saved now, if possible), when the file still holds what that token replaces."""
        snapshot = self.store.read()
        unsaved = self._unsaved
        if unsaved is not None and (snapshot.version if snapshot else None) == unsaved.version:
            self._save(unsaved.token, unsaved.notes, unsaved.version)
            return self._unsaved or self._snapshot
        self._unsaved = None
        self._snapshot = snapshot
        return snapshot

    def _load(self) -> Snapshot | None:
        """Return the stored token, re-reading the store only when its version changed."""
        version = self.store.version()
        if self._unsaved is not None:
            if self._unsaved.version == version:
                return self._unsaved
            self._unsaved = None  # someone stored a token since: theirs is newer
        snapshot = self._snapshot
        if version is None:
            return None
        if snapshot is None or snapshot.version != version:
            snapshot = self._snapshot = self.store.read()
        return snapshot

    def _cool_down(self, stale: Token | None, error: TokenError) -> None:
        """After a failed refresh, let the next attempt for the same token wait: half the time
        it has left if it is still valid, else a doubling pause; longer for a bad client."""
        previous = self._failure
        count = previous.count + 1 if previous is not None and previous.stale == stale else 0
        now = time.time()
        if stale is not None and stale.expires_at is not None and stale.expires_at > now:
            pause = (stale.expires_at - now) / 2
        elif isinstance(error, ClientRejected):
            pause = _LONGEST_COOL_DOWN
        else:
            pause = min(_LONGEST_COOL_DOWN, 0.5 * 2 ** count)
        self._failure = _Failure(stale, error, now + pause, count)

    def _cooling_down(self, stale: Token | None) -> _Failure | None:
        """The last failure for ``stale``, while the next attempt must still wait."""
        failure = self._failure
        if failure is None or failure.stale != stale or time.time() >= failure.retry_at:
            return None
        return failure

    def _raise_while_cooling_down(self, stale: Token | None) -> None:
        failure = self._cooling_down(stale)
        if failure is not None:
            again = copy.copy(failure.error)
            wait = failure.retry_at - time.time()
            again.args = (f"{failure.error} (not retried for another {wait:.1f} s)",)
            raise again

    @contextmanager
    def _thread_locked(self, wait: bool) -> Iterator[None]:
        """Hold this keeper's thread lock, waiting up to ``lock_timeout`` (not at all without
        ``wait``: then raise _Busy if it is taken)."""
        acquired = self._thread_lock.acquire(timeout=self.lock_timeout) if wait \
            else self._thread_lock.acquire(blocking=False)
        if not acquired:
            raise self._timeout("another thread", wait)
        try:
            yield
        finally:
            self._thread_lock.release()

    def _timeout(self, holder: str, wait: bool) -> LockTimeout:
        if not wait:
            return _Busy(f"{holder} holds the lock of {self.store.location}")
        return LockTimeout(f"{holder} held the lock of {self.store.location} for more than "
                           f"lock_timeout={self.lock_timeout} s; the token endpoint may be slow "
                           "or hung")

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self.store, "refresher": self.refresher, "leeway": self.leeway,
                "lock_timeout": self.lock_timeout, "on_refresh": self.on_refresh,
                "login_hint": self.login_hint}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_process_state()


def _as_token(answer: Token | Mapping[str, Any], old: Token, requested_at: float) -> Token:
    """Turn a refresher's answer into a token, keeping the old refresh token if none came."""
    if isinstance(answer, Token):
        return answer if answer.refresh_token else replace(answer, refresh_token=old.refresh_token)
    if not isinstance(answer, Mapping):
        raise RefreshFailed(f"the refresher returned a {type(answer).__name__}, "
                            "not a Token or a mapping")
    try:
        return Token.from_response(answer, requested_at=requested_at, previous=old)
    except ValueError as error:
        raise RefreshFailed(f"the refresher's answer is not a usable token: {error}") from None
