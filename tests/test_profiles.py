"""The profile file: loading, validation errors that point at the key, and from_profile."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from refreshing_session import ClientCredentialsRefresher, LoginRequired, RefreshingSession
from refreshing_session.dpop import DPoPKey, key_of
from refreshing_session.errors import ProfileError
from refreshing_session.profiles import CONFIG_ENV, config_path, default_token_file, load_profile
from refreshing_session.testing import LocalAuthServer

from .conftest import write_grant
from .test_discovery import MetadataServer, oidc_document
from .test_dpop import key_file as dpop_key_file

GOOD = """
[profiles.prod]
token_url = "https://auth.example.com/oauth/token"
client_id = "my-cli"
prefixes = ["https://api.example.com/", "https://files.example.com/v2/"]
scope = ["read", "write"]
client_secret_env = "PROD_SECRET"
revocation_url = "https://auth.example.com/oauth/revoke"
token_file = "tokens/prod.json"

[profiles.job]
token_url = "https://auth.example.com/oauth/token"
client_id = "job"
client_secret = "s3cret"
grant = "client_credentials"
prefixes = "https://api.example.com/"
"""


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the profile file and the user state folder into ``tmp_path``; return the file."""
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "config.toml"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "config.toml"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_a_profile_loads_with_its_secret_from_the_environment(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(isolated, GOOD)
    monkeypatch.setenv("PROD_SECRET", "from-the-env")
    profile = load_profile("prod")
    assert profile.client_secret == "from-the-env"
    assert "from-the-env" not in repr(profile)
    assert profile.prefixes == ("https://api.example.com/", "https://files.example.com/v2/")
    assert profile.scope == "read write"
    assert profile.token_file == str(isolated.parent / "tokens" / "prod.json")
    refresher = profile.refresher()
    assert (refresher.client_id, refresher.auth_method) == ("my-cli", "client_secret_basic")
    job = load_profile("job")
    assert (job.grant, job.prefixes) == ("client_credentials", ("https://api.example.com/",))
    assert job.token_file == str(
        isolated.parent / "state" / "refreshing-session" / "tokens" / "job.json"
    )


def test_the_config_path_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_path() == tmp_path / "refreshing-session" / "config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    assert config_path() == Path.home() / ".config" / "refreshing-session" / "config.toml"
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "elsewhere.toml"))
    assert config_path() == tmp_path / "elsewhere.toml"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        (
            'token_url = 5\nclient_id = "c"\nprefixes = "https://a.test/"',
            "token_url",
            "got 5; expected an absolute https URL",
        ),
        (
            'token_url = "http://auth.example.com/t"\nclient_id = "c"\nprefixes = "https://a.test/"',
            "token_url",
            "plain http",
        ),
        ('client_id = "c"\nprefixes = "https://a.test/"', "token_url", "is missing"),
        (
            'token_url = "https://a.test/t"\nclient_id = "c"\nprefixes = []',
            "prefixes",
            "expected a non-empty string or a list of them",
        ),
        (
            'token_url = "https://a.test/t"\nclient_id = "c"\nprefixes = "https://a.test/"\n'
            'tokn_file = "x"',
            "tokn_file",
            "did you mean 'token_file'?",
        ),
        (
            'token_url = "https://a.test/t"\nclient_id = "c"\nprefixes = "https://a.test/"\n'
            'grant = "password"',
            "grant",
            "one of 'refresh_token', 'client_credentials'",
        ),
        (
            'token_url = "https://a.test/t"\nclient_id = "c"\nprefixes = "https://a.test/"\n'
            'client_secret_env = "SURELY_NOT_SET_ANYWHERE"',
            "client_secret_env",
            "SURELY_NOT_SET_ANYWHERE is not set",
        ),
        (
            'token_url = "https://a.test/t"\nclient_id = "c"\nprefixes = "https://a.test/"\n'
            'client_secret = "hush-hush"\nclient_secret_env = "X"',
            "client_secret_env",
            "not both",
        ),
        (
            'token_url = "https://a.test/t"\nclient_id = "c"\nprefixes = "https://a.test/"\n'
            'token_file = "t.json"\nredis_url = "redis://u:hush-hush@redis.test:6379/0"',
            "redis_url",
            "not both",
        ),
        (
            'token_url = "https://a.test/t"\nclient_id = "c"\nprefixes = "https://a.test/"\n'
            'redis_url = "http://u:hush-hush@redis.test:6379/0"',
            "redis_url",
            "must start with redis://",
        ),
        (
            'token_url = "https://a.test/t"\nclient_id = "c"\nprefixes = "https://a.test/"\n'
            'redis_key = "k"',
            "redis_key",
            "needs redis_url",
        ),
        (
            'token_url = "https://a.test/t"\nclient_id = "c"\nprefixes = "https://a.test/"\n'
            'redis_url_env = "SURELY_NOT_SET_ANYWHERE"',
            "redis_url_env",
            "is not set",
        ),
    ],
)
def test_bad_keys_are_named_with_what_is_expected(
    isolated: Path, text: str, key: str, expected: str
) -> None:
    write(isolated, f"[profiles.dev]\n{text}\n")
    with pytest.raises(ProfileError) as raised:
        load_profile("dev")
    message = str(raised.value)
    assert message.startswith(f"{isolated}, profile 'dev', key {key!r}: ")
    assert expected in message
    assert (raised.value.profile, raised.value.key) == ("dev", key)
    assert "hush-hush" not in message


def test_a_secret_with_auth_method_none_is_refused(isolated: Path) -> None:
    write(
        isolated,
        '[profiles.dev]\ntoken_url = "https://a.test/t"\nclient_id = "c"\n'
        'prefixes = "https://a.test/"\nclient_secret = "x"\nauth_method = "none"\n',
    )
    with pytest.raises(ProfileError, match="auth_method 'none' never sends the client_secret"):
        load_profile("dev")


def test_a_missing_profile_lists_the_ones_there(isolated: Path) -> None:
    write(isolated, GOOD)
    with pytest.raises(ProfileError, match=r"no profile 'staging'.*are: job, prod"):
        load_profile("staging")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[prod]\nclient_id = 'c'\n", "a profile goes under [profiles.prod]"),
        ("profile = 1\n", "did you mean 'profiles'?"),
        ("[profiles]\nprod = 3\n", "must be a table ([profiles.prod]), got 3"),
        ("[profiles.'../up']\n", "a profile name must be"),
        ("[profiles.prod\n", "is not valid TOML"),
    ],
)
def test_a_malformed_file_says_what_is_wrong(isolated: Path, text: str, expected: str) -> None:
    write(isolated, text)
    with pytest.raises(ProfileError) as raised:
        load_profile("prod")
    assert str(raised.value).startswith(str(isolated))
    assert expected in str(raised.value)


def test_a_missing_file_names_the_environment_variable(isolated: Path) -> None:
    with pytest.raises(ProfileError, match=rf"no profile file here.*{CONFIG_ENV}"):
        load_profile("prod")


def test_a_shared_file_with_a_secret_is_warned_about(
    isolated: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(isolated, GOOD).chmod(0o644)
    load_profile("job")
    assert "readable by other users" in caplog.text
    assert "s3cret" not in caplog.text


def server_profile(path: Path, server: LocalAuthServer, name: str = "local", **keys: str) -> Path:
    lines = [
        f"[profiles.{name}]",
        f'token_url = "{server.token_url}"',
        'client_id = "client"',
        'client_secret_env = "LOCAL_SECRET"',
        f'prefixes = "{server.api_url}"',
        *(f'{key} = "{value}"' for key, value in keys.items()),
    ]
    return write(path, "\n".join(lines) + "\n")


def test_from_profile_builds_a_working_session_in_a_private_folder(
    isolated: Path, server: LocalAuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_SECRET", "secret")
    server_profile(isolated, server)
    token_file = default_token_file("local")
    with RefreshingSession.from_profile("local") as session:
        assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
        with pytest.raises(LoginRequired, match="refreshing-session login --profile local`"):
            session.get(server.api_url + "items")
        write_grant(token_file, server)
        assert session.get(server.api_url + "items").json()["client_id"] == "client"


def test_from_profile_options_override_the_profile(
    isolated: Path, server: LocalAuthServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOCAL_SECRET", "secret")
    elsewhere = tmp_path / "other profiles.toml"
    server_profile(elsewhere, server)
    mine = write_grant(tmp_path / "mine.json", server)
    with RefreshingSession.from_profile(
        "local", config=elsewhere, token_file=mine, prefixes=server.url + "/echo", leeway=5
    ) as session:
        assert session.keeper.leeway == 5
        assert session.get(server.url + "/echo").json()["authorization_present"]
        assert session.get(server.api_url + "items").status_code == 401  # not a prefix now
        command = session.keeper.login_command  # the path quoted for the shell
        assert command == f"{CONFIG_ENV}='{elsewhere}' refreshing-session login --profile local"


def test_an_unusable_token_folder_is_a_profile_error(
    isolated: Path, server: LocalAuthServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOCAL_SECRET", "secret")
    server_profile(isolated, server)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    with pytest.raises(ProfileError) as raised:
        RefreshingSession.from_profile("local")
    assert (raised.value.profile, raised.value.key) == ("local", "token_file")
    assert "cannot be used" in str(raised.value)


# --- discovery, extra parameters, keys and certificates ---------------------------------------


def test_an_issuer_profile_discovers_its_endpoints(isolated: Path) -> None:
    with LocalAuthServer() as server, MetadataServer(oidc_document(server)) as metadata:
        write(
            isolated,
            f'[profiles.idp]\nissuer = "{metadata.origin}"\nclient_id = "client"\n'
            f'client_secret = "secret"\nprefixes = "{server.api_url}"\n'
            'extra_params = { audience = "https://api.example.com" }\n',
        )
        profile = load_profile("idp")
        assert metadata.paths == [], "loading a profile reads no document"
        refresher = profile.refresher()
        assert refresher.token_url == server.token_url
        assert refresher.client.extra_params == {"audience": "https://api.example.com"}
        assert profile.endpoint(refresher, "revocation") == server.revocation_url
        assert profile.endpoint(refresher, "authorization") == metadata.origin + "/authorize"


def test_a_private_key_file_is_read_beside_the_profile_file(isolated: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (isolated.parent / "client-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (isolated.parent / "client-key.pem").chmod(0o600)  # a key others can read is refused
    write(
        isolated,
        '[profiles.svc]\ntoken_url = "https://auth.example.com/t"\n'
        'client_id = "svc"\nprefixes = "https://api.example.com/"\n'
        'auth_method = "private_key_jwt"\nprivate_key_file = "client-key.pem"\n'
        'key_id = "k1"\nalgorithm = "PS256"\n',
    )
    refresher = load_profile("svc").refresher()
    assert (refresher.auth_method, refresher.client.auth.algorithm) == ("private_key_jwt", "PS256")
    (isolated.parent / "client-key.pem").unlink()
    with pytest.raises(ProfileError, match=r"private_key_file.*cannot read the private key"):
        load_profile("svc")


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('issuer = "https://a.test"\ntoken_url = "https://a.test/t"', "issuer", "not both"),
        (
            'issuer = "https://a.test"\nextra_params = { audience = 7 }',
            "extra_params",
            "a table of strings",
        ),
        ('issuer = "https://a.test"\nauth_method = "tls_client_auth"', None, "needs a client_cert"),
        (
            'issuer = "https://a.test"\nclient_cert = ["a", "b", "c"]',
            "client_cert",
            "[certificate, key]",
        ),
    ],
)
def test_bad_client_keys_are_named(
    isolated: Path, text: str, key: str | None, expected: str
) -> None:
    write(isolated, f'[profiles.dev]\nclient_id = "c"\nprefixes = "https://a.test/"\n{text}\n')
    with pytest.raises(ProfileError, match=re.escape(expected)) as raised:
        load_profile("dev")
    assert raised.value.key == key


# --- the files a profile trusts (the attacks are in test_attack_profile_files) ------------------

PLAIN = '[profiles.dev]\ntoken_url = "https://a.test/t"\nclient_id = "c"\nprefixes = "https://a.test/"\n'


def test_a_relative_profile_path_is_named_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CONFIG_ENV, "config.toml")
    write(tmp_path / "config.toml", PLAIN + 'token_file = "t.json"\n')
    profile = load_profile("dev")
    assert profile.config_path == str(tmp_path / "config.toml")
    assert profile.token_file == str(tmp_path / "t.json")
    assert profile.login_command == "refreshing-session login --profile dev"
    with pytest.raises(ProfileError) as raised:
        load_profile("nope")
    assert str(raised.value).startswith(f"{tmp_path / 'config.toml'}: ")


def test_links_of_ones_own_on_the_path_are_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    write(real / "config.toml", PLAIN)
    (tmp_path / "linked-folder").symlink_to(real)
    (tmp_path / "linked-file.toml").symlink_to(tmp_path / "linked-folder" / "config.toml")
    assert load_profile("dev", tmp_path / "linked-file.toml").client_id == "c"


@pytest.mark.timeout(30)
def test_a_fifo_as_the_profile_file_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ProfileError, match=rf"the profile file {fifo} is not a regular file"):
        load_profile("dev", fifo)


def test_a_profile_file_that_is_not_utf8_says_so_without_quoting_it(isolated: Path) -> None:
    isolated.write_bytes(PLAIN.encode() + b'client_secret = "\xfe\xff-hush"\n')
    isolated.chmod(0o600)
    with pytest.raises(ProfileError, match="is not UTF-8 text") as raised:
        load_profile("dev")
    assert "0xfe" not in str(raised.value)
    assert "hush" not in str(raised.value)


def test_the_client_secret_may_sit_in_a_file_of_its_own(isolated: Path) -> None:
    (isolated.parent / "secret").write_text("from-a-file\n")
    (isolated.parent / "secret").chmod(0o400)
    write(isolated, PLAIN + 'client_secret_file = "secret"\n')
    profile = load_profile("dev")
    assert profile.client_secret == "from-a-file"
    assert "from-a-file" not in repr(profile)
    assert profile.refresher().auth_method == "client_secret_basic"


def test_a_secret_file_is_read_only_when_the_secret_is_needed(isolated: Path) -> None:
    write(isolated, PLAIN + 'client_secret_file = "missing"\n')
    assert load_profile("dev", need_secret=False).client_secret is None
    with pytest.raises(
        ProfileError, match=r"cannot read the client secret file .*missing"
    ) as raised:
        load_profile("dev")
    assert raised.value.key == "client_secret_file"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('client_secret_file = "secret"\nclient_secret_env = "X"', "not both"),
        ('client_secret_file = "empty"', "is empty; write the client secret in it"),
        ('client_secret_file = "binary"', "is not UTF-8 text"),
    ],
)
def test_a_bad_secret_file_says_what_is_wrong(isolated: Path, extra: str, expected: str) -> None:
    for name, content in (("secret", b"s"), ("empty", b"\n"), ("binary", b"\xfe\xff")):
        (isolated.parent / name).write_bytes(content)
        (isolated.parent / name).chmod(0o600)
    write(isolated, PLAIN + extra + "\n")
    with pytest.raises(ProfileError, match=re.escape(expected)) as raised:
        load_profile("dev")
    assert raised.value.key == "client_secret_file"
    assert "0xfe" not in str(raised.value)


# --- DPoP -----------------------------------------------------------------------------------------


def dpop_profile(path: Path, server: LocalAuthServer, *keys: str) -> Path:
    """A profile ``local`` on ``server`` with the TOML lines ``keys``."""
    return write(
        path,
        f'[profiles.local]\ntoken_url = "{server.token_url}"\nclient_id = "client"\n'
        f'client_secret = "secret"\nprefixes = "{server.api_url}"\n' + "\n".join(keys) + "\n",
    )


def test_a_dpop_profile_signs_with_its_key_file_beside_the_profile_file(
    isolated: Path, tmp_path: Path
) -> None:
    """A login made elsewhere with the key file's key, stored without it: the profile's
    session signs every request and refresh with that file's key."""
    key_path = dpop_key_file(isolated.parent)
    key = DPoPKey.from_file(key_path)
    with LocalAuthServer(dpop=True, dpop_nonce=True) as server:
        dpop_profile(isolated, server, "dpop = true", 'dpop_key = "dpop.pem"')
        profile = load_profile("local")
        assert (profile.dpop, profile.dpop_key) == (True, str(key_path))
        token_file = tmp_path / "token.json"
        write_grant(token_file, server, dpop_jkt=key.jkt)
        with RefreshingSession.from_profile("local", token_file=token_file) as session:
            assert session.get(server.api_url + "items").status_code == 200
            session.keeper.refresh_now()
            assert session.get(server.api_url + "items").status_code == 200
        assert server.stats().refreshes == 1
        assert {proof.jkt for proof in server.dpop_proofs()} == {key.jkt}


def test_a_dpop_profile_without_a_key_file_keeps_the_key_with_the_token(
    isolated: Path, tmp_path: Path
) -> None:
    with LocalAuthServer(dpop=True) as server:
        dpop_profile(isolated, server, "dpop = true", 'grant = "client_credentials"')
        refresher = load_profile("local").refresher()
        assert isinstance(refresher, ClientCredentialsRefresher)
        assert (refresher.client.dpop, refresher.client.dpop_key) == (True, None)
        token = refresher.new_token()
        assert (token.is_dpop, key_of(token) is not None) == (True, True)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (['dpop_key = "dpop.pem"'], "needs dpop = true"),
        (["dpop = true", 'dpop_key = "missing.pem"'], "cannot read the DPoP key file"),
        (['dpop = "yes"'], "expected true or false"),
    ],
)
def test_bad_dpop_keys_are_named(isolated: Path, keys: list[str], expected: str) -> None:
    dpop_key_file(isolated.parent)
    write(isolated, PLAIN + "\n".join(keys) + "\n")
    with pytest.raises(ProfileError, match=re.escape(expected)) as raised:
        load_profile("dev")
    assert raised.value.key == keys[-1].split()[0]


@pytest.mark.parametrize(("mode", "said"), [(0o640, "chmod 600"), (0o620, "chmod go-w")])
def test_a_dpop_key_file_others_can_read_or_change_is_refused(
    isolated: Path, mode: int, said: str
) -> None:
    dpop_key_file(isolated.parent, mode)
    write(isolated, PLAIN + 'dpop = true\ndpop_key = "dpop.pem"\n')
    with pytest.raises(ProfileError, match=said) as raised:
        load_profile("dev")
    assert (raised.value.key, "the DPoP key file" in str(raised.value)) == ("dpop_key", True)
