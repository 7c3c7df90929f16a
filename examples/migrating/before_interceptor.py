import json
from typing import Any

import requests


class TokenSession(requests.Session):
    def __init__(self, token_file: str) -> None:
        super().__init__()
        self.token_file = token_file
        with open(token_file) as file:
            self.token = json.load(file)

    def request(  # type: ignore[override]
        self, method: str, url: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = dict(headers or {})
        headers["Authorization"] = "Bearer " + self.token["access_token"]
        response = super().request(method, url, headers=headers, **kwargs)
        if response.status_code == 401:
            self.refresh()
            headers["Authorization"] = "Bearer " + self.token["access_token"]
            response = super().request(method, url, headers=headers, **kwargs)
        return response

    def refresh(self) -> None:
        answer = requests.post(
            "https://auth.example.com/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": self.token["refresh_token"]},
            auth=("my-client", "s3cret"),
            timeout=10,
        )
        answer.raise_for_status()
        self.token = answer.json()
        with open(self.token_file, "w") as file:
            json.dump(self.token, file)


session = TokenSession("token.json")
print(session.get("https://api.example.com/v1/items", timeout=10).status_code)
