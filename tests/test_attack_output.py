"""Attacks on what the client computes and prints: a hostile token endpoint on 127.0.0.1 (or a
crafted token file) sends expiries of 0, a negative number or 1e300, terminal escapes in its
error_description, and error pages of 96 MiB."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from refreshing_session import OAuth2Refresher, Token, TokenFile
from refreshing_session.cli import main
from refreshing_session.errors import excerpt
from refreshing_session.keeper import TokenKeeper
from refreshing_session.profiles import CONFIG_ENV

from .support.hostile import HostileTokenEndpoint

SECRET = "cs-Zq8vR2mK7pW4xT9nB3"
# Sets the window title, clears the screen, rings the bell, moves the cursor home, and a CSI
# given as its one-byte C1 form; then a right-to-left override.
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[H\x9b31m\u202e"


def keeper_on(endpoint: HostileTokenEndpoint, token_file: Path) -> TokenKeeper:
    TokenFile(token_file).write(Token("at-old", refresh_token="rt-old", expires_at=1.0))
    return TokenKeeper(
        TokenFile(token_file),
        OAuth2Refresher(endpoint.url, "client", SECRET),
        leeway=30.0,
        lock_timeout=5.0,
    )


# --- 11. an expiry of zero or less is an unknown expiry, not a refresh per request -------------


@pytest.mark.parametrize("expires_in", [0, -3600, "0", -0.5])
def test_an_expiry_of_zero_or_less_does_not_refresh_on_every_request(
    expires_in: object, tmp_path: Path
) -> None:
    answer = {"access_token": "at-new", "refresh_token": "rt-new", "expires_in": expires_in}
    with HostileTokenEndpoint(200, answer) as endpoint:
        keeper = keeper_on(endpoint, tmp_path / "token.json")
        tokens = {keeper.current().access_token for _ in range(10)}
    assert tokens == {"at-new"}
    assert endpoint.calls == 1, f"{endpoint.calls} token calls for 10 requests"
    stored = TokenFile(tmp_path / "token.json").read()
    assert stored is not None
    assert stored.token.expires_at is None  # unknown: a 401 refreshes it


# --- 12. redacting a huge error page is bounded by the excerpt, not the page --------------------


def fastest(run: Callable[[], object], times: int = 5) -> float:
    """The fastest of ``times`` runs of ``run``, in seconds: the least disturbed by the load."""
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def test_redacting_a_96_mib_error_page_costs_what_a_small_one_costs() -> None:
    line = b'<p>error {"refresh_token": "rt-abcdefghij", "note": "' + SECRET.encode() + b'"}</p>\n'
    small = line * (64 * 1024 // len(line))
    huge = line * (96 * 1024 * 1024 // len(line))
    small_time = fastest(lambda: excerpt(small, [SECRET, "rt-abcdefghij"]))
    huge_time = fastest(lambda: excerpt(huge, [SECRET, "rt-abcdefghij"]))
    # The page is 1,536 times larger; reading all of it would cost about that much more.
    assert huge_time < 20 * small_time + 0.001, (
        f"96 MiB took {huge_time * 1000:.1f} ms, 64 KiB {small_time * 1000:.2f} ms"
    )
    assert excerpt(huge, [SECRET]) == excerpt(small, [SECRET])


@pytest.mark.parametrize(
    ("secret", "form"),
    [
        (SECRET, SECRET),
        ("cs/Zq8+vR2=mK7pW4", "cs%2FZq8%2BvR2%3DmK7pW4"),  # as a form body echoes it
        ("cs/Zq8+vR2=mK7pW4", "cs\\/Zq8+vR2=mK7pW4"),  # as PHP's JSON echoes it
    ],
)
def test_a_secret_straddling_the_cut_leaves_no_part_of_it_behind(secret: str, form: str) -> None:
    """Wherever the secret sits: also where the excerpt stops looking, after a run of spaces
    that shrinks to one and brings what follows into view."""
    for before in range(1200):
        for body in (
            "x" * before + form + " tail" * 100,
            " " * before + form + " tail" * 100,
            (" " * before + form + " tail" * 100).encode(),
        ):
            shown = excerpt(body, [secret], limit=200)
            assert len(shown) <= 200
            for size in range(4, len(form) + 1):
                assert form[:size] not in shown, f"{size} characters of the secret shown"


def test_an_excerpt_escapes_control_characters() -> None:
    shown = excerpt(f"invalid_grant: {ESCAPES}done")
    assert shown.isprintable()
    assert "\\x1b]0;owned\\x07" in shown
    assert shown.endswith("done")


# --- 13. far-future expiries are shown cleanly ---------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [{"expires_in": 1e12}, {"expires_in": 1e300}, {"expires_at": 1e300}, {"expires_at": -1e300}],
)
def test_status_shows_a_far_future_expiry_cleanly(
    fields: dict[str, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "token.json"
    path.write_text(json.dumps({"access_token": "at-far", **fields}))
    path.chmod(0o600)
    unusable = fields.get("expires_at", 0) < 0  # expired, and nothing to refresh it with
    assert main(["status", str(path)]) == int(unusable)
    out = capsys.readouterr().out
    assert "expires" in out
    assert max(len(line) for line in out.splitlines()) < 120
    assert main(["status", "--json", str(path)]) == int(unusable)
    assert json.loads(capsys.readouterr().out)["expires"]


def test_importing_a_far_future_expiry_succeeds_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "saved.json"
    source.write_text(json.dumps({"access_token": "at-far", "expires_at": 1e300}))
    assert main(["login", str(tmp_path / "token.json"), "--import", str(source)]) == 0
    assert "logged in" in capsys.readouterr().out
    assert main(["status", str(tmp_path / "token.json")]) == 0


# --- 14. a server's words reach the terminal escaped ----------------------------------------------


@pytest.fixture
def hostile_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HostileTokenEndpoint:
    """A profile "hostile" whose token endpoint refuses every refresh with ESCAPES in its
    error_description."""
    endpoint = HostileTokenEndpoint(
        400, {"error": "invalid_grant", "error_description": f"bad{ESCAPES}grant"}
    )
    config = tmp_path / "config.toml"
    config.write_text(
        "\n".join(
            [
                "[profiles.hostile]",
                f'token_url = "{endpoint.url}"',
                'client_id = "client"',
                'client_secret_env = "HOSTILE_SECRET"',
                'prefixes = "https://api.example.com/"',
                'token_file = "token.json"',
            ]
        )
        + "\n"
    )
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setenv("HOSTILE_SECRET", SECRET)
    TokenFile(tmp_path / "token.json").write(
        Token("at-old", refresh_token="rt-old", expires_at=1.0, scope=f"read{ESCAPES}")
    )
    return endpoint


def test_a_servers_terminal_escapes_reach_refresh_and_status_escaped(
    hostile_profile: HostileTokenEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    with hostile_profile:
        assert main(["refresh", "--profile", "hostile"]) == 2
    assert hostile_profile.calls == 1
    said = capsys.readouterr()
    assert "owned" in said.err
    assert said.err.replace("\n", "").isprintable(), repr(said.err)
    assert main(["status", "--profile", "hostile"]) == 1  # its refresh was refused
    shown = capsys.readouterr().out
    assert "owned" in shown
    assert "\\x1b" in shown
    assert shown.replace("\n", "").isprintable(), repr(shown)
