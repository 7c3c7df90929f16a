"""An answer that has begun is never dropped, and with it the grant (issue 23, item 7).

Two hosts share a RedisTokenStore. The token endpoint (here LocalAuthServer behind a proxy
that trickles its answers, as a slow proxy does) processes the grant at once but sends the body
of its 200 slowly. The host that refreshes gives up at its deadline, as promised, while a thread
of its own reads the rest under the store's lock, which it keeps renewing past ``lock_ttl``,
and stores the new token for everyone: the other host waits on the lock and adopts it. The
server sees one refresh token presented once: no reuse, and the grant lives."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from refreshing_session import OAuth2Refresher, RefreshFailed, Token
from refreshing_session.errors import AnswerUnderway
from refreshing_session.keeper import TokenKeeper
from refreshing_session.redis_store import RedisTokenStore
from refreshing_session.testing import LocalAuthServer

from .support.handlers import QuietHandler
from .support.hostile import LoopbackServer
from .support.redis_servers import RedisServer

KEY = "answer-underway"
TRICKLE_SECONDS = 3.0  # longer than lock_ttl below: the lock must be renewed meanwhile
LOCK_TTL = 1.0


class TricklingProxy(LoopbackServer):
    """Forwards each token request to ``upstream`` at once, then sends the status line and the
    headers of its answer at once and the body a byte at a time over ``seconds``."""

    def __init__(self, upstream: str, seconds: float) -> None:
        self.stopped = stopped = threading.Event()

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                form = self.read_body()
                headers = {
                    name: self.headers[name]
                    for name in ("Content-Type", "Authorization")
                    if name in self.headers
                }
                answer = requests.post(upstream, data=form, headers=headers, timeout=5)
                status, body = answer.status_code, answer.content
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                pause = seconds / len(body)
                for index in range(len(body)):
                    if stopped.wait(pause):
                        return
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()

        super().__init__(Handler)

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        super().__exit__(*exc)


@pytest.fixture
def proxy(server: LocalAuthServer) -> Iterator[TricklingProxy]:
    with TricklingProxy(server.token_url, TRICKLE_SECONDS) as running:
        yield running


def host(redis_server: RedisServer, proxy: TricklingProxy) -> TokenKeeper:
    """One host's keeper: its own store object and locks, the shared Redis key."""
    refresher = OAuth2Refresher(proxy.origin + "/token", "client", "secret", timeout=1.0, retries=0)
    store = RedisTokenStore(redis_server.url, KEY, lock_ttl=LOCK_TTL)
    return TokenKeeper(store, refresher, leeway=30.0, lock_timeout=10.0)


@pytest.mark.timeout(30)
def test_a_begun_answer_cut_off_by_the_deadline_is_stored_for_every_host(
    server: LocalAuthServer, redis_server: RedisServer, proxy: TricklingProxy
) -> None:
    grant = Token.from_response(server.issue_token(), requested_at=time.time() - 7200)
    first, second = host(redis_server, proxy), host(redis_server, proxy)
    first.store.write(grant)  # expired an hour ago: the first request must refresh

    started = time.monotonic()
    with pytest.raises(RefreshFailed) as raised:
        first.current()
    released_after = time.monotonic() - started
    assert isinstance(raised.value, AnswerUnderway), f"not AnswerUnderway: {raised.value!r}"
    assert released_after < 1.0 + 2.0, f"the caller waited {released_after:.1f} s, not ~1 s"

    adopted = second.current()  # waits on the lock held by the answer's reader, then adopts
    assert adopted != grant
    assert adopted.refresh_token != grant.refresh_token, "the new refresh token was dropped"
    assert first.current() == adopted, "the refreshing host does not use the stored token"
    stats = server.stats()
    assert (stats.refreshes, stats.reuse_detections, stats.revoked_grants) == (1, 0, 0), (
        "the spent refresh token was presented again: the grant would be revoked"
    )
