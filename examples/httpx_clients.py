import asyncio

import httpx

from refreshing_session import OAuth2Refresher
from refreshing_session.httpx import RefreshingAsyncClient, RefreshingAuth, RefreshingClient

refresher = OAuth2Refresher(
    "https://auth.example.com/oauth/token", client_id="my-client", client_secret="s3cret"
)

# An httpx.Client subclass: the keyword arguments it does not know go to httpx.
with RefreshingClient(
    "https://api.example.com/", token_file="token.json", refresher=refresher, timeout=10
) as client:
    print(client.get("https://api.example.com/v1/items").status_code)


# An httpx.AsyncClient subclass, for asyncio and trio.
async def main() -> None:
    async with RefreshingAsyncClient(
        "https://api.example.com/", token_file="token.json", refresher=refresher, timeout=10
    ) as client:
        print((await client.get("https://api.example.com/v1/items")).status_code)


asyncio.run(main())

# An httpx.Auth, for clients you build yourself, sync or async.
auth = RefreshingAuth("https://api.example.com/", token_file="token.json", refresher=refresher)
print(httpx.get("https://api.example.com/v1/items", auth=auth, timeout=10).status_code)
