"""The local server's DPoP rules (RFC 9449), applied as node oidc-provider applies them: the
proof checks, the nonces, the memory of ``jti`` values seen, and the record of every proof.

The checks verify a proof's signature with the public key it embeds (through PyJWT, needed
only when a proof arrives), then its ``typ``, ``alg``, ``htm``, ``htu``, ``iat`` (or nonce) and
``ath``. They raise :class:`ProofError` with oidc-provider's error codes and descriptions;
the OAuth state decides what a token endpoint or the API answers. Written apart from the
client's :mod:`refreshing_session.dpop`, so that a mistake there cannot hide here.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

from .messages import Headers

ALGORITHMS = ("ES256", "EdDSA")
NONCE_HEADER = "DPoP-Nonce"
# How far a proof's iat may be from now without a nonce (oidc-provider's CHALLENGE_OK_WINDOW),
# and how long a jti is remembered.
IAT_WINDOW = 300.0
_PROOF_TYPE = "dpop+jwt"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Thumbprint members per key type (RFC 7638 section 3.2).
_REQUIRED_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
# Nonces issued within this many rotations are still accepted (oidc-provider accepts 2 steps).
_NONCES_KEPT = 3


@dataclass(frozen=True)
class DPoPProof:
    """One DPoP proof the server received, as :meth:`LocalAuthServer.dpop_proofs` lists them.

    ``endpoint`` is ``"token"`` or ``"api"``; ``method`` and ``url`` are the request's (the
    URL as the server knows itself, without the query); ``header`` and ``claims`` are the
    proof's, decoded (empty when it could not be decoded); ``jkt`` is the RFC 7638 thumbprint of
    its ``jwk`` (None when it has none); ``received_at`` is the server's clock when it arrived;
    ``problem`` says why it was refused (the server's own reason, more precise than the answer
    it gave), or None when it was accepted.
    """

    endpoint: str
    method: str
    url: str
    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    jkt: str | None
    received_at: float
    problem: str | None = None


class ProofError(Exception):
    """A refused proof: ``error`` is the OAuth error code (``invalid_dpop_proof`` or
    ``use_dpop_nonce``), ``description`` oidc-provider's text."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class CheckedProof:
    """A proof that passed the checks: the thumbprint of its key, its ``jti`` and ``nonce``,
    and its index in the record (for :meth:`DPoPRules.refuse`)."""

    jkt: str
    jti: str
    nonce: str | None
    index: int


class _Nonces:
    """The server's nonces: a new one each ``rotation`` seconds (the latest ones stay valid),
    or at once, invalidating the others, on :meth:`rotate`."""

    def __init__(self, rotation: float) -> None:
        self._rotation = rotation
        self._issued: list[tuple[str, float]] = []  # newest last

    def current(self, now: float) -> str:
        if not self._issued or now - self._issued[-1][1] >= self._rotation:
            self._issued = [*self._issued[1 - _NONCES_KEPT :], (secrets.token_urlsafe(24), now)]
        return self._issued[-1][0]

    def accepts(self, nonce: str, now: float) -> bool:
        self.current(now)
        return any(secrets.compare_digest(nonce, issued) for issued, _ in self._issued)

    def rotate(self, now: float) -> None:
        self._issued = [(secrets.token_urlsafe(24), now)]


class DPoPRules:
    """The proof checks, nonces and ``jti`` memory of one server; safe to use from any thread.

    With ``require_nonce``, every proof must carry a nonce the server issued (a new one each
    ``nonce_rotation`` seconds).
    """

    def __init__(self, *, require_nonce: bool, nonce_rotation: float) -> None:
        self.require_nonce = require_nonce
        self._lock = threading.Lock()
        self._nonces = _Nonces(nonce_rotation)
        self._seen: dict[tuple[str, str], float] = {}  # (client, jti) -> when it may be forgotten
        self._proofs: list[DPoPProof] = []

    def check(
        self,
        headers: Message,
        *,
        endpoint: str,
        method: str,
        url: str,
        now: float,
        access_token: str | None = None,
    ) -> CheckedProof | None:
        """Check the ``DPoP`` header of a ``method`` request to ``url`` (with ``access_token``,
        at the API) and record it; None when there is none. Raises ProofError."""
        values = headers.get_all("DPoP") or []
        if not values:
            return None
        record = DPoPProof(endpoint, method, url, {}, {}, None, now)
        try:
            if len(values) > 1:
                raise ProofError("invalid_dpop_proof", "DPoP proof must be a single header")
            header, claims = _verified(values[0])
            record = dataclasses.replace(record, header=header, claims=claims)
            jkt = _thumbprint(header["jwk"])
            record = dataclasses.replace(record, jkt=jkt)
            nonce = self._check_claims(claims, method, url, access_token, now)
        except ProofError as refused:
            self._record(dataclasses.replace(record, problem=str(refused)))
            raise
        return CheckedProof(jkt, claims["jti"], nonce, self._record(record))

    def refuse(self, proof: CheckedProof, problem: str) -> None:
        """Mark the recorded ``proof`` refused for ``problem`` (a replay, a wrong key)."""
        with self._lock:
            self._proofs[proof.index] = dataclasses.replace(
                self._proofs[proof.index], problem=problem
            )

    def unique(self, client_id: str, proof: CheckedProof, now: float) -> bool:
        """Remember ``proof``'s jti for ``client_id``; False when it was seen before."""
        with self._lock:
            self._seen = {key: until for key, until in self._seen.items() if until > now}
            key = (client_id, proof.jti)
            if key in self._seen:
                return False
            self._seen[key] = now + IAT_WINDOW
            return True

    def nonce_headers(self, proof: CheckedProof | None, now: float) -> Headers:
        """The ``DPoP-Nonce`` header an answer to ``proof`` carries: the current nonce, when
        nonces are on and the proof's is not it; else none."""
        if proof is None or not self.require_nonce:
            return ()
        with self._lock:
            current = self._nonces.current(now)
        return () if proof.nonce == current else ((NONCE_HEADER, current),)

    def current_nonce(self, now: float) -> str:
        """The nonce the server hands out now."""
        with self._lock:
            return self._nonces.current(now)

    def rotate_nonce(self, now: float) -> None:
        """Issue a new nonce now; every earlier one is refused from now on."""
        with self._lock:
            self._nonces.rotate(now)

    def proofs(self) -> list[DPoPProof]:
        """Every proof received so far, oldest first."""
        with self._lock:
            return list(self._proofs)

    def _record(self, proof: DPoPProof) -> int:
        with self._lock:
            self._proofs.append(proof)
            return len(self._proofs) - 1

    def _check_claims(
        self,
        claims: Mapping[str, Any],
        method: str,
        url: str,
        access_token: str | None,
        now: float,
    ) -> str | None:
        """oidc-provider's checks of a verified proof's claims, in its order; returns the
        proof's nonce."""
        iat, jti, nonce = claims.get("iat"), claims.get("jti"), claims.get("nonce")
        if isinstance(iat, bool) or not isinstance(iat, (int, float)) or not iat:
            raise ProofError("invalid_dpop_proof", "DPoP proof must have a iat number property")
        if not isinstance(jti, str) or not jti:
            raise ProofError("invalid_dpop_proof", "DPoP proof must have a jti string property")
        if nonce is not None and not isinstance(nonce, str):
            raise ProofError("invalid_dpop_proof", "DPoP proof nonce must be a string")
        if not nonce and abs(now - iat) > IAT_WINDOW:
            if self.require_nonce:
                raise ProofError(
                    "use_dpop_nonce",
                    "DPoP proof iat is not recent enough, use a DPoP nonce instead",
                )
            raise ProofError("invalid_dpop_proof", "DPoP proof iat is not recent enough")
        if nonce and not self.require_nonce:
            raise ProofError("invalid_dpop_proof", "DPoP nonces are not supported")
        if claims.get("htm") != method:
            raise ProofError("invalid_dpop_proof", "DPoP proof htm mismatch")
        htu = claims.get("htu")
        if not isinstance(htu, str) or _normalised(htu) != _normalised(url):
            raise ProofError("invalid_dpop_proof", "DPoP proof htu mismatch")
        if access_token is not None and claims.get("ath") != _hash(access_token):
            raise ProofError("invalid_dpop_proof", "DPoP proof ath mismatch")
        if self.require_nonce:
            with self._lock:
                accepted = bool(nonce) and self._nonces.accepts(str(nonce), now)
            if not accepted:
                said = "invalid nonce in" if nonce else "nonce is required in"
                raise ProofError("use_dpop_nonce", f"{said} the DPoP proof")
        return nonce


def _verified(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of ``proof`` once its signature checks out with the public key it
    embeds; ProofError ("invalid DPoP key binding", as oidc-provider says for all of these)
    otherwise."""
    import jwt

    try:
        header = jwt.get_unverified_header(proof)
        problem = _header_problem(header)
        if problem is None:
            key = jwt.PyJWK(header["jwk"], header["alg"]).key
            verified = jwt.PyJWS().decode_complete(proof, key, algorithms=[header["alg"]])
            claims = json.loads(verified["payload"])
            problem = None if isinstance(claims, dict) else "the claims are not a JSON object"
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as error:
        problem = f"{type(error).__name__}: {error}"
    if problem is not None:
        raise ProofError("invalid_dpop_proof", "invalid DPoP key binding") from ValueError(problem)
    return header, claims


def _header_problem(header: Mapping[str, Any]) -> str | None:
    if header.get("typ") != _PROOF_TYPE:
        return f"typ is not {_PROOF_TYPE}"
    if header.get("alg") not in ALGORITHMS:
        return f"alg is not one of {', '.join(ALGORITHMS)}"
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or jwk.get("kty") not in _REQUIRED_MEMBERS:
        return "jwk is not an EC or OKP public key"
    if "d" in jwk:
        return "jwk holds a private key"
    return None


def _thumbprint(jwk: Mapping[str, Any]) -> str:
    required = {member: jwk[member] for member in _REQUIRED_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(required, sort_keys=True, separators=(",", ":")).encode())
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def _hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _normalised(url: str) -> str:
    """``url`` without query and fragment, as a URL parser compares it: scheme and host in
    lower case, no default port, ``/`` for an empty path."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return url  # no valid port: it matches nothing the server is
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    user = f"{parts.username}@" if parts.username is not None else ""  # kept: it must not be
    netloc = user + (f"[{host}]" if ":" in host else host)
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"
