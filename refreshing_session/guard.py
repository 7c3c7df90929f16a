"""The 401 rules: which 401 answers a refresh may cure, and the guard against refreshing for
401s that it cannot.

A 401 usually means the token died: it expired early (servers round lifetimes down to whole
seconds, clocks disagree) or was revoked. A new token cures that. But some endpoints answer 401
to every token (a missing permission reported as a 401), and refreshing for each of those calls
would turn a flood of refused calls into a flood of refreshes. The guard tells the two apart by
the path: a token obtained because of a 401 at a path remembers that path as *pending* until
its replay there answers; if the replay is refused too, the path is *wasted* (a refresh did not
help there), and later 401s at a wasted path go back to the caller without a refresh. 401s at
other paths still refresh, so a token that dies early is always renewed, but at most
``MAX_WASTED`` refreshes may be wasted before the token's scheduled refresh starts the count
afresh.

The guard travels with the token in the store's notes, so every process sharing the token
applies the same rules. It is transport-neutral: every front end uses it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Refreshes for 401s that did not help, allowed per scheduled token; then 401s go back.
MAX_WASTED = 2
_NOTE = "guard_401"

# The challenges about our token: Bearer (RFC 6750), and DPoP (RFC 9449) for a DPoP token.
_OUR_SCHEMES = re.compile(r"\b(?:bearer|dpop)\b", re.IGNORECASE)
_CHALLENGE_ERROR = re.compile(r'\berror\s*=\s*"?([\w.-]+)', re.IGNORECASE)
# RFC 6750 section 3.1: a new token cannot help a request that lacks scope or is malformed; nor
# (RFC 9449) a proof the server could not accept, nor its call for a nonce.
_NOT_CURED_BY_REFRESH = frozenset(
    {"insufficient_scope", "invalid_request", "invalid_dpop_proof", "use_dpop_nonce"}
)


def refresh_may_cure(
    status: int, headers: Mapping[str, str], statuses: Collection[int] = (401,)
) -> bool:
    """Return True when an answer with ``status`` and these ``headers`` may be cured by a new
    token: a status of ``statuses`` (401 unless the API also answers 403, say, to an expired
    token) whose ``WWW-Authenticate`` challenge is absent, or a Bearer challenge without an
    error that a token cannot fix, or a DPoP one (a Basic or Digest challenge is not about our
    token)."""
    if status not in statuses:
        return False
    challenge = headers.get("WWW-Authenticate", "")
    if challenge and not _OUR_SCHEMES.search(challenge):
        return False
    error = _CHALLENGE_ERROR.search(challenge)
    return error is None or error.group(1).lower() not in _NOT_CURED_BY_REFRESH


def refresh_statuses(statuses: object) -> frozenset[int]:
    """``statuses`` (the ``refresh_on`` of a front end) as a set of 4xx status codes; raises
    TypeError or ValueError saying what is wrong."""
    if isinstance(statuses, (str, bytes)) or not isinstance(statuses, Iterable):
        raise TypeError(
            f"refresh_on must be a tuple of status codes such as (401, 403), got "
            f"{type(statuses).__name__}"
        )
    items = tuple(statuses)
    if not items or not all(
        isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 499
        for code in items
    ):
        raise ValueError(
            f"refresh_on must hold 4xx status codes, such as (401, 403); got {items!r}"
        )
    return frozenset(items)


def path_key(path: str) -> str:
    """A short, fixed-size key for a request path, as the guard stores it (the path itself may
    be long or hold data that the token file need not keep)."""
    return hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True)
class Guard:
    """What the token's own history says about 401s: the paths where refreshing for a 401 was
    wasted since the last scheduled refresh; the path whose 401 obtained this token, while its
    replay has not answered (``pending``); and the path whose 401 obtained it for a request
    that could not be replayed, so that whether the refresh helped there is unknown
    (``untried``: only a request that can be replayed may refresh for it again and find out).
    An immutable value: each change returns a new one."""

    wasted: tuple[str, ...] = ()
    pending: str | None = None
    untried: str | None = None

    @classmethod
    def of(cls, notes: Mapping[str, Any]) -> Guard:
        """Read the guard from a stored token's notes (a fresh guard when there is none or it
        is malformed: the guard only ever holds refreshes back, so forgetting it is safe)."""
        raw = notes.get(_NOTE)
        if not isinstance(raw, Mapping):
            return cls()
        wasted, pending, untried = raw.get("wasted"), raw.get("pending"), raw.get("untried")
        if not isinstance(wasted, list) or not all(isinstance(key, str) for key in wasted):
            wasted = []
        return cls(
            tuple(wasted[:MAX_WASTED]),
            pending if isinstance(pending, str) else None,
            untried if isinstance(untried, str) else None,
        )

    def notes(self, notes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Return ``notes`` with this guard in them (without it, when the guard is fresh)."""
        merged = {key: value for key, value in (notes or {}).items() if key != _NOTE}
        if self != Guard():
            merged[_NOTE] = {
                "wasted": list(self.wasted),
                "pending": self.pending,
                "untried": self.untried,
            }
        return merged

    def may_refresh(self, key: str, *, replayable: bool = True) -> bool:
        """May a 401 at the path ``key`` be answered with a refresh? Never at a doubtful path
        (wasted, or pending), nor at the untried one for a request that cannot be replayed
        either; elsewhere while fewer than ``MAX_WASTED`` refreshes are not known to have
        helped (doubtful paths and the untried one). (The keeper
        also refreshes for a 401 where the very token worked before: there it means the token
        died.)"""
        if key == self.untried and not replayable:
            return False
        doubtful = (*self.wasted, *((self.pending,) if self.pending else ()))
        spent = len(doubtful) + (self.untried is not None)  # refreshes not known to have helped
        return key not in doubtful and spent < MAX_WASTED

    def successor(self, key: str) -> Guard:
        """The guard of the token obtained because of a 401 at ``key``: an unresolved pending
        path counts as wasted, since its replay never proved otherwise."""
        wasted = self.wasted + ((self.pending,) if self.pending else ())
        return Guard(wasted[-MAX_WASTED:], key, None if self.untried == key else self.untried)

    def cured(self, key: str) -> Guard:
        """The guard once a replay at ``key`` was not refused: a refresh helped there. (Its
        answer may come after a sibling's refresh has counted ``key`` as wasted.)"""
        return Guard(
            tuple(wasted for wasted in self.wasted if wasted != key),
            None if self.pending == key else self.pending,
            None if self.untried == key else self.untried,
        )

    def unanswered(self, key: str) -> Guard:
        """The guard once the request whose 401 at ``key`` obtained this token could not be
        replayed: ``key`` is no longer pending but untried."""
        if self.pending != key:
            return self
        return Guard(self.wasted, None, key)
