"""gunicorn's configuration for the framework tests: each worker signs in, once it has booted,
with a file named after its pid in the folder ``FRAMEWORKS_READY``, so that the test knows when
they are all serving."""

from __future__ import annotations

import os
from pathlib import Path


def post_worker_init(worker: object) -> None:
    """gunicorn's hook, called in each worker once it has booted."""
    Path(os.environ["FRAMEWORKS_READY"], str(os.getpid())).touch()
