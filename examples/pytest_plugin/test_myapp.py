import time
from pathlib import Path

from myapp import sync_items  # builds its RefreshingSession from these arguments

from refreshing_session import Token, TokenFile
from refreshing_session.testing import LocalAuthServer


def test_sync_survives_an_expired_token(
    refreshing_auth_server: LocalAuthServer, refreshing_token_file: Path
) -> None:
    expired = refreshing_auth_server.issue_token(access_ttl=0)
    TokenFile(refreshing_token_file).write(Token.from_response(expired, requested_at=time.time()))

    sync_items(
        api_url=refreshing_auth_server.api_url,
        token_url=refreshing_auth_server.token_url,
        token_file=refreshing_token_file,
    )

    stats = refreshing_auth_server.stats()
    assert (stats.refreshes, stats.reuse_detections) == (1, 0)
