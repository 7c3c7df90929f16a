"""The ``refreshing-session`` command: ``demo`` and ``status``."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import stat
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TextIO

import requests

from .errors import TokenError
from .keeper import REFUSED
from .refreshers import OAuth2Refresher
from .session import RefreshingSession
from .store import TokenFile
from .testing import LocalAuthServer
from .token import Token


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        return int(arguments.run(arguments))
    except TokenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refreshing-session",
        description="A requests.Session that refreshes one shared OAuth2 token across processes.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="run worker processes against a local authorization server",
        description="Start a local authorization server with short-lived, rotating tokens, run "
                    "PROCESSES x THREADS workers through one token file, and report.")
    demo.add_argument("--processes", type=_positive(int), default=4)
    demo.add_argument("--threads", type=_positive(int), default=4)
    demo.add_argument("--seconds", type=_positive(float), default=10.0)
    demo.add_argument("--ttl", type=_positive(float), default=2.0,
                      help="access-token lifetime in seconds (default 2)")
    demo.add_argument("--json", action="store_true",
                      help="print the report as one JSON object (progress goes to stderr)")
    demo.set_defaults(run=_demo)
    status = commands.add_parser("status", help="describe a token file without showing secrets")
    status.add_argument("token_file")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(run=_status)
    return parser


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value
    return parse


# --- status -------------------------------------------------------------------------------------

def _status(arguments: argparse.Namespace) -> int:
    store = TokenFile(arguments.token_file)
    snapshot = store.read()
    if snapshot is None:
        print(f"error: there is no token file at {store.path}; log in first", file=sys.stderr)
        return 1
    mode = stat.S_IMODE(os.stat(store.path).st_mode)
    report = _describe(snapshot.token, time.time())
    report.update(path=store.path, mode=f"{mode:04o}",
                  refresh_refused=snapshot.notes.get(REFUSED))
    if arguments.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key, value in report.items():
            print(f"{key:>16}: {'-' if value is None else value}")
    return 0


def _describe(token: Token, now: float) -> dict[str, Any]:
    expires = None
    if token.expires_at is not None:
        moment = datetime.fromtimestamp(token.expires_at, timezone.utc)
        left = token.expires_at - now
        relative = f"in {left:.0f} s" if left >= 0 else f"{-left:.0f} s ago"
        expires = f"{moment.isoformat(timespec='seconds')} ({relative})"
    return {"token_type": token.token_type, "fingerprint": token.fingerprint,
            "expires": expires, "refresh_token": "present" if token.refresh_token else "absent",
            "scope": token.scope}


# --- demo ---------------------------------------------------------------------------------------

_LEEWAY = 30.0


@dataclass(frozen=True)
class _Job:
    api_url: str
    token_url: str
    token_file: str
    threads: int
    deadline: float  # epoch seconds


def _demo(arguments: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="refreshing-session-demo-") as folder, \
            LocalAuthServer(access_ttl=arguments.ttl) as server:
        token_file = os.path.join(folder, "token.json")
        started = time.time()
        TokenFile(token_file).write(Token.from_response(server.issue_token(), requested_at=started))
        job = _Job(server.api_url, server.token_url, token_file, arguments.threads,
                   deadline=started + arguments.seconds)
        outcomes = _run_workers(job, arguments.processes, arguments.seconds,
                                sys.stderr if arguments.json else sys.stdout)
        report = _report(outcomes, server, arguments, elapsed=time.time() - started)
    if arguments.json:
        print(json.dumps(report, sort_keys=True))
    else:
        _print_report(report)
    return 0 if report["ok"] else 1


def _run_workers(job: _Job, processes: int, seconds: float, out: TextIO) -> Counter[str]:
    context = multiprocessing.get_context("spawn")
    done = context.Value("q", 0)
    results: multiprocessing.Queue[Counter[str]] = context.Queue()
    workers = [context.Process(target=_worker, args=(job, done, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    _show_progress(done, job.deadline, seconds, lambda: all(not w.is_alive() for w in workers),
                   out)
    totals: Counter[str] = Counter()
    for _ in workers:
        totals.update(results.get(timeout=60))
    for worker in workers:
        worker.join(timeout=10)
    return totals


def _worker(job: _Job, done: Any, results: multiprocessing.Queue[Counter[str]]) -> None:
    session = RefreshingSession(
        job.api_url, token_file=job.token_file, leeway=_LEEWAY,
        refresher=OAuth2Refresher(job.token_url, client_id="client", client_secret="secret"))
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def loop() -> None:
        while time.time() < job.deadline:
            outcome = _call(session, job.api_url + "items")
            with lock:
                outcomes[outcome] += 1
            with done.get_lock():
                done.value += 1

    threads = [threading.Thread(target=loop) for _ in range(job.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(outcomes)


def _call(session: requests.Session, url: str) -> str:
    try:
        response = session.get(url, timeout=10)
    except requests.RequestException as error:
        return f"error: {type(error).__name__}"
    return "ok" if response.status_code == 200 else f"HTTP {response.status_code}"


def _show_progress(done: Any, deadline: float, seconds: float, finished: Any,
                   out: TextIO) -> None:
    live = out.isatty()
    last_line = 0.0
    while not finished():
        now = time.time()
        share = min(1.0, max(0.0, 1 - (deadline - now) / seconds))
        if live:
            bar = "#" * int(share * 30)
            out.write(f"\r[{bar:<30}] {share:4.0%}  requests {done.value:>7}")
            out.flush()
        elif now - last_line >= 2.0:
            out.write(f"progress {share:4.0%}  requests {done.value}\n")
            last_line = now
        time.sleep(0.1)
    if live:
        out.write("\n")


def _report(outcomes: Counter[str], server: LocalAuthServer, arguments: argparse.Namespace,
            elapsed: float) -> dict[str, Any]:
    stats = server.stats()
    # Each token is due once, and a new token is not due before this many seconds.
    lifetime = arguments.ttl
    refresh_interval = Token("-", expires_at=lifetime, lifetime=lifetime).refresh_due_at(_LEEWAY)
    due = int(elapsed // (refresh_interval or lifetime))
    failures = {key: count for key, count in sorted(outcomes.items()) if key != "ok"}
    return {
        "processes": arguments.processes, "threads": arguments.threads,
        "seconds": round(elapsed, 2), "ttl": arguments.ttl,
        "requests": sum(outcomes.values()), "successes": outcomes["ok"],
        "caller_401s": outcomes["HTTP 401"], "caller_failures": failures,
        "token_endpoint_calls": stats.token_requests, "tokens_due": due,
        "reuse_detections": stats.reuse_detections, "revoked_grants": stats.revoked_grants,
        "ok": not failures and stats.reuse_detections == 0 and stats.token_requests <= due,
    }


def _print_report(report: dict[str, Any]) -> None:
    lines = [
        ("workers", f"{report['processes']} processes x {report['threads']} threads, "
                    f"{report['seconds']:.1f} s, tokens live {report['ttl']:g} s"),
        ("requests", report["requests"]),
        ("successes", report["successes"]),
        ("401s seen by callers", report["caller_401s"]),
        ("other failures", sum(report["caller_failures"].values()) - report["caller_401s"]),
        ("token-endpoint calls", f"{report['token_endpoint_calls']} "
                                 f"(tokens that came due: {report['tokens_due']})"),
        ("reuse detections", report["reuse_detections"]),
        ("revoked grants", report["revoked_grants"]),
    ]
    for label, value in lines:
        print(f"{label:>22}: {value}")
    for key, count in report["caller_failures"].items():
        print(f"{'':>22}  {count} x {key}")
    print("result: OK" if report["ok"] else "result: FAILED")
