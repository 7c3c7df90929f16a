"""Start a local authorization server, write a profile for it, and approve each login.

Run it in this folder: it writes config.toml here. Ctrl+C (or `kill %1`) stops it."""

import pathlib
import time

from refreshing_session.testing import LocalAuthServer

# The server knows one client, "client", whose secret is "secret": hence LOCAL_SECRET=secret.
with LocalAuthServer(clients={"client": "secret"}, device_interval=1, access_ttl=60) as server:
    pathlib.Path("config.toml").write_text(f'''[profiles.local]
token_url = "{server.token_url}"
device_authorization_url = "{server.device_authorization_url}"
revocation_url = "{server.revocation_url}"
client_id = "client"
client_secret_env = "LOCAL_SECRET"
prefixes = "{server.api_url}"
''')
    print("ready", server.url, flush=True)
    try:
        while True:
            for code in server.pending_user_codes():
                time.sleep(1)  # the user reads the code and types it in
                server.approve(code)
            time.sleep(0.1)
    except KeyboardInterrupt:
        print("stopped")
