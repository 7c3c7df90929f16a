import json
from typing import Any

from authlib.integrations.requests_client import OAuth2Session  # type: ignore[import-untyped]

with open("token.json") as file:
    token = json.load(file)


def update_token(
    token: dict[str, Any], refresh_token: str | None = None, access_token: str | None = None
) -> None:
    with open("token.json", "w") as file:
        json.dump(token, file)


session = OAuth2Session(
    "my-client",
    "s3cret",
    token=token,
    token_endpoint="https://auth.example.com/oauth/token",
    update_token=update_token,
)
print(session.get("https://api.example.com/v1/items", timeout=10).status_code)
