"""Serve a local authorization server and API for the first script, until Ctrl+C.

Run it in this folder (`python serve.py`): it writes config.toml (the profile "local": the
server's URLs, its client, the token file) and token.json (a token as if you had logged in
yesterday: already expired)."""

import signal
import time
from pathlib import Path

from refreshing_session import Token, TokenFile
from refreshing_session.testing import LocalAuthServer

# "first-script" is a public client (no secret), so config.toml holds nothing to hide.
with LocalAuthServer(clients={"first-script": None}) as server:
    Path("config.toml").write_text(f'''[profiles.local]
token_url = "{server.token_url}"
client_id = "first-script"
auth_method = "none"
prefixes = "{server.api_url}"
token_file = "token.json"
''')
    expired = server.issue_token("first-script", access_ttl=0)
    TokenFile("token.json").write(Token.from_response(expired, requested_at=time.time()))
    print(f"serving on {server.url}; wrote config.toml and token.json; Ctrl+C stops", flush=True)
    try:
        signal.pause()  # until a signal: Ctrl+C, or kill
    except KeyboardInterrupt:
        print("stopped")
