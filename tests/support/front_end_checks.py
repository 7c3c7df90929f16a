"""Checks that more than one front-end suite makes: the bearer suite (tests/test_front_ends.py)
and the DPoP suite (tests/test_dpop_front_ends.py) hold the front ends to the same rule, each
with a server and tokens of its own, so the check is written once here and each suite calls it
with its own clients."""

from __future__ import annotations

from refreshing_session.testing import LocalAuthServer

from .front_ends import ClientFactory


def check_a_401_no_refresh_cures_costs_one_refresh_per_token(
    make_client: ClientFactory, server: LocalAuthServer
) -> None:
    """The guard: a path where a refresh did not help gets its 401s back without more
    refreshes, across sibling clients (``make_client`` builds them); other paths still work."""
    client, sibling = make_client(), make_client()
    for each in (client, client, sibling, client):
        assert each.request("GET", server.api_url + "always401").status == 401
    assert server.stats().refreshes == 1, "a refresh for a path that one refresh did not cure"
    assert client.request("GET", server.api_url + "items").status == 200
