from refreshing_session import OAuth2Refresher, RefreshingSession

session = RefreshingSession(
    "https://api.example.com/",
    token_file="token.json",
    refresher=OAuth2Refresher(
        "https://auth.example.com/oauth/token",
        client_id="my-client",
        client_secret="s3cret",
        auth_method="client_secret_post",  # auto_refresh_kwargs put them in the form body
    ),
)
print(session.get("https://api.example.com/v1/items", timeout=10).status_code)
