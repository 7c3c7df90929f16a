"""Checks of the arguments users give the constructors, with errors that say how to fix them."""

from __future__ import annotations

import math
from urllib.parse import urlsplit


def seconds(name: str, value: object, *, allow_zero: bool) -> float:
    """Return ``value`` as a float number of seconds; raise TypeError for a non-number and
    ValueError for a negative, infinite or NaN one (or zero, unless ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "more than 0"
        raise ValueError(f"{name} must be a finite number of seconds, {bound}; got {value!r}")
    return float(value)


def check_redis_url(url: str) -> None:
    """Raise ValueError unless ``url`` is a usable Redis URL (``redis://``, ``rediss://`` or
    ``unix://``, with a numeric port and database). The message never quotes the URL, which
    may hold a password."""
    example = "as in redis://user:password@host:6379/0"
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"the Redis URL must start with redis://, rediss:// or unix://, {example}")
    try:
        parts.port  # noqa: B018  (parsing the port is the check)
    except ValueError:
        raise ValueError(
            f"the Redis URL's port must be a number from 0 to 65535, {example}"
        ) from None
    database = parts.path.strip("/")
    if parts.scheme != "unix" and database and not database.isdigit():
        raise ValueError(f"the Redis URL's database (its path) must be a number, {example}")
