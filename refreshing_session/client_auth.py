"""Client authentication at the authorization server (RFC 6749 section 2.3, RFC 7523 section
2.2, RFC 8705): how a request to the token, device authorization or revocation endpoint proves
which client sends it.

``client_secret_basic`` and ``client_secret_post`` send the secret; ``none`` sends only the
client_id (public clients); ``client_secret_jwt`` and ``private_key_jwt`` send a signed
assertion, fresh for each request (a new ``jti``, a lifetime of one minute), signed by PyJWT
(``pip install ".[jwt]"`` from a checkout); ``tls_client_auth`` and
``self_signed_tls_client_auth`` present a client certificate on the TLS connection.
"""

from __future__ import annotations

import base64
import secrets as random
import time
from collections import deque
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote_plus

SECRET_METHODS = ("client_secret_basic", "client_secret_post")
JWT_METHODS = ("client_secret_jwt", "private_key_jwt")
TLS_METHODS = ("tls_client_auth", "self_signed_tls_client_auth")
AUTH_METHODS = (*SECRET_METHODS, "none", *JWT_METHODS, *TLS_METHODS)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KEY_ALGORITHMS = ("RS256", "PS256", "ES256")
ASSERTION_LIFETIME = 60  # seconds: long enough for clock skew, short enough to be useless later
# The last assertions made, redacted from errors: an error page may echo one while it is valid.
_REMEMBERED = 16
# What require_jwt names when PyJWT is missing.
_SIGNS = "JWT client assertions"

# A certificate for requests' cert=: one PEM file holding both, or (certificate, key) files.
ClientCert = str | tuple[str, str]


class ClientAuthentication:
    """One client's way of authenticating, checked when built; :meth:`apply` adds it to a
    request. Its repr shows no secret and no key."""

    def __init__(
        self,
        client_id: str,
        method: str | None = None,
        *,
        client_secret: str | None = None,
        private_key: Any = None,
        key_id: str | None = None,
        algorithm: str | None = None,
        key_certificate: str | bytes | None = None,
        client_cert: ClientCert | None = None,
    ) -> None:
        """Check the combination (raising ValueError or TypeError that says what to fix).
        ``key_certificate`` is the PEM certificate of a ``private_key_jwt`` key, for servers
        that identify the key by its thumbprint (Microsoft Entra ID): the assertions then name
        it in ``x5t`` and ``x5t#S256`` headers."""
        if not isinstance(client_id, str) or not client_id:
            raise TypeError("client_id must be a non-empty string")
        self.client_id = client_id
        self.method = method or _default_method(client_secret, private_key, client_cert)
        if self.method not in AUTH_METHODS:
            raise ValueError(
                f"auth_method must be one of {', '.join(AUTH_METHODS)}, got {self.method!r}"
            )
        _check_secret(self.method, client_secret)
        _check_extras(self.method, private_key, key_id, algorithm, client_cert)
        if key_certificate is not None and self.method != "private_key_jwt":
            raise ValueError("a key_certificate is only used with private_key_jwt")
        self._secret = client_secret
        self._key = _private_key(private_key) if self.method == "private_key_jwt" else None
        self.key_id = key_id
        self._thumbprints = _thumbprints(key_certificate) if key_certificate else {}
        self.algorithm = _algorithm(self.method, self._key, algorithm)
        self.cert = client_cert if self.method in TLS_METHODS else None
        self._recent: deque[str] = deque(maxlen=_REMEMBERED)
        # The HTTP Basic credentials, sent with client_secret_basic and redacted from errors.
        self._basic = _basic_credentials(client_id, client_secret or "")
        if self.method in JWT_METHODS:
            require_jwt(_SIGNS)  # fail now, not at the first refresh, when PyJWT is missing

    def apply(
        self, form: MutableMapping[str, str], headers: MutableMapping[str, str], audience: str
    ) -> None:
        """Add the client's credentials to a request's ``form`` and ``headers``; an assertion
        names ``audience`` (the token endpoint's URL) as its audience."""
        if self.method == "client_secret_basic":
            headers["Authorization"] = self._basic
            return
        form["client_id"] = self.client_id
        if self.method == "client_secret_post":
            form["client_secret"] = self._secret or ""
        elif self.method in JWT_METHODS:
            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = self.assertion(audience)

    def assertion(self, audience: str) -> str:
        """A new signed JWT (RFC 7523 section 3) that says this client is calling
        ``audience``: issuer and subject the client_id, a unique ``jti``, one minute to live."""
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "jti": random.token_urlsafe(24),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        key = self._key if self.method == "private_key_jwt" else self._secret
        header = {**({"kid": self.key_id} if self.key_id else {}), **self._thumbprints}
        signed = str(
            require_jwt(_SIGNS).encode(
                claims, key, algorithm=self.algorithm, headers=header or None
            )
        )
        self._recent.append(signed)
        return signed

    def secrets(self) -> tuple[str | None, ...]:
        """What must never appear in an error or a log: the secret and its Basic form, and the
        last assertions made (each is a credential until it expires)."""
        given = (self._secret, self._basic.split()[-1]) if self._secret else ()
        return (*given, *self._recent)

    def __getstate__(self) -> dict[str, Any]:
        # Key objects do not pickle: a copy carries the key as PEM, as a secret travels too.
        state = {**self.__dict__, "_recent": deque(maxlen=_REMEMBERED)}
        if self._key is not None:
            from cryptography.hazmat.primitives import serialization

            state["_key"] = self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._key is not None:
            self._key = _private_key(self._key)

    def __repr__(self) -> str:
        return f"ClientAuthentication({self.client_id!r}, {self.method!r})"


def _default_method(secret: str | None, key: object, cert: object) -> str:
    if key is not None:
        return "private_key_jwt"
    if cert is not None:
        return "tls_client_auth"
    return "client_secret_basic" if secret else "none"


def _check_secret(method: str, secret: str | None) -> None:
    needs = method in (*SECRET_METHODS, "client_secret_jwt")
    if needs and not secret:
        raise ValueError(f"auth_method {method!r} needs a client_secret")
    if not needs and secret:
        raise ValueError(
            f"auth_method {method!r} never sends the client_secret given; choose "
            "client_secret_basic, client_secret_post or client_secret_jwt, or "
            "drop the secret"
        )


def _check_extras(
    method: str, key: object, key_id: object, algorithm: object, cert: object
) -> None:
    if (key is None) == (method == "private_key_jwt"):
        raise ValueError(
            "auth_method 'private_key_jwt' needs a private_key"
            if key is None
            else f"a private_key is only used with private_key_jwt, not {method!r}"
        )
    if (cert is None) == (method in TLS_METHODS):
        raise ValueError(
            f"auth_method {method!r} needs a client_cert"
            if cert is None
            else f"a client_cert is only used with {' or '.join(TLS_METHODS)}"
        )
    if method not in JWT_METHODS and (key_id is not None or algorithm is not None):
        raise ValueError(
            "key_id and algorithm are only used with client_secret_jwt or private_key_jwt"
        )
    if cert is not None and not (
        isinstance(cert, str)
        or (
            isinstance(cert, tuple)
            and len(cert) == 2
            and all(isinstance(part, str) for part in cert)
        )
    ):
        raise TypeError(
            "client_cert must be a PEM file's path or a (certificate, key) pair "
            "of paths, as requests' cert="
        )


def _private_key(key: Any) -> Any:
    """A private key object from a PEM text or bytes, or ``key`` when it is one already."""
    if not isinstance(key, (str, bytes)):
        return key
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        return load_pem_private_key(key.encode() if isinstance(key, str) else key, None)
    except (ValueError, TypeError):
        # The library's message may quote the key's bytes: say only what is wrong.
        raise ValueError(
            "private_key is not an unencrypted PEM private key (BEGIN PRIVATE "
            "KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)"
        ) from None


def _thumbprints(certificate: str | bytes) -> dict[str, str]:
    """The ``x5t`` (SHA-1) and ``x5t#S256`` (SHA-256) headers naming ``certificate`` (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        loaded = x509.load_pem_x509_certificate(
            certificate.encode() if isinstance(certificate, str) else certificate
        )
    except ValueError:
        raise ValueError("key_certificate is not a PEM certificate (BEGIN CERTIFICATE)") from None
    return {
        name: base64.urlsafe_b64encode(loaded.fingerprint(digest)).rstrip(b"=").decode()
        # x5t is SHA-1 by definition (RFC 7515 section 4.1.7): a name, not a security check.
        for name, digest in (("x5t", hashes.SHA1()), ("x5t#S256", hashes.SHA256()))  # noqa: S303
    }


def _algorithm(method: str, key: Any, algorithm: str | None) -> str | None:
    """The signing algorithm: the one asked for if it suits the key, else the key's own."""
    if method == "client_secret_jwt":
        if algorithm not in (None, "HS256", "HS384", "HS512"):
            raise ValueError(
                f"client_secret_jwt signs with HS256, HS384 or HS512, not {algorithm!r}"
            )
        return algorithm or "HS256"
    if method != "private_key_jwt":
        return None
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    suits: tuple[str, ...]
    if isinstance(key, rsa.RSAPrivateKey):
        suits = ("RS256", "PS256")
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        suits = ("ES256",)
    else:
        raise TypeError(
            "private_key must be an RSA key or an EC key on P-256, as PEM or as "
            f"a cryptography key object; got {type(key).__name__}"
        )
    if algorithm is not None and algorithm not in suits:
        raise ValueError(
            f"algorithm {algorithm!r} does not suit this key; use {' or '.join(suits)}"
        )
    return algorithm or suits[0]


def require_jwt(needed_for: str) -> Any:
    """The ``jwt`` module (PyJWT), or ImportError saying that ``needed_for`` (what signs, in
    the plural: "DPoP proofs") needs it and how to install it with ``cryptography``."""
    try:
        import jwt
    except ImportError:
        raise ImportError(
            f'{needed_for} need PyJWT and cryptography: pip install ".[jwt]" from a checkout'
        ) from None
    return jwt


def _basic_credentials(client_id: str, client_secret: str) -> str:
    # RFC 6749 section 2.3.1: each part is form-urlencoded before it is joined and encoded.
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()
