"""Attacks through the files a profile trusts: another local user plants a profile file, a link
on its path, or a key, certificate or secret file the profile names; a file others can change
or read; a secret whose value an error would echo.

As in test_attack_files, we run as root in CI, so "another user" is uid 65534 (nobody), whose
files and links are made with os.chown/os.lchown, and "the current user" is root. The tests of
modes need no root: a file of one's own that others can write (or read, for a key) is refused
whoever runs them.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from refreshing_session import RefreshingSession, Token, TokenFile, TokenFileError
from refreshing_session.cli import main
from refreshing_session.errors import ProfileError
from refreshing_session.profiles import CONFIG_ENV, default_token_file, load_profile
from refreshing_session.testing import LocalAuthServer

from .conftest import expire, write_grant
from .support.hostile import HostileTokenEndpoint
from .test_attack_files import ATTACKER, VICTIM, plant_file, plant_link, shared

__all__ = ["shared"]  # the fixture: a sticky folder every test uid can reach (needs root)

SECRET = "the-victims-client-secret"
KEY = ec.generate_private_key(ec.SECP256R1())
KEY_PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)


def certificate_pem() -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(KEY, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


CERT_PEM = certificate_pem()


@pytest.fixture
def victim_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The victim's own state folder (where profiles keep their tokens) and secret."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("VICTIM_SECRET", SECRET)
    return tmp_path / "state"


def profile_text(token_url: str, prefixes: str, **keys: str) -> str:
    lines = [
        "[profiles.work]",
        f'token_url = "{token_url}"',
        'client_id = "victim-app"',
        f'prefixes = "{prefixes}"',
        *(f"{key} = {value}" for key, value in keys.items()),
    ]
    return "\n".join(lines) + "\n"


# --- the profile file ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_profile_file_planted_by_another_user_sends_nothing_to_its_token_url(
    shared: Path, victim_state: Path, server: LocalAuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's scenario: $REFRESHING_SESSION_CONFIG points into a shared sticky folder
    where another user wrote config.toml (0644, theirs) naming their own token endpoint; the
    victim's secret comes from the environment and the victim's refresh token from the
    profile's default token file."""
    token_file = default_token_file("work")
    token_file.parent.mkdir(mode=0o700, parents=True)
    expire(write_grant(token_file, server))
    with HostileTokenEndpoint(
        200, {"access_token": "at-of-the-attacker", "token_type": "Bearer", "expires_in": 600}
    ) as attacker:
        planted = plant_file(
            shared / "config.toml",
            profile_text(
                attacker.url, server.api_url, client_secret_env='"VICTIM_SECRET"'
            ).encode(),
            owner=ATTACKER,
            mode=0o644,
        )
        monkeypatch.setenv(CONFIG_ENV, str(planted))
        refused: ProfileError | None = None
        try:
            with RefreshingSession.from_profile("work") as session:
                session.get(server.api_url + "items", timeout=10)
        except ProfileError as error:
            refused = error
        assert attacker.calls == 0, (
            f"the attacker's token endpoint got {attacker.calls} requests carrying the "
            "victim's client secret and refresh token"
        )
    assert refused is not None, "the planted profile was obeyed"
    assert f"the profile file {planted} belongs to another user (uid 65534)" in str(refused)
    assert server.stats().token_requests == 0


def test_a_profile_file_others_can_change_is_refused(tmp_path: Path) -> None:
    config = plant_file(
        tmp_path / "config.toml",
        profile_text("https://auth.example.com/t", "https://api.example.com/").encode(),
        mode=0o666,
    )
    with pytest.raises(ProfileError) as refused:
        load_profile("work", config)
    message = str(refused.value)
    assert "can be changed by its group and other users (mode 0666)" in message, message
    assert f"chmod go-w {config}" in message


@pytest.mark.parametrize("where", ["the file itself", "a folder on its path"])
def test_a_link_planted_on_the_profile_files_path_is_refused(
    shared: Path, tmp_path: Path, where: str
) -> None:
    """The attacker's link leads to a profile file of the victim's own (say, another team's
    setup in the victim's home): followed, it would choose which profile the victim runs."""
    home = tmp_path / "home"
    home.mkdir()
    plant_file(home / "config.toml", profile_text("https://a.test/t", "https://a.test/").encode())
    if where == "the file itself":
        config = plant_link(shared / "config.toml", home / "config.toml")
        expected = f"the profile file {config} is a symbolic link that belongs to another user"
    else:
        link = plant_link(shared / "team", home)
        config = link / "config.toml"
        expected = f"is reached through {link}, a symbolic link that belongs to another user"
    with pytest.raises(ProfileError) as refused:
        load_profile("work", config)
    assert expected in str(refused.value), str(refused.value)
    assert "uid 65534" in str(refused.value)


# --- the files a profile names -------------------------------------------------------------------

# key: (the profile's lines naming the file at FILE, what the file holds, a private file?)
NAMED_FILES = {
    "client_secret_file": ('client_secret_file = "FILE"', SECRET.encode(), True),
    "private_key_file": (
        'auth_method = "private_key_jwt"\nprivate_key_file = "FILE"',
        KEY_PEM,
        True,
    ),
    "key_certificate_file": (
        'auth_method = "private_key_jwt"\nprivate_key_file = "own-key.pem"\n'
        'key_certificate_file = "FILE"',
        CERT_PEM,
        False,
    ),
    "client_cert": (
        'auth_method = "tls_client_auth"\nclient_cert = "FILE"',
        CERT_PEM + KEY_PEM,
        True,
    ),
    "client_cert's key": (
        'auth_method = "tls_client_auth"\nclient_cert = ["own-cert.pem", "FILE"]',
        KEY_PEM,
        True,
    ),
    "client_cert's certificate": (
        'auth_method = "tls_client_auth"\nclient_cert = ["FILE", "own-key.pem"]',
        CERT_PEM,
        False,
    ),
}


def profile_naming(folder: Path, name: str, target: Path) -> Path:
    """A profile file of one's own in ``folder`` whose key ``name`` names ``target``, beside
    the other files it needs (one's own, private)."""
    plant_file(folder / "own-key.pem", KEY_PEM)
    plant_file(folder / "own-cert.pem", CERT_PEM)
    lines = NAMED_FILES[name][0].replace("FILE", str(target))
    text = profile_text("https://auth.example.com/t", "https://api.example.com/")
    return plant_file(folder / "config.toml", (text + lines + "\n").encode())


def refusal(config: Path) -> ProfileError:
    with pytest.raises(ProfileError) as refused:
        load_profile("work", config)
    return refused.value


@pytest.mark.parametrize("name", NAMED_FILES)
def test_a_named_file_of_another_user_is_refused(shared: Path, tmp_path: Path, name: str) -> None:
    planted = plant_file(shared / "planted.pem", NAMED_FILES[name][1], owner=ATTACKER)
    error = refusal(profile_naming(tmp_path, name, planted))
    assert error.key == name.split("'")[0]
    assert f"{planted} belongs to another user (uid 65534)" in str(error), str(error)


@pytest.mark.parametrize("name", NAMED_FILES)
def test_a_named_file_others_can_change_is_refused(tmp_path: Path, name: str) -> None:
    target = plant_file(tmp_path / "writable.pem", NAMED_FILES[name][1], mode=0o646)
    error = refusal(profile_naming(tmp_path, name, target))
    assert error.key == name.split("'")[0]
    assert "can be changed by other users (mode 0646)" in str(error), str(error)
    assert f"chmod go-w {target}" in str(error)


@pytest.mark.parametrize("name", NAMED_FILES)
def test_a_secret_file_others_can_read_is_refused_and_a_certificate_is_not(
    tmp_path: Path, name: str
) -> None:
    target = plant_file(tmp_path / "readable.pem", NAMED_FILES[name][1], mode=0o644)
    config = profile_naming(tmp_path, name, target)
    if not NAMED_FILES[name][2]:
        load_profile("work", config).refresher()  # a certificate is public
        return
    error = refusal(config)
    assert error.key == name.split("'")[0]
    assert f"{target} holds a secret that its group and other users can read" in str(error)
    assert f"chmod 600 {target}" in str(error)


def test_a_named_file_reached_through_another_users_link_is_refused(
    shared: Path, tmp_path: Path
) -> None:
    plant_file(tmp_path / "mine.pem", KEY_PEM)
    link = plant_link(shared / "key.pem", tmp_path / "mine.pem")
    error = refusal(profile_naming(tmp_path, "private_key_file", link))
    assert error.key == "private_key_file"
    assert f"{link} is a symbolic link that belongs to another user (uid 65534)" in str(error)


# --- a victim who is not root --------------------------------------------------------------------


@contextmanager
def acting_as(uid: int) -> Iterator[None]:
    """Run the block as user ``uid`` (its effective ids: root gets them back after)."""
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def load_as_victim(config: Path) -> str:
    """Load profile "work" of ``config`` as the victim: "loaded", or the ProfileError's text."""
    with acting_as(VICTIM):
        try:
            load_profile("work", config).refresher()
        except ProfileError as error:
            return f"ProfileError: {error}"
    return "loaded"


def test_a_victim_trusts_roots_files_but_not_another_users(shared: Path) -> None:
    """Root's 0644 profile file (a machine-wide setup) is trusted, and a key that root shares
    with the victim's group, not with everyone; another user's profile file is not."""
    key = plant_file(shared / "root-key.pem", KEY_PEM, mode=0o640)
    os.chown(key, 0, VICTIM)
    by_root = plant_file(
        shared / "by-root.toml",
        profile_text(
            "https://auth.example.com/t",
            "https://api.example.com/",
            auth_method='"private_key_jwt"',
            private_key_file=f'"{key}"',
        ).encode(),
        mode=0o644,
    )
    assert load_as_victim(by_root) == "loaded"
    key.chmod(0o644)
    said = load_as_victim(by_root)
    assert f"{key} holds a secret that other users can read (mode 0644)" in said, said
    by_attacker = plant_file(
        shared / "by-attacker.toml",
        profile_text("https://auth.example.com/t", "https://api.example.com/").encode(),
        owner=ATTACKER,
        mode=0o644,
    )
    said = load_as_victim(by_attacker)
    assert said.startswith("ProfileError"), said
    assert "belongs to another user (uid 65534)" in said


# --- the token file: the same rule for links on its path ----------------------------------------


def test_a_token_file_reached_through_another_users_folder_link_is_refused(
    shared: Path, tmp_path: Path
) -> None:
    """The attacker links a folder of the shared path to a folder of the victim's: the victim's
    token would be written where the attacker chose."""
    home = tmp_path / "home"
    home.mkdir()
    link = plant_link(shared / "team", home)
    with pytest.raises(TokenFileError, match=rf"reached through {link}, a symbolic link.*65534"):
        TokenFile(link / "token.json").write(Token("at-of-the-victim"))
    assert list(home.iterdir()) == [], "the token was written through the attacker's link"


# --- a secret's value never appears in an error --------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "digits"),
    [
        ("client_secret", "80235467119", "80235467119"),
        ("client_secret", "8023546.7119", "8023546.7119"),
        ("redis_url", "80235467119", "80235467119"),
    ],
)
def test_a_numeric_secret_is_described_never_echoed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key: str,
    value: str,
    digits: str,
) -> None:
    config = plant_file(
        tmp_path / "config.toml",
        profile_text(
            "https://auth.example.com/t", "https://api.example.com/", **{key: value}
        ).encode(),
    )
    error = refusal(config)
    assert error.key == key
    assert digits not in str(error), "the profile error echoes the secret"
    assert "a number" in str(error), str(error)
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert main(["refresh", "--profile", "work"]) == 3  # bad input
    printed = capsys.readouterr()
    assert digits not in printed.err + printed.out, "the command line echoes the secret"
    assert f"key {key!r}" in printed.err
