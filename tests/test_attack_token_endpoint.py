"""The token endpoint as an attacker (or a broken gateway) would play it: a hostile stdlib HTTP
server of this file's own on 127.0.0.1 answers the client's token, device and revocation
requests. Errors must hold none of the client's credentials; every exchange ends within its
timeout and reads at most 1 MiB; deeply nested JSON is a typed error."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import secrets
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from refreshing_session import (
    ClientCredentialsRefresher,
    ClientRejected,
    LoginRequired,
    OAuth2Refresher,
    RefreshFailed,
    RefreshingSession,
    Token,
    TokenError,
    TokenFile,
)
from refreshing_session.cli import main
from refreshing_session.errors import AnswerUnderway
from refreshing_session.login import DeviceAuthorization, DeviceLogin, revoke
from refreshing_session.profiles import CONFIG_ENV

from .support.processes import ROOT, wait_for

Answer = Callable[["Handler"], None]
MIB = 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    """Reads the request, then lets the endpoint's ``answer`` write whatever it likes."""

    server: HostileServer

    def do_POST(self) -> None:
        self.request_body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        # The client hanging up on a trickle or a flood is the point, not a failure.
        with contextlib.suppress(OSError):
            self.server.answer(self)

    def raw(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test output must not show what the client sent."""


class HostileServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # many callers at once: a full backlog would fail their connect

    def __init__(self, answer: Answer) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answer = answer
        self.stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/token"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up is expected; nothing to print."""


@pytest.fixture
def hostile() -> Iterator[Callable[[Answer], HostileServer]]:
    """Start hostile endpoints with the answer a test gives; stop them (and any trickle)."""
    started: list[HostileServer] = []

    def start(answer: Answer) -> HostileServer:
        endpoint = HostileServer(answer)
        threading.Thread(target=endpoint.serve_forever, daemon=True).start()
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.stop.set()
        endpoint.shutdown()
        endpoint.server_close()


def head(status: int, length: int | None, **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} Hostile", "Content-Type: application/json", "Connection: close"]
    lines += [] if length is None else [f"Content-Length: {length}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answering(status: int, body: bytes, **headers: str) -> Answer:
    def answer(handler: Handler) -> None:
        handler.raw(head(status, len(body), **headers) + body)

    return answer


def echoing(status: int, error: str = "server_error") -> Answer:
    """An error page that echoes the request, as debug pages and some gateways do."""

    def answer(handler: Handler) -> None:
        body = json.dumps(
            {
                "error": error,
                "headers": dict(handler.headers),
                "body": handler.request_body.decode(),
            }
        ).encode()
        handler.raw(head(status, len(body)) + body)

    return answer


# ------------------------------------------------------------------ 2. errors hold no credential


class Secrets:
    """The client's secrets for one test, each unique and token-shaped (URL-safe)."""

    def __init__(self) -> None:
        self.client_secret = "cs-" + secrets.token_urlsafe(24)
        self.refresh_token = "rt-" + secrets.token_urlsafe(24)
        self.access_token = "at-" + secrets.token_urlsafe(24)
        self.new_access_token = "nat-" + secrets.token_urlsafe(24)
        self.device_code = "dc-" + secrets.token_urlsafe(24)
        # The HTTP Basic credentials (the secret needs no form-encoding: it is URL-safe).
        self.basic = base64.b64encode(f"client:{self.client_secret}".encode()).decode()

    def named(self) -> dict[str, str]:
        return {name: value for name, value in vars(self).items()}


def leaks(error: BaseException, known: Mapping[str, str]) -> list[str]:
    """Where ``error`` holds any of the ``known`` secrets: in its pickled bytes, or anywhere
    reachable from it through attributes, its request, response, cause and context. Names the
    secret and the place, never the value."""
    found = [
        f"{name} in the pickled error"
        for name, value in known.items()
        if value.encode() in pickle.dumps(error)
    ]
    for place, text in _texts(error, "error", set(), 0):
        found += [f"{name} in {place}" for name, value in known.items() if value in text]
    return found


def _texts(thing: object, place: str, seen: set[int], depth: int) -> Iterator[tuple[str, str]]:
    if isinstance(thing, (bytes, bytearray)):
        yield place, bytes(thing).decode("latin-1")
        return
    if isinstance(thing, str):
        yield place, thing
        return
    if id(thing) in seen or depth > 10 or thing is None or isinstance(thing, (int, float, type)):
        return
    seen.add(id(thing))
    children: list[tuple[str, object]] = []
    if isinstance(thing, BaseException):
        yield f"str({place})", str(thing)
        children += [("__cause__", thing.__cause__), ("__context__", thing.__context__)]
    if isinstance(thing, dict):  # other mappings show their dict in __dict__
        children += [(f"[{key!r}]", value) for key, value in thing.items()]
        children += [(f"key {key!r}", key) for key in thing]
    elif isinstance(thing, (list, tuple, set, frozenset)):
        children += [(f"[{index}]", value) for index, value in enumerate(thing)]
    for name in ("request", "response", "raw", "connection", "history", "_fp", "_connection"):
        if hasattr(thing, name):
            children.append((name, getattr(thing, name)))
    children += list(getattr(thing, "__dict__", {}).items())
    for name, child in children:
        yield from _texts(
            child,
            f"{place}.{name}" if not name.startswith(("[", "key")) else f"{place}{name}",
            seen,
            depth + 1,
        )


@pytest.fixture
def known() -> Secrets:
    return Secrets()


def session_against(
    endpoint: HostileServer, known: Secrets, tmp_path: Path, auth_method: str
) -> RefreshingSession:
    """A session whose token expired a minute ago, refreshed at ``endpoint``."""
    path = tmp_path / "token.json"
    TokenFile(path).write(
        Token(known.access_token, refresh_token=known.refresh_token, expires_at=time.time() - 60)
    )
    refresher = OAuth2Refresher(
        endpoint.url, "client", known.client_secret, auth_method=auth_method, retries=0, timeout=5
    )
    return RefreshingSession("http://127.0.0.1:9/api/", token_file=path, refresher=refresher)


def error_of(call: Callable[[], object]) -> TokenError:
    with pytest.raises(TokenError) as caught:
        call()
    return caught.value


REFRESH_ANSWERS: dict[str, tuple[type[TokenError], Callable[[Secrets], Answer]]] = {
    "invalid_grant": (
        LoginRequired,
        lambda known: answering(400, b'{"error": "invalid_grant", "error_description": "no"}'),
    ),
    "invalid_client": (
        ClientRejected,
        lambda known: answering(
            401, b'{"error": "invalid_client"}', WWW_Authenticate='Basic realm="x"'
        ),
    ),
    "503": (RefreshFailed, lambda known: answering(503, b"", Retry_After="0")),
    "an echoing error page": (RefreshFailed, lambda known: echoing(500)),
    "an unusable 200": (
        RefreshFailed,
        lambda known: answering(
            200, json.dumps({"access_token": known.new_access_token, "token_type": "MAC"}).encode()
        ),
    ),
}


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("answer", list(REFRESH_ANSWERS))
def test_errors_from_a_refresh_hold_no_credential(
    hostile: Callable[[Answer], HostileServer],
    known: Secrets,
    tmp_path: Path,
    auth_method: str,
    answer: str,
) -> None:
    expected, make_answer = REFRESH_ANSWERS[answer]
    endpoint = hostile(make_answer(known))
    session = session_against(endpoint, known, tmp_path, auth_method)
    first = error_of(lambda: session.get("http://127.0.0.1:9/api/items"))
    # the second comes from the keeper's memory of the first (a back-off or a refusal)
    again = error_of(lambda: session.get("http://127.0.0.1:9/api/items"))
    assert isinstance(first, expected), type(first)
    assert leaks(first, known.named()) == []
    assert leaks(again, known.named()) == []


def test_an_error_from_a_custom_refresher_holds_no_credential(
    hostile: Callable[[Answer], HostileServer], known: Secrets, tmp_path: Path
) -> None:
    endpoint = hostile(echoing(500))

    def refresher(token: Token) -> Token:  # a hand-written refresher, as users write them
        answer = requests.post(
            endpoint.url,
            timeout=5,
            data={
                "grant_type": "refresh_token",
                "refresh_token": token.refresh_token,
                "client_secret": known.client_secret,
            },
        )
        answer.raise_for_status()
        raise AssertionError("the endpoint answered 500")

    path = tmp_path / "token.json"
    TokenFile(path).write(
        Token(known.access_token, refresh_token=known.refresh_token, expires_at=time.time() - 60)
    )
    session = RefreshingSession("http://127.0.0.1:9/api/", token_file=path, refresher=refresher)
    error = error_of(lambda: session.get("http://127.0.0.1:9/api/items"))
    assert isinstance(error, RefreshFailed)
    assert error.status_code == 500  # what helps stays
    assert leaks(error, known.named()) == []


@pytest.mark.parametrize("answer", list(REFRESH_ANSWERS))
def test_errors_keep_what_helps_a_user(
    hostile: Callable[[Answer], HostileServer], known: Secrets, tmp_path: Path, answer: str
) -> None:
    endpoint = hostile(REFRESH_ANSWERS[answer][1](known))
    session = session_against(endpoint, known, tmp_path, "client_secret_basic")
    error = error_of(lambda: session.get("http://127.0.0.1:9/api/items"))
    assert error.response is not None, "the status and the server's answer help the user"
    assert error.response.url == endpoint.url
    assert error.response.status_code in (200, 400, 401, 500, 503)
    assert error.request is not None
    assert error.request.url == endpoint.url
    assert pickle.loads(pickle.dumps(error)).response.status_code == error.response.status_code
    if answer in ("invalid_grant", "invalid_client"):
        assert error.response.json()["error"] == answer


def test_a_client_credentials_error_holds_no_credential(
    hostile: Callable[[Answer], HostileServer], known: Secrets
) -> None:
    endpoint = hostile(echoing(401, "invalid_client"))
    client = ClientCredentialsRefresher(endpoint.url, "client", known.client_secret, retries=0)
    error = error_of(client.new_token)
    assert isinstance(error, ClientRejected)
    assert leaks(error, known.named()) == []


def test_a_failed_revocation_holds_no_token(
    hostile: Callable[[Answer], HostileServer], known: Secrets
) -> None:
    endpoint = hostile(echoing(503))
    client = OAuth2Refresher(endpoint.url, "client", known.client_secret, retries=0)
    token = Token(known.access_token, refresh_token=known.refresh_token)
    error = error_of(lambda: revoke(client, endpoint.url, token))
    assert leaks(error, known.named()) == []


def test_device_login_errors_hold_no_device_code(
    hostile: Callable[[Answer], HostileServer], known: Secrets
) -> None:
    no_user_code = json.dumps(
        {
            "device_code": known.device_code,
            "expires_in": 60,
            "verification_uri": "https://example.com/device",
        }
    ).encode()
    authorizer = hostile(answering(200, no_user_code))
    poller = hostile(echoing(503))
    client = OAuth2Refresher(poller.url, "client", known.client_secret, retries=0)
    started = error_of(DeviceLogin(client, authorizer.url).start)
    authorization = DeviceAuthorization(
        "CODE", "https://example.com/device", None, 60, 0.01, known.device_code
    )
    polled = error_of(lambda: DeviceLogin(client, authorizer.url).wait(authorization))
    assert leaks(started, known.named()) == []
    assert leaks(polled, known.named()) == []


def test_an_unreachable_endpoint_error_holds_no_credential(known: Secrets) -> None:
    with HostileServer(answering(200, b"")) as closed:
        url = closed.url
    client = OAuth2Refresher(url, "client", known.client_secret, retries=0)
    error = error_of(lambda: client(Token(known.access_token, refresh_token=known.refresh_token)))
    assert isinstance(error, RefreshFailed)
    assert error.__cause__ is not None, "the transport's error stays visible, cleaned"
    assert leaks(error, known.named()) == []


# ------------------------------------------------------------ 4. a total deadline per exchange


def trickling(whole: bool, seconds: float = 8.0) -> Answer:
    """Process the grant at once, then send the answer a byte at a time over ``seconds``:
    all of it (status line and headers too), or only the body."""
    body = json.dumps(
        {
            "access_token": "a" * 43,
            "token_type": "Bearer",
            "expires_in": 60,
            "refresh_token": "r" * 43,
        }
    ).encode()

    def answer(handler: Handler) -> None:
        slow = head(200, len(body)) + body if whole else body
        if not whole:
            handler.raw(head(200, len(body)))
        for byte in range(len(slow)):
            handler.raw(slow[byte : byte + 1])
            if handler.server.stop.wait(seconds / len(slow)):
                return

    return answer


@pytest.mark.parametrize("whole", [True, False], ids=["whole-answer", "body-only"])
def test_a_trickled_answer_cannot_hold_a_refresh_past_its_timeout(
    hostile: Callable[[Answer], HostileServer], whole: bool
) -> None:
    endpoint = hostile(trickling(whole))
    refresher = OAuth2Refresher(endpoint.url, "client", "secret", retries=0, timeout=1)
    started = time.monotonic()
    error = error_of(lambda: refresher(Token("access", refresh_token="refresh")))
    took = time.monotonic() - started
    assert isinstance(error, RefreshFailed)
    assert "too slow" in str(error)
    # every byte arrives well within the 1 s read timeout; the trickle lasts 8 s
    assert took < 4, f"a 1-second refresh took {took:.1f} s against an 8-second trickle"


def test_a_trickled_device_authorization_is_bounded_too(
    hostile: Callable[[Answer], HostileServer],
) -> None:
    endpoint = hostile(trickling(True))
    client = OAuth2Refresher(endpoint.url, "client", "secret", retries=0, timeout=1)
    started = time.monotonic()
    error_of(DeviceLogin(client, endpoint.url).start)
    assert time.monotonic() - started < 4


# ------------------------------- 4b. an abandoned exchange ends (issue 23, item 5): no leak


def trickling_head_forever(handler: Handler) -> None:
    """A 200 whose head never ends: a status line, then one header byte every 0.2 s for as
    long as the client listens (each byte well within any read timeout)."""
    slow = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000
    for byte in range(len(slow)):
        handler.raw(slow[byte : byte + 1])
        if handler.server.stop.wait(0.2):
            return


def exchange_threads() -> int:
    return sum(thread.name == "token endpoint exchange" for thread in threading.enumerate())


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def timed_refresh(refresher: OAuth2Refresher) -> tuple[float, BaseException | None]:
    """One refresh: how long it took, and what it raised."""
    started = time.monotonic()
    try:
        refresher(Token("access", refresh_token="refresh"))
    except TokenError as error:
        return time.monotonic() - started, error
    return time.monotonic() - started, None


@pytest.mark.timeout(120)
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_abandoned_exchanges_leave_no_thread_or_socket_behind(
    hostile: Callable[[Answer], HostileServer],
) -> None:
    endpoint = hostile(trickling_head_forever)
    refresher = OAuth2Refresher(endpoint.url, "client", "secret", retries=0, timeout=0.5)
    threads_before, descriptors_before = exchange_threads(), open_descriptors()
    outcomes: list[tuple[float, BaseException | None]] = []

    def caller() -> None:  # 10 callers of 5 refreshes each: 50 abandoned exchanges
        outcomes.extend(timed_refresh(refresher) for _ in range(5))

    callers = [threading.Thread(target=caller) for _ in range(10)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(60)
    assert len(outcomes) == 50, "a caller was not released"
    assert all(
        isinstance(error, RefreshFailed) and "too slow" in str(error) for _, error in outcomes
    ), {f"{type(error).__name__}: {error}" for _, error in outcomes}
    slowest = max(took for took, _ in outcomes)
    assert slowest < 0.5 + 2, f"a refresh with timeout=0.5 took {slowest:.1f} s"
    # the server keeps trickling to every connection it still has: only the client can end them
    wait_for(
        lambda: (
            exchange_threads() <= threads_before + 1
            and open_descriptors() <= descriptors_before + 4
        ),
        timeout=10,
        why=lambda: (
            f"after 50 abandoned exchanges, {exchange_threads() - threads_before} exchange "
            f"threads and {open_descriptors() - descriptors_before} file descriptors more "
            "than before are still open 10 s later"
        ),
    )


# ------------------- 4c. a successful answer the deadline cut off is finished (issue 23, item 7)


def counted(answer: Answer) -> tuple[Answer, list[bytes]]:
    """``answer``, and the list of the request bodies it got."""
    bodies: list[bytes] = []

    def counting(handler: Handler) -> None:
        bodies.append(handler.request_body)
        answer(handler)

    return counting, bodies


@pytest.mark.timeout(60)
def test_a_begun_answer_cut_off_by_the_deadline_is_finished_in_the_background(
    hostile: Callable[[Answer], HostileServer], known: Secrets
) -> None:
    answer, bodies = counted(trickling(whole=False, seconds=3))
    endpoint = hostile(answer)
    refresher = OAuth2Refresher(endpoint.url, "client", known.client_secret, retries=2, timeout=1)
    took, error = timed_refresh(refresher)
    assert isinstance(error, AnswerUnderway), f"not AnswerUnderway: {error!r}"
    assert took < 1 + 2, f"the caller was held {took:.1f} s past a 1-second timeout"
    assert "too slow" in str(error)
    token = error.finish(30)
    assert token.refresh_token == "r" * 43, "the server's new refresh token"
    assert token.access_token == "a" * 43
    assert len(bodies) == 1, "the grant was sent again although its answer was on its way"
    assert leaks(error, {**known.named(), "new": "r" * 43}) == []


@pytest.mark.timeout(60)
def test_a_client_credentials_answer_underway_is_not_retried(
    hostile: Callable[[Answer], HostileServer],
) -> None:
    answer, bodies = counted(trickling(whole=False, seconds=5))
    endpoint = hostile(answer)
    client = ClientCredentialsRefresher(endpoint.url, "client", "secret", retries=2, timeout=2)
    underway = error_of(client.new_token)
    assert isinstance(underway, AnswerUnderway)
    assert underway.finish(30).access_token == "a" * 43
    assert len(bodies) == 1


@pytest.mark.timeout(60)
def test_finish_reports_an_answer_that_breaks(hostile: Callable[[Answer], HostileServer]) -> None:
    def breaking(handler: Handler) -> None:  # a 200 that promises 100 bytes, sends 2, hangs up
        handler.raw(head(200, 100) + b'{"')
        handler.server.stop.wait(3)

    endpoint = hostile(breaking)
    refresher = OAuth2Refresher(endpoint.url, "client", "secret", retries=0, timeout=2)
    underway = error_of(lambda: refresher(Token("access", refresh_token="refresh")))
    assert isinstance(underway, AnswerUnderway)
    with pytest.raises(RefreshFailed) as caught:
        underway.finish(30)
    assert not isinstance(caught.value, AnswerUnderway)


@pytest.mark.timeout(60)
def test_an_error_answer_cut_off_by_the_deadline_is_a_plain_failure(
    hostile: Callable[[Answer], HostileServer],
) -> None:
    def slow_503(handler: Handler) -> None:
        handler.raw(head(503, 100) + b'{"')
        handler.server.stop.wait(8)

    endpoint = hostile(slow_503)
    refresher = OAuth2Refresher(endpoint.url, "client", "secret", retries=0, timeout=1)
    error = error_of(lambda: refresher(Token("access", refresh_token="refresh")))
    assert type(error) is RefreshFailed, "only a 2xx answer is worth finishing"
    assert "too slow" in str(error)


# --------------------------------------------------------------------- 5. at most 1 MiB read


def flood(size: int) -> Answer:
    """A 200 of ``size`` bytes (a JSON token padded with a huge field), sent as fast as can be."""

    def answer(handler: Handler) -> None:
        start, end = b'{"access_token": "x", "pad": "', b'"}'
        handler.raw(head(200, size))
        handler.raw(start)
        left = size - len(start) - len(end)
        while left > 0 and not handler.server.stop.is_set():
            handler.raw(b"a" * min(left, MIB))
            left -= MIB
        handler.raw(end)

    return answer


@cache
def gzip_bomb(inflated: int = 96 * MIB) -> bytes:
    """About 100 KB of gzip that inflates to ``inflated`` bytes of a padded JSON token."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(b'{"access_token": "x", "pad": "')]
    parts += [packer.compress(b"a" * MIB) for _ in range(inflated // MIB)]
    return b"".join([*parts, packer.compress(b'"}'), packer.flush()])


def bombing(handler: Handler) -> None:
    bomb = gzip_bomb()
    handler.raw(head(200, len(bomb), Content_Encoding="gzip") + bomb)


# Run in a process of its own, so that its peak memory is the refresh's alone.
MEASURE = """
import json, resource, sys
from refreshing_session import OAuth2Refresher, RefreshFailed, Token
refresher = OAuth2Refresher(sys.argv[1], "client", "secret", retries=0, timeout=30)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    refresher(Token("access", refresh_token="refresh"))
    outcome = "a token"
except RefreshFailed as error:
    outcome = str(error)
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"growth_mib": growth / 1024, "outcome": outcome}))
"""


def refresh_in_a_process(url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, url],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize("answer", ["40 MiB", "a gzip bomb"])
def test_a_huge_answer_is_refused_without_growing_memory(
    hostile: Callable[[Answer], HostileServer], answer: str
) -> None:
    endpoint = hostile(flood(40 * MIB) if answer == "40 MiB" else bombing)
    report = refresh_in_a_process(endpoint.url)
    assert "more than 1 MiB" in report["outcome"], report["outcome"]
    assert report["growth_mib"] < 16, f"memory grew by {report['growth_mib']:.0f} MiB"


def test_an_answer_of_just_under_1_mib_is_read(hostile: Callable[[Answer], HostileServer]) -> None:
    body = json.dumps(
        {"access_token": "x" * 43, "token_type": "Bearer", "pad": "a" * (MIB - 200)}
    ).encode()
    endpoint = hostile(answering(200, body))
    token = OAuth2Refresher(endpoint.url, "client", "secret", retries=0)(
        Token("access", refresh_token="refresh")
    )
    assert token.access_token == "x" * 43


# ------------------------------------------------------------- 10. deeply nested JSON is typed


@pytest.mark.parametrize("status", [200, 400, 503])
def test_deeply_nested_json_from_the_token_endpoint_is_refresh_failed(
    hostile: Callable[[Answer], HostileServer], status: int
) -> None:
    endpoint = hostile(answering(status, b"[" * 100_000))
    refresher = OAuth2Refresher(endpoint.url, "client", "secret", retries=0)
    error = error_of(lambda: refresher(Token("access", refresh_token="refresh")))
    assert isinstance(error, RefreshFailed)
    assert f"answered {status}" in str(error)


def test_deeply_nested_json_from_the_device_endpoint_exits_2(
    hostile: Callable[[Answer], HostileServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint = hostile(answering(200, b"[" * 100_000))
    config = tmp_path / "config.toml"
    config.write_text(
        "\n".join(
            [
                "[profiles.evil]",
                f'token_url = "{endpoint.url}"',
                'client_id = "client"',
                'prefixes = "http://127.0.0.1:9/api/"',
                'token_file = "token.json"',
                f'device_authorization_url = "{endpoint.url}"',
            ]
        )
        + "\n"
    )
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert main(["login", "--profile", "evil"]) == 2
    err = capsys.readouterr().err
    assert "device authorization endpoint" in err
    assert "Traceback" not in err
