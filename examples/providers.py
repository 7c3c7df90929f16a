"""The clients of the oidc-provider recipe (docs/how-to/providers.md), for an issuer behind a
private CA. tests/interop/test_oidc_provider_logins.py runs them against the real provider."""

import requests

from refreshing_session import ClientCredentialsRefresher, OAuth2Refresher


def clients(issuer: str, ca_file: str, key_pem: bytes, certificate_file: str) -> dict[str, object]:
    corporate = requests.Session()
    corporate.verify = ca_file  # the private CA; a RefreshingSession's own verify works too

    return {
        # A person, in the browser or with a device code: a native client, no secret.
        "person": OAuth2Refresher.from_issuer(
            issuer, "native", scope="openid offline_access", session=corporate
        ),
        # A service that signs an assertion, asking for a token for one API (RFC 8707).
        "service": ClientCredentialsRefresher.from_issuer(
            issuer,
            "jwt",
            private_key=key_pem,
            key_id="interop-key-1",
            scope="api:read",
            extra_params={"resource": "https://api.interop.test"},
            session=corporate,
        ),
        # A service that presents a client certificate (RFC 8705).
        "certificate": ClientCredentialsRefresher.from_issuer(
            issuer, "mtls", client_cert=certificate_file, session=corporate
        ),
    }
