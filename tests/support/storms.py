"""Storms through several expiries: processes that share one grant, logged in the moment they
are all ready (``run_storm`` of ``processes``), and what they leave for the test to check: what
each process's callers saw, how many tokens came due, and the figures a storm test records and
prints so that a failure says why."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from refreshing_session import Token, TokenFile, TokenStore

from .processes import run_storm
from .redis_servers import RedisServer

# The library's default leeway: capped at half a token's life, so a token is due halfway.
LEEWAY = 30.0
REDIS_KEY = "refreshing-session:storm"


@dataclass(frozen=True)
class Storm:
    """What a storm left: the token of its login, when that login was asked for (the storm's
    start), how long the storm ran from then, and what the callers of each process saw (a
    status code or an exception's name, counted)."""

    first: Token
    start: float
    elapsed: float
    per_process: list[Counter[str]]

    @property
    def outcomes(self) -> Counter[str]:
        """What all the callers saw, counted."""
        return sum(self.per_process, Counter())

    @property
    def tokens_due(self) -> int:
        """How many tokens came due during the storm: the first halfway through its life, and
        each next one as long after the one before."""
        first_due = self.first.refresh_due_at(LEEWAY)
        assert first_due is not None, "the login's token has no expiry"
        return math.floor(self.elapsed / (first_due - self.start))

    def figures(self, **more: object) -> dict[str, object]:
        """The figures every storm reports (how long it ran, what its callers saw in all and
        per process, how many tokens came due), then ``more``: what the server counted."""
        outcomes = self.outcomes
        return {
            "seconds": round(self.elapsed, 2),
            "requests": sum(outcomes.values()),
            "outcomes": dict(outcomes),
            "per_process": [dict(counts) for counts in self.per_process],
            "tokens_due": self.tokens_due,
            **more,
        }

    def assert_every_caller_got_200s(self, figures: dict[str, object]) -> None:
        """Every process made successful calls, and no caller saw anything but a 200; the
        failure quotes ``figures``."""
        assert all(counts["200"] > 0 for counts in self.per_process), (
            f"a process made no successful call: {figures}"
        )
        assert set(self.outcomes) == {"200"}, f"a caller saw an error: {figures}"


def storm_through_expiries(
    job: dict[str, object],
    programs: Sequence[str],
    seconds: float,
    folder: Path,
    store: TokenStore,
    log_in: Callable[[], Token],
) -> Storm:
    """Run ``programs`` (one process each) as ``run_storm`` does: once all are ready, the
    token ``log_in()`` returns is written to ``store``, and the storm runs ``seconds`` from the
    moment that login was asked for. Returns what the storm left."""
    logins: list[tuple[Token, float]] = []

    def first_login() -> float:
        asked_at = time.time()
        token = log_in()
        store.write(token)
        logins.append((token, asked_at))
        return asked_at

    outputs = run_storm(job, len(programs), seconds, folder, first_login, programs=programs)
    [(first, start)] = logins
    elapsed = time.time() - start
    return Storm(first, start, elapsed, [Counter(json.loads(out)) for out in outputs])


def report(figures: dict[str, object], record_property: Callable[[str, object], None]) -> None:
    """Record ``figures`` as the test's ``figures`` property (the reliability report reads it)
    and print them, which pytest shows when the test fails."""
    record_property("figures", figures)
    print(figures)


@contextmanager
def shared_store(shared: str, folder: Path) -> Iterator[tuple[TokenStore, dict[str, object]]]:
    """The store a storm shares, ``"token file"`` (in ``folder``) or ``"redis"`` (a
    redis-server of its own, one key only), and what the storm's job says about it."""
    if shared == "token file":
        yield TokenFile(folder / "token.json"), {}
        return
    from refreshing_session.redis_store import RedisTokenStore

    server = RedisServer(folder / "redis")
    server.start()
    try:
        yield (
            RedisTokenStore(server.url, REDIS_KEY),
            {"redis": server.url, "key": REDIS_KEY, "lock_ttl": 10.0},
        )
    finally:
        server.stop()
