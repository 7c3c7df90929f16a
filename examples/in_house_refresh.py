from typing import Any

import requests

from refreshing_session import LoginRequired, RefreshingSession, Token


def refresh(token: Token) -> dict[str, Any]:
    """Redeem the refresh token at POST /auth/refresh {"token": "..."}; return the answer."""
    response = requests.post(
        "https://auth.example.com/auth/refresh", json={"token": token.refresh_token}, timeout=10
    )
    if response.status_code in (400, 401):
        raise LoginRequired("the refresh token was refused; log in again")
    response.raise_for_status()  # any requests error becomes RefreshFailed
    answer: dict[str, Any] = response.json()  # {"access_token": "...", "expires_in": 900}
    return answer


session = RefreshingSession("https://api.example.com/", token_file="token.json", refresher=refresh)
print(session.get("https://api.example.com/v1/items", timeout=10).status_code)
