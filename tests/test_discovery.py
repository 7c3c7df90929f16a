"""Discovery (OpenID Connect Discovery, RFC 8414): endpoints read from the issuer's document,
which must name that very issuer; a document that names another is refused before any
credential is sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from refreshing_session import ClientCredentialsRefresher, ClientRejected, OAuth2Refresher
from refreshing_session.discovery import discover, document_urls
from refreshing_session.testing import LocalAuthServer

from .support.handlers import QuietHandler
from .support.hostile import LoopbackServer

Documents = Callable[[str, str], dict[str, Any] | None]


class MetadataServer(LoopbackServer):
    """Serves ``documents(origin, path)`` as JSON at the paths it answers, 404 elsewhere;
    records the paths asked for and any POST (which would carry credentials)."""

    def __init__(self, documents: Documents) -> None:
        self.paths: list[str] = []
        self.posts = 0
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                document = documents(server.origin, self.path)
                if document is None:
                    self.send_json(404, {})
                else:
                    self.send_json(200, document)

            def do_POST(self) -> None:
                server.posts += 1
                self.send_empty(400)

        super().__init__(Handler)


@pytest.fixture
def auth_server() -> Iterator[LocalAuthServer]:
    with LocalAuthServer() as server:
        yield server


def oidc_document(auth: LocalAuthServer) -> Documents:
    def documents(origin: str, path: str) -> dict[str, Any] | None:
        if path != "/.well-known/openid-configuration":
            return None
        return {
            "issuer": origin,
            "token_endpoint": auth.token_url,
            "device_authorization_endpoint": auth.device_authorization_url,
            "revocation_endpoint": auth.revocation_url,
            "authorization_endpoint": origin + "/authorize",
            "jwks_uri": origin + "/jwks",
        }

    return documents


def test_from_issuer_reads_the_endpoints_and_the_refresher_works(
    auth_server: LocalAuthServer,
) -> None:
    with MetadataServer(oidc_document(auth_server)) as metadata:
        refresher = ClientCredentialsRefresher.from_issuer(metadata.origin, "client", "secret")
        assert refresher.token_url == auth_server.token_url
        assert refresher.client.endpoint("revocation_endpoint") == auth_server.revocation_url
        assert refresher.client.endpoint("issuer") == metadata.origin
        assert refresher.new_token().access_token
        assert metadata.paths == ["/.well-known/openid-configuration"], "read once"


def test_an_issuer_with_a_path_is_found_at_the_rfc_8414_location() -> None:
    def documents(origin: str, path: str) -> dict[str, Any] | None:
        if path != "/.well-known/oauth-authorization-server/tenant/7":
            return None
        return {"issuer": origin + "/tenant/7", "token_endpoint": origin + "/tenant/7/token"}

    with MetadataServer(documents) as metadata:
        found = discover(metadata.origin + "/tenant/7")
        assert found == {
            "issuer": metadata.origin + "/tenant/7",
            "token_endpoint": metadata.origin + "/tenant/7/token",
        }
        assert metadata.paths == [
            "/tenant/7/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server/tenant/7",
        ]


def test_document_urls_follow_both_specifications() -> None:
    assert document_urls("https://login.example.com/") == (
        "https://login.example.com/.well-known/openid-configuration",
        "https://login.example.com/.well-known/oauth-authorization-server",
    )


@pytest.mark.parametrize("named", ["https://evil.example", "{origin}/", None, 42])
def test_a_document_naming_another_issuer_is_refused_before_any_credential_is_sent(
    named: object,
) -> None:
    def documents(origin: str, path: str) -> dict[str, Any] | None:
        issuer = named.format(origin=origin) if isinstance(named, str) else named
        return {"issuer": issuer, "token_endpoint": origin + "/steal"}

    with MetadataServer(documents) as metadata:
        with pytest.raises(ClientRejected, match=r"names the issuer .* not .*refused") as caught:
            OAuth2Refresher.from_issuer(metadata.origin, "client", "secret")
        assert caught.value.error == "issuer_mismatch"
        assert metadata.posts == 0


def test_a_document_pointing_credentials_at_plain_http_is_refused() -> None:
    def documents(origin: str, path: str) -> dict[str, Any] | None:
        return {"issuer": origin, "token_endpoint": "http://auth.example.com/token"}

    with MetadataServer(documents) as metadata, pytest.raises(ClientRejected, match="plain http"):
        discover(metadata.origin)


def test_no_document_says_what_to_do() -> None:
    with (
        MetadataServer(lambda origin, path: None) as metadata,
        pytest.raises(
            ClientRejected, match=r"publishes no discovery document.*give the token endpoint"
        ),
    ):
        discover(metadata.origin)


def test_a_document_without_a_token_endpoint_is_refused() -> None:
    with (
        MetadataServer(lambda origin, path: {"issuer": origin}) as metadata,
        pytest.raises(ClientRejected, match="names no token_endpoint"),
    ):
        discover(metadata.origin)
