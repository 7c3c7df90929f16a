"""The ``refreshing-session`` command: ``login``, ``token``, ``status``, ``refresh``,
``logout`` and ``demo``.

Exit codes: 0 done; 1 no usable token (none stored, or ``status`` found it expired with no
way to refresh it); 2 the server or the token store refused or failed; 3 the configuration or
the input is wrong (the profile file, a token to import, the command's arguments); 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, NoReturn

from . import __version__
from .browser_login import BrowserLogin
from .errors import ProfileError, TokenError, printable
from .keeper import REFUSED, TokenKeeper
from .login import DeviceAuthorization, DeviceLogin, import_token, revoke
from .profiles import Profile, load_profile
from .refreshers import ClientCredentialsRefresher, OAuth2Refresher
from .store import MAX_FILE_SIZE, TokenFile, TokenStore
from .token import Token

_LOCK_TIMEOUT = 30.0
# Seconds: `token` refreshes a token that expires sooner, so that curl gets one that works.
_TOKEN_LEEWAY = 30.0
_BAD_INPUT = 3
# Seconds shown in full up to this many (about 30,000 years); beyond it, in 1e+12 style.
_LONGEST_SHOWN = 1e12


class _BadInput(Exception):
    """What the user gave cannot be used (exit code 3)."""


class _DefaultsShown(argparse.HelpFormatter):
    """Help that ends each option's text with its default, when it has one to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit with the code of bad input (3), and whose
    help shows every option's default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsShown)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(_BAD_INPUT, f"{self.prog}: error: {message}\n")


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
    parser = _Parser(
        prog="refreshing-session",
        description="A requests.Session that refreshes one shared OAuth2 token across processes.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run worker processes against a local authorization server",
        description="Start a local authorization server with short-lived, rotating tokens, run "
        "PROCESSES x THREADS workers through one token file, and report.",
    )
    demo.add_argument("--processes", type=_positive(int), default=4, help="worker processes")
    demo.add_argument(
        "--threads", type=_positive(int), default=4, help="threads in each worker process"
    )
    demo.add_argument(
        "--seconds", type=_positive(float), default=10.0, help="how long the workers run"
    )
    demo.add_argument(
        "--ttl", type=_positive(float), default=2.0, help="access-token lifetime in seconds"
    )
    demo.add_argument(
        "--chaos",
        action="store_true",
        help="inject faults while the workers run: a slow token endpoint, 503 "
        "answers, workers killed with SIGKILL",
    )
    demo.add_argument(
        "--seed", type=int, default=None, help="seed for --chaos (default: a random one)"
    )
    demo.add_argument(
        "--json",
        action="store_true",
        help="print the report as one JSON object (progress goes to stderr)",
    )
    demo.set_defaults(run=_demo)
    login = commands.add_parser(
        "login",
        help="store a first token: browser, device, client credentials, or import",
        description="Store the first token of a profile, or of a client given by the options "
        "below, in its token file (or Redis key): with the browser (authorization "
        "code with PKCE and a loopback redirect; the default when an authorization "
        "endpoint is known), with the device authorization grant (the default "
        "otherwise), with client credentials (a profile's grant = "
        '"client_credentials"), or from a token saved by another tool (--import). '
        "Writes under the token lock, atomically (a token file: mode 0600).",
    )
    _target(login)
    how = login.add_mutually_exclusive_group()
    how.add_argument(
        "--browser", action="store_true", help="log in with the browser (authorization code + PKCE)"
    )
    how.add_argument(
        "--no-browser",
        action="store_true",
        help="as --browser, but print the URL to open anywhere and read back the "
        "address the browser was sent to",
    )
    how.add_argument(
        "--device",
        action="store_true",
        help="log in with the device authorization grant (a code to enter)",
    )
    how.add_argument(
        "--import",
        dest="import_from",
        metavar="FILE",
        help="a JSON token dict saved by requests-oauthlib, Authlib or an "
        "identity provider's tool; - reads standard input",
    )
    client = login.add_argument_group(
        "a client without a profile",
        "Instead of --profile: the client's server and "
        "identity (the token goes to TOKEN_FILE or --token-file)",
    )
    server = client.add_mutually_exclusive_group()
    server.add_argument(
        "--issuer", help="the issuer URL, whose discovery document names the endpoints"
    )
    server.add_argument("--token-url", help="the token endpoint URL")
    client.add_argument(
        "--authorization-url", help="the authorization endpoint, for --browser without --issuer"
    )
    client.add_argument(
        "--device-authorization-url",
        help="the device authorization endpoint, for --device without --issuer",
    )
    client.add_argument("--client-id", help="the client's id")
    client.add_argument(
        "--client-secret-env",
        metavar="VARIABLE",
        help="the environment variable holding the client secret (none: a public client)",
    )
    client.add_argument("--scope", help="the scope to ask for, space-separated")
    client.add_argument(
        "--token-file",
        dest="token_file_option",
        metavar="PATH",
        help="where to store the token (or give TOKEN_FILE)",
    )
    login.add_argument(
        "--timeout",
        type=_positive(float),
        default=300.0,
        help="seconds to wait for the browser sign-in",
    )
    login.add_argument(
        "--redirect-port",
        type=int,
        default=0,
        metavar="PORT",
        help="the loopback port of the browser sign-in's redirect, for providers "
        "that compare the registered redirect URI exactly (0: a free one)",
    )
    login.set_defaults(run=_login)
    token = commands.add_parser(
        "token",
        help="print a valid access token, and nothing else",
        description="Print the stored access token, refreshed first under the lock if it "
        f"expires within {_TOKEN_LEEWAY:g} s (a profile's refresher; a bare "
        "TOKEN_FILE is never refreshed), for "
        'curl -H "Authorization: Bearer $(refreshing-session token --profile api)"',
    )
    _target(token)
    token.set_defaults(run=_token)
    status = commands.add_parser(
        "status",
        help="describe the stored token without showing secrets",
        description="Describe the stored token without showing secrets. Exits 1 when there "
        "is no usable token: none stored, or expired with no refresh token or "
        "with its refresh refused. Needs no client secret.",
    )
    _target(status)
    status.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: expires_at (epoch seconds), expires_in "
        "(seconds, negative once expired), expired, refresh_token, "
        "location and more",
    )
    status.set_defaults(run=_status)
    refresh = commands.add_parser(
        "refresh",
        help="refresh the token now, under the lock",
        description="Refresh the token now, due or not, under the lock, and store it.",
    )
    refresh.add_argument("--profile", required=True, help="the profile whose token to refresh")
    refresh.set_defaults(run=_refresh, token_file=None)
    logout = commands.add_parser(
        "logout",
        help="revoke the grant (if the profile has a revocation endpoint) and "
        "remove the stored token",
        description="Revoke the grant at the profile's revocation endpoint (RFC 7009), then "
        "remove the stored token, both under the lock. --no-revoke needs no client "
        "secret.",
    )
    _target(logout)
    logout.add_argument(
        "--no-revoke",
        action="store_true",
        help="only remove the stored token (an unreadable one too); the grant "
        "stays valid on the server",
    )
    logout.set_defaults(run=_logout)
    return parser


def _target(command: argparse.ArgumentParser) -> None:
    command.add_argument("token_file", nargs="?", help="the token file (or use --profile)")
    command.add_argument(
        "--profile", help="a profile of the profile file ($REFRESHING_SESSION_CONFIG)"
    )


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    return parse


# --- which token file -------------------------------------------------------------------------


def _profile(arguments: argparse.Namespace, *, need_secret: bool = True) -> Profile | None:
    """The profile named on the command line (None for a bare TOKEN_FILE)."""
    if arguments.token_file and arguments.profile:
        raise _BadInput("give a TOKEN_FILE or --profile, not both")
    if not arguments.token_file and not arguments.profile:
        raise _BadInput("give a TOKEN_FILE or --profile NAME")
    return load_profile(arguments.profile, need_secret=need_secret) if arguments.profile else None


def _keeper(
    arguments: argparse.Namespace, *, leeway: float = 0.0
) -> tuple[TokenKeeper, Profile | None]:
    """The keeper of the token file named on the command line, with the profile's refresher."""
    profile = _profile(arguments)
    if profile is None:
        return TokenKeeper(
            TokenFile(arguments.token_file), None, leeway=leeway, lock_timeout=_LOCK_TIMEOUT
        ), None
    keeper = TokenKeeper(
        profile.token_store(),
        profile.refresher(),
        leeway=leeway,
        lock_timeout=_LOCK_TIMEOUT,
        login_command=profile.login_command,
    )
    return keeper, profile


def _store_of(arguments: argparse.Namespace) -> tuple[TokenStore, Profile | None]:
    """The token store named on the command line, without building a client (so no secret
    is needed)."""
    profile = _profile(arguments, need_secret=False)
    return (profile.token_store() if profile else TokenFile(arguments.token_file)), profile


# --- login, token, refresh, logout --------------------------------------------------------------


def _login(arguments: argparse.Namespace) -> int:
    profile = _given_client(arguments) or _profile(arguments, need_secret=not arguments.import_from)
    store = profile.token_store() if profile else TokenFile(arguments.token_file)
    if arguments.import_from:
        token = _imported(arguments.import_from)
    elif profile is None:
        raise _BadInput(
            "logging in needs --profile NAME, a client (--issuer or --token-url, "
            "and --client-id), or --import FILE"
        )
    else:
        token = _obtained(profile, arguments)
    TokenKeeper(store, None, leeway=0.0, lock_timeout=_LOCK_TIMEOUT).install(token)
    print(f"logged in: {store.location} ({_summary(token)})")
    return 0


def _store_keeper(arguments: argparse.Namespace) -> TokenKeeper:
    store, profile = _store_of(arguments)
    return TokenKeeper(
        store,
        None,
        leeway=0.0,
        lock_timeout=_LOCK_TIMEOUT,
        login_command=profile.login_command if profile else None,
    )


def _given_client(arguments: argparse.Namespace) -> Profile | None:
    """The client the login's options describe, as a profile of the command line; None when
    they describe none."""
    server = arguments.issuer or arguments.token_url
    if server is None and arguments.client_id is None:
        if arguments.token_file_option:
            raise _BadInput("--token-file is for a client given by --issuer or --token-url")
        return None
    if arguments.profile:
        raise _BadInput(
            "give --profile, or a client (--issuer or --token-url, --client-id), not both"
        )
    if server is None or arguments.client_id is None:
        raise _BadInput("a client without a profile needs --issuer or --token-url, and --client-id")
    token_file = arguments.token_file_option or arguments.token_file
    if token_file is None or (arguments.token_file_option and arguments.token_file):
        raise _BadInput("give where to store the token: TOKEN_FILE or --token-file, once")
    secret = None
    if arguments.client_secret_env:
        secret = os.environ.get(arguments.client_secret_env)
        if not secret:
            raise _BadInput(
                f"the environment variable {arguments.client_secret_env} is not "
                "set; set it to the client secret"
            )
    return Profile(
        name="command-line",
        token_url=arguments.token_url,
        issuer=arguments.issuer,
        client_id=arguments.client_id,
        prefixes=(),
        token_file=token_file,
        config_path="the command line",
        client_secret=secret,
        scope=arguments.scope,
        authorization_url=arguments.authorization_url,
        device_authorization_url=arguments.device_authorization_url,
    )


def _obtained(profile: Profile, arguments: argparse.Namespace) -> Token:
    """A first token for ``profile``: client credentials, or the login the options choose
    (the browser when an authorization endpoint is known, else the device grant)."""
    refresher = profile.refresher()
    if isinstance(refresher, ClientCredentialsRefresher):
        return refresher.new_token()
    authorization = profile.endpoint(refresher, "authorization")
    browser = arguments.browser or arguments.no_browser
    if arguments.device or (not browser and authorization is None):
        return _device_login(profile, refresher)
    if authorization is None:
        raise _BadInput(
            f"{_where(profile)} has no authorization endpoint: add "
            "authorization_url (or issuer), or log in with --device"
        )
    login = BrowserLogin(
        refresher, authorization, timeout=arguments.timeout, port=arguments.redirect_port
    )
    if arguments.no_browser:
        return login.with_pasted_url(_show_url_to_paste, _read_pasted)
    return login(_show_url)


def _device_login(profile: Profile, refresher: OAuth2Refresher) -> Token:
    url = profile.endpoint(refresher, "device_authorization")
    if url is None:
        raise _BadInput(
            f"{_where(profile)} has no device_authorization_url: add it to "
            f"{profile.config_path}, or import a token with --import FILE"
        )
    return DeviceLogin(refresher, url)(_show_code)


def _where(profile: Profile) -> str:
    return (
        "the client given"
        if profile.config_path == "the command line"
        else f"profile {profile.name!r}"
    )


def _show_url(url: str) -> None:
    print(
        f"Opening the browser to sign in. If it does not open, open this address:\n{url}",
        flush=True,
    )


def _show_url_to_paste(url: str) -> None:
    print(
        f"Open this address in a browser and sign in:\n{url}\nThe browser then fails to "
        "load a 127.0.0.1 page: copy that page's whole address and paste it here.",
        flush=True,
    )


def _read_pasted() -> str:
    return input("Address: ")


def _show_code(authorization: DeviceAuthorization) -> None:
    print(
        f"To sign in, open {printable(authorization.verification_uri)} and enter the code "
        f"{printable(authorization.user_code)}"
    )
    if authorization.verification_uri_complete:
        print(f"(or open {printable(authorization.verification_uri_complete)})")
    print(
        f"Waiting for the approval; the code expires in {authorization.expires_in:.0f} s...",
        flush=True,
    )


def _token(arguments: argparse.Namespace) -> int:
    keeper, _ = _keeper(arguments, leeway=_TOKEN_LEEWAY)
    print(keeper.current().access_token)
    return 0


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
    url: str | None = None
    before: Callable[[Token], object] | None = None
    if arguments.no_revoke:
        keeper, profile = _store_keeper(arguments), None
    else:
        keeper, profile = _keeper(arguments)
        refresher = keeper.refresher
        if profile is not None and isinstance(
            refresher, (OAuth2Refresher, ClientCredentialsRefresher)
        ):
            url = profile.endpoint(refresher, "revocation")
            before = None if url is None else partial(revoke, refresher, url)
    stored = keeper.store.version() is not None
    try:
        removed = keeper.remove(before=before)
    except TokenError as error:
        print(
            f"error: {printable(str(error))}\nThe token was kept. Run the logout again "
            "later, or with "
            "--no-revoke to only remove it.",
            file=sys.stderr,
        )
        return 2
    where = keeper.store.location
    if removed is None:
        print(
            f"removed an unreadable token from {where}"
            if stored
            else f"nothing to do: there is no token in {where}"
        )
    elif url is None:
        print(
            f"logged out: removed {where} (the grant was not revoked: "
            f"{_not_revoked(arguments, profile)})"
        )
    else:
        print(f"logged out: revoked the grant and removed {where}")
    return 0


def _not_revoked(arguments: argparse.Namespace, profile: Profile | None) -> str:
    if arguments.no_revoke:
        return "--no-revoke"
    return "no revocation endpoint" if profile else "no profile, so no revocation endpoint"


def _summary(token: Token) -> str:
    described = _describe(token, time.time())
    return f"fingerprint {described['fingerprint']}, expires {described['expires'] or 'unknown'}"


# --- status -------------------------------------------------------------------------------------


def _status(arguments: argparse.Namespace) -> int:
    store, profile = _store_of(arguments)
    snapshot = store.read()
    if snapshot is None:
        hint = f"log in first with `{profile.login_command}`" if profile else "log in first"
        print(f"error: there is no token in {store.location}; {hint}", file=sys.stderr)
        return 1
    now = time.time()
    token = snapshot.token
    report = _describe(token, now)
    report.update(location=store.location)
    if isinstance(store, TokenFile):
        report.update(path=store.path, mode=f"{stat.S_IMODE(os.stat(store.path).st_mode):04o}")
    refused = snapshot.notes.get(REFUSED)
    expired = token.expires_at is not None and token.expires_at <= now
    report.update(
        refresh_refused=refused,
        expires_at=token.expires_at,
        expired=expired,
        expires_in=None if token.expires_at is None else round(token.expires_at - now, 3),
    )
    if arguments.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key, value in report.items():
            if key not in ("expires_at", "expires_in"):  # shown in "expires"
                print(f"{key:>16}: {'-' if value is None else printable(str(value))}")
    usable = not expired or (token.refresh_token is not None and not refused)
    return 0 if usable else 1


def _describe(token: Token, now: float) -> dict[str, Any]:
    return {
        "token_type": token.token_type,
        "fingerprint": token.fingerprint,
        "expires": None if token.expires_at is None else _expiry(token.expires_at, now),
        "refresh_token": "present" if token.refresh_token else "absent",
        "scope": token.scope,
    }


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

    options = DemoOptions(
        arguments.processes,
        arguments.threads,
        arguments.seconds,
        arguments.ttl,
        arguments.chaos,
        arguments.seed,
    )
    report = run_demo(options, sys.stderr if arguments.json else sys.stdout)
    if arguments.json:
        print(json.dumps(report, sort_keys=True))
    else:
        _print_report(report)
    return 0 if report["ok"] else 1


def _print_report(report: dict[str, Any]) -> None:
    lines = [
        (
            "workers",
            f"{report['processes']} processes x {report['threads']} threads, "
            f"{report['seconds']:.1f} s, tokens live {report['ttl']:g} s",
        ),
        ("requests", report["requests"]),
        ("successes", report["successes"]),
        ("failures seen by callers", report["caller_failures"]),
        *((f"  {kind}", count) for kind, count in report["failure_kinds"].items()),
        (
            "token-endpoint calls",
            f"{report['token_endpoint_calls']} (tokens that came due: {report['tokens_due']})",
        ),
        ("reuse detections", report["reuse_detections"]),
        ("revoked grants", report["revoked_grants"]),
        *((f"fault injected: {fault}", count) for fault, count in report["injected"].items()),
    ]
    if report["injected"]:
        lines.append(("reuse within grace", report["grace_reuses"]))
    for label, value in lines:
        print(f"{label:>26}: {value}")
    print("result: OK" if report["ok"] else "result: FAILED")
