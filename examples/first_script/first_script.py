from refreshing_session import RefreshingSession

# config.toml, written by serve.py, names the local server, its client and token.json.
session = RefreshingSession.from_profile("local", config="config.toml")
api = session.prefixes.urls[0]  # the server's API: http://127.0.0.1:PORT/api/
for name in ("items", "orders"):
    response = session.get(api + name, timeout=10)
    print(response.status_code, response.json()["path"])
