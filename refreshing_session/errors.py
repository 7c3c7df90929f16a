"""The errors a refreshing session raises, and the redaction that keeps secrets out of them.

Every error is a :class:`requests.exceptions.RequestException`, so code that already catches
that keeps working. Each message says what happened and what to do about it, and never
contains an access token, a refresh token or a client secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import quote, quote_plus

import requests

if TYPE_CHECKING:
    from .token import Token

REDACTED = "[redacted]"
_E = TypeVar("_E", bound=BaseException)

# An excerpt looks at this many times its length (whitespace runs shrink to one space).
_WINDOW = 4
_UTF8_MOST = 4  # bytes to a character
# Token-shaped values under well-known keys, in JSON or in a form body, whoever sent them.
_SECRET_FIELDS = re.compile(
    r"""(?P<key>["']?(?:access_token|refresh_token|id_token|device_code|client_secret|password|"""
    r"""assertion)["']?\s*[:=]\s*["']?)(?P<value>[^"'&\s,}]+)""",
    re.IGNORECASE,
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every known secret (also as a server may have escaped it) and every
    token-shaped field value replaced."""
    return _redacted(text, _forms(secrets))


def excerpt(body: bytes | str, secrets: Iterable[str | None] = (), limit: int = 200) -> str:
    """Return a short, single-line, redacted excerpt of a response body for an error message,
    its control characters escaped. Only the body's start is looked at: a huge body costs no
    more than a small one."""
    forms = _forms(secrets)
    window = _WINDOW * limit
    # Enough for `window` characters and one secret after them, whatever their UTF-8 size.
    head = body[: _UTF8_MOST * (window + max(map(len, forms), default=0))]
    text = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
    cut = len(text) > window
    if cut:
        text = text[: _before_secrets(text, forms, window)]
    text = printable(" ".join(_redacted(text, forms).split()))
    return text[: limit - 3] + "..." if cut or len(text) > limit else text


def printable(text: str) -> str:
    r"""Return ``text`` with every character a terminal would act on or hide (control
    characters, escapes, bidirectional overrides) written as an escape such as ``\x1b``."""
    if text.isprintable():
        return text
    return "".join(
        character if character.isprintable() else character.encode("unicode_escape").decode("ascii")
        for character in text
    )


def _forms(secrets: Iterable[str | None]) -> list[str]:
    """Every form of ``secrets`` to redact, longest first, so that a secret contained in another
    cannot leave part of it behind."""
    forms = {form for secret in secrets if secret for form in _escaped_forms(secret)}
    return sorted(forms, key=len, reverse=True)


def _redacted(text: str, forms: Iterable[str]) -> str:
    for form in forms:
        text = text.replace(form, REDACTED)
    return _SECRET_FIELDS.sub(lambda m: m.group("key") + REDACTED, text)


def _before_secrets(text: str, forms: Iterable[str], cut: int) -> int:
    """``cut``, moved back before any secret that straddles it, so that cutting ``text`` there
    leaves no part of a secret that redaction would no longer recognise."""
    moved = True
    while moved:
        moved = False
        for form in forms:
            start = text.find(form, max(0, cut - len(form) + 1), cut + len(form) - 1)
            if 0 <= start < cut:
                cut, moved = start, True
    return cut


def _escaped_forms(secret: str) -> set[str]:
    r"""The ways a server may echo ``secret``: as is, JSON-escaped (also with ``/`` as ``\/``,
    as PHP does), or URL-encoded."""
    escaped = json.dumps(secret)[1:-1]
    unescaped_unicode = json.dumps(secret, ensure_ascii=False)[1:-1]
    return {
        secret,
        escaped,
        escaped.replace("/", "\\/"),
        unescaped_unicode,
        quote_plus(secret),
        quote(secret, safe=""),
    }


def _rebuilt(kind: type[_E], args: tuple[Any, ...], state: dict[str, Any]) -> _E:
    """An error of ``kind`` with these ``args`` and attributes, made without calling its
    constructor (whose parameters differ from one error to the next)."""
    error = kind.__new__(kind)
    error.args = args
    error.__dict__.update(state)
    return error


class _Travels(BaseException):
    """An error that survives ``pickle`` and ``copy`` with its message and fields, whatever its
    constructor's parameters (process pools and error trackers pickle errors)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuilt, (type(self), self.args, dict(self.__dict__))

    def restated(self, message: str) -> Self:
        """Return an error of the same type and fields, with ``message`` instead."""
        return _rebuilt(type(self), (message,), dict(self.__dict__))


class TokenError(_Travels, requests.exceptions.RequestException):
    """Base class: anything that kept the session from getting a usable access token."""


class LoginRequired(TokenError):
    """No usable grant is left: a person (or a login command) must sign in again.

    Raised when the token file does not exist, when a refresh is needed but there is no
    refresh token, or when the authorization server rejected the refresh token
    (``invalid_grant``). Retrying will not help.
    """


class RefreshFailed(TokenError):
    """A call to the authorization server did not complete but may work later: network error,
    timeout, 5xx, 429, or an answer that cannot be used. Raised for a refresh (the token store
    is left untouched) and for the server's other endpoints: reading its discovery document,
    a device login's requests, a revocation (nothing is stored or removed then either).

    ``response`` is a copy of the server's answer when there was one: status, URL, headers and
    the start of the body, with every secret redacted; its request names only the method and
    URL.
    """

    @property
    def status_code(self) -> int | None:
        """The token endpoint's HTTP status, or None when no response arrived."""
        return None if self.response is None else int(self.response.status_code)


class AnswerUnderway(RefreshFailed):
    """The token endpoint began a successful answer that the deadline cut off; the grant is
    being completed in the background.

    The status line and headers of a 2xx answer arrived, but not all of its body within the
    timeout. The server has most likely spent the refresh token already, and this answer
    holds the only copy of the new one: it is read on in the background, for at most the
    limit that :meth:`finish` states, and never presented again. Not retried.
    """

    def __init__(
        self, *args: Any, finish: Callable[[float], Token] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._finish = finish

    def finish(self, timeout: float) -> Token:
        """Wait up to ``timeout`` seconds for the rest of the answer and return its token.

        Raises RefreshFailed when the answer breaks, grows past 1 MiB, is not a usable token,
        or is not complete within ``timeout`` (call again to wait longer) or within the
        background limit; also in a copy of this error that crossed a pickle, which cannot
        carry the answer (only the process that began the exchange can finish it).
        """
        if self._finish is None:
            raise RefreshFailed(
                "this AnswerUnderway was pickled: only the process that began the exchange "
                "can finish it"
            )
        return self._finish(timeout)

    def __reduce__(self) -> tuple[Any, ...]:
        # The handle is a live thread's: it cannot travel, so a pickled copy goes without it.
        return _rebuilt, (type(self), self.args, {**self.__dict__, "_finish": None})

    def __copy__(self) -> Self:
        return _rebuilt(type(self), self.args, dict(self.__dict__))

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        # One answer, one handle: a deep copy shares it.
        return self.__copy__()


class ClientRejected(TokenError):
    """The token endpoint rejected the client itself (``invalid_client``,
    ``unauthorized_client``, ``invalid_scope``, ``unsupported_grant_type``, ``invalid_request``,
    or a 401 without an error code): the configuration is wrong. Not retried; fix
    ``client_id``, ``client_secret``, ``auth_method`` or ``scope``.

    ``error`` is the error code the endpoint sent ("" when it sent none); ``response`` is its
    answer.
    """

    def __init__(self, *args: Any, error: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.error = error


class TokenStoreError(TokenError):
    """The token store cannot be used: a token file that is unreadable, or a Redis server that
    cannot be reached. A token already obtained is kept in memory and stored later."""


class TokenFileError(TokenStoreError):
    """The token file exists but cannot be used: unreadable, not JSON, not a token, too large,
    or not a regular file. The file is never rewritten after this error; fix or replace it.

    ``path`` is the file at fault: the token file, or the lock file beside it.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(f"{message}: {path}")
        self.path = path


class LockTimeout(TokenError, requests.exceptions.Timeout):
    """Waiting for another thread or process to finish a refresh took longer than
    ``lock_timeout``. Also a :class:`requests.exceptions.Timeout`.
    """


class ProfileError(_Travels, ValueError):
    """The profile config file cannot be used: it is missing or not TOML, the profile does not
    exist, or a key is unknown, missing or of the wrong kind. The message names the file, the
    profile and the key, says what is wrong and what is expected.

    A ValueError, not a TokenError: it is a configuration mistake found before any request,
    which an ``except RequestException`` around API calls should not swallow.
    """

    def __init__(
        self, problem: str, *, path: str, profile: str | None = None, key: str | None = None
    ) -> None:
        where = (
            path + (f", profile {profile!r}" if profile else "") + (f", key {key!r}" if key else "")
        )
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.profile = profile
        self.key = key
