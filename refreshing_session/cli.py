"""The ``refreshing-session`` command: ``login``, ``token``, ``status``, ``refresh``,
``logout`` and ``demo``.

Each command has a function that adds its parser, beside the function that runs it.
``--profile NAME`` may come before the command or after it. Every message that names a file
names its absolute path, and advice names the command to run.

Exit codes: 0 done; 1 no usable token (none stored, or ``status`` found it expired with no
way to refresh it); 2 the server or the token store refused or failed; 3 the configuration or
the input is wrong (the profile file, a token to import, the command's arguments); 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import stat
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, Protocol

from . import __version__
from .browser_login import BrowserLogin
from .dpop import key_of
from .errors import ProfileError, TokenError, printable
from .keeper import REFUSED, TokenKeeper
from .login import DeviceAuthorization, DeviceLogin, import_token, revoke
from .profiles import Profile, load_profile
from .refreshers import ClientCredentialsRefresher, OAuth2Refresher
from .store import MAX_FILE_SIZE, Snapshot, TokenFile, TokenStore
from .token import Token

_PROG = "refreshing-session"
_LOCK_TIMEOUT = 30.0
# Seconds: `token` refreshes a token that expires sooner, so that curl gets one that works.
_TOKEN_LEEWAY = 30.0
_NO_TOKEN = 1
_FAILED = 2
_BAD_INPUT = 3
# Seconds shown in full up to this many (about 30,000 years); beyond it, in 1e+12 style.
_LONGEST_SHOWN = 1e12

_Refresher = OAuth2Refresher | ClientCredentialsRefresher


class _Commands(Protocol):
    """What a command's parser is added to: the parser's subcommands."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


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
    arguments = _parsed(_parser(), argv)
    try:
        return int(arguments.run(arguments))
    except TokenError as error:
        print(f"error: {printable(str(error))}", file=sys.stderr)
        return _FAILED
    except (ProfileError, _BadInput) as error:
        print(f"error: {printable(str(error))}", file=sys.stderr)
        return _BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=_PROG,
        description="A requests.Session that refreshes one shared OAuth2 token across processes.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--profile",
        dest="profile_before",
        metavar="NAME",
        help="the profile the command works on: the same as --profile after the command",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")
    for add in (_add_demo, _add_login, _add_token, _add_status, _add_refresh, _add_logout):
        add(commands)
    return parser


def _parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments in ``argv``, a ``--profile`` before the command taken as one after it;
    a usage error (exit 3) for anything unknown, saying where a command's options go."""
    arguments, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(
            f"unrecognized arguments: {' '.join(unknown)} (a command's options go after its "
            f"name, as `{_PROG} {arguments.command} --help` lists them; only --profile may "
            "also come before it)"
        )
    before = arguments.profile_before
    if before is not None:
        if not hasattr(arguments, "profile"):
            parser.error(f"{arguments.command} takes no --profile")
        if arguments.profile not in (None, before):
            parser.error(f"--profile is given twice ({before} and {arguments.profile}); give one")
        arguments.profile = before
    return arguments


def _add_target(command: argparse.ArgumentParser) -> None:
    """Add the arguments that say which token store the command works on."""
    command.add_argument("token_file", nargs="?", help="the token file (or use --profile)")
    _add_profile(command, "a profile of the profile file ($REFRESHING_SESSION_CONFIG)")


def _add_profile(command: argparse.ArgumentParser, text: str) -> None:
    command.add_argument("--profile", metavar="NAME", help=text)


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    return parse


# --- which token store ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """The token store a command works on, the profile that names it (None for a bare
    TOKEN_FILE), and the command that logs in to it."""

    store: TokenStore
    profile: Profile | None
    login_command: str

    def keeper(self, *, refresh: bool, leeway: float = 0.0) -> TokenKeeper:
        """Return the keeper of this store: with ``refresh``, one that refreshes with the
        profile's refresher (a bare token file has none). Its messages name the login."""
        refresher = self.profile.refresher() if refresh and self.profile else None
        return TokenKeeper(
            self.store,
            refresher,
            leeway=leeway,
            lock_timeout=_LOCK_TIMEOUT,
            login_command=self.login_command,
        )


def _target(arguments: argparse.Namespace, *, need_secret: bool) -> _Target:
    """The token store named on the command line: a profile's, or TOKEN_FILE. Without
    ``need_secret``, a profile's client secret may be missing (then build no refresher)."""
    name, profile_name = arguments.token_file, arguments.profile
    if name and profile_name:
        raise _BadInput("give a TOKEN_FILE or --profile, not both")
    if profile_name:
        profile = load_profile(profile_name, need_secret=need_secret)
        return _Target(profile.token_store(), profile, profile.login_command)
    if not name:
        raise _BadInput("give a TOKEN_FILE or --profile NAME")
    store = TokenFile(name)
    if not os.path.lexists(store.path) and _names_a_profile(name):
        raise _BadInput(f"there is no token file {store.path}; did you mean --profile {name}?")
    return _file_target(store)


def _file_target(store: TokenFile) -> _Target:
    """A bare token file, which a token is imported into to log in."""
    return _Target(store, None, f"{_PROG} login --import FILE {shlex.quote(store.path)}")


def _names_a_profile(name: str) -> bool:
    """Whether the profile file has a profile called ``name``, usable or not."""
    try:
        load_profile(name, need_secret=False)
    except ProfileError as error:
        return error.profile == name
    return True


# --- demo ---------------------------------------------------------------------------------------


def _add_demo(commands: _Commands) -> None:
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
        "--dpop",
        action="store_true",
        help="DPoP-bound tokens (RFC 9449): the server requires a proof and a nonce with "
        "every request, and the workers share the key stored with the token",
    )
    demo.add_argument(
        "--json",
        action="store_true",
        help="print the report as one JSON object (progress goes to stderr)",
    )
    demo.set_defaults(run=_demo)


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
        arguments.dpop,
    )
    report = run_demo(options, sys.stderr if arguments.json else sys.stdout)
    if arguments.json:
        print(json.dumps(report, sort_keys=True))
    else:
        _print_report(report)
    return 0 if report["ok"] else 1


def _print_report(report: Mapping[str, Any]) -> None:
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
        *_fewer_calls(report),
        *_dpop_lines(report),
        ("reuse detections", report["reuse_detections"]),
        ("revoked grants", report["revoked_grants"]),
        *((f"fault injected: {fault}", count) for fault, count in report["injected"].items()),
    ]
    if report["injected"]:
        lines.append(("reuse within grace", report["grace_reuses"]))
    for label, value in lines:
        print(f"{label:>26}: {value}")
    print("result: OK" if report["ok"] else "result: FAILED")


def _fewer_calls(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Why there were fewer token calls than tokens due, when there were: the due count is
    the run's length over the refresh interval, but a token is renewed only by a request
    that finds it due, and the workers stop sending at the deadline."""
    last_due = report["last_token_due"]
    if report["token_endpoint_calls"] >= report["tokens_due"] or last_due is None:
        return []
    return [
        (
            "why fewer calls",
            f"a token is renewed only when a request finds it due; the workers stopped at "
            f"{report['workers_stopped']:.2f} s, the last token came due at {last_due:.2f} s",
        )
    ]


def _dpop_lines(report: Mapping[str, Any]) -> list[tuple[str, object]]:
    """What a DPoP run adds to the report: the keys that signed, the nonce retries and
    replays, the proofs refused for anything but a nonce."""
    dpop = report.get("dpop")
    if not dpop:
        return []
    return [
        ("DPoP keys that signed", dpop["keys"]),
        ("DPoP nonce retries", f"{dpop['token_nonce_retries']} (token endpoint)"),
        ("DPoP nonce replays", f"{dpop['api_nonce_replays']} (API)"),
        ("DPoP proofs refused", sum(dpop["refused"].values())),
    ]


# --- login --------------------------------------------------------------------------------------


def _add_login(commands: _Commands) -> None:
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
    _add_target(login)
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
    _add_client_options(login)
    login.add_argument(
        "--dpop",
        action="store_true",
        help="bind the token to a new DPoP key (RFC 9449), stored with it; the profile "
        "must say dpop = true, and a client given by options must be refreshed with dpop=True",
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


def _add_client_options(login: argparse.ArgumentParser) -> None:
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


@dataclass(frozen=True)
class _Client:
    """The client a login gets its first token with: a profile's, or the one the login's
    options describe. ``profile_file`` is the file to add a missing endpoint to (None: the
    client was given by options, so an option adds it)."""

    name: str
    profile_file: str | None
    refresher: Callable[[], _Refresher]
    endpoints: Mapping[str, str | None]

    def endpoint(self, refresher: _Refresher, name: str) -> str | None:
        """The URL of endpoint ``name`` (``authorization``, ``device_authorization``): the
        one given, or the one the refresher's discovery found."""
        return self.endpoints.get(name) or refresher.client.endpoint(f"{name}_endpoint")

    def lacks(self, key: str, otherwise: str) -> _BadInput:
        """The error for a login that needs the endpoint ``key`` this client lacks."""
        if self.profile_file is None:
            add = f"give --{key.replace('_', '-')} (or --issuer)"
        else:
            add = f"add {key} (or issuer) to {self.profile_file}"
        return _BadInput(f"{self.name} has no {key}: {add}, or {otherwise}")


def _login(arguments: argparse.Namespace) -> int:
    client, target = _login_client(arguments)
    if arguments.import_from:
        if arguments.dpop:
            raise _BadInput("--dpop binds a new token to a key; an imported token is bound already")
        token = _imported(arguments.import_from)
    elif client is None:
        raise _BadInput(
            "logging in needs --profile NAME, a client (--issuer or --token-url, "
            "and --client-id), or --import FILE"
        )
    else:
        token = _obtained(client, arguments)
    target.keeper(refresh=False).install(token)
    print(f"logged in: {target.store.location} ({_summary(token)})")
    return 0


def _login_client(arguments: argparse.Namespace) -> tuple[_Client | None, _Target]:
    """The client to log in with (None: none was named) and the store its token goes to."""
    given = _given_client(arguments)
    if given is not None:
        return given
    target = _target(arguments, need_secret=not arguments.import_from)
    profile = target.profile
    if profile is None or arguments.import_from:
        return None, target
    if arguments.dpop and not profile.dpop:
        raise _BadInput(
            f"profile {profile.name!r} does not say dpop = true: add it to "
            f"{Path(profile.config_path).absolute()}, so that its refreshes carry proofs too"
        )
    client = _Client(
        name=f"profile {profile.name!r}",
        profile_file=str(Path(profile.config_path).absolute()),
        refresher=profile.refresher,
        endpoints={
            "authorization": profile.authorization_url,
            "device_authorization": profile.device_authorization_url,
        },
    )
    return client, target


def _given_client(arguments: argparse.Namespace) -> tuple[_Client, _Target] | None:
    """The client the login's options describe and its token file; None when they describe
    none."""
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
    client = _Client(
        name="the client given",
        profile_file=None,
        refresher=partial(_options_refresher, arguments, _secret_of(arguments)),
        endpoints={
            "authorization": arguments.authorization_url,
            "device_authorization": arguments.device_authorization_url,
        },
    )
    return client, _file_target(TokenFile(token_file))


def _secret_of(arguments: argparse.Namespace) -> str | None:
    """The client secret in the variable --client-secret-env names (None: a public client)."""
    variable = arguments.client_secret_env
    if not variable:
        return None
    secret = os.environ.get(variable)
    if not secret:
        raise _BadInput(
            f"the environment variable {variable} is not set; set it to the client secret"
        )
    return secret


def _options_refresher(arguments: argparse.Namespace, secret: str | None) -> OAuth2Refresher:
    """The refresher of the client the login's options describe (its issuer's endpoints
    discovered first)."""
    try:
        options = {"scope": arguments.scope, "dpop": arguments.dpop}
        if arguments.issuer:
            return OAuth2Refresher.from_issuer(
                arguments.issuer, arguments.client_id, secret, **options
            )
        return OAuth2Refresher(arguments.token_url, arguments.client_id, secret, **options)
    except ValueError as error:
        raise _BadInput(str(error)) from None


def _obtained(client: _Client, arguments: argparse.Namespace) -> Token:
    """A first token for ``client``: client credentials, or the login the options choose
    (the browser when an authorization endpoint is known, else the device grant)."""
    refresher = client.refresher()
    if isinstance(refresher, ClientCredentialsRefresher):
        return refresher.new_token()
    authorization = client.endpoint(refresher, "authorization")
    browser = arguments.browser or arguments.no_browser
    if arguments.device or (not browser and authorization is None):
        return _device_login(client, refresher)
    if authorization is None:
        raise client.lacks("authorization_url", "log in with --device")
    login = BrowserLogin(
        refresher, authorization, timeout=arguments.timeout, port=arguments.redirect_port
    )
    if arguments.no_browser:
        return login.with_pasted_url(_show_url_to_paste, _read_pasted)
    return login(_show_url)


def _device_login(client: _Client, refresher: OAuth2Refresher) -> Token:
    url = client.endpoint(refresher, "device_authorization")
    if url is None:
        raise client.lacks("device_authorization_url", "import a token with --import FILE")
    return DeviceLogin(refresher, url)(_show_code)


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


def _imported(source: str) -> Token:
    try:
        if source == "-":
            raw, written_at, name = sys.stdin.buffer.read(MAX_FILE_SIZE + 1), None, "stdin"
        else:
            path = Path(source).absolute()
            with path.open("rb") as file:
                raw = file.read(MAX_FILE_SIZE + 1)
                written_at, name = os.fstat(file.fileno()).st_mtime, f"the file {path}"
    except OSError as error:
        raise _BadInput(f"cannot read {Path(source).absolute()} ({error.strerror})") from None
    if len(raw) > MAX_FILE_SIZE:
        raise _BadInput(f"{name} is larger than {MAX_FILE_SIZE} bytes; it is not a token")
    try:
        token, warnings = import_token(raw, source=name, written_at=written_at)
    except ValueError as error:
        raise _BadInput(str(error)) from None
    for warning in warnings:
        print(f"warning: the imported token: {printable(warning)}", file=sys.stderr)
    return token


def _summary(token: Token) -> str:
    described = _describe(token, time.time())
    return f"fingerprint {described['fingerprint']}, expires {described['expires'] or 'unknown'}"


# --- token --------------------------------------------------------------------------------------


def _add_token(commands: _Commands) -> None:
    token = commands.add_parser(
        "token",
        help="print a valid access token, and nothing else",
        description="Print the stored access token, refreshed first under the lock if it "
        f"expires within {_TOKEN_LEEWAY:g} s (a profile's refresher; a bare "
        "TOKEN_FILE is never refreshed), for "
        'curl -H "Authorization: Bearer $(refreshing-session token --profile api)"',
    )
    _add_target(token)
    token.set_defaults(run=_token)


def _token(arguments: argparse.Namespace) -> int:
    keeper = _target(arguments, need_secret=True).keeper(refresh=True, leeway=_TOKEN_LEEWAY)
    print(keeper.current().access_token)
    return 0


# --- status -------------------------------------------------------------------------------------


def _add_status(commands: _Commands) -> None:
    status = commands.add_parser(
        "status",
        help="describe the stored token without showing secrets",
        description="Describe the stored token without showing secrets. Exits 1 when there "
        "is no usable token: none stored, or expired with no refresh token or "
        "with its refresh refused. Needs no client secret.",
    )
    _add_target(status)
    status.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: logged_in, usable, expires_at (epoch seconds), "
        "expires_in (seconds, negative once expired), expired, refresh_token, "
        "location and more; without a token, logged_in false and the reason",
    )
    status.set_defaults(run=_status)


def _status(arguments: argparse.Namespace) -> int:
    target = _target(arguments, need_secret=False)
    try:
        snapshot = target.store.read()
    except TokenError as error:
        return _not_logged_in(arguments, target, str(error), _FAILED)
    if snapshot is None:
        reason = (
            f"there is no token in {target.store.location}; log in first with "
            f"`{target.login_command}`"
        )
        return _not_logged_in(arguments, target, reason, _NO_TOKEN)
    report = _status_report(target.store, snapshot, time.time())
    if arguments.json:
        print(json.dumps(report, sort_keys=True))
    else:
        _print_status(report)
    return 0 if report["usable"] else _NO_TOKEN


def _not_logged_in(arguments: argparse.Namespace, target: _Target, reason: str, code: int) -> int:
    """Say there is no usable token, and why (also as JSON with --json); return ``code``."""
    if arguments.json:
        report = {"logged_in": False, "usable": False, "reason": reason, **_where(target.store)}
        report["login_command"] = target.login_command
        print(json.dumps(report, sort_keys=True))
    print(f"error: {printable(reason)}", file=sys.stderr)
    return code


def _where(store: TokenStore) -> dict[str, Any]:
    """Where the token is kept: the store's location, and a token file's path."""
    return {
        "location": store.location,
        **({"path": store.path} if isinstance(store, TokenFile) else {}),
    }


def _status_report(store: TokenStore, snapshot: Snapshot, now: float) -> dict[str, Any]:
    token = snapshot.token
    refused = snapshot.notes.get(REFUSED)
    expired = token.expires_at is not None and token.expires_at <= now
    report = {
        "logged_in": True,
        "usable": not expired or (token.refresh_token is not None and not refused),
        **_where(store),
        **_describe(token, now),
        "expired": expired,
        "expires_at": token.expires_at,
        "expires_in": None if token.expires_at is None else round(token.expires_at - now, 3),
        "refresh_refused": refused,
        "warnings": [],
    }
    if isinstance(store, TokenFile):
        mode = stat.S_IMODE(os.stat(store.path).st_mode)
        report["mode"] = f"{mode:04o}"
        if mode & 0o077:
            report["warnings"].append(
                f"the token file is open to other users: run chmod 600 {shlex.quote(store.path)}"
            )
    return report


# The human form of the status report: these keys, in this order (the expiry in "expires").
_SHOWN = (
    "location",
    "mode",
    "token_type",
    "fingerprint",
    "expires",
    "expired",
    "refresh_token",
    "refresh_refused",
    "scope",
    "dpop_key",
)


def _print_status(report: Mapping[str, Any]) -> None:
    for key in _SHOWN:
        if key in report:
            print(f"{key:>16}: {printable(_shown(report[key]))}")
    for warning in report["warnings"]:
        print(f"{'warning':>16}: {printable(warning)}")


def _shown(value: object) -> str:
    """A value as a person reads it: yes or no, a dash for none."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "-" if value is None else str(value)


def _describe(token: Token, now: float) -> dict[str, Any]:
    return {
        "token_type": token.token_type,
        "fingerprint": token.fingerprint,
        "expires": None if token.expires_at is None else _expiry(token.expires_at, now),
        "refresh_token": "present" if token.refresh_token else "absent",
        "scope": token.scope,
        **_dpop_key(token),
    }


def _dpop_key(token: Token) -> dict[str, str]:
    """For a DPoP token, whether its key is stored with it, named by its thumbprint: the
    private key itself is never shown."""
    if not token.is_dpop and token.dpop_key is None:
        return {}
    try:
        key = key_of(token)
    except (ValueError, ImportError) as error:
        return {"dpop_key": f"unusable ({error})"}
    return {"dpop_key": "absent" if key is None else f"present (thumbprint {key.jkt})"}


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


# --- refresh ------------------------------------------------------------------------------------


def _add_refresh(commands: _Commands) -> None:
    refresh = commands.add_parser(
        "refresh",
        help="refresh the token now, under the lock",
        description="Refresh the token now, due or not, under the lock, and store it.",
    )
    _add_profile(refresh, "the profile whose token to refresh (required)")
    refresh.set_defaults(run=_refresh, token_file=None)


def _refresh(arguments: argparse.Namespace) -> int:
    if not arguments.profile:
        raise _BadInput("refresh needs --profile NAME: a bare token file has no refresher")
    keeper = _target(arguments, need_secret=True).keeper(refresh=True)
    token = keeper.refresh_now()
    print(f"refreshed: {keeper.store.location} ({_summary(token)})")
    return 0


# --- logout -------------------------------------------------------------------------------------


def _add_logout(commands: _Commands) -> None:
    logout = commands.add_parser(
        "logout",
        help="revoke the grant (if the profile has a revocation endpoint) and "
        "remove the stored token",
        description="Revoke the grant at the profile's revocation endpoint (RFC 7009), then "
        "remove the stored token, both under the lock. --no-revoke needs no client "
        "secret.",
    )
    _add_target(logout)
    logout.add_argument(
        "--no-revoke",
        action="store_true",
        help="only remove the stored token (an unreadable one too); the grant "
        "stays valid on the server",
    )
    logout.set_defaults(run=_logout)


def _logout(arguments: argparse.Namespace) -> int:
    revoking = not arguments.no_revoke
    target = _target(arguments, need_secret=revoking)
    keeper = target.keeper(refresh=revoking)
    before = _revocation(target.profile, keeper.refresher)
    stored = keeper.store.version() is not None
    try:
        removed = keeper.remove(before=before)
    except TokenError as error:
        print(
            f"error: {printable(str(error))}\nThe token was kept. Run the logout again "
            "later, or with --no-revoke to only remove it.",
            file=sys.stderr,
        )
        return _FAILED
    where = keeper.store.location
    if removed is None:
        print(
            f"removed an unreadable token from {where}"
            if stored
            else f"nothing to do: there is no token in {where}"
        )
    elif before is None:
        print(
            f"logged out: removed {where} (the grant was not revoked: "
            f"{_not_revoked(arguments, target.profile)})"
        )
    else:
        print(f"logged out: revoked the grant and removed {where}")
    return 0


def _revocation(profile: Profile | None, refresher: object) -> Callable[[Token], object] | None:
    """What revokes the grant before the token is removed: None without a profile's
    refresher (--no-revoke, a bare token file) or a revocation endpoint."""
    if profile is None or not isinstance(refresher, _Refresher):
        return None
    url = profile.endpoint(refresher, "revocation")
    return None if url is None else partial(revoke, refresher, url)


def _not_revoked(arguments: argparse.Namespace, profile: Profile | None) -> str:
    if arguments.no_revoke:
        return "--no-revoke"
    return "no revocation endpoint" if profile else "no profile, so no revocation endpoint"
