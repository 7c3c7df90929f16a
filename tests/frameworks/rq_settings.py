"""RQ settings for ``rq worker --config tests.frameworks.rq_settings``: the worker imports this
module at start, and with it the jobs' module, which builds the session. Each work horse the
worker forks for a job then inherits the session instead of importing the module again (RQ's
advice for workers that preload what their jobs use)."""

from __future__ import annotations

from . import calls as calls
