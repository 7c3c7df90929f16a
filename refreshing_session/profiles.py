"""Profiles: named client configurations in a TOML file, so that scripts and the command line
share one description of each grant.

The file lives in the user's config folder (``$XDG_CONFIG_HOME`` or ``~/.config`` on Linux,
``~/Library/Application Support`` on macOS, ``%APPDATA%`` on Windows), under
``refreshing-session/config.toml``, or wherever ``$REFRESHING_SESSION_CONFIG`` says::

    [profiles.prod]
    token_url = "https://auth.example.com/oauth/token"
    client_id = "my-cli"
    prefixes = ["https://api.example.com/"]
    device_authorization_url = "https://auth.example.com/oauth/device"
    revocation_url = "https://auth.example.com/oauth/revoke"
    client_secret_env = "PROD_CLIENT_SECRET"   # or client_secret = "..." in the file

Instead of ``token_url`` (and the other endpoints), ``issuer = "https://auth.example.com"``
reads them from the issuer's discovery document when the refresher is built. Providers that
want more say so with ``extra_params = { audience = "..." }``, ``auth_method =
"private_key_jwt"`` with ``private_key_file`` (and ``key_id``, ``algorithm``,
``key_certificate_file``), or
``auth_method = "tls_client_auth"`` with ``client_cert`` (a PEM path, or [certificate, key]).
The secret may also sit in a file of its own: ``client_secret_file = "path"``.
``dpop = true`` binds the tokens to a DPoP key (RFC 9449), kept with the token in its store, or
read from a PEM file the caller provisions: ``dpop_key = "path"``.

The profile file, and every file it names, must pass the rule of :mod:`.trusted_files` (yours
or root's, no one else may change it, no other user's link on its path; and no one else may
read a key or a secret): whoever could change them could send your secrets where they like.

A fleet on several machines keeps its token in Redis instead of a token file (this needs
``pip install ".[redis]"`` from a checkout)::

    redis_url_env = "PROD_REDIS_URL"          # or redis_url = "redis://host:6379/0"
    redis_key = "refreshing-session:prod"     # the default: refreshing-session:PROFILE
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import shlex
import stat
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from .arguments import check_redis_url
from .client_auth import AUTH_METHODS
from .dpop import KEY_FILE as DPOP_KEY_FILE
from .errors import ProfileError
from .oauth_client import OAuthClient
from .refreshers import ClientCredentialsRefresher, OAuth2Refresher
from .store import TokenFile, TokenStore
from .trusted_files import UntrustedFile, read_trusted, trusted_path
from .urls import Prefixes, check_endpoint_url

logger = logging.getLogger(__name__)

CONFIG_ENV = "REFRESHING_SESSION_CONFIG"
GRANTS = ("refresh_token", "client_credentials")
_APP = "refreshing-session"
# Profile names become file names: nothing that could climb out of the folder.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Keys whose value is (or may hold) a secret: an error describes its type, never its value.
_SECRET_KEYS = ("client_secret", "redis_url")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Profile:
    """One client configuration: where its token endpoint is, who it is, which API URLs get
    its token, and where its processes share it: a token file, or (``token_file`` None) a
    Redis key. Its repr shows no secret."""

    name: str
    token_url: str | None
    client_id: str
    prefixes: tuple[str, ...]
    token_file: str | None
    config_path: str
    client_secret: str | None = field(default=None, repr=False)
    auth_method: str | None = None
    scope: str | None = None
    grant: str = "refresh_token"
    device_authorization_url: str | None = None
    revocation_url: str | None = None
    default_token_file: bool = False
    redis_url: str | None = field(default=None, repr=False)
    redis_key: str | None = None
    allow_insecure_http: bool = False
    issuer: str | None = None
    authorization_url: str | None = None
    extra_params: dict[str, str] = field(default_factory=dict)
    private_key_file: str | None = None
    key_certificate_file: str | None = None
    key_id: str | None = None
    algorithm: str | None = None
    client_cert: str | tuple[str, str] | None = None
    dpop: bool = False
    dpop_key: str | None = None

    def refresher(self) -> OAuth2Refresher | ClientCredentialsRefresher:
        """Return the refresher of this profile's grant, with its client credentials; with an
        ``issuer``, its endpoints are discovered first. Raises ProfileError when the private
        key file cannot be read, and the discovery's TokenError when it fails."""
        kind = ClientCredentialsRefresher if self.grant == "client_credentials" else OAuth2Refresher
        if self.token_url is None:
            assert self.issuer is not None  # the reader asks for one or the other
            return kind.from_issuer(
                self.issuer, self.client_id, self.client_secret, **self._client_options()
            )
        return kind(self.token_url, self.client_id, self.client_secret, **self._client_options())

    def endpoint(
        self, refresher: OAuth2Refresher | ClientCredentialsRefresher, name: str
    ) -> str | None:
        """The URL of endpoint ``name`` (``authorization``, ``device_authorization`` or
        ``revocation``): the profile's own, or the one ``refresher``'s discovery found."""
        given: str | None = getattr(self, f"{name}_url")
        return given or refresher.client.endpoint(f"{name}_endpoint")

    def _client_options(self) -> dict[str, Any]:
        return {
            "auth_method": self.auth_method,
            "scope": self.scope,
            "allow_insecure_http": self.allow_insecure_http,
            "extra_params": self.extra_params,
            "private_key": self._read("private_key_file", "the private key file", private=True),
            "key_certificate": self._read("key_certificate_file", "the key's certificate file"),
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "client_cert": self._checked_client_cert(),
            "dpop": self.dpop,
            "dpop_key": self._checked_dpop_key(),
        }

    def _read(self, key: str, what: str, *, private: bool = False) -> bytes | None:
        """The bytes of the file the profile's ``key`` names, if it names one, once the file
        passes the rule of trusted files (``private``: one that holds a secret)."""
        path: str | None = getattr(self, key)
        if path is None:
            return None
        with _restated(what, path, self._error(key)):
            return read_trusted(path, what, private=private)

    def _checked_client_cert(self) -> str | tuple[str, str] | None:
        """The client certificate, once its files pass the rule of trusted files (requests
        reads them at each exchange): a file that holds the key is private."""
        cert = self.client_cert
        if cert is None:
            return None
        files = (
            [(cert, "the client certificate file", True)]
            if isinstance(cert, str)
            else [
                (cert[0], "the client certificate file", False),
                (cert[1], "the client certificate's key file", True),
            ]
        )
        for path, what, private in files:
            with _restated(what, path, self._error("client_cert")):
                trusted_path(path, what, private=private)
        return cert

    def _checked_dpop_key(self) -> str | None:
        """The DPoP key file's path, once the file passes the rule of trusted files for a
        private key (the client reads the key from it)."""
        if self.dpop_key is not None:
            with _restated(DPOP_KEY_FILE, self.dpop_key, self._error("dpop_key")):
                trusted_path(self.dpop_key, DPOP_KEY_FILE, private=True)
        return self.dpop_key

    def _error(self, key: str) -> Callable[[str], ProfileError]:
        return partial(ProfileError, path=self.config_path, profile=self.name, key=key)

    def token_store(self) -> TokenStore:
        """Return the profile's token store: its token file (creating the default folder,
        0700, if needed), or its Redis key. Raises ProfileError when it cannot be had: a
        folder that cannot be made, the redis package missing."""
        key = "token_file" if self.token_file is not None else "redis_url"
        try:
            if self.token_file is None:
                from .redis_store import RedisTokenStore  # the optional extra, only when used

                assert self.redis_url is not None  # load_profile sets both with no token_file
                assert self.redis_key is not None
                return RedisTokenStore(self.redis_url, self.redis_key)
            if self.default_token_file:
                folder = os.path.dirname(self.token_file)
                os.makedirs(folder, mode=0o700, exist_ok=True)
                os.chmod(folder, 0o700)  # it holds secrets, whatever the umask made of it
            return TokenFile(self.token_file)
        except (ImportError, OSError, ValueError) as error:
            raise ProfileError(
                f"cannot be used ({error})", path=self.config_path, profile=self.name, key=key
            ) from None

    @property
    def login_command(self) -> str:
        """The shell command that logs in to this profile."""
        command = f"refreshing-session login --profile {self.name}"
        if Path(self.config_path) != config_path().absolute():
            command = f"{CONFIG_ENV}={shlex.quote(self.config_path)} {command}"
        return command


def config_path() -> Path:
    """Return the profile file's path: ``$REFRESHING_SESSION_CONFIG``, or ``config.toml`` in
    the platform's user config folder."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser().absolute()
    return _user_folder(config=True) / "config.toml"


def default_token_file(name: str) -> Path:
    """Return where profile ``name`` keeps its token when the profile names no file: in the
    platform's user state folder (``$XDG_STATE_HOME`` or ``~/.local/state`` on Linux)."""
    return _user_folder(config=False) / "tokens" / f"{name}.json"


def load_profile(
    name: str, path: str | os.PathLike[str] | None = None, *, need_secret: bool = True
) -> Profile:
    """Read profile ``name`` from the profile file (``path``, or :func:`config_path`) and
    return it, with the client secret taken from the environment or a file when it says so.
    Raises ProfileError, naming the file (by its absolute path), the profile and the key, when
    anything is wrong, and when the profile file or a file it names is not to be trusted (see
    :mod:`.trusted_files`). With ``need_secret`` False (to describe or remove the stored
    token), a secret variable that is not set leaves the secret None, no secret file is read,
    and the client's configuration is not checked."""
    file = (Path(path).expanduser() if path is not None else config_path()).absolute()
    profiles = _profiles(_read_toml(file), str(file))
    table = profiles.get(name)
    if table is None:
        known = ", ".join(sorted(profiles)) or "none"
        raise ProfileError(
            f"there is no profile {name!r}{_did_you_mean(name, profiles)} (the profiles in this "
            f"file are: {known})",
            path=str(file),
        )
    profile = _Reader(table, str(file), name, need_secret).profile()
    if need_secret:
        _check_client(profile)
    if "client_secret" in table or "redis_url" in table:
        _warn_if_shared(file)
    return profile


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(read_trusted(file, "the profile file").decode())
    except UntrustedFile as error:
        raise ProfileError(str(error), path=str(file)) from None
    except UnicodeDecodeError:
        # Not the codec's message: it quotes a byte of the file, which may hold a secret.
        raise ProfileError("is not UTF-8 text, as TOML must be", path=str(file)) from None
    except FileNotFoundError:
        raise ProfileError(
            f"there is no profile file here; create it with a [profiles.NAME] "
            f"table, or set {CONFIG_ENV} to its path",
            path=str(file),
        ) from None
    except OSError as error:
        raise ProfileError(
            f"cannot read the profile file ({error.strerror})", path=str(file)
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"is not valid TOML ({error})", path=str(file)) from None


def _profiles(document: Mapping[str, Any], path: str) -> dict[str, dict[str, Any]]:
    for key, value in document.items():
        if key != "profiles":
            hint = (
                f"; a profile goes under [profiles.{key}]"
                if isinstance(value, dict)
                else _did_you_mean(key, ["profiles"])
            )
            raise ProfileError(f"unknown top-level key{hint}", path=path, key=key)
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ProfileError(
            "must be a table of profiles, as in [profiles.NAME]", path=path, key="profiles"
        )
    for name, table in profiles.items():
        if not _NAME.fullmatch(name):
            raise ProfileError(
                "a profile name must be letters, digits, '_', '.' or '-', "
                "starting with a letter or digit",
                path=path,
                profile=name,
            )
        if not isinstance(table, dict):
            raise ProfileError(
                f"must be a table ([profiles.{name}]), got {_kind(table)}", path=path, profile=name
            )
    return profiles


class _Reader:
    """Reads one profile's table, key by key, with errors that point at the key."""

    def __init__(
        self, table: Mapping[str, Any], path: str, name: str, need_secret: bool = True
    ) -> None:
        self.table = table
        self.path = path
        self.name = name
        self.need_secret = need_secret

    def profile(self) -> Profile:
        unknown = sorted(set(self.table) - set(_KEYS))
        if unknown:
            raise self.error(
                unknown[0],
                f"unknown key{_did_you_mean(unknown[0], _KEYS)}; the keys are: {', '.join(_KEYS)}",
            )
        token_file = self.optional("token_file", _text)
        redis_url = self._from_file_or_env("redis_url")
        if token_file is not None and redis_url is not None:
            raise self.error(
                "redis_url",
                "give token_file or a Redis server, not both: the token lives in one place",
            )
        if redis_url is not None:
            try:
                check_redis_url(redis_url)
            except ValueError as error:
                raise self.error("redis_url", str(error)) from None
        if redis_url is None and "redis_key" in self.table:
            raise self.error("redis_key", "needs redis_url or redis_url_env")
        issuer = self.optional("issuer", _url)
        if issuer is not None and "token_url" in self.table:
            raise self.error(
                "issuer", "give issuer (whose document names the endpoints) or token_url, not both"
            )
        key_file = self.optional("private_key_file", _text)
        certificate_file = self.optional("key_certificate_file", _text)
        dpop = self.optional("dpop", _flag) or False
        dpop_key = self.optional("dpop_key", _text)
        if dpop_key is not None and not dpop:
            raise self.error("dpop_key", "needs dpop = true (the key signs DPoP proofs)")
        profile = Profile(
            name=self.name,
            token_url=None if issuer is not None else self.required("token_url", _url),
            issuer=issuer,
            authorization_url=self.optional("authorization_url", _url),
            extra_params=self.optional("extra_params", _string_table) or {},
            private_key_file=None if key_file is None else self._relative(key_file),
            key_certificate_file=None
            if certificate_file is None
            else self._relative(certificate_file),
            key_id=self.optional("key_id", _text),
            algorithm=self.optional("algorithm", _text),
            client_cert=self._client_cert(),
            client_id=self.required("client_id", _text),
            prefixes=tuple(self.required("prefixes", _words)),
            token_file=None if redis_url is not None else self._token_file(token_file),
            config_path=self.path,
            client_secret=self._client_secret(),
            auth_method=self.optional("auth_method", _AUTH_METHOD),
            scope=_joined(self.optional("scope", _words)),
            grant=self.optional("grant", _GRANT) or "refresh_token",
            device_authorization_url=self.optional("device_authorization_url", _url),
            revocation_url=self.optional("revocation_url", _url),
            default_token_file=token_file is None and redis_url is None,
            redis_url=redis_url,
            redis_key=None
            if redis_url is None
            else self.optional("redis_key", _text) or f"{_APP}:{self.name}",
            allow_insecure_http=self.optional("allow_insecure_http", _flag) or False,
            dpop=dpop,
            dpop_key=None if dpop_key is None else self._relative(dpop_key),
        )
        self._check_plain_http(profile)
        return profile

    def _check_plain_http(self, profile: Profile) -> None:
        """Plain http only on the loopback interface, unless allow_insecure_http is set."""
        allowed = profile.allow_insecure_http
        checks: list[tuple[str, Callable[[], object]]] = [
            (key, partial(check_endpoint_url, key, getattr(profile, key), allowed))
            for key in _URL_KEYS
            if getattr(profile, key) is not None
        ]
        checks.append(
            ("prefixes", partial(Prefixes, profile.prefixes, allow_insecure_http=allowed))
        )
        for key, check in checks:
            try:
                check()
            except ValueError as error:
                problem = str(error).replace(
                    "pass allow_insecure_http=True", "set allow_insecure_http = true"
                )
                raise self.error(key, problem) from None

    def required(self, key: str, parse: Callable[[object], _T]) -> _T:
        if key not in self.table:
            raise self.error(key, f"is missing; expected {_EXPECTED[parse]}")
        value = self.optional(key, parse)
        assert value is not None  # TOML has no null
        return value

    def optional(self, key: str, parse: Callable[[object], _T]) -> _T | None:
        value = self.table.get(key)
        if value is None:
            return None
        try:
            return parse(value)
        except (TypeError, ValueError) as error:
            problem = f"got {_secret_kind(value)}" if key in _SECRET_KEYS else str(error)
            raise self.error(key, f"{problem}; expected {_EXPECTED[parse]}") from None

    def error(self, key: str, problem: str) -> ProfileError:
        return ProfileError(problem, path=self.path, profile=self.name, key=key)

    def _token_file(self, given: str | None) -> str:
        if given is None:
            return str(default_token_file(self.name))
        return self._relative(given)

    def _relative(self, given: str) -> str:
        path = Path(given).expanduser()
        # Relative to the profile file, not to wherever the script happens to run.
        return str(path if path.is_absolute() else Path(self.path).parent / path)

    def _client_cert(self) -> str | tuple[str, str] | None:
        parts = self.optional("client_cert", _words)
        if parts is None:
            return None
        if len(parts) > 2:
            raise self.error("client_cert", "give one PEM file, or [certificate, key]")
        paths = [self._relative(part) for part in parts]
        return paths[0] if len(paths) == 1 else (paths[0], paths[1])

    def _client_secret(self) -> str | None:
        """The client secret: in the profile file, in the environment, or in a file of its own
        (read only when the secret is needed)."""
        file = self.optional("client_secret_file", _text)
        if file is None:
            return self._from_file_or_env("client_secret")
        for other in ("client_secret", "client_secret_env"):
            if other in self.table:
                raise self.error(
                    "client_secret_file", f"give {other} or client_secret_file, not both"
                )
        return self._secret_in(self._relative(file)) if self.need_secret else None

    def _secret_in(self, path: str) -> str:
        """The secret a client_secret_file holds, without the line break that ends it."""
        what = "the client secret file"
        with _restated(what, path, partial(self.error, "client_secret_file")):
            raw = read_trusted(path, what, private=True)
        try:
            secret = raw.decode().rstrip("\r\n")
        except UnicodeDecodeError:
            # Not the codec's message: it quotes a byte of the secret.
            raise self.error("client_secret_file", f"{path} is not UTF-8 text") from None
        if not secret:
            raise self.error(
                "client_secret_file", f"{path} is empty; write the client secret in it"
            )
        return secret

    def _from_file_or_env(self, key: str) -> str | None:
        """The value of ``key``, or of the environment variable that ``key_env`` names: for
        secrets, which need not sit in the file."""
        given = self.optional(key, _text)
        variable = self.optional(f"{key}_env", _text)
        if given is not None and variable is not None:
            raise self.error(f"{key}_env", f"give {key} or {key}_env, not both")
        if variable is None:
            return given
        value = os.environ.get(variable)
        if not value and key == "client_secret" and not self.need_secret:
            return None
        if not value:
            raise self.error(
                f"{key}_env",
                f"the environment variable {variable} is not set; "
                f"set it to the {key.replace('_', ' ')}",
            )
        return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"got {_kind(value)}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"got {_kind(value)}")
    return value


def _url(value: object) -> str:
    text = _text(value)
    # Plain http is checked with the whole profile, whose allow_insecure_http may permit it.
    check_endpoint_url("the URL", text, allow_insecure_http=True)
    return text


def _string_table(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(item, str) and item for item in value.values()
    ):
        raise TypeError(f"got {_kind(value)}")
    return dict(value)


def _words(value: object) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(item, str) and item for item in items)
    ):
        raise TypeError(f"got {_kind(value)}")
    return items


def _choice(options: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if value not in options:
            raise ValueError(f"got {_kind(value)}")
        return str(value)

    _EXPECTED[parse] = "one of " + ", ".join(repr(option) for option in options)
    return parse


_EXPECTED: dict[Callable[[object], Any], str] = {
    _text: "a non-empty string",
    _url: "an absolute https URL (http only on the loopback interface)",
    _words: "a non-empty string or a list of them",
    _flag: "true or false",
    _string_table: 'a table of strings, as in { audience = "https://api.example.com" }',
}
_AUTH_METHOD = _choice(AUTH_METHODS)
_GRANT = _choice(GRANTS)
_KEYS = (
    "token_url",
    "issuer",
    "client_id",
    "prefixes",
    "token_file",
    "client_secret",
    "client_secret_env",
    "client_secret_file",
    "auth_method",
    "scope",
    "grant",
    "device_authorization_url",
    "revocation_url",
    "authorization_url",
    "extra_params",
    "private_key_file",
    "key_certificate_file",
    "key_id",
    "algorithm",
    "client_cert",
    "redis_url",
    "redis_url_env",
    "redis_key",
    "allow_insecure_http",
    "dpop",
    "dpop_key",
)
_URL_KEYS = (
    "token_url",
    "issuer",
    "device_authorization_url",
    "revocation_url",
    "authorization_url",
)


def _joined(words: list[str] | None) -> str | None:
    return None if words is None else " ".join(words)


def _check_client(profile: Profile) -> None:
    """Let the client check what only the combination of keys can show (a secret with
    auth_method "none", say), without discovering an issuer's endpoints yet."""
    url = profile.token_url or profile.issuer
    assert url is not None
    options = profile._client_options()  # its files' own errors name their keys
    try:
        OAuthClient(url, profile.client_id, profile.client_secret, **options)
    except (TypeError, ValueError, ImportError) as error:
        raise ProfileError(str(error), path=profile.config_path, profile=profile.name) from None


def _did_you_mean(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _kind(value: object) -> str:
    """A description of a bad value; never the value of a string, which may be a secret."""
    if isinstance(value, str):
        return "an empty string" if not value else f"a string of length {len(value)}"
    return f"{value!r}" if isinstance(value, (bool, int, float)) else f"a {type(value).__name__}"


def _secret_kind(value: object) -> str:
    """A description of a bad secret: its type, never its value (not even a number's)."""
    if isinstance(value, bool):
        return "true or false"
    return "a number" if isinstance(value, (int, float)) else _kind(value)


@contextmanager
def _restated(what: str, path: str, error: Callable[[str], ProfileError]) -> Iterator[None]:
    """Raise a file's refusal by the rule of trusted files, or the failure to read it, as the
    ProfileError that ``error`` makes of a problem."""
    try:
        yield
    except UntrustedFile as refused:
        raise error(str(refused)) from None
    except OSError as failed:
        raise error(f"cannot read {what} {os.path.abspath(path)} ({failed.strerror})") from None


def _warn_if_shared(file: Path) -> None:
    mode = stat.S_IMODE(file.stat().st_mode)
    if mode & 0o077:
        logger.warning(
            "the profile file %s holds a client secret or a Redis URL and is "
            "readable by other users (mode %04o); chmod 600 it, or use "
            "client_secret_env and redis_url_env",
            file,
            mode,
        )


def _user_folder(*, config: bool) -> Path:
    """This application's folder for configuration (``config``) or for state."""
    if sys.platform == "win32":
        variable = "APPDATA" if config else "LOCALAPPDATA"
        base = Path(
            os.environ.get(variable) or Path.home() / "AppData" / ("Roaming" if config else "Local")
        )
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        variable, fallback = (
            ("XDG_CONFIG_HOME", ".config") if config else ("XDG_STATE_HOME", ".local/state")
        )
        value = os.environ.get(variable, "")
        # The XDG spec says relative paths there are invalid and must be ignored.
        base = Path(value) if os.path.isabs(value) else Path.home() / fallback
    return base / _APP
