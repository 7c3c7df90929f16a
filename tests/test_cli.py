"""The refreshing-session command: login, status, refresh, logout and the demo."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from refreshing_session import Token
from refreshing_session.cli import main
from refreshing_session.profiles import CONFIG_ENV
from refreshing_session.testing import LocalAuthServer

from .conftest import stored, write_grant
from .processes import ROOT, wait_for


def test_status_describes_the_token_without_secrets(
        token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
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


def test_status_of_a_missing_file_says_to_log_in(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path / "nothing.json")]) == 1
    assert "log in" in capsys.readouterr().err


def test_status_of_a_corrupt_file_names_it(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
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
    result = subprocess.run(
        [sys.executable, "-m", "refreshing_session", "demo", "--processes", "2", "--threads",
         "2", "--seconds", "3"],
        capture_output=True, text=True, timeout=80, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\r" not in result.stdout
    assert result.stdout.startswith("progress")
    assert "reuse detections: 0" in result.stdout
    assert result.stdout.rstrip().endswith("result: OK")



# --- profiles: login, status, refresh, logout ----------------------------------------------------

def profile_file(path: Path, server: LocalAuthServer, **keys: str) -> Path:
    """Write a profile named "local" for ``server``, with its token file beside ``path``."""
    lines = ["[profiles.local]", f'token_url = "{server.token_url}"', 'client_id = "client"',
             'client_secret_env = "LOCAL_SECRET"', f'prefixes = "{server.api_url}"',
             'token_file = "token.json"', *(f'{key} = "{value}"' for key, value in keys.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def local(tmp_path: Path, server: LocalAuthServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A "local" profile for ``server`` with device login and revocation; its token file."""
    monkeypatch.setenv(CONFIG_ENV, str(profile_file(
        tmp_path / "config.toml", server, device_authorization_url=server.device_authorization_url,
        revocation_url=server.revocation_url)))
    monkeypatch.setenv("LOCAL_SECRET", "secret")
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
        profile_file(Path(os.environ[CONFIG_ENV]), server,
                     device_authorization_url=server.device_authorization_url)
        yield server


def test_device_login_writes_a_private_token_file_and_prints_no_secret(
        local: Path, device_server: LocalAuthServer,
        capsys: pytest.CaptureFixture[str]) -> None:
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
        local: Path, device_server: LocalAuthServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    denier = decide_when_asked(device_server.deny, device_server)
    assert main(["login", "--profile", "local"]) == 2
    assert "refused on the verification page" in capsys.readouterr().err
    assert not local.exists()
    denier.join(5)


def test_client_credentials_login(tmp_path: Path, server: LocalAuthServer,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(profile_file(tmp_path / "c.toml", server,
                                                    grant="client_credentials")))
    monkeypatch.setenv("LOCAL_SECRET", "secret")
    assert main(["login", "--profile", "local"]) == 0
    assert "logged in" in capsys.readouterr().out
    assert server.stats().client_credentials == 1
    assert stored(tmp_path / "token.json").refresh_token is None


def test_login_without_a_device_endpoint_says_what_to_add(
        tmp_path: Path, server: LocalAuthServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(profile_file(tmp_path / "c.toml", server)))
    monkeypatch.setenv("LOCAL_SECRET", "secret")
    assert main(["login", "--profile", "local"]) == 3
    assert "has no device_authorization_url: add it to" in capsys.readouterr().err


def test_import_from_a_file_keeps_its_time_and_from_stdin_warns(
        tmp_path: Path, server: LocalAuthServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
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


def test_import_of_a_bad_file_exits_3_naming_it(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"access_token": ""}')
    assert main(["login", str(tmp_path / "t.json"), "--import", str(bad)]) == 3
    assert f"the file {bad} does not hold a usable token" in capsys.readouterr().err
    assert main(["login", str(tmp_path / "t.json"), "--import", str(tmp_path / "no")]) == 3
    assert "cannot read" in capsys.readouterr().err


def test_status_refresh_and_logout_by_profile(local: Path, server: LocalAuthServer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--profile", "local"]) == 1
    assert "refreshing-session login --profile local" in capsys.readouterr().err
    assert main(["refresh", "--profile", "local"]) == 2
    assert "refreshing-session login --profile local" in capsys.readouterr().err
    write_grant(local, server)
    before = stored(local)
    assert main(["refresh", "--profile", "local"]) == 0
    after = stored(local)
    assert after.access_token != before.access_token
    assert f"refreshed: the token file {local} (fingerprint {after.fingerprint}" \
        in capsys.readouterr().out
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
        tmp_path: Path, server: LocalAuthServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(profile_file(tmp_path / "c.toml", server)))
    monkeypatch.setenv("LOCAL_SECRET", "secret")
    token_file = write_grant(tmp_path / "token.json", server)
    token = stored(token_file)
    assert main(["logout", "--profile", "local"]) == 0
    assert "the grant was not revoked" in capsys.readouterr().out
    assert not token_file.exists()
    assert server.stats().revocations == 0
    assert api_status(server, token) == 200


def test_logout_no_revoke_removes_an_unreadable_token(
        local: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local.write_text("{ truncated")
    assert main(["logout", "--profile", "local"]) == 2
    assert "--no-revoke" in capsys.readouterr().err
    assert local.exists()
    assert main(["logout", "--profile", "local", "--no-revoke"]) == 0
    assert "removed an unreadable token" in capsys.readouterr().out
    assert not local.exists()


def test_a_failed_revocation_keeps_the_file_and_says_how_to_go_on(
        tmp_path: Path, server: LocalAuthServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(profile_file(
        tmp_path / "c.toml", server, revocation_url=server.url + "/nowhere")))
    monkeypatch.setenv("LOCAL_SECRET", "secret")
    token_file = write_grant(tmp_path / "token.json", server)
    assert main(["logout", "--profile", "local"]) == 2
    err = capsys.readouterr().err
    assert "answered 404" in err
    assert "The token was kept" in err
    assert "--no-revoke" in err
    assert token_file.exists()
    assert main(["logout", "--profile", "local", "--no-revoke"]) == 0
    assert not token_file.exists()


def test_profile_errors_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
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
        config = profile_file(tmp_path / "config.toml", server,
                              device_authorization_url=server.device_authorization_url)
        environment = {**os.environ, CONFIG_ENV: str(config), "LOCAL_SECRET": "secret"}
        process = subprocess.Popen(
            [sys.executable, "-m", "refreshing_session", "login", "--profile", "local"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=environment)
        assert process.stdout is not None
        first_line = process.stdout.readline()
        user_code = first_line.rsplit(" ", 1)[-1].strip()
        server.approve(user_code)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "logged in" in out
        assert stored(tmp_path / "token.json").refresh_token
