"""TokenKeeper: one refresh per token, whatever the number of threads and processes.

The keeper holds the last token it read and hands it out while it is valid, noticing a
sibling's new token with one ``stat`` per call. When the token is due (or was refused with a
401), the keeper takes a thread lock, then the file lock beside the token file, re-reads the
file, and refreshes only if the file still holds the token that was due: otherwise someone
else already refreshed it, and that token is adopted without calling the token endpoint.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import filelock
import requests

from .errors import LockTimeout, LoginRequired, RefreshFailed, TokenError, TokenFileError
from .refreshers import Refresher, TokenSource
from .store import Snapshot, TokenFile
from .token import Token

logger = logging.getLogger(__name__)

REFUSED = "refresh_refused"  # the stored refresh token was refused: siblings give up at once
FOR_A_401 = "obtained_for_a_401"  # this token replaced one refused with a 401
# Waiting processes poll the lock this often; short, because a refresh is a round trip.
_LOCK_POLL = 0.002


class TokenKeeper:
    """Gives out a valid access token for one token file, refreshing it under the locks."""

    def __init__(
        self,
        store: TokenFile,
        refresher: Refresher | None,
        *,
        leeway: float,
        lock_timeout: float,
    ) -> None:
        self.store = store
        self.refresher = refresher
        self.leeway = leeway
        self.lock_timeout = lock_timeout
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._snapshot: Snapshot | None = None
        self._early_retry_at = 0.0
        self._thread_lock = threading.Lock()
        self._pid = os.getpid()

    def current(self) -> Token:
        """Return a token to send now, refreshing it first if it is due.

        When an early refresh fails while the token is still valid, the failure is logged
        and the valid token returned. Raises LoginRequired, RefreshFailed, ClientRejected,
        TokenFileError or LockTimeout when no usable token can be had.
        """
        snapshot = self._load()
        if snapshot is None:
            return self._replace(None)
        token = snapshot.token
        due = token.refresh_due_at(self.leeway)
        if due is None or time.time() < due:
            return token
        return self._refresh_due(token)

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

    def _refresh_due(self, token: Token) -> Token:
        expired = token.expires_at is not None and time.time() >= token.expires_at
        if not expired and time.time() < self._early_retry_at:
            return token
        try:
            return self._replace(token)
        except TokenError as error:
            if token.expires_at is None or time.time() >= token.expires_at:
                raise
            remaining = token.expires_at - time.time()
            # Halve the wait each time: a few attempts before expiry, never one per request.
            self._early_retry_at = time.time() + remaining / 2
            logger.warning("early refresh failed, going on with the current token (valid %.1f s "
                           "more): %s", remaining, error)
            return token

    def _replace(self, stale: Token | None, *, after_401: bool = False) -> Token:
        """Replace ``stale`` (None: there is no token file) unless someone already did, and
        return the token to use: ``stale`` itself after a 401 that a refresh cannot cure."""
        with self._locked():
            snapshot = self.store.read()
            if snapshot is not None and snapshot.token != stale:
                logger.debug("adopting token %s written by another process",
                             snapshot.token.fingerprint)
                self._snapshot = snapshot
                return snapshot.token
            if after_401 and snapshot is not None and snapshot.notes.get(FOR_A_401):
                return snapshot.token
            return self._redeem(snapshot, after_401=after_401)

    def _redeem(self, snapshot: Snapshot | None, *, after_401: bool = False) -> Token:
        """Call the refresher for the stored token (or for a first token) and store the result."""
        if snapshot is None:
            return self._first_token()
        refused = snapshot.notes.get(REFUSED)
        if refused:
            raise LoginRequired(f"the refresh token in {self.store.path} was refused earlier "
                                f"({refused}); log in again to replace the token file")
        if self.refresher is None:
            raise LoginRequired(f"the token in {self.store.path} has expired and this session "
                                "has no refresher; log in again or pass refresher=")
        old = snapshot.token
        try:
            new = self._call_refresher(old)
        except LoginRequired as error:
            return self._after_refusal(snapshot, error)
        self._snapshot = self.store.write(new, {FOR_A_401: True} if after_401 else None)
        logger.info("refreshed the access token for %s (%s -> %s)", self.store.path,
                    old.fingerprint, new.fingerprint)
        return new

    def _first_token(self) -> Token:
        if not isinstance(self.refresher, TokenSource):
            raise LoginRequired(f"there is no token file at {self.store.path}; log in first "
                                "(write a token there), or use a ClientCredentialsRefresher")
        token = self.refresher.new_token()
        self._snapshot = self.store.write(token)
        logger.info("created the token file %s with a new grant", self.store.path)
        return token

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
        if latest is not None and latest.signature == refused.signature:
            self._snapshot = self.store.write(refused.token, {**refused.notes, REFUSED: str(error)})
        raise error

    def _load(self) -> Snapshot | None:
        """Return the stored token, re-reading the file only when its signature changed."""
        signature = self.store.signature()
        snapshot = self._snapshot
        if signature is None:
            return None
        if snapshot is None or snapshot.signature != signature:
            snapshot = self._snapshot = self.store.read()
        return snapshot

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the thread lock, then the file lock, within ``lock_timeout`` in total."""
        if self._pid != os.getpid():
            # A fork copies the lock in whatever state another thread held it.
            self._reset_process_state()
        deadline = time.monotonic() + self.lock_timeout
        if not self._thread_lock.acquire(timeout=self.lock_timeout):
            raise self._timeout("another thread")
        try:
            lock = filelock.FileLock(self.store.lock_path, fallback_to_soft=False,
                                     poll_interval=_LOCK_POLL)
            try:
                lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
            except filelock.Timeout:
                raise self._timeout("another process") from None
            except OSError as error:
                raise TokenFileError(f"cannot lock ({error.strerror}); check that the folder "
                                     "is writable and the lock file is yours",
                                     path=self.store.lock_path) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            self._thread_lock.release()

    def _timeout(self, holder: str) -> LockTimeout:
        return LockTimeout(f"{holder} held the token lock {self.store.lock_path} for more than "
                           f"lock_timeout={self.lock_timeout} s; the token endpoint may be slow "
                           "or hung")

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self.store, "refresher": self.refresher, "leeway": self.leeway,
                "lock_timeout": self.lock_timeout}

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
