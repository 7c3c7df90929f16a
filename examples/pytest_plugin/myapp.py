"""The code under test: it builds its session from the configuration it is given."""

from pathlib import Path

from refreshing_session import OAuth2Refresher, RefreshingSession


def sync_items(*, api_url: str, token_url: str, token_file: Path) -> None:
    """Fetch the items; raise if the API refuses."""
    refresher = OAuth2Refresher(token_url, client_id="client", client_secret="secret")
    with RefreshingSession(api_url, token_file=token_file, refresher=refresher) as session:
        response = session.get(api_url + "items", timeout=10)
        response.raise_for_status()
