"""A WSGI application whose one handler calls the API with the module-level session of
:mod:`.calls`, and answers what it saw as JSON: ``{"outcome": "200", "pid": ..., "built_in":
...}``.

gunicorn's ``--preload`` imports this module, and so builds the session, in the master process
before it forks the workers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from . import calls


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Call the API and answer 200 with the outcome, whatever it was: the test counts them."""
    outcome, pid, built_in = calls.call_api()
    body = json.dumps({"outcome": outcome, "pid": pid, "built_in": built_in}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
