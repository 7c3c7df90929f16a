from refreshing_session import ClientCredentialsRefresher, RefreshingSession

# No login: the first request gets a token with the client's credentials and writes the file.
session = RefreshingSession(
    "https://api.example.com/",
    token_file="job-token.json",
    refresher=ClientCredentialsRefresher(
        "https://auth.example.com/oauth/token", client_id="my-job", client_secret="s3cret"
    ),
)
print(session.get("https://api.example.com/v1/items", timeout=10).status_code)
