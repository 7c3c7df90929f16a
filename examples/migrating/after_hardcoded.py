from refreshing_session import OAuth2Refresher, RefreshingSession

session = RefreshingSession(
    "https://api.example.com/",
    token_file="token.json",  # log in once: refreshing-session login --import, or a login flow
    refresher=OAuth2Refresher(
        "https://auth.example.com/oauth/token", client_id="my-client", client_secret="s3cret"
    ),
)
# The session.headers["Authorization"] line is gone: the session adds the token itself.
print(session.get("https://api.example.com/v1/items", timeout=10).status_code)
