"""The ``refreshing-session`` command: ``login``, ``status``, ``refresh``, ``logout`` and
``demo``.

Exit codes: 0 done; 1 no token to describe; 2 the server or the token store refused or
failed; 3 the configuration or the input is wrong (the profile file, a token to import);
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from . import __version__
from .errors import ProfileError, TokenError, printable
from .keeper import REFUSED, TokenKeeper
from .login import DeviceAuthorization, DeviceLogin, import_token, revoke
from .profiles import Profile, load_profile
from .refreshers import ClientCredentialsRefresher
from .store import MAX_FILE_SIZE, TokenFile
from .token import Token

_LOCK_TIMEOUT = 30.0
# Seconds shown in full up to this many (about 30,000 years); beyond it, in 1e+12 style.
_LONGEST_SHOWN = 1e12


class _BadInput(Exception):
    """What the user gave cannot be used (exit code 3)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        return int(arguments.run(arguments))
    except TokenError as error:
        print(f"error: {printable(str(error))}", file=sys.stderr)
        return 2
    except (ProfileError, _BadInput) as error:
        print(f"error: {printable(str(error))}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refreshing-session",
        description="A requests.Session that refreshes one shared OAuth2 token across processes.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    login = commands.add_parser(
        "login", help="store a first token: device login, client credentials, or import",
        description="Store the first token of a profile (in its token file, or its Redis key): "
                    "with the device authorization grant (the profile has a "
                    "device_authorization_url), with client credentials (grant = "
                    "\"client_credentials\"), or from a token saved by another tool (--import). "
                    "Writes under the token lock, atomically (a token file: mode 0600).")
    _target(login)
    login.add_argument("--import", dest="import_from", metavar="FILE",
                       help="a JSON token dict saved by requests-oauthlib, Authlib or an "
                            "identity provider's tool; - reads standard input")
    login.set_defaults(run=_login)
    status = commands.add_parser("status", help="describe the stored token without showing "
                                                "secrets")
    _target(status)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(run=_status)
    refresh = commands.add_parser("refresh", help="refresh the token now, under the lock")
    refresh.add_argument("--profile", required=True, help="the profile whose token to refresh")
    refresh.set_defaults(run=_refresh, token_file=None)
    logout = commands.add_parser(
        "logout", help="revoke the grant (if the profile has a revocation_url) and remove "
                       "the stored token")
    _target(logout)
    logout.add_argument("--no-revoke", action="store_true",
                        help="only remove the stored token (an unreadable one too); the grant "
                             "stays valid on the server")
    logout.set_defaults(run=_logout)
    return parser


def _target(command: argparse.ArgumentParser) -> None:
    command.add_argument("token_file", nargs="?", help="the token file (or use --profile)")
    command.add_argument("--profile", help="a profile of the profile file "
                                           "($REFRESHING_SESSION_CONFIG)")


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value
    return parse


# --- which token file -------------------------------------------------------------------------

def _profile(arguments: argparse.Namespace) -> Profile | None:
    if arguments.token_file and arguments.profile:
        raise _BadInput("give a TOKEN_FILE or --profile, not both")
    if not arguments.token_file and not arguments.profile:
        raise _BadInput("give a TOKEN_FILE or --profile NAME")
    return load_profile(arguments.profile) if arguments.profile else None


def _keeper(arguments: argparse.Namespace) -> tuple[TokenKeeper, Profile | None]:
    """The keeper of the token file named on the command line, with the profile's refresher."""
    profile = _profile(arguments)
    if profile is None:
        return TokenKeeper(TokenFile(arguments.token_file), None, leeway=0.0,
                           lock_timeout=_LOCK_TIMEOUT), None
    keeper = TokenKeeper(profile.token_store(), profile.refresher(), leeway=0.0,
                         lock_timeout=_LOCK_TIMEOUT, login_command=profile.login_command)
    return keeper, profile


# --- login, refresh, logout ---------------------------------------------------------------------

def _login(arguments: argparse.Namespace) -> int:
    keeper, profile = _keeper(arguments)
    if arguments.import_from:
        token = _imported(arguments.import_from)
    elif profile is None:
        raise _BadInput("logging in needs --profile NAME (or --import FILE)")
    else:
        token = _obtained(profile)
    keeper.install(token)
    print(f"logged in: {keeper.store.location} ({_summary(token)})")
    return 0


def _obtained(profile: Profile) -> Token:
    refresher = profile.refresher()
    if isinstance(refresher, ClientCredentialsRefresher):
        return refresher.new_token()
    if profile.device_authorization_url is None:
        raise _BadInput(f"profile {profile.name!r} has no device_authorization_url: add it to "
                        f"{profile.config_path}, or import a token with --import FILE")
    return DeviceLogin(refresher, profile.device_authorization_url)(_show_code)


def _show_code(authorization: DeviceAuthorization) -> None:
    print(f"To sign in, open {printable(authorization.verification_uri)} and enter the code "
          f"{printable(authorization.user_code)}")
    if authorization.verification_uri_complete:
        print(f"(or open {printable(authorization.verification_uri_complete)})")
    print(f"Waiting for the approval; the code expires in {authorization.expires_in:.0f} s...",
          flush=True)


def _imported(source: str) -> Token:
    try:
        if source == "-":
            raw, written_at, name = sys.stdin.buffer.read(MAX_FILE_SIZE + 1), None, "stdin"
        else:
            with open(source, "rb") as file:
                raw = file.read(MAX_FILE_SIZE + 1)
                written_at, name = os.fstat(file.fileno()).st_mtime, f"the file {source}"
    except OSError as error:
        raise _BadInput(f"cannot read {source} ({error.strerror})") from None
    if len(raw) > MAX_FILE_SIZE:
        raise _BadInput(f"{name} is larger than {MAX_FILE_SIZE} bytes; it is not a token")
    try:
        token, warnings = import_token(raw, source=name, written_at=written_at)
    except ValueError as error:
        raise _BadInput(str(error)) from None
    for warning in warnings:
        print(f"warning: the imported token: {printable(warning)}", file=sys.stderr)
    return token


def _refresh(arguments: argparse.Namespace) -> int:
    keeper, _ = _keeper(arguments)
    token = keeper.refresh_now()
    print(f"refreshed: {keeper.store.location} ({_summary(token)})")
    return 0


def _logout(arguments: argparse.Namespace) -> int:
    keeper, profile = _keeper(arguments)
    url = None if profile is None or arguments.no_revoke else profile.revocation_url
    client = None if profile is None or url is None else profile.refresher()
    before = None if client is None or url is None else partial(revoke, client, url)
    stored = keeper.store.version() is not None
    try:
        removed = keeper.remove(before=before)
    except TokenError as error:
        print(f"error: {printable(str(error))}\nThe token was kept. Run the logout again "
              "later, or with "
              "--no-revoke to only remove it.", file=sys.stderr)
        return 2
    where = keeper.store.location
    if removed is None:
        print(f"removed an unreadable token from {where}" if stored
              else f"nothing to do: there is no token in {where}")
    elif url is None:
        print(f"logged out: removed {where} (the grant was not revoked: "
              f"{'--no-revoke' if profile else 'no profile, so no revocation_url'})")
    else:
        print(f"logged out: revoked the grant and removed {where}")
    return 0


def _summary(token: Token) -> str:
    described = _describe(token, time.time())
    return f"fingerprint {described['fingerprint']}, expires {described['expires'] or 'unknown'}"


# --- status -------------------------------------------------------------------------------------

def _status(arguments: argparse.Namespace) -> int:
    profile = _profile(arguments)
    store = profile.token_store() if profile else TokenFile(arguments.token_file)
    snapshot = store.read()
    if snapshot is None:
        hint = f"log in first with `{profile.login_command}`" if profile else "log in first"
        print(f"error: there is no token in {store.location}; {hint}", file=sys.stderr)
        return 1
    report = _describe(snapshot.token, time.time())
    if isinstance(store, TokenFile):
        report.update(path=store.path, mode=f"{stat.S_IMODE(os.stat(store.path).st_mode):04o}")
    else:
        report.update(location=store.location)
    report.update(refresh_refused=snapshot.notes.get(REFUSED))
    if arguments.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key, value in report.items():
            print(f"{key:>16}: {'-' if value is None else printable(str(value))}")
    return 0


def _describe(token: Token, now: float) -> dict[str, Any]:
    return {"token_type": token.token_type, "fingerprint": token.fingerprint,
            "expires": None if token.expires_at is None else _expiry(token.expires_at, now),
            "refresh_token": "present" if token.refresh_token else "absent",
            "scope": token.scope}


def _expiry(expires_at: float, now: float) -> str:
    """``2030-01-01T00:00:00+00:00 (in 42 s)``; an expiry past what a date can show (any finite
    number is a valid expiry) is shown as such."""
    left = expires_at - now
    seconds = f"{abs(left):.0f}" if abs(left) < _LONGEST_SHOWN else f"{abs(left):.3g}"
    relative = f"in {seconds} s" if left >= 0 else f"{seconds} s ago"
    try:
        moment = datetime.fromtimestamp(expires_at, UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):  # past the year 9999, or the platform's time_t
        moment = "after the year 9999" if left >= 0 else "before the year 1"
    return f"{moment} ({relative})"


# --- demo ---------------------------------------------------------------------------------------

def _demo(arguments: argparse.Namespace) -> int:
    # Imported here: the demo brings the local authorization server, which no other command needs.
    from .demo import DemoOptions, run_demo

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
