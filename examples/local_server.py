import time

from refreshing_session import OAuth2Refresher, RefreshingSession, Token, TokenFile
from refreshing_session.testing import LocalAuthServer

with LocalAuthServer() as server:
    expired = server.issue_token(access_ttl=0)  # as if the job had slept past its expiry
    TokenFile("token.json").write(Token.from_response(expired, requested_at=time.time()))
    session = RefreshingSession(
        server.api_url,
        token_file="token.json",
        refresher=OAuth2Refresher(server.token_url, "client", "secret"),
    )
    assert session.get(server.api_url + "items", timeout=10).ok
    stats = server.stats()
    assert (stats.refreshes, stats.reuse_detections) == (1, 0)
print("ok")
