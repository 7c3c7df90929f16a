"""DPoP (RFC 9449): the key a sender-constrained token is bound to, the proofs it signs, and the
nonces servers hand out.

A :class:`DPoPKey` is a private key (EC P-256 for ES256, the default, or Ed25519 for EdDSA); its
:meth:`~DPoPKey.proof` is the one signer of every proof, for the token endpoint and for the
resource requests alike. The key of a DPoP token travels with it in the token store (the
token's ``dpop_key`` field, as PEM), so every process and host that shares the token signs with
the key it is bound to: :func:`key_of` returns it. :class:`Nonces` remembers the latest
``DPoP-Nonce`` each origin sent (sections 8 and 9), for the next proof to that origin.

The proofs are signed by PyJWT over ``cryptography`` (``pip install ".[jwt]"``,
the extra that already signs client assertions): a maintained JOSE implementation that
encodes ECDSA signatures as JWS wants them (the raw ``r || s`` pair, not DER, the classic bug of
hand-written JWS), signs with cryptography's constant-time code, and adds no second JOSE
library to the dependencies. The public JWK comes from PyJWT too; only the RFC 7638
thumbprint, which PyJWT does not offer, is computed here.

No private part of a key ever appears in a repr, an error or a log line; a pickled key carries
its PEM, as a pickled client carries its secret.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .client_auth import require_jwt
from .token import Token, jwt_claims
from .trusted_files import UntrustedFile, read_trusted
from .urls import origin

PROOF_TYPE = "dpop+jwt"
ALGORITHMS = ("ES256", "EdDSA")
NONCE_HEADER = "DPoP-Nonce"
# RFC 9449 section 8.1: a nonce is 1*NQCHAR (printable ASCII but the double quote and backslash).
_NONCE_SYNTAX = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_USE_NONCE = re.compile(r'\berror\s*=\s*"?use_dpop_nonce\b', re.IGNORECASE)
# Origins whose nonce is remembered: a client talks to a handful; the bound keeps a server
# that sends each request elsewhere from growing the memory without end.
_MOST_ORIGINS = 256
_JTI_BYTES = 18  # 144 random bits: never repeated across processes
_CACHED_KEYS = 16
#: How messages name a DPoP key file.
KEY_FILE = "the DPoP key file"


class DPoPKey:
    """A private key that signs DPoP proofs: EC P-256 (ES256) or Ed25519 (EdDSA).

    ``public_jwk`` is its public key as a JWK (what every proof carries), ``jkt`` its RFC 7638
    thumbprint (what a bound token's ``cnf.jkt`` names), ``algorithm`` the JWS algorithm it
    signs with. Its repr shows the thumbprint only. Two keys are equal when their thumbprints
    are.
    """

    def __init__(self, private_key: Any) -> None:
        """Wrap a ``cryptography`` private key; raises TypeError for a key of another kind."""
        self._private = private_key
        self.algorithm = _algorithm_of(private_key)
        self.public_jwk: Mapping[str, str] = _public_jwk(private_key, self.algorithm)
        self.jkt = thumbprint(self.public_jwk)
        self._pem: str | None = None

    @classmethod
    def generate(cls, algorithm: str = "ES256") -> DPoPKey:
        """A new key for ``algorithm`` (ES256: P-256; EdDSA: Ed25519); raises ValueError for
        another algorithm."""
        if algorithm == "ES256":
            from cryptography.hazmat.primitives.asymmetric import ec

            return cls(ec.generate_private_key(ec.SECP256R1()))
        if algorithm == "EdDSA":
            from cryptography.hazmat.primitives.asymmetric import ed25519

            return cls(ed25519.Ed25519PrivateKey.generate())
        raise ValueError(f"a DPoP key signs with {' or '.join(ALGORITHMS)}, not {algorithm!r}")

    @classmethod
    def from_pem(cls, pem: str | bytes) -> DPoPKey:
        """The key in an unencrypted PEM private key; raises ValueError (quoting nothing of the
        text) when it is not one, or TypeError for a key other than P-256 or Ed25519."""
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            private = load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, None)
        except (ValueError, TypeError):
            # cryptography's message may quote the key's bytes: say only what is wrong.
            raise ValueError(
                "not an unencrypted PEM private key (BEGIN PRIVATE KEY or BEGIN EC PRIVATE KEY)"
            ) from None
        return cls(private)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> DPoPKey:
        """The key in the PEM file at ``path``, provisioned by the caller. The file must pass
        the rule of :mod:`.trusted_files` for private keys (a regular file of the current
        user's or root's, that no one else can change or read, reached through no other
        user's link) and hold an EC P-256 or Ed25519 key. Raises ValueError saying which."""
        shown = os.path.abspath(os.fspath(path))
        try:
            raw = read_trusted(path, KEY_FILE, private=True)
        except UntrustedFile as error:
            raise ValueError(f"dpop_key: {error}") from None
        except OSError as error:
            raise ValueError(
                f"dpop_key: cannot read {KEY_FILE} {shown} ({error.strerror})"
            ) from None
        try:
            return cls.from_pem(raw)
        except (ValueError, TypeError) as error:
            problem = str(error)
        raise ValueError(
            f"dpop_key: {KEY_FILE} {shown} is {problem}; make one with `openssl genpkey "
            f"-algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {shown}` and chmod 600 it"
        )

    def private_pem(self) -> str:
        """The private key as unencrypted PKCS #8 PEM: a secret, for the token store only."""
        if self._pem is None:
            from cryptography.hazmat.primitives import serialization

            self._pem = self._private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode("ascii")
        return self._pem

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """A new DPoP proof (RFC 9449 section 4.2) for a ``method`` request to ``url``: the
        value of the ``DPoP`` header. Its header says ``typ`` dpop+jwt, the ``alg`` and the
        public ``jwk``; its claims are ``htm`` (``method`` as sent), ``htu`` (``url`` without
        query and fragment, see :func:`htu`), ``iat`` (now), a random ``jti`` never used
        before, ``ath`` (the hash of ``access_token``, for a resource request) and ``nonce``
        when given. Raises ValueError for a URL that is not absolute http(s)."""
        claims: dict[str, object] = {
            "htm": method,
            "htu": htu(url),
            "iat": int(time.time()),
            "jti": secrets.token_urlsafe(_JTI_BYTES),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": PROOF_TYPE, "jwk": dict(self.public_jwk)}
        return str(
            require_signer().encode(claims, self._private, algorithm=self.algorithm, headers=header)
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DPoPKey) and other.jkt == self.jkt

    def __hash__(self) -> int:
        return hash(self.jkt)

    def __reduce__(self) -> tuple[Any, ...]:
        # Key objects do not pickle: a copy carries the PEM, as a copied client its secret.
        return DPoPKey.from_pem, (self.private_pem(),)

    def __repr__(self) -> str:
        return f"DPoPKey(jkt={self.jkt!r}, algorithm={self.algorithm!r})"


def key_of(token: Token) -> DPoPKey | None:
    """The key ``token`` is bound to, when it is stored with it (its ``dpop_key``); None when
    not. The same stored key gives the same object, parsed once. Raises ValueError when the
    stored key is not a usable PEM key."""
    return None if token.dpop_key is None else _parsed(token.dpop_key)


@functools.lru_cache(maxsize=_CACHED_KEYS)
def _parsed(pem: str) -> DPoPKey:
    try:
        return DPoPKey.from_pem(pem)
    except (ValueError, TypeError) as error:
        problem = str(error)
    raise ValueError(f"the token's dpop_key is {problem}; log in again to get a new key")


def bound_jkt(token: Token) -> str | None:
    """The thumbprint of the key ``token`` says it is bound to (the ``cnf.jkt`` claim of a JWT
    access token), or None when its access token does not say (opaque tokens)."""
    claims = jwt_claims(token.access_token)
    confirmation = claims.get("cnf") if claims else None
    jkt = confirmation.get("jkt") if isinstance(confirmation, dict) else None
    return jkt if isinstance(jkt, str) else None


def thumbprint(jwk: Mapping[str, str]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public EC or OKP ``jwk``, base64url-encoded: the
    JSON of its required members, sorted, without whitespace."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("crv", "kty", "x")
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"))
    return _base64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def access_token_hash(access_token: str) -> str:
    """The ``ath`` claim for ``access_token``: base64url(SHA-256 of its ASCII bytes)."""
    return _base64url(hashlib.sha256(access_token.encode("ascii")).digest())


def htu(url: str) -> str:
    """``url`` as a proof's ``htu`` claim (RFC 9449 section 4.2): without query, fragment and
    user information, scheme and host in lower case, no default port, and ``/`` for an empty
    path. Raises ValueError for a URL that is not absolute http(s)."""
    return origin(url) + (urlsplit(url).path or "/")


def asks_for_nonce(status: int, headers: Mapping[str, str]) -> bool:
    """Whether a resource server's answer (``status``, ``headers``) is RFC 9449 section 9's
    nonce challenge: a 401 whose ``WWW-Authenticate`` says ``error="use_dpop_nonce"`` and that
    carries a ``DPoP-Nonce``. (The token endpoint's is a 400 with that OAuth error code.)"""
    return (
        status == 401
        and bool(_USE_NONCE.search(headers.get("WWW-Authenticate", "")))
        and bool(headers.get(NONCE_HEADER))
    )


class Nonces:
    """The latest ``DPoP-Nonce`` each origin sent, for the next proof to that origin (RFC 9449
    sections 8.2 and 9). Safe to share between threads; a copy (a pickle) starts empty."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, str] = {}

    def get(self, url: str) -> str | None:
        """The nonce to put in a proof for ``url``: the latest its origin sent, or None."""
        with self._lock:
            return self._latest.get(origin(url))

    def remember(self, url: str, headers: Mapping[str, str]) -> str | None:
        """Keep the ``DPoP-Nonce`` of an answer from ``url`` (``headers`` as any mapping whose
        ``get`` ignores case, as requests' and httpx's do); return it, or None when the answer
        carries none (or one that is not a valid nonce, which is ignored)."""
        nonce = headers.get(NONCE_HEADER)
        if nonce is None or not _NONCE_SYNTAX.fullmatch(nonce):
            return None
        key = origin(url)
        with self._lock:
            self._latest.pop(key, None)  # to the end: the oldest origin goes first
            self._latest[key] = nonce
            if len(self._latest) > _MOST_ORIGINS:
                del self._latest[next(iter(self._latest))]
        return nonce

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a lock does not pickle; nonces are short-lived anyway

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def __repr__(self) -> str:
        with self._lock:
            return f"Nonces(origins={len(self._latest)})"


def _algorithm_of(private_key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if private_key.curve.name == "secp256r1":
            return "ES256"
        kind = f"an EC key on {private_key.curve.name}"
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    else:
        kind = "an RSA key" if isinstance(private_key, rsa.RSAPrivateKey) else "another kind of key"
    raise TypeError(f"{kind}, not an EC P-256 (ES256) or Ed25519 (EdDSA) key")


def _public_jwk(private_key: Any, algorithm: str) -> Mapping[str, str]:
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm

    family = ECAlgorithm if algorithm == "ES256" else OKPAlgorithm
    jwk = family.to_jwk(private_key.public_key(), as_dict=True)
    return {name: str(value) for name, value in jwk.items()}


def _base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def require_signer() -> Any:
    """The ``jwt`` module (PyJWT) that signs the proofs, or ImportError saying how to install
    it with ``cryptography``."""
    return require_jwt("DPoP proofs")
