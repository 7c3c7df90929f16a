"""Fetch a few resources from an API whose bearer token refreshes itself.

The kind of script a user writes, using only the public names of ``refreshing_session``. CI
type-checks it with ``mypy --strict``, and tests/test_examples.py runs it against a local
authorization server. The client secret comes from the environment, never from the command
line, where other users could read it in the process list:

    CLIENT_SECRET=... python examples/typed_usage.py --api-url https://api.example.com/ \\
        --token-url https://auth.example.com/oauth/token --client-id my-client \\
        --token-file token.json items orders

Exit status: 0 when every resource was fetched, 1 when trying again later may help, 2 when a
person must log in again, 3 when the client's configuration is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import requests

from refreshing_session import (
    ClientRejected,
    LoginRequired,
    OAuth2Refresher,
    RefreshFailed,
    RefreshingSession,
    Token,
)


class RefreshCounter:
    """The session's ``on_refresh`` callback: counts and reports the tokens this process got."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, token: Token) -> None:
        """Report a new token by its fingerprint (never the token itself)."""
        self.count += 1
        print(f"new token {token.fingerprint}, {describe_expiry(token)}")


def describe_expiry(token: Token) -> str:
    """Return when ``token`` expires, in words."""
    if token.expires_at is None:
        return "expiry unknown"
    return f"expires in {token.expires_at - time.time():.0f} s"


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """Return the command line's settings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--api-url", required=True, help="the API's URL prefix")
    parser.add_argument("--token-url", required=True, help="the token endpoint")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--token-file", required=True, help="shared by every process")
    parser.add_argument("resources", nargs="+", help="paths under the API's URL prefix")
    return parser.parse_args(argv)


def fetch(session: requests.Session, api_url: str, resources: Sequence[str]) -> None:
    """GET each resource and print its status; raise on the first error answer."""
    for resource in resources:
        response = session.get(api_url + resource, timeout=10)
        print(f"GET {resource}: {response.status_code}")
        response.raise_for_status()


def main(argv: Sequence[str]) -> int:
    """Fetch the resources the command line names; return the exit status."""
    arguments = parse_arguments(argv)
    counter = RefreshCounter()
    refresher = OAuth2Refresher(
        arguments.token_url,
        client_id=arguments.client_id,
        client_secret=os.environ.get("CLIENT_SECRET"),
    )
    with RefreshingSession(
        arguments.api_url,
        token_file=arguments.token_file,
        refresher=refresher,
        on_refresh=counter,
    ) as session:
        try:
            fetch(session, arguments.api_url, arguments.resources)
            token = session.token
        except LoginRequired as error:
            print(f"login required: {error}", file=sys.stderr)
            return 2
        except ClientRejected as error:
            print(f"client rejected: {error}", file=sys.stderr)
            return 3
        except RefreshFailed as error:
            answer = "no answer" if error.status_code is None else f"HTTP {error.status_code}"
            print(f"refresh failed ({answer}): {error}", file=sys.stderr)
            return 1
        except requests.RequestException as error:
            print(f"request failed: {error}", file=sys.stderr)
            return 1
    print(f"done: {counter.count} refresh(es); token {token.fingerprint}, {describe_expiry(token)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
