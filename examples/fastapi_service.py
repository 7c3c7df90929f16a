"""A FastAPI service that calls an API with a token it shares with every other process on the
machine. One RefreshingAsyncClient lives as long as the application: every request the service
serves uses its connections and its token, refreshed in a worker thread, never on the loop.

Run it with ``uvicorn fastapi_service:app``.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request

from refreshing_session import LoginRequired, OAuth2Refresher, TokenError
from refreshing_session.httpx import RefreshingAsyncClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with RefreshingAsyncClient(
        "https://api.example.com/",  # only URLs under this prefix get the token
        token_file="token.json",  # shared with every process and thread on this machine
        refresher=OAuth2Refresher(
            "https://auth.example.com/oauth/token", client_id="my-client", client_secret="s3cret"
        ),
        timeout=10,  # the rest goes to httpx.AsyncClient
    ) as client:
        app.state.api = client
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/items")
async def items(request: Request) -> Any:
    api: RefreshingAsyncClient = request.app.state.api
    try:
        response = await api.get("https://api.example.com/v1/items")
    except LoginRequired:  # no token, or its refresh token was refused: someone must log in
        raise HTTPException(503, "this service must be logged in again") from None
    except TokenError:  # RefreshFailed, LockTimeout, TokenStoreError: try again later
        raise HTTPException(503, "the API's token cannot be renewed now") from None
    except httpx.HTTPError:  # the API itself could not be reached
        raise HTTPException(502, "the API cannot be reached") from None
    if response.is_error:
        raise HTTPException(502, f"the API answered {response.status_code}")
    return response.json()
