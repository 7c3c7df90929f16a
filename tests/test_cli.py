"""The refreshing-session command: login, status, refresh, logout and the demo."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from refreshing_session import Token, cli
from refreshing_session.cli import main
from refreshing_session.dpop import key_of
from refreshing_session.profiles import CONFIG_ENV
from refreshing_session.store import TokenFile
from refreshing_session.testing import LocalAuthServer

from .conftest import expire, stored, write_grant
from .support.processes import ROOT, wait_for
from .test_browser_login import AuthorizationServer, follow, in_background
from .test_dpop import assert_hidden


def run_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real command in a fresh interpreter whose working folder is ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "refreshing_session", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def exit_code(arguments: list[str]) -> int:
    """The exit code of the command, whether argparse exits or main returns."""
    try:
        return main(arguments)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def test_status_describes_the_token_without_secrets(
    token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(token_file)]) == 0
    out = capsys.readouterr().out
    token = stored(token_file)
    for expected in ("Bearer", token.fingerprint, "present", "0600", "(in 6", str(token_file)):
        assert expected in out
    assert token.access_token not in out
    assert token.refresh_token
    assert token.refresh_token not in out


def test_status_json_is_one_object(token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--json", str(token_file)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["refresh_token"] == "present"
    assert report["mode"] == "0600"
    assert report["refresh_refused"] is None


def test_status_of_a_missing_file_says_to_log_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(tmp_path / "nothing.json")]) == 1
    assert "log in" in capsys.readouterr().err


def test_status_of_a_corrupt_file_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.json"
    path.write_text("[]")
    assert main(["status", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


def test_bad_demo_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--processes", "0"])
    assert "more than 0" in capsys.readouterr().err


@pytest.mark.timeout(90)
def test_the_demo_prints_plain_progress_and_a_summary_when_not_on_a_terminal() -> None:
    result = run_cli("demo", "--processes", "2", "--threads", "2", "--seconds", "3", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\r" not in result.stdout
    assert result.stdout.startswith("progress")
    assert "reuse detections: 0" in result.stdout
    assert result.stdout.rstrip().endswith("result: OK")
    calls, due = map(int, CALLS_AND_DUE.findall(result.stdout)[0])
    explained = "why fewer calls: a token is renewed only when a request finds it due"
    assert (explained in result.stdout) == (calls < due), (
        f"{calls} calls for {due} tokens due: the report explains fewer calls, and only those"
    )


CALLS_AND_DUE = re.compile(r"token-endpoint calls: (\d+) \(tokens that came due: (\d+)\)")


def demo_report(calls: int, due: int, last_due: float | None) -> dict[str, object]:
    """A demo report of a clean 10-second run with ``calls`` token calls for ``due`` tokens."""
    return {
        "processes": 2,
        "threads": 2,
        "seconds": 10.2,
        "ttl": 2.0,
        "requests": 100,
        "successes": 100,
        "caller_failures": 0,
        "failure_kinds": {},
        "token_endpoint_calls": calls,
        "tokens_due": due,
        "workers_stopped": 10.0,
        "last_token_due": last_due,
        "reuse_detections": 0,
        "revoked_grants": 0,
        "injected": {},
        "ok": True,
    }


def test_the_demo_report_says_why_there_were_fewer_calls_than_tokens_due(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli._print_report(demo_report(9, 10, last_due=10.05))
    shown = capsys.readouterr().out
    assert "token-endpoint calls: 9 (tokens that came due: 10)" in shown
    assert (
        "why fewer calls: a token is renewed only when a request finds it due; the workers "
        "stopped at 10.00 s, the last token came due at 10.05 s"
    ) in shown
    cli._print_report(demo_report(10, 10, last_due=10.5))
    assert "why fewer calls" not in capsys.readouterr().out, "nothing to explain"


# --- profiles: login, status, refresh, logout ----------------------------------------------------


def profile_file(path: Path, server: LocalAuthServer, **keys: str) -> Path:
    """Write a profile named "local" for ``server``, with its token file beside ``path``."""
    lines = [
        "[profiles.local]",
        f'token_url = "{server.token_url}"',
        'client_id = "client"',
        'client_secret_env = "LOCAL_SECRET"',
        f'prefixes = "{server.api_url}"',
        'token_file = "token.json"',
        *(f'{key} = "{value}"' for key, value in keys.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def use_profile(
    monkeypatch: pytest.MonkeyPatch, path: Path, server: LocalAuthServer, **keys: str
) -> Path:
    """Write the "local" profile for ``server`` to ``path`` (as :func:`profile_file` does) and
    give it to the command: the file in the environment and its client secret in
    LOCAL_SECRET. Returns ``path``."""
    monkeypatch.setenv(CONFIG_ENV, str(profile_file(path, server, **keys)))
    monkeypatch.setenv("LOCAL_SECRET", "secret")
    return path


@pytest.fixture
def local(tmp_path: Path, server: LocalAuthServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A "local" profile for ``server`` with device login and revocation; its token file."""
    use_profile(
        monkeypatch,
        tmp_path / "config.toml",
        server,
        device_authorization_url=server.device_authorization_url,
        revocation_url=server.revocation_url,
    )
    return tmp_path / "token.json"


def decide_when_asked(decide: Callable[[str], None], server: LocalAuthServer) -> threading.Thread:
    """From another thread, as a user would, ``decide`` on the first device code to show up
    (``server.approve`` or ``server.deny``)."""

    def run() -> None:
        wait_for(lambda: bool(server.pending_user_codes()))
        decide(server.pending_user_codes()[0])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def device_server(local: Path) -> Iterator[LocalAuthServer]:
    """A server that wants device polls every 50 ms, which the "local" profile now names."""
    with LocalAuthServer(device_interval=0.05) as server:
        profile_file(
            Path(os.environ[CONFIG_ENV]),
            server,
            device_authorization_url=server.device_authorization_url,
        )
        yield server


def test_device_login_writes_a_private_token_file_and_prints_no_secret(
    local: Path, device_server: LocalAuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    approver = decide_when_asked(device_server.approve, device_server)
    assert main(["login", "--profile", "local"]) == 0
    approver.join(5)
    out = capsys.readouterr().out
    token = stored(local)
    assert f"open {device_server.verification_url} and enter the code " in out
    assert f"logged in: the token file {local} (fingerprint {token.fingerprint}" in out
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    assert token.refresh_token
    for secret in (token.access_token, token.refresh_token, "secret"):
        assert secret not in out
    assert device_server.stats().device_grants == 1


def test_a_denied_device_login_exits_2_and_writes_nothing(
    local: Path, device_server: LocalAuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    denier = decide_when_asked(device_server.deny, device_server)
    assert main(["login", "--profile", "local"]) == 2
    assert "refused on the verification page" in capsys.readouterr().err
    assert not local.exists()
    denier.join(5)


def test_client_credentials_login(
    tmp_path: Path,
    server: LocalAuthServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_profile(monkeypatch, tmp_path / "c.toml", server, grant="client_credentials")
    assert main(["login", "--profile", "local"]) == 0
    assert "logged in" in capsys.readouterr().out
    assert server.stats().client_credentials == 1
    assert stored(tmp_path / "token.json").refresh_token is None


def test_login_without_a_device_endpoint_says_what_to_add(
    tmp_path: Path,
    server: LocalAuthServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = use_profile(monkeypatch, tmp_path / "c.toml", server)
    assert main(["login", "--profile", "local"]) == 3
    assert (
        "profile 'local' has no device_authorization_url: add device_authorization_url "
        f"(or issuer) to {config}, or import a token with --import FILE"
    ) in capsys.readouterr().err


def test_login_options_without_a_device_endpoint_say_which_option_adds_it(
    tmp_path: Path, server: LocalAuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    login = ["login", "--device", "--token-url", server.token_url, "--client-id", "client"]
    assert main([*login, str(tmp_path / "t.json")]) == 3
    assert (
        "the client given has no device_authorization_url: give --device-authorization-url "
        "(or --issuer), or import a token with --import FILE"
    ) in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_import_from_a_file_keeps_its_time_and_from_stdin_warns(
    tmp_path: Path,
    server: LocalAuthServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer = json.dumps(server.issue_token())  # an identity provider's raw answer
    saved = tmp_path / "from-idp.json"
    saved.write_text(answer)
    os.utime(saved, (time.time() - 30, time.time() - 30))
    target = tmp_path / "token.json"
    assert main(["login", str(target), "--import", str(saved)]) == 0
    assert stored(target).expires_at == pytest.approx(saved.stat().st_mtime + 60)
    assert "warning" not in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(answer.encode())))
    assert main(["login", str(target), "--import", "-"]) == 0
    captured = capsys.readouterr()
    assert "warning: the imported token: it says how long it lives" in captured.err
    assert json.loads(answer)["refresh_token"] not in captured.out + captured.err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_import_of_a_bad_file_exits_3_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"access_token": ""}')
    assert main(["login", str(tmp_path / "t.json"), "--import", str(bad)]) == 3
    assert f"the file {bad} does not hold a usable token" in capsys.readouterr().err
    assert main(["login", str(tmp_path / "t.json"), "--import", str(tmp_path / "no")]) == 3
    assert "cannot read" in capsys.readouterr().err


def test_status_refresh_and_logout_by_profile(
    local: Path, server: LocalAuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--profile", "local"]) == 1
    assert "refreshing-session login --profile local" in capsys.readouterr().err
    assert main(["refresh", "--profile", "local"]) == 2
    assert "refreshing-session login --profile local" in capsys.readouterr().err
    write_grant(local, server)
    before = stored(local)
    assert main(["refresh", "--profile", "local"]) == 0
    after = stored(local)
    assert after.access_token != before.access_token
    assert (
        f"refreshed: the token file {local} (fingerprint {after.fingerprint}"
        in capsys.readouterr().out
    )
    assert main(["status", "--json", "--profile", "local"]) == 0
    assert json.loads(capsys.readouterr().out)["fingerprint"] == after.fingerprint
    assert main(["logout", "--profile", "local"]) == 0
    assert "revoked the grant and removed" in capsys.readouterr().out
    assert not local.exists()
    assert server.stats().revocations == 1
    assert api_status(server, after) == 401
    assert main(["logout", "--profile", "local"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_logout_without_revocation_only_removes_the_file(
    tmp_path: Path,
    server: LocalAuthServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_profile(monkeypatch, tmp_path / "c.toml", server)
    token_file = write_grant(tmp_path / "token.json", server)
    token = stored(token_file)
    assert main(["logout", "--profile", "local"]) == 0
    assert "the grant was not revoked" in capsys.readouterr().out
    assert not token_file.exists()
    assert server.stats().revocations == 0
    assert api_status(server, token) == 200


def test_logout_no_revoke_removes_an_unreadable_token(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local.write_text("{ truncated")
    assert main(["logout", "--profile", "local"]) == 2
    assert "--no-revoke" in capsys.readouterr().err
    assert local.exists()
    assert main(["logout", "--profile", "local", "--no-revoke"]) == 0
    assert "removed an unreadable token" in capsys.readouterr().out
    assert not local.exists()


def test_a_failed_revocation_keeps_the_file_and_says_how_to_go_on(
    tmp_path: Path,
    server: LocalAuthServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_profile(monkeypatch, tmp_path / "c.toml", server, revocation_url=server.url + "/nowhere")
    token_file = write_grant(tmp_path / "token.json", server)
    assert main(["logout", "--profile", "local"]) == 2
    err = capsys.readouterr().err
    assert "answered 404" in err
    assert "The token was kept" in err
    assert "--no-revoke" in err
    assert token_file.exists()
    assert main(["logout", "--profile", "local", "--no-revoke"]) == 0
    assert not token_file.exists()


def test_profile_errors_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[profiles.local]\ntoken_url = "https://a.test/t"\n')
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert main(["status", "--profile", "local"]) == 3
    assert f"{config}, profile 'local', key 'client_id': is missing" in capsys.readouterr().err
    assert main(["status", "--profile", "prod"]) == 3
    assert "the profiles in this file are: local" in capsys.readouterr().err
    assert main(["status"]) == 3
    assert "give a TOKEN_FILE or --profile NAME" in capsys.readouterr().err


def api_status(server: LocalAuthServer, token: Token) -> int:
    headers = {"Authorization": token.authorization}
    return requests.get(server.api_url + "items", headers=headers, timeout=5).status_code


@pytest.mark.timeout(60)
def test_device_login_as_a_real_process(tmp_path: Path) -> None:
    with LocalAuthServer(device_interval=0.05) as server:
        config = profile_file(
            tmp_path / "config.toml",
            server,
            device_authorization_url=server.device_authorization_url,
        )
        environment = {**os.environ, CONFIG_ENV: str(config), "LOCAL_SECRET": "secret"}
        process = subprocess.Popen(
            [sys.executable, "-m", "refreshing_session", "login", "--profile", "local"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=environment,
        )
        assert process.stdout is not None
        first_line = process.stdout.readline()
        user_code = first_line.rsplit(" ", 1)[-1].strip()
        server.approve(user_code)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "logged in" in out
        assert stored(tmp_path / "token.json").refresh_token


# --- token, status --json, logins without a profile, usage ----------------------------------------


def test_token_prints_only_a_fresh_access_token(
    local: Path, server: LocalAuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    write_grant(local, server)
    expire(local)
    assert main(["token", "--profile", "local"]) == 0
    printed = capsys.readouterr().out
    assert printed == stored(local).access_token + "\n", "the token, and nothing else"
    assert server.stats().refreshes == 1
    assert main(["token", "--profile", "local"]) == 0
    assert capsys.readouterr().out == printed, "a valid token is not refreshed again"
    assert server.stats().refreshes == 1


def test_token_of_an_expired_bare_file_exits_2(
    tmp_path: Path, server: LocalAuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_grant(tmp_path / "t.json", server)
    expire(path)
    assert main(["token", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "log in" in captured.err


def test_status_json_says_when_the_token_expires_and_where_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"access_token": "at", "expires_at": time.time() + 120}))
    assert main(["status", "--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 100 < report["expires_in"] <= 120
    assert report["expires_at"] == pytest.approx(time.time() + report["expires_in"], abs=5)
    assert report["expired"] is False
    assert report["refresh_token"] == "absent"
    assert report["location"] == f"the token file {path}"
    path.write_text(json.dumps({"access_token": "at", "expires_at": time.time() - 60}))
    assert main(["status", "--json", str(path)]) == 1, "expired, and no refresh token"
    report = json.loads(capsys.readouterr().out)
    assert report["expired"] is True
    assert report["expires_in"] < -50


def test_status_and_logout_no_revoke_need_no_client_secret(
    local: Path,
    server: LocalAuthServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_grant(local, server)
    monkeypatch.delenv("LOCAL_SECRET")
    assert main(["status", "--profile", "local"]) == 0
    assert main(["logout", "--profile", "local", "--no-revoke"]) == 0
    assert not local.exists()
    assert main(["refresh", "--profile", "local"]) == 3, "a refresh does need it"
    assert "LOCAL_SECRET is not set" in capsys.readouterr().err


def device_login(server: LocalAuthServer, *more: str) -> list[str]:
    """The arguments of a device login on ``server`` for a client given by options (its
    secret in MY_SECRET), and ``more``."""
    return [
        "login",
        "--device",
        "--token-url",
        server.token_url,
        "--client-id",
        "client",
        "--client-secret-env",
        "MY_SECRET",
        "--device-authorization-url",
        server.device_authorization_url,
        *more,
    ]


def test_device_login_without_a_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MY_SECRET", "secret")
    target = tmp_path / "adhoc.json"
    with LocalAuthServer(device_interval=0.05) as server:
        approver = decide_when_asked(server.approve, server)
        assert main(device_login(server, "--scope", "read", "--token-file", str(target))) == 0
        approver.join(10)
    assert stored(target).refresh_token
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "secret" not in capsys.readouterr().out.replace("enter the code", "")


def test_browser_login_without_a_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "browser.json"
    with AuthorizationServer() as auth:
        monkeypatch.setattr(webbrowser, "open", in_background(follow))
        assert (
            main(
                [
                    "login",
                    "--token-url",
                    auth.origin + "/token",
                    "--client-id",
                    "app",
                    "--authorization-url",
                    auth.origin + "/authorize",
                    str(target),
                ]
            )
            == 0
        )
    assert "Opening the browser" in capsys.readouterr().out
    assert stored(target).access_token == "at-browser"


@pytest.mark.parametrize(
    "arguments",
    [
        ["status", "--bogus"],
        ["login", "--client-id", "c", "x.json"],
        ["login", "--token-url", "https://a.test/t", "--client-id", "c"],
        ["login", "--browser", "--device", "--profile", "p"],
        ["login", "--device", "--token-url", "http://auth.test/t", "--client-id", "c", "x.json"],
    ],
)
def test_usage_errors_exit_3(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(arguments) == 3
    assert "error" in capsys.readouterr().err


def test_every_command_and_option_has_help_and_says_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = cli._parser()
    [commands] = [
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    ]
    listed = {choice.dest for choice in commands._choices_actions}
    assert listed == set(commands.choices), "every command is listed with its help"
    for name, command in commands.choices.items():
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "worker processes (default: 4)" in shown
    assert "seed for --chaos (default: a random one)" in shown
    with pytest.raises(SystemExit):
        main(["login", "--help"])
    assert "sign-in (default: 300.0)" in " ".join(capsys.readouterr().out.split())


# --- messages: absolute paths, profiles, advice, output for scripts -------------------------------


def test_a_relative_token_file_is_named_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # as cron runs a job: from a folder of its own
    absolute = tmp_path / "job-token.json"
    login = f"`refreshing-session login --import FILE {shlex.quote(str(absolute))}`"
    assert main(["status", "job-token.json"]) == 1
    assert capsys.readouterr().err == (
        f"error: there is no token in the token file {absolute}; log in first with {login}\n"
    )
    assert main(["token", "job-token.json"]) == 2
    assert f"there is no token in the token file {absolute}; log in first with {login}" in (
        capsys.readouterr().err
    )
    (tmp_path / "broken.json").write_text("[]")
    assert main(["status", "broken.json"]) == 2
    assert f"does not hold a JSON object: {tmp_path / 'broken.json'}" in capsys.readouterr().err
    assert main(["login", "t.json", "--import", "missing.json"]) == 3
    assert f"cannot read {tmp_path / 'missing.json'} (" in capsys.readouterr().err


def test_a_token_file_stays_the_file_named_when_the_working_folder_changes(
    tmp_path: Path, server: LocalAuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    store = TokenFile("./token.json")
    climbing = TokenFile("second/../token.json")
    monkeypatch.chdir(second)
    store.write(Token.from_response(server.issue_token(), requested_at=time.time()))
    assert (first / "token.json").exists(), "the file named where the store was made"
    assert not (second / "token.json").exists()
    assert store.location == f"the token file {first / 'token.json'}"
    # ".." is kept: after a linked folder it means what the kernel makes of it.
    assert climbing.path == f"{first}/second/../token.json"


def test_a_token_file_argument_that_names_a_profile_asks_did_you_mean(
    local: Path,
    server: LocalAuthServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    asked = f"error: there is no token file {tmp_path / 'local'}; did you mean --profile local?"
    for command in ("status", "token", "logout", "login"):
        assert main([command, "local"]) == 3, command
        assert asked in capsys.readouterr().err, command
    assert main(["status", "elsewhere"]) == 1, "no profile of that name: no token, as before"
    assert "did you mean" not in capsys.readouterr().err
    write_grant(tmp_path / "local", server)
    assert main(["status", "local"]) == 0, "a file of that name is what was meant"


def test_the_profile_may_come_before_the_command(
    local: Path, server: LocalAuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    write_grant(local, server)
    assert main(["--profile", "local", "status", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert main(["status", "--json", "--profile", "local"]) == 0
    after = json.loads(capsys.readouterr().out)
    for key in ("fingerprint", "expires_at", "location", "path"):
        assert after[key] == before[key], key
    assert before["path"] == str(local)
    assert main(["--profile", "local", "refresh"]) == 0
    assert f"refreshed: the token file {local}" in capsys.readouterr().out
    assert main(["--profile", "local", "status", "--profile", "local"]) == 0, "once, twice"


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (
            ["--profile", "a", "status", "--profile", "b"],
            "--profile is given twice (a and b); give one",
        ),
        (["--profile", "a", "demo"], "demo takes no --profile"),
        (
            ["--json", "status", "t.json"],
            "unrecognized arguments: --json (a command's options go after its name, as "
            "`refreshing-session status --help` lists them; only --profile may also come "
            "before it)",
        ),
        (["refresh"], "refresh needs --profile NAME: a bare token file has no refresher"),
    ],
)
def test_options_out_of_place_say_where_they_go(
    arguments: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(arguments) == 3
    assert says in " ".join(capsys.readouterr().err.split())


def test_a_profile_name_typo_gets_a_did_you_mean(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--profile", "locla"]) == 3
    assert "did you mean 'local'?" in capsys.readouterr().err


def test_keeper_messages_name_the_command_that_logs_in(
    local: Path,
    server: LocalAuthServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bare = tmp_path / "bare.json"
    login = f"`refreshing-session login --import FILE {bare}`"
    assert main(["token", str(bare)]) == 2
    assert f"there is no token in the token file {bare}; log in first with {login}" in (
        capsys.readouterr().err
    )
    write_grant(bare, server)
    expire(bare)
    assert main(["token", str(bare)]) == 2
    assert f"log in again with {login}" in capsys.readouterr().err
    assert main(["token", "--profile", "local"]) == 2
    err = capsys.readouterr().err
    assert f"there is no token in the token file {local}; log in first with `" in err
    assert "refreshing-session login --profile local`" in err


@pytest.mark.parametrize("expired", [False, True], ids=["no token", "expired"])
def test_cli_messages_give_no_python_advice(
    expired: bool, tmp_path: Path, server: LocalAuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "bare.json"
    if expired:
        write_grant(bare, server)
        expire(bare)
    assert main(["token", str(bare)]) == 2
    err = capsys.readouterr().err
    for python in ("ClientCredentialsRefresher", "refresher="):
        assert python not in err


@pytest.mark.timeout(90)
def test_a_token_file_open_to_others_is_warned_with_the_chmod_to_run(
    tmp_path: Path, server: LocalAuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_grant(tmp_path / "token.json", server)
    path.chmod(0o644)
    chmod = f"chmod 600 {shlex.quote(str(path))}"
    result = run_cli("status", "token.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        f"the token file {path} is open to other users (mode 0644): run `{chmod}` "
        "(the next refresh makes it private too)"
    ) in result.stderr
    assert re.search(r"^ +mode: 0644$", result.stdout, re.MULTILINE), result.stdout
    assert f"warning: the token file is open to other users: run {chmod}" in result.stdout
    assert main(["status", "--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["mode"], report["warnings"]) == (
        "0644",
        [f"the token file is open to other users: run {chmod}"],
    )
    path.chmod(0o600)
    assert main(["status", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []


def test_human_status_says_yes_or_no_and_names_the_path_once(
    token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(token_file)]) == 0
    out = capsys.readouterr().out
    assert out.count(str(token_file)) == 1, out
    assert re.search(r"^ +expired: no$", out, re.MULTILINE), out
    expire(token_file)
    assert main(["status", str(token_file)]) == 0, "expired, but it has a refresh token"
    out = capsys.readouterr().out
    assert re.search(r"^ +expired: yes$", out, re.MULTILINE), out
    for python in ("True", "False", "None"):
        assert python not in out, out


def test_status_json_without_a_usable_token_prints_json_saying_why(
    tmp_path: Path, local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.json"
    login = f"refreshing-session login --import FILE {missing}"
    assert main(["status", "--json", str(missing)]) == 1
    captured = capsys.readouterr()
    reason = f"there is no token in the token file {missing}; log in first with `{login}`"
    assert json.loads(captured.out) == {
        "logged_in": False,
        "usable": False,
        "reason": reason,
        "location": f"the token file {missing}",
        "path": str(missing),
        "login_command": login,
    }
    assert captured.err == f"error: {reason}\n"
    missing.write_text("{ truncated")
    assert main(["status", "--json", str(missing)]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["logged_in"] is False
    assert "is not valid JSON" in report["reason"]
    assert main(["--profile", "local", "status", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["logged_in"] is False
    assert report["login_command"].endswith("refreshing-session login --profile local")


# --- DPoP ---------------------------------------------------------------------------------------


def test_login_dpop_stores_a_new_key_with_the_token_bound_to_it_and_status_never_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MY_SECRET", "secret")
    target = tmp_path / "dpop.json"
    with LocalAuthServer(device_interval=0.05, dpop=True, dpop_nonce=True) as server:
        approver = decide_when_asked(server.approve, server)
        assert main(device_login(server, "--dpop", str(target))) == 0
        approver.join(10)
        token = stored(target)
        key = key_of(token)
        assert token.is_dpop
        assert key is not None
        assert {proof.jkt for proof in server.dpop_proofs()} == {key.jkt}
    login_out = capsys.readouterr().out
    assert main(["status", "--json", str(target)]) == 0
    json_out = capsys.readouterr().out
    assert main(["status", str(target)]) == 0
    human_out = capsys.readouterr().out
    report = json.loads(json_out)
    assert (report["token_type"], report["dpop_key"]) == ("DPoP", f"present (thumbprint {key.jkt})")
    assert f"dpop_key: present (thumbprint {key.jkt})" in human_out
    assert_hidden(key, login_out, json_out, human_out)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["login", "--dpop", "--profile", "local"], "does not say dpop = true: add it to"),
        (["login", "--dpop", "--import", "-", "t.json"], "an imported token is bound already"),
    ],
)
def test_a_dpop_login_that_could_not_last_is_refused(
    local: Path, arguments: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(arguments) == 3
    assert said in capsys.readouterr().err
    assert not local.exists()


@pytest.mark.timeout(120)
def test_the_demo_runs_with_dpop_and_reports_one_key_and_the_nonces() -> None:
    arguments = ["--processes", "2", "--threads", "2", "--seconds", "3", "--ttl", "2", "--json"]
    result = run_cli("demo", "--dpop", *arguments, cwd=ROOT)
    report = json.loads(result.stdout)
    assert (result.returncode, report["ok"], report["caller_failures"]) == (0, True, 0)
    dpop = report["dpop"]
    assert (dpop["keys"], dpop["refused"]) == (1, {})
    assert 1 <= dpop["api_nonce_replays"] <= 4, "one replay per thread that had no nonce yet"
    assert dpop["token_nonce_retries"] <= 2, "one retry per process that had no nonce yet"
    assert report["token_endpoint_calls"] <= report["allowed_calls"]
    assert report["reuse_detections"] == 0
