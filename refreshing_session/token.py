"""Token: an immutable OAuth2 token, and its JSON form.

The JSON form is the token endpoint's answer (RFC 6749 section 5.1) plus ``expires_at``, in
absolute epoch seconds, the shape requests-oauthlib and Authlib save. Unknown fields are kept.
A DPoP token (RFC 9449) also holds ``dpop_key``, the private key it is bound to (PEM), so that
every process that reads it from the store signs its proofs with that key; a token endpoint's
answer can never set it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# RFC 6750 section 2.1 allows less; this keeps out what would break or forge a header line.
_TOKEN_SYNTAX = re.compile(r"[\x21-\x7e]+")
_KNOWN_FIELDS = frozenset(
    {
        "access_token",
        "token_type",
        "refresh_token",
        "expires_in",
        "expires_at",
        "scope",
        "refresh_expires_in",
        "refresh_expires_at",
        "dpop_key",
    }
)
# The token types a token may have (RFC 6750 and RFC 9449), by their lower-case names.
_TOKEN_TYPES = frozenset({"bearer", "dpop"})


@dataclass(frozen=True, repr=False)
class Token:
    """An access token and what is known about it. Immutable; its repr shows no secret.

    ``expires_at`` is absolute epoch seconds, or None when the expiry is unknown (then only a
    401 triggers a refresh; so is an ``expires_in`` of 0 or less, or a server's answer that
    expired before it arrived, which would otherwise cost a refresh per request).
    ``lifetime`` is the seconds the server granted, when known; it
    caps how early a refresh may happen. ``refresh_expires_at`` is when the refresh token
    expires, when the server said so (Keycloak's ``refresh_expires_in``; 0 there means never).
    ``extra`` holds every other field of the token. ``dpop_key`` is the PEM private key a DPoP
    token is bound to, when it is stored with it: a secret, never shown (see :mod:`.dpop`).
    """

    access_token: str
    token_type: str = "Bearer"
    refresh_token: str | None = None
    expires_at: float | None = None
    lifetime: float | None = None
    scope: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    refresh_expires_at: float | None = None
    dpop_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.access_token, str) or not _TOKEN_SYNTAX.fullmatch(self.access_token):
            raise ValueError(
                "'access_token' is missing, empty, or not printable ASCII without "
                "spaces (RFC 6750 section 2.1)"
            )
        for name in ("expires_at", "lifetime", "refresh_expires_at"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name!r} is not a finite number")
        if self.dpop_key is not None and not isinstance(self.dpop_key, str):
            raise ValueError("'dpop_key' is not a string (a PEM private key)")
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @classmethod
    def from_response(
        cls, data: Mapping[str, Any], *, requested_at: float, previous: Token | None = None
    ) -> Token:
        """Build the token a token endpoint (or a custom refresher) answered with.

        ``expires_in`` counts from ``requested_at``, when the request left, so a slow answer
        never makes a token look fresher than it is. Without a new refresh token, the
        previous one is kept. A ``dpop_key`` field is ignored: the key is the client's, never
        the server's to choose. Raises ValueError when ``data`` is not a usable token.
        """
        data = {key: value for key, value in data.items() if key != "dpop_key"}
        lifetime = _lifetime(data)
        expires_at = _number(data, "expires_at")
        if lifetime is not None:
            expires_at = requested_at + lifetime
        elif expires_at is not None:
            lifetime = expires_at - requested_at
        else:
            expires_at = _jwt_expiry(data.get("access_token"))
        if expires_at is not None and expires_at <= requested_at:
            # Dead on arrival: a server's mistake (or a clock far off). Taken at its word, it
            # would cost a refresh per request; as an unknown expiry, a 401 refreshes it.
            expires_at = lifetime = None
        refresh_expires_at = _refresh_expiry(data, since=requested_at)
        if previous is not None and not data.get("refresh_token"):
            return cls._parse(
                data,
                expires_at,
                lifetime,
                default_refresh=previous.refresh_token,
                refresh_expires_at=previous.refresh_expires_at,
            )
        return cls._parse(
            data, expires_at, lifetime, default_refresh=None, refresh_expires_at=refresh_expires_at
        )

    @classmethod
    def from_file(cls, data: Mapping[str, Any], *, written_at: float) -> Token:
        """Build the token a token file holds.

        A file with ``expires_in`` but no ``expires_at`` (as some tools save it) counts from
        ``written_at``, the file's modification time, never from now: a token reloaded from
        disk must not look fresh again. With neither, a JWT's ``exp`` claim is used.
        Raises ValueError when ``data`` is not a usable token.
        """
        lifetime = _lifetime(data)
        expires_at = _number(data, "expires_at")
        if expires_at is None:
            expires_at = (
                written_at + lifetime
                if lifetime is not None
                else _jwt_expiry(data.get("access_token"))
            )
        return cls._parse(
            data,
            expires_at,
            lifetime,
            default_refresh=None,
            refresh_expires_at=_refresh_expiry(data, since=written_at),
        )

    @classmethod
    def _parse(
        cls,
        data: Mapping[str, Any],
        expires_at: float | None,
        lifetime: float | None,
        *,
        default_refresh: str | None,
        refresh_expires_at: float | None,
    ) -> Token:
        token_type = data.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() not in _TOKEN_TYPES:
            raise ValueError(f"'token_type' must be Bearer or DPoP, got {_shown(token_type)}")
        refresh_token = data.get("refresh_token")
        if refresh_token is None or refresh_token == "":
            refresh_token = default_refresh
        elif not isinstance(refresh_token, str):
            raise ValueError("'refresh_token' is not a string")
        return cls(
            access_token=data.get("access_token"),  # type: ignore[arg-type]  # checked on init
            token_type=token_type,
            refresh_token=refresh_token,
            expires_at=expires_at,
            lifetime=lifetime,
            scope=_scope(data.get("scope")),
            refresh_expires_at=refresh_expires_at,
            extra={key: value for key, value in data.items() if key not in _KNOWN_FIELDS},
            dpop_key=data.get("dpop_key"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the token as a JSON-serializable dict, in the token file's shape."""
        data: dict[str, Any] = dict(self.extra)
        data.update(access_token=self.access_token, token_type=self.token_type)
        optional = {
            "refresh_token": self.refresh_token,
            "expires_in": self.lifetime,
            "expires_at": self.expires_at,
            "scope": self.scope,
            "refresh_expires_at": self.refresh_expires_at,
            "dpop_key": self.dpop_key,
        }
        data.update((key, value) for key, value in optional.items() if value is not None)
        return data

    def refresh_due_at(self, leeway: float) -> float | None:
        """Return when to refresh: ``leeway`` seconds before expiry, but never earlier than
        halfway through the token's known lifetime. None when the expiry is unknown."""
        if self.expires_at is None:
            return None
        if self.lifetime is not None and self.lifetime > 0:
            leeway = min(leeway, self.lifetime / 2)
        return self.expires_at - leeway

    @property
    def is_dpop(self) -> bool:
        """Whether the token is bound to a DPoP key (``token_type`` DPoP): every request that
        carries it needs a proof signed by that key."""
        return self.token_type.lower() == "dpop"

    @property
    def authorization(self) -> str:
        """The value of the Authorization header that carries this token: ``Bearer <token>``,
        or ``DPoP <token>`` for a DPoP token (RFC 9449 section 7.1)."""
        return ("DPoP " if self.is_dpop else "Bearer ") + self.access_token

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible tag that tells tokens apart in logs and status output."""
        return hashlib.sha256(self.access_token.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return (
            f"Token(fingerprint={self.fingerprint!r}, token_type={self.token_type!r}, "
            f"expires_at={self.expires_at!r}, "
            f"refresh_token={'set' if self.refresh_token else None}, scope={self.scope!r})"
        )


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{key!r} is not a number: {_shown(value)}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key!r} is not a number: {_shown(value)}")
    number = _finite(value)
    if number is None:
        raise ValueError(f"{key!r} is not a finite number: {_shown(value)}")
    return number


def _lifetime(data: Mapping[str, Any]) -> float | None:
    """``expires_in``, or None when it is missing, zero or less (a lifetime no token has)."""
    lifetime = _number(data, "expires_in")
    return lifetime if lifetime is not None and lifetime > 0 else None


def _finite(value: float) -> float | None:
    """``value`` as a float, or None when it is infinite, NaN, or too large for a float."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _refresh_expiry(data: Mapping[str, Any], *, since: float) -> float | None:
    """When the refresh token expires: ``refresh_expires_in`` counts from ``since`` (0 means
    it does not expire), else an absolute ``refresh_expires_at``, else unknown."""
    relative = _number(data, "refresh_expires_in")
    if relative is not None:
        return since + relative if relative > 0 else None
    return _number(data, "refresh_expires_at")


def _scope(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    # requests-oauthlib saves the scope as a list
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return " ".join(value)
    raise ValueError("'scope' is neither a string nor a list of strings")


def jwt_claims(access_token: object) -> dict[str, Any] | None:
    """The claims of a JWT access token, read without checking its signature (the client only
    learns what the token says of itself), or None when it is not a JWT with a JSON object."""
    if not isinstance(access_token, str) or access_token.count(".") != 2:
        return None
    payload = access_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None


def _jwt_expiry(access_token: object) -> float | None:
    claims = jwt_claims(access_token)
    exp = claims.get("exp") if claims else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return _finite(exp)


def _shown(value: object) -> str:
    """A short rendering of a bad field value; never a long string that might be a secret."""
    text = repr(value)
    return text if len(text) <= 20 else f"a {type(value).__name__} of length {len(text)}"
