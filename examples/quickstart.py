from refreshing_session import OAuth2Refresher, RefreshingSession

session = RefreshingSession(
    "https://api.example.com/",  # one prefix or a list; only these URLs get the token
    token_file="token.json",  # shared by every process and thread
    refresher=OAuth2Refresher(
        "https://auth.example.com/oauth/token", client_id="my-client", client_secret="s3cret"
    ),
)
print(session.get("https://api.example.com/v1/items", timeout=10).status_code)
