import json
from typing import Any

from requests_oauthlib import OAuth2Session  # type: ignore[import-untyped]

with open("token.json") as file:
    token = json.load(file)


def save_token(token: dict[str, Any]) -> None:
    with open("token.json", "w") as file:
        json.dump(token, file)


session = OAuth2Session(
    "my-client",
    token=token,
    auto_refresh_url="https://auth.example.com/oauth/token",
    auto_refresh_kwargs={"client_id": "my-client", "client_secret": "s3cret"},
    token_updater=save_token,
)
print(session.get("https://api.example.com/v1/items", timeout=10).status_code)
