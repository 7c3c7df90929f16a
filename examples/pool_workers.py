from multiprocessing import Pool

from refreshing_session import OAuth2Refresher, RefreshingSession

# Built at import: each worker process gets its own copy (inherited or re-imported), and all of
# them share token.json, so the token is refreshed once for the whole pool.
session = RefreshingSession(
    "https://api.example.com/",
    token_file="token.json",
    refresher=OAuth2Refresher(
        "https://auth.example.com/oauth/token", client_id="my-client", client_secret="s3cret"
    ),
)


def fetch(item: int) -> int:
    return session.get(f"https://api.example.com/v1/items/{item}", timeout=10).status_code


if __name__ == "__main__":  # the parent sends nothing itself: only the workers do
    with Pool(4) as pool:
        statuses = pool.map(fetch, range(40))
    print(f"{len(statuses)} requests, statuses {sorted(set(statuses))}")
