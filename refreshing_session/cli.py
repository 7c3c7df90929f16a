"""The ``refreshing-session`` command: ``demo`` and ``status``."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .demo import DemoOptions, run_demo
from .errors import TokenError
from .keeper import REFUSED
from .store import TokenFile
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
    demo.add_argument("--chaos", action="store_true",
                      help="inject faults while the workers run: a slow token endpoint, 503 "
                           "answers, workers killed with SIGKILL")
    demo.add_argument("--seed", type=int, default=None, help="seed for --chaos")
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
        moment = datetime.fromtimestamp(token.expires_at, UTC)
        left = token.expires_at - now
        relative = f"in {left:.0f} s" if left >= 0 else f"{-left:.0f} s ago"
        expires = f"{moment.isoformat(timespec='seconds')} ({relative})"
    return {"token_type": token.token_type, "fingerprint": token.fingerprint,
            "expires": expires, "refresh_token": "present" if token.refresh_token else "absent",
            "scope": token.scope}


# --- demo ---------------------------------------------------------------------------------------

def _demo(arguments: argparse.Namespace) -> int:
    options = DemoOptions(arguments.processes, arguments.threads, arguments.seconds,
                          arguments.ttl, arguments.chaos, arguments.seed)
    report = run_demo(options, sys.stderr if arguments.json else sys.stdout)
    if arguments.json:
        print(json.dumps(report, sort_keys=True))
    else:
        _print_report(report)
    return 0 if report["ok"] else 1


def _print_report(report: dict[str, Any]) -> None:
    lines = [
        ("workers", f"{report['processes']} processes x {report['threads']} threads, "
                    f"{report['seconds']:.1f} s, tokens live {report['ttl']:g} s"),
        ("requests", report["requests"]),
        ("successes", report["successes"]),
        ("failures seen by callers", report["caller_failures"]),
        *((f"  {kind}", count) for kind, count in report["failure_kinds"].items()),
        ("token-endpoint calls", f"{report['token_endpoint_calls']} "
                                 f"(tokens that came due: {report['tokens_due']})"),
        ("reuse detections", report["reuse_detections"]),
        ("revoked grants", report["revoked_grants"]),
        *((f"fault injected: {fault}", count) for fault, count in report["injected"].items()),
    ]
    if report["injected"]:
        lines.append(("reuse within grace", report["grace_reuses"]))
    for label, value in lines:
        print(f"{label:>26}: {value}")
    print("result: OK" if report["ok"] else "result: FAILED")
