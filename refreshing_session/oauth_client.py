"""The client of one authorization server: its endpoints, the client's authentication, the
network it is reached through, timeouts, retries of the failures that are safe to retry, and
typed errors with the secrets redacted.

The refreshers send their grants through one; the login sends device authorization and
authorization code requests, and the logout its revocation, through the same kind of client
(held, not inherited). Each request is one bounded exchange (see :mod:`.exchange`).

With ``dpop=True``, every grant carries a DPoP proof (RFC 9449) signed by the key the token is
bound to (see :mod:`.dpop`), follows the server's nonces, and returns a token that carries its
key; a refusal caused by the proof is told apart from a refused grant.
"""

from __future__ import annotations

import logging
import os
import re
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypedDict, TypeVar

import requests

from . import exchange
from .arguments import seconds
from .client_auth import ClientAuthentication, ClientCert
from .dpop import DPoPKey, Nonces, bound_jkt, key_of, require_signer
from .errors import (
    AnswerUnderway,
    ClientRejected,
    LoginRequired,
    RefreshFailed,
    TokenError,
    excerpt,
)
from .token import Token
from .urls import check_endpoint_url

logger = logging.getLogger(__name__)

# RFC 6749 section 5.2 codes that mean the client's configuration is wrong.
_CLIENT_ERRORS = frozenset(
    {
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "unsupported_grant_type",
        "invalid_request",
        "invalid_target",
    }
)
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable"})
# An invalid_grant whose description says this is about the DPoP proof, not the grant.
_ABOUT_PROOF = re.compile(r"dpop|proof|\bjkt\b|\bjti\b|replay|key binding|thumbprint", re.I)
_LONGEST_BACKOFF = 10.0
# Form parameters whose values are secrets: redacted from every error message.
_SECRET_PARAMETERS = (
    "refresh_token",
    "device_code",
    "token",
    "code",
    "code_verifier",
    "client_assertion",
)
# Parameters the client sets itself: extra_params may not replace them.
_RESERVED = frozenset(
    {
        "grant_type",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "refresh_token",
        "device_code",
        "code",
        "code_verifier",
        "redirect_uri",
        "token",
        "token_type_hint",
    }
)
_T = TypeVar("_T")


class ClientOptions(TypedDict, total=False):
    """The keyword arguments of :class:`OAuthClient` that the refreshers pass on."""

    auth_method: str | None
    private_key: Any
    key_id: str | None
    algorithm: str | None
    key_certificate: str | bytes | None
    client_cert: ClientCert | None
    scope: str | None
    extra_params: Mapping[str, str] | None
    headers: Mapping[str, str] | None
    session: requests.Session | None
    timeout: float
    retries: int
    allow_insecure_http: bool
    endpoints: Mapping[str, str] | None
    dpop: bool
    dpop_key: str | os.PathLike[str] | None


class OAuthClient:
    """A client of one authorization server.

    :param token_url: the token endpoint.
    :param client_id: the client's id; with ``client_secret``, ``auth_method``,
        ``private_key``, ``key_id``, ``algorithm``, ``key_certificate`` and ``client_cert``,
        how the client authenticates (see
        :class:`~refreshing_session.client_auth.ClientAuthentication`).
    :param scope: the scope asked for (a space-separated string).
    :param extra_params: form parameters sent with every grant and authorization request,
        such as ``{"audience": ...}`` (Auth0) or ``{"resource": ...}`` (RFC 8707, Azure v1).
    :param headers: extra headers sent with every request to the server (their values are
        redacted from errors). Authorization is the client authentication's own.
    :param session: the :class:`requests.Session` whose connection pool, adapters and network
        settings (``verify``, ``cert``, ``proxies``, ``trust_env``) carry the requests. Its
        headers, auth and cookies are never sent. Without one, a pool of the client's own is
        used with the network settings of the session handed by :meth:`use_network_of` (as a
        RefreshingSession does), read at each request, or else requests' defaults.
    :param timeout: the longest an exchange may take in all, in seconds.
    :param retries: how often a failure that is safe to retry is retried, with backoff.
    :param allow_insecure_http: accept plain http endpoints outside the loopback interface.
    :param endpoints: the server's other endpoints, by their RFC 8414 names
        (``device_authorization_endpoint``, ``revocation_endpoint``,
        ``authorization_endpoint``), and ``issuer``, as discovery found them.
    :param dpop: send a DPoP proof (RFC 9449) with every grant, and expect DPoP-bound tokens.
        A grant signs with the key the token it replaces is stored with, else the
        ``dpop_key`` file's, else a new P-256 key; the new token carries that key, so that it is
        stored with it. Needs ``pip install ".[jwt]"`` from a checkout.
    :param dpop_key: a PEM file holding the EC P-256 (or Ed25519) private key to sign with,
        provisioned by the caller; it must pass the checks of a private key file (see
        :mod:`.trusted_files`). Only with ``dpop=True``.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        auth_method: str | None = None,
        private_key: Any = None,
        key_id: str | None = None,
        algorithm: str | None = None,
        key_certificate: str | bytes | None = None,
        client_cert: ClientCert | None = None,
        scope: str | None = None,
        extra_params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        allow_insecure_http: bool = False,
        endpoints: Mapping[str, str] | None = None,
        dpop: bool = False,
        dpop_key: str | os.PathLike[str] | None = None,
    ) -> None:
        """Check and keep the client's configuration; raises ValueError or TypeError saying
        what to fix."""
        check_endpoint_url("token_url", token_url, allow_insecure_http)
        self.auth = ClientAuthentication(
            client_id,
            auth_method,
            client_secret=client_secret,
            private_key=private_key,
            key_id=key_id,
            algorithm=algorithm,
            key_certificate=key_certificate,
            client_cert=client_cert,
        )
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries!r}")
        if session is not None and not isinstance(session, requests.Session):
            raise TypeError(f"session must be a requests.Session, got {type(session).__name__}")
        if hasattr(session, "keeper"):
            # Its adapter would add the API's token to the grant, and refresh inside a refresh.
            raise TypeError(
                "session must be a plain requests.Session, not a RefreshingSession: "
                "a RefreshingSession hands its verify, cert and proxies to its "
                "refresher by itself"
            )
        self.token_url = token_url
        self.scope = scope
        self.extra_params = _strings("extra_params", extra_params, _RESERVED)
        self.headers = _strings("headers", headers, frozenset({"authorization"}))
        self.session = session
        self.timeout = seconds("timeout", timeout, allow_zero=False)
        self.retries = retries
        self.allow_insecure_http = allow_insecure_http
        self.endpoints = dict(endpoints or {})
        for name, url in self.endpoints.items():
            if name != "issuer":
                check_endpoint_url(name, url, allow_insecure_http)
        self.dpop = dpop
        self.dpop_key = _dpop_key(dpop, dpop_key)
        self.nonces = Nonces()  # shared with the front ends' proofs (one memory per origin)
        self._pool: requests.Session | None = None
        self._network_source: weakref.ref[requests.Session] | None = None

    @property
    def client_id(self) -> str:
        """The client's id."""
        return self.auth.client_id

    @property
    def auth_method(self) -> str:
        """How the client authenticates (one of ``client_auth.AUTH_METHODS``)."""
        return self.auth.method

    def endpoint(self, name: str) -> str | None:
        """The server's endpoint ``name`` (an RFC 8414 name), if known."""
        return self.endpoints.get(name)

    def use_network_of(self, session: requests.Session) -> None:
        """Reach the server with ``session``'s ``verify``, ``cert``, ``proxies`` and
        ``trust_env`` as they are at each request, unless this client was given a session of
        its own. Keeps only a weak reference: the client does not keep ``session`` alive."""
        self._network_source = weakref.ref(session)

    def grant(
        self, form: Mapping[str, str], *, resend_safe: bool, previous: Token | None = None
    ) -> Token:
        """Post a grant (with ``extra_params`` and ``scope`` when the form names none, and a
        DPoP proof signed by :meth:`proof_key` with ``dpop``), retrying transient failures;
        return the token it gave. Raises AnswerUnderway (never retried) when the deadline cut
        off a successful answer that had begun."""
        form = {**self.extra_params, **form}
        if self.scope and "scope" not in form:
            form["scope"] = self.scope
        key = self.proof_key(previous)

        def attempt() -> Token:
            requested_at = time.time()

            def token_of(response: requests.Response) -> Token:
                return self.token_answer(response, requested_at, form, previous, proof_key=key)

            return token_of(self.post(form, underway=token_of, proof_key=key))

        return self.retrying(attempt, resend_safe=resend_safe)

    def proof_key(self, previous: Token | None = None) -> DPoPKey | None:
        """The key a grant signs its DPoP proofs with: None without ``dpop``; else the key
        stored with ``previous`` (the token a refresh replaces: its refresh token may be bound
        to it), else the ``dpop_key`` file's, else a new P-256 key. Raises LoginRequired when
        ``previous`` holds a key that cannot be read."""
        if not self.dpop:
            return None
        try:
            stored = None if previous is None else key_of(previous)
        except ValueError as error:
            raise LoginRequired(str(error)) from None
        return stored or self.dpop_key or DPoPKey.generate()

    def retrying(self, attempt: Callable[[], _T], *, resend_safe: bool) -> _T:
        """Return what ``attempt()`` returns, calling it again (up to ``retries`` times, with
        backoff) after a RefreshFailed that says the request was not processed, or after any
        transient failure when the request is ``resend_safe``."""
        count = 0
        while True:
            try:
                return attempt()
            except RefreshFailed as failure:
                delay = self._backoff(failure, count, resend_safe)
                if delay is None:
                    raise
                logger.info("%s; retrying in %.1f s", failure, delay)
                time.sleep(delay)
                count += 1

    def post(
        self,
        form: Mapping[str, str],
        url: str | None = None,
        *,
        underway: Callable[[requests.Response], Token] | None = None,
        proof_key: DPoPKey | None = None,
    ) -> requests.Response:
        """POST ``form`` to ``url`` (the token endpoint by default) with the client's
        authentication and no redirects; return the answer, whatever its status, read within
        the timeout in all and at most 1 MiB (see :func:`exchange.send`). Raises RefreshFailed
        when no complete answer came; with ``underway``, AnswerUnderway when a 2xx answer
        began but did not end in time. The answer's request holds only the method and URL.

        With ``proof_key``, the request carries a new DPoP proof signed by it, with the
        latest nonce of the server's origin; an answer that asks for a nonce (``use_dpop_nonce``
        with a ``DPoP-Nonce`` header) is sent once more with that nonce, and only once: the
        server did not process the request."""
        url = url or self.token_url
        response = self._post_once(form, url, underway, proof_key)
        if proof_key is None:
            return response
        if self.nonces.remember(url, response.headers) and _asks_for_nonce(response):
            logger.debug("%s asked for a DPoP nonce; sending once more", self._endpoint(url))
            response = self._post_once(form, url, underway, proof_key)
            self.nonces.remember(url, response.headers)
        return response

    def _post_once(
        self,
        form: Mapping[str, str],
        url: str,
        underway: Callable[[requests.Response], Token] | None,
        proof_key: DPoPKey | None,
    ) -> requests.Response:
        form = dict(form)
        headers = {**self.headers, "Accept": "application/json"}
        self.auth.apply(form, headers, audience=self.token_url)
        if proof_key is not None:
            headers["DPoP"] = proof_key.proof("POST", url, nonce=self.nonces.get(url))
        http, network = self._network(url)
        request = requests.Request("POST", url, data=form, headers=headers)
        return exchange.send(
            http,
            request,
            network=network,
            timeout=self.timeout,
            endpoint=self._endpoint(url),
            secrets=self._secrets(form),
            underway=underway,
        )

    def _network(self, url: str) -> tuple[requests.Session, dict[str, Any]]:
        """The session that carries a request to ``url``, and the settings it goes with: the
        given session's, or the handed session's as they are now, or requests' defaults; the
        client certificate of TLS client authentication wins."""
        if self._pool is None:
            self._pool = self.session or exchange.watched_pool()
        handed = self._network_source() if self._network_source is not None else None
        network = network_settings(self.session or handed or self._pool, url)
        if self.auth.cert is not None:
            network["cert"] = self.auth.cert
        return self._pool, network

    def token_answer(
        self,
        response: requests.Response,
        requested_at: float,
        form: Mapping[str, str],
        previous: Token | None = None,
        *,
        proof_key: DPoPKey | None = None,
    ) -> Token:
        """Return the token in the token endpoint's ``response`` to ``form`` (sent with a DPoP
        proof signed by ``proof_key``, if any, to replace ``previous``), or raise the typed
        error its refusal means (see :meth:`refusal`). A token answered to a proof must be a
        DPoP token, and carries ``proof_key``; without a proof it must not be one: else
        ClientRejected says so."""
        if not response.ok:
            raise self.refusal(response, form, previous=previous, proof_key=proof_key)
        try:
            token = Token.from_response(
                json_object(response) or {}, requested_at=requested_at, previous=previous
            )
        except ValueError as error:
            problem = str(error)
        else:
            mismatch = _binding_mismatch(token, proof_key)
            if mismatch is None:
                return token if proof_key is None else _carrying(token, proof_key)
            raise ClientRejected(
                f"{self._endpoint(response.url)} answered a token that {mismatch}",
                response=self.kept_for_error(response, form),
            )
        # Raised outside the except clause, so that the error keeps no context.
        raise self._failure(response, f"no usable token: {problem}", form)

    def kept_for_error(
        self, response: requests.Response, form: Mapping[str, str]
    ) -> requests.Response:
        """The copy of ``response`` (the answer to ``form``) that an error may keep: no
        credential, token or code in it (see :func:`exchange.kept_for_error`)."""
        return exchange.kept_for_error(response, self._secrets(form))

    def refusal(
        self,
        response: requests.Response,
        form: Mapping[str, str],
        *,
        previous: Token | None = None,
        proof_key: DPoPKey | None = None,
    ) -> TokenError:
        """The typed error for an error answer to ``form`` (sent to replace ``previous``, with
        a DPoP proof signed by ``proof_key``, if any): LoginRequired for invalid_grant,
        ClientRejected for a bad client configuration or a refused DPoP proof (which says what
        was wrong with the proof: an invalid_grant about the proof is not a dead grant), else
        RefreshFailed. Its message quotes the server's error and never a secret."""
        data = json_object(response)
        code = error_code(response)
        description = str(data.get("error_description", "")) if data else ""
        said = excerpt(f"{code}: {description}" if description else code, self._secrets(form))
        proof_problem = _proof_problem(code, description, previous, proof_key)
        if proof_problem is not None:
            return ClientRejected(
                f"{self._endpoint(response.url)} refused the DPoP proof, not the grant ({said}): "
                f"{proof_problem}; the grant was not marked as refused",
                response=self.kept_for_error(response, form),
                error=code,
            )
        if code == "use_dpop_nonce":
            again = f"{said}; a new DPoP nonce again, after the one retry with its nonce"
            return self._failure(response, again, form)
        if code == "invalid_grant":
            grant = "the refresh token" if "refresh_token" in form else "the grant"
            return LoginRequired(
                f"the authorization server rejected {grant} ({said}); log in again",
                response=self.kept_for_error(response, form),
            )
        if code in _CLIENT_ERRORS or (response.status_code == 401 and not code):
            return ClientRejected(
                f"{self._endpoint(response.url)} rejected the client {self.client_id!r} "
                f"({said or response.status_code}); check client_id, client_secret (or "
                f"key), auth_method, scope and extra_params",
                response=self.kept_for_error(response, form),
                error=code,
            )
        return self._failure(response, said, form)

    def _failure(
        self, response: requests.Response, said: str, form: Mapping[str, str]
    ) -> RefreshFailed:
        body = excerpt(response.content, self._secrets(form)) or "an empty body"
        reason = f"{said}; " if said else ""
        return RefreshFailed(
            f"{self._endpoint(response.url)} answered {response.status_code} "
            f"({reason}body: {body}); try again later",
            response=self.kept_for_error(response, form),
        )

    def _secrets(self, form: Mapping[str, str]) -> tuple[str | None, ...]:
        """What must never appear in an error: the client's credentials (the Basic ones too:
        an error page may echo the request's headers), the extra headers' values and the
        form's tokens, codes and assertions."""
        return (
            *self.auth.secrets(),
            *self.headers.values(),
            *(form.get(name) for name in _SECRET_PARAMETERS),
        )

    def _endpoint(self, url: str) -> str:
        return f"the token endpoint {url}" if url == self.token_url else f"the endpoint {url}"

    def _backoff(self, failure: RefreshFailed, attempt: int, resend_safe: bool) -> float | None:
        """Seconds to wait before retrying ``failure``, or None if it is not worth a retry."""
        if attempt >= self.retries or not _transient(failure, resend_safe):
            return None
        delay = 0.2 * 2**attempt
        response = failure.response
        retry_after = "" if response is None else response.headers.get("Retry-After", "").strip()
        if retry_after.isascii() and retry_after.isdigit():
            delay = float(retry_after)
        return delay if delay <= _LONGEST_BACKOFF else None

    def __getstate__(self) -> dict[str, Any]:
        # The pool is rebuilt where the copy lands; the handed session is handed again there.
        return {**self.__dict__, "_pool": None, "_network_source": None}

    def __repr__(self) -> str:
        return (
            f"OAuthClient({self.token_url!r}, client_id={self.client_id!r}, "
            f"auth_method={self.auth_method!r}{', dpop=True' if self.dpop else ''})"
        )


def _dpop_key(dpop: bool, path: str | os.PathLike[str] | None) -> DPoPKey | None:
    """The key of the ``dpop_key`` file at ``path``, if any; raises TypeError or ValueError
    saying what to fix, or ImportError when DPoP is asked for without PyJWT."""
    if not isinstance(dpop, bool):
        raise TypeError(f"dpop must be True or False, got {type(dpop).__name__}")
    if path is not None and not dpop:
        raise ValueError("dpop_key is only used with dpop=True")
    if dpop:
        require_signer()  # fail now, not at the first grant
    return None if path is None else DPoPKey.from_file(path)


def _asks_for_nonce(response: requests.Response) -> bool:
    """Whether the token endpoint's ``response`` asks for a DPoP nonce (RFC 9449 section 8)."""
    return error_code(response) == "use_dpop_nonce"


def _binding_mismatch(token: Token, proof_key: DPoPKey | None) -> str | None:
    """What is wrong with the binding of ``token``, answered to a request whose proof
    ``proof_key`` signed (None: no proof), or None when nothing is."""
    if proof_key is None:
        unasked = "is DPoP-bound although no DPoP proof was sent; pass dpop=True"
        return unasked if token.is_dpop else None
    if not token.is_dpop:
        return (
            f"is not DPoP-bound (token_type {token.token_type!r}, not DPoP) although a DPoP "
            "proof was sent: the server does not bind this client's tokens; enable DPoP for "
            "the client at the server, or pass dpop=False"
        )
    bound = bound_jkt(token)
    if bound is not None and bound != proof_key.jkt:
        return f"is bound to the key {bound}, not to the proof's key {proof_key.jkt}"
    return None


def _carrying(token: Token, key: DPoPKey) -> Token:
    """``token`` with ``key`` stored in it, so that every process signs with the same key."""
    return replace(token, dpop_key=key.private_pem())


def _proof_problem(
    code: str, description: str, previous: Token | None, proof_key: DPoPKey | None
) -> str | None:
    """What was wrong with a grant's DPoP proof (or its absence), when the refusal ``code``
    with ``description`` is about it rather than about the grant; None when it is not.

    An invalid_grant may be the proof's doing: node oidc-provider answers a missing proof, a
    replayed one and a public client's proof signed with the wrong key all with invalid_grant
    "grant request is invalid", although the grant survives. It is told apart by the
    description, or by a proof that could not have been right."""
    if code == "invalid_dpop_proof":
        return "the server found the proof invalid"
    is_dpop = previous is not None and previous.is_dpop
    if code != "invalid_grant" or (proof_key is None and not is_dpop):
        return None
    if proof_key is None:
        return "the token is DPoP-bound, but the request carried no proof; pass dpop=True"
    if _ABOUT_PROOF.search(description):
        return "the server's description names the proof"
    bound = None if previous is None else bound_jkt(previous)
    if bound is not None and bound != proof_key.jkt:
        return f"it was signed with the key {proof_key.jkt}, but the token is bound to {bound}"
    if is_dpop and previous is not None and previous.dpop_key is None:
        return (
            f"the token came without the key it is bound to, and the proof was signed with "
            f"{proof_key.jkt}, which may not be that key; log in again with DPoP on, so that "
            "the key is stored with the token"
        )
    return None


def network_settings(session: requests.Session, url: str) -> dict[str, Any]:
    """The ``verify``, ``cert`` and ``proxies`` that ``session`` would use for ``url`` now
    (with the environment's, when its ``trust_env`` says so). A ``verify`` set on the session
    (a CA bundle, or False) wins over ``REQUESTS_CA_BUNDLE``, which requests itself lets
    override it."""
    verify = None if session.verify is True else session.verify
    settings = session.merge_environment_settings(url, {}, None, verify, None)
    return {key: settings[key] for key in ("verify", "cert", "proxies")}


def _strings(
    name: str, given: Mapping[str, str] | None, reserved: frozenset[str]
) -> dict[str, str]:
    """``given`` as a dict of strings; raises TypeError or ValueError naming ``name``."""
    if given is None:
        return {}
    if not isinstance(given, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in given.items()
    ):
        raise TypeError(f"{name} must be a mapping of strings to strings")
    taken = sorted(key for key in given if key.lower() in reserved)
    if taken:
        raise ValueError(f"{name} may not set {', '.join(taken)}: the client sets it itself")
    return dict(given)


def json_object(response: requests.Response) -> dict[str, Any] | None:
    """The JSON object ``response`` holds, or None when it holds anything else (not JSON, not
    an object, or nested too deeply to parse)."""
    try:
        data = response.json()
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _transient(failure: RefreshFailed, resend_safe: bool) -> bool:
    """Whether a retry may succeed, and is safe. A refresh grant that may have been processed
    must not be sent again: the server may have spent the refresh token, and a second
    redemption revokes the grant. 503, 429 and temporarily_unavailable say the request was not
    processed; a 500, 502 or 504 (from a gateway) does not."""
    if isinstance(failure, AnswerUnderway):
        return False  # the answer is on its way: sending the grant again would spend it twice
    response = failure.response
    if response is None:
        return resend_safe or isinstance(failure.__cause__, exchange.NotConnected)
    if response.status_code in (429, 503) or error_code(response) in _TRANSIENT_ERRORS:
        return True
    return resend_safe and response.status_code >= 500


def error_code(response: requests.Response) -> str:
    """The OAuth error code of an error answer (RFC 6749 section 5.2), or "" when it has none."""
    data = json_object(response)
    return str(data.get("error", "")) if data else ""
