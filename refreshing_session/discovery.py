"""Discovery: an authorization server's endpoints read from its metadata document (OpenID
Connect Discovery 1.0, RFC 8414), instead of typed by hand.

The document must name the very issuer that was asked for (RFC 8414 section 3.3, OpenID
Connect Discovery section 4.3): otherwise a server, or anyone able to answer for its well-known
URL, could send the client's credentials and tokens to endpoints of its choosing.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import requests

from . import exchange
from .errors import ClientRejected, RefreshFailed, excerpt
from .oauth_client import json_object, network_settings
from .urls import check_endpoint_url

# The endpoints a client of this library uses, by their metadata names.
ENDPOINTS = (
    "token_endpoint",
    "device_authorization_endpoint",
    "revocation_endpoint",
    "authorization_endpoint",
)


def document_urls(issuer: str) -> tuple[str, ...]:
    """Where the metadata of ``issuer`` may be: OpenID Connect's URL (the well-known path
    appended to the issuer) and RFC 8414's (inserted between the host and the issuer's path)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    inserted = urlunsplit(
        (parts.scheme, parts.netloc, "/.well-known/oauth-authorization-server" + path, "", "")
    )
    return (issuer.rstrip("/") + "/.well-known/openid-configuration", inserted)


def discover(
    issuer: str,
    *,
    session: requests.Session | None = None,
    timeout: float = 10.0,
    allow_insecure_http: bool = False,
) -> dict[str, str]:
    """Read ``issuer``'s metadata document and return its ``issuer`` and endpoints (those of
    :data:`ENDPOINTS` it names; ``token_endpoint`` always). ``session`` carries the request,
    with its network settings. Raises ClientRejected when the document names another issuer,
    a plain-http endpoint or no token endpoint, RefreshFailed when no document could be read."""
    check_endpoint_url("issuer", issuer, allow_insecure_http)
    http = session or exchange.watched_pool()
    for url in document_urls(issuer):
        request = requests.Request("GET", url, headers={"Accept": "application/json"})
        response = exchange.send(
            http,
            request,
            network=network_settings(http, url),
            timeout=timeout,
            endpoint=f"the discovery document {url}",
            secrets=(),
        )
        if response.status_code == 404:
            continue
        if not response.ok:
            raise RefreshFailed(
                f"the discovery document {url} answered {response.status_code} "
                f"(body: {excerpt(response.content) or 'empty'}); try again "
                "later",
                response=exchange.kept_for_error(response, ()),
            )
        return _endpoints(json_object(response), issuer, url, allow_insecure_http)
    raise ClientRejected(
        f"{issuer} publishes no discovery document (neither "
        f"{' nor '.join(document_urls(issuer))} exists); check the issuer, or "
        "give the token endpoint's URL",
        error="no_discovery_document",
    )


def _endpoints(
    document: dict[str, object] | None, issuer: str, url: str, allow_insecure_http: bool
) -> dict[str, str]:
    if document is None:
        raise ClientRejected(
            f"the discovery document {url} is not a JSON object", error="invalid_discovery_document"
        )
    named = document.get("issuer")
    if named != issuer:
        shown = excerpt(named) if isinstance(named, str) else repr(type(named).__name__)
        raise ClientRejected(
            f"the discovery document {url} names the issuer {shown}, not {issuer}: refused, as "
            "RFC 8414 requires (its endpoints could be anyone's); check the issuer's exact "
            "spelling, a trailing slash included",
            error="issuer_mismatch",
        )
    found = {"issuer": issuer}
    for name in ENDPOINTS:
        value = document.get(name)
        if value is None:
            continue
        try:
            check_endpoint_url(name, value, allow_insecure_http)
        except (TypeError, ValueError) as error:
            raise ClientRejected(
                f"the discovery document {url}: {error}", error="invalid_discovery_document"
            ) from None
        found[name] = str(value)
    if "token_endpoint" not in found:
        raise ClientRejected(
            f"the discovery document {url} names no token_endpoint",
            error="invalid_discovery_document",
        )
    return found
