"""Start the test authorization server: django-oauth-toolkit on SQLite, on 127.0.0.1.

    python -m tests.interop.dot_server.serve --port 0 --db /tmp/x/dot.sqlite3 --grace 0

Migrates a fresh database at ``--db`` (an existing file there is deleted first), creates the
user and the applications of :mod:`.clients`, and serves with a threaded ``wsgiref`` server,
one thread per request. Prints ``READY <port>`` once it accepts connections (``--port 0``
takes a free port). Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socketserver
import sys
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from . import clients


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128  # a storm opens many connections at once


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log: a storm makes thousands of requests."""


def _prepare(db: Path, grace: int) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.interop.dot_server.settings"
    os.environ["DOT_SERVER_DB"] = str(db)
    os.environ["DOT_SERVER_GRACE"] = str(grace)
    db.unlink(missing_ok=True)
    import django  # type: ignore[import-untyped]
    from django.core.management import call_command  # type: ignore[import-untyped]

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)

    from django.contrib.auth import get_user_model  # type: ignore[import-untyped]
    from oauth2_provider.models import Application  # type: ignore[import-untyped]

    user = get_user_model().objects.create_user(clients.USERNAME, password=None)
    # The secret is given in plaintext: DOT hashes it on save (hash_client_secret=True, its
    # default) and checks what clients send against the hash. Reading client_secret back after
    # save gives the hash, which no client could authenticate with.
    for client_id, secret, grant_type in (
        (
            clients.BASIC_CLIENT_ID,
            clients.BASIC_CLIENT_SECRET,
            Application.GRANT_AUTHORIZATION_CODE,
        ),
        (clients.POST_CLIENT_ID, clients.POST_CLIENT_SECRET, Application.GRANT_AUTHORIZATION_CODE),
        (clients.CC_CLIENT_ID, clients.CC_CLIENT_SECRET, Application.GRANT_CLIENT_CREDENTIALS),
    ):
        Application.objects.create(
            name=client_id,
            client_id=client_id,
            client_secret=secret,
            user=user,
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=grant_type,
            redirect_uris="http://127.0.0.1/callback",
            hash_client_secret=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 (the default) takes a free one")
    parser.add_argument("--db", type=Path, required=True, help="SQLite file to create")
    parser.add_argument(
        "--grace", type=int, default=0, help="REFRESH_TOKEN_GRACE_PERIOD_SECONDS (default 0)"
    )
    args = parser.parse_args(argv)
    _prepare(args.db, args.grace)

    from django.core.wsgi import get_wsgi_application  # type: ignore[import-untyped]

    application = get_wsgi_application()
    with ThreadingWSGIServer(("127.0.0.1", args.port), QuietHandler) as server:
        server.set_app(application)
        print(f"READY {server.server_port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever(poll_interval=0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
