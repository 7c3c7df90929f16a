"""The demo: worker processes sharing one token file against a local authorization server.

Each worker process runs threads that call the server's API through a RefreshingSession until
the deadline. With tokens living 2 s or more, the server is as strict about time as
oidc-provider: an access token dies at the whole second it was issued in plus its lifetime
(never before half its life, when it is refreshed). With ``chaos``, faults are injected while
they run: 503 answers to token calls, drawn per call (never two in a row, so one retry gets
through however slow the machine), and, twice a second, a slow token endpoint or a worker
killed with SIGKILL (and replaced). The report says what callers saw, in every worker (killed
ones too), and what the authorization server saw. Its count of tokens due is the run's length
over the refresh interval, a bound: a token is renewed only when a request finds it due, so
one that comes due after the workers stop (or a little later, as each renewal waits for a
request) costs no call. The report says when the last token came due, so the two can be told
apart.

With ``dpop``, the server binds every token to a DPoP key (RFC 9449) and requires a proof and a
nonce with every request; the first token is stored with a new key, which every worker signs
with. The report then says how many keys signed (one), what the nonces cost (one retry at the
token endpoint, one replay at the API, per process or thread that had none yet), and whether the
server refused a proof for anything else.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from multiprocessing.sharedctypes import RawArray
from pathlib import Path
from typing import Any, Protocol, TextIO

import requests

from .dpop import DPoPKey
from .errors import TokenFileError
from .refreshers import OAuth2Refresher
from .session import RefreshingSession
from .store import TokenFile
from .testing import LocalAuthServer
from .token import Token

LEEWAY = 30.0
# Like the reuse interval Auth0 and Okta offer: it makes a worker killed between the server's
# rotation and the file write survivable. Without chaos the server allows no reuse at all.
CHAOS_GRACE_PERIOD = 2.0
# The share of token calls answered 503 under chaos (never two in a row).
CHAOS_503_SHARE = 0.25
_OK, _REFUSED, _RAISED = range(3)  # slots of a worker's shared counters
# How the local server describes a proof it answered with a nonce challenge (use_dpop_nonce).
DPOP_NONCE_PROBLEMS = frozenset(
    {"nonce is required in the DPoP proof", "invalid nonce in the DPoP proof"}
)


class _Counters(Protocol):
    def __getitem__(self, index: int) -> int: ...
    def __setitem__(self, index: int, value: int) -> None: ...


@dataclass(frozen=True)
class DemoOptions:
    """What to run: ``processes`` x ``threads`` workers for ``seconds``, tokens living ``ttl``."""

    processes: int = 4
    threads: int = 4
    seconds: float = 10.0
    ttl: float = 2.0
    chaos: bool = False
    seed: int | None = None
    dpop: bool = False


@dataclass(frozen=True)
class _Job:
    api_url: str
    token_url: str
    token_file: str
    threads: int
    deadline: float  # epoch seconds
    dpop: bool = False


def run_demo(options: DemoOptions, progress: TextIO) -> dict[str, Any]:
    """Run the demo, drawing progress on ``progress``; return the report as a dict."""
    grace = CHAOS_GRACE_PERIOD if options.chaos else 0.0
    with (
        tempfile.TemporaryDirectory(prefix="refreshing-session-demo-") as folder,
        LocalAuthServer(
            access_ttl=options.ttl, grace_period=grace, dpop=options.dpop, dpop_nonce=options.dpop
        ) as server,
    ):
        token_file = os.path.join(folder, "token.json")
        started = time.time()
        TokenFile(token_file).write(_login(server, options.dpop, started))
        job = _Job(
            server.api_url,
            server.token_url,
            token_file,
            options.threads,
            deadline=started + options.seconds,
            dpop=options.dpop,
        )
        fleet = _Fleet(job, options.processes, Path(folder))
        chaos = _Chaos(server, fleet, options.seed) if options.chaos else None
        _watch(fleet, chaos, job.deadline, options.seconds, progress)
        failure_kinds = fleet.finish()
        report = _report(options, fleet, failure_kinds, server, chaos, started)
        last = _last_token(token_file)
        report["token_file_intact"] = last is not None
        report["ok"] = report["ok"] and report["token_file_intact"]
        report["last_token_due"] = _since(started, last)
        return report


def _login(server: LocalAuthServer, dpop: bool, requested_at: float) -> Token:
    """The first token, as a login makes it: with ``dpop``, bound to a new key stored with it,
    which every worker then signs with."""
    if not dpop:
        return Token.from_response(server.issue_token(), requested_at=requested_at)
    key = DPoPKey.generate()
    token = Token.from_response(server.issue_token(dpop_jkt=key.jkt), requested_at=requested_at)
    return replace(token, dpop_key=key.private_pem())


def _last_token(token_file: str) -> Token | None:
    """The token the run left in the token file; None when it holds no usable one."""
    try:
        snapshot = TokenFile(token_file).read()
    except TokenFileError:
        return None
    return None if snapshot is None else snapshot.token


def _since(started: float, last: Token | None) -> float | None:
    """When ``last`` came (or comes) due, in seconds since the run started; None if unknown."""
    due = None if last is None else last.refresh_due_at(LEEWAY)
    return None if due is None else round(due - started, 3)


class _Fleet:
    """The worker processes. Each counts its outcomes in shared memory and logs the kind of
    each failure to a file of its own, as it happens, so a SIGKILL loses neither."""

    def __init__(self, job: _Job, processes: int, folder: Path) -> None:
        self._job = job
        self._folder = folder
        self._context = multiprocessing.get_context("spawn")
        self._counters: list[_Counters] = []
        self.workers: list[Any] = []
        self._killed: set[int] = set()  # indexes into workers
        for _ in range(processes):
            self.start_worker()

    def _failure_log(self, index: int) -> Path:
        return self._folder / f"failures-{index}.log"

    def start_worker(self) -> None:
        counters: _Counters = RawArray("q", 3)
        log = self._failure_log(len(self.workers))
        worker = self._context.Process(target=_work, args=(self._job, counters, str(log)))
        worker.start()
        self._counters.append(counters)
        self.workers.append(worker)

    def kill_one(self, chosen: random.Random) -> None:
        """SIGKILL a live worker and start another in its place."""
        alive = [index for index, worker in enumerate(self.workers) if worker.is_alive()]
        if alive:
            victim = chosen.choice(alive)
            self.workers[victim].kill()
            self._killed.add(victim)
            self.start_worker()

    def done(self) -> bool:
        return not any(worker.is_alive() for worker in self.workers)

    def totals(self) -> list[int]:
        return [sum(counters[slot] for counters in self._counters) for slot in range(3)]

    def finish(self) -> Counter[str]:
        """Wait for the workers; return the kinds of failure every worker's callers saw,
        killed workers' included. A worker that died on its own counts as a failure too."""
        kinds: Counter[str] = Counter()
        for worker in self.workers:
            worker.join(timeout=30)
        for index, worker in enumerate(self.workers):
            log = self._failure_log(index)
            if log.exists():
                kinds.update(log.read_text().splitlines())
            if index not in self._killed and worker.exitcode != 0:
                kinds[f"worker died (exit code {worker.exitcode})"] += 1
                self._counters[index][_RAISED] += 1
        return kinds


def _work(job: _Job, counters: _Counters, failure_log: str) -> None:
    session = RefreshingSession(
        job.api_url,
        token_file=job.token_file,
        leeway=LEEWAY,
        refresher=OAuth2Refresher(
            job.token_url, client_id="client", client_secret="secret", dpop=job.dpop
        ),
    )
    lock = threading.Lock()
    log = os.open(failure_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def loop() -> None:
        while time.time() < job.deadline:
            outcome = _call(session, job.api_url + "items")
            with lock:
                if outcome != "ok":
                    # Logged before it is counted: a SIGKILL in between loses no failure's kind.
                    os.write(log, f"{outcome}\n".encode())
                slot = (
                    _OK if outcome == "ok" else _RAISED if outcome.startswith("error") else _REFUSED
                )
                counters[slot] += 1

    threads = [threading.Thread(target=loop) for _ in range(job.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.close(log)


def _call(session: requests.Session, url: str) -> str:
    try:
        response = session.get(url, timeout=10)
    except requests.RequestException as error:
        return f"error: {type(error).__name__}"
    return "ok" if response.status_code == 200 else f"HTTP {response.status_code}"


class _Chaos:
    """Answers a share of token calls 503, drawn per call, and injects one more fault about
    every half second: a slow token endpoint or a killed worker."""

    def __init__(self, server: LocalAuthServer, fleet: _Fleet, seed: int | None) -> None:
        self._server = server
        self._fleet = fleet
        self._random = random.Random(seed)
        self._next_at = time.time() + 0.5
        self._slow_until = 0.0
        self._ticks: Counter[str] = Counter()
        server.fail_token_endpoint_at_random(
            CHAOS_503_SHARE, 503, headers={"Retry-After": "0"}, seed=seed
        )

    def injected(self) -> dict[str, int]:
        """The faults injected so far, by kind."""
        answered_503 = sum(call.status == 503 for call in self._server.token_calls())
        return dict(sorted({**self._ticks, "503 answer": answered_503}.items()))

    def step(self, now: float) -> None:
        if self._slow_until and now >= self._slow_until:
            self._server.slow_token_endpoint(0)
            self._slow_until = 0.0
        if now < self._next_at:
            return
        self._next_at = now + 0.5
        fault = self._random.choice(["slow endpoint", "worker killed"])
        self._ticks[fault] += 1
        if fault == "slow endpoint":
            self._server.slow_token_endpoint(0.3)
            self._slow_until = now + 1.0
        else:
            self._fleet.kill_one(self._random)


def _watch(
    fleet: _Fleet, chaos: _Chaos | None, deadline: float, seconds: float, out: TextIO
) -> None:
    """Show progress (a bar on a terminal, a line every 2 s elsewhere) until the workers end,
    then once more with the final count, so the last thing shown is the whole run."""
    live = out.isatty()
    last_line = 0.0
    while not fleet.done():
        now = time.time()
        if chaos is not None and now < deadline:
            chaos.step(now)
        if live or now - last_line >= 2.0:
            _show(out, live, min(1.0, max(0.0, 1 - (deadline - now) / seconds)), fleet)
            last_line = now
        time.sleep(0.1)
    _show(out, live, 1.0, fleet)
    if live:
        out.write("\n")


def _show(out: TextIO, live: bool, share: float, fleet: _Fleet) -> None:
    """Draw the bar over the previous one on a terminal, or print a line elsewhere."""
    done = sum(fleet.totals())
    if not live:
        out.write(f"progress {share:4.0%}  requests {done}\n")
        return
    # A line as wide as the terminal wraps, and "\r" then redraws only its last row.
    room = _columns(out) - 1
    width = max(5, min(30, room - 25))
    line = f"[{'#' * int(share * width):<{width}}] {share:4.0%}  requests {done:>7}"
    out.write("\r" + line[:room])
    out.flush()


def _columns(out: TextIO) -> int:
    """The width of the terminal ``out`` writes to (80 when it cannot be told)."""
    try:
        return os.get_terminal_size(out.fileno()).columns or 80
    except (OSError, ValueError):
        return 80


def _report(
    options: DemoOptions,
    fleet: _Fleet,
    failure_kinds: Counter[str],
    server: LocalAuthServer,
    chaos: _Chaos | None,
    started: float,
) -> dict[str, Any]:
    elapsed = time.time() - started
    stats = server.stats()
    lifetime = options.ttl
    refresh_interval = Token("-", expires_at=lifetime, lifetime=lifetime).refresh_due_at(LEEWAY)
    # Each token is due once, and a new token is not due before this many seconds.
    due = int(elapsed // (refresh_interval or lifetime))
    ok, refused, raised = fleet.totals()
    injected = chaos.injected() if chaos is not None else {}
    dpop = _dpop_report(server) if options.dpop else None
    # Each injected 503 costs one more call (its retry); a kill may cost the call it interrupted;
    # a DPoP nonce challenge at the token endpoint, one retry.
    allowed_calls = (
        due
        + injected.get("503 answer", 0)
        + injected.get("worker killed", 0)
        + (dpop["token_nonce_retries"] if dpop else 0)
    )
    return {
        "processes": options.processes,
        "threads": options.threads,
        "seconds": round(elapsed, 2),
        "ttl": options.ttl,
        "requests": ok + refused + raised,
        "successes": ok,
        "caller_failures": refused + raised,
        "failure_kinds": dict(sorted(failure_kinds.items())),
        "token_endpoint_calls": stats.token_requests,
        "tokens_due": due,
        # The workers send no request after this (seconds since the start): a token that comes
        # due later is never renewed, which is why there may be fewer calls than tokens due.
        "workers_stopped": options.seconds,
        "allowed_calls": allowed_calls,
        "reuse_detections": stats.reuse_detections,
        "grace_reuses": stats.grace_reuses,
        "revoked_grants": stats.revoked_grants,
        "injected": injected,
        **({"dpop": dpop} if dpop else {}),
        "ok": refused + raised == 0
        and stats.reuse_detections == 0
        and stats.token_requests <= allowed_calls
        and stats.grace_reuses <= injected.get("worker killed", 0)
        and (dpop is None or (dpop["keys"] == 1 and not dpop["refused"])),
    }


def _dpop_report(server: LocalAuthServer) -> dict[str, Any]:
    """What the server saw of the DPoP proofs: how many keys signed them (one: the key stored
    with the token), the nonce challenges at the token endpoint (each costs a retry) and at
    the API (each costs a replay), and the proofs refused for anything else, by reason."""
    proofs = server.dpop_proofs()
    nonces = Counter(proof.endpoint for proof in proofs if proof.problem in DPOP_NONCE_PROBLEMS)
    refused = Counter(
        proof.problem
        for proof in proofs
        if proof.problem is not None and proof.problem not in DPOP_NONCE_PROBLEMS
    )
    return {
        "keys": len({proof.jkt for proof in proofs}),
        "proofs": len(proofs),
        "token_nonce_retries": nonces["token"],
        "api_nonce_replays": nonces["api"],
        "refused": dict(sorted(refused.items())),
    }
