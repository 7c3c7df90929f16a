"""``python -m refreshing_session``: the same as the ``refreshing-session`` command."""

from .cli import main

raise SystemExit(main())
