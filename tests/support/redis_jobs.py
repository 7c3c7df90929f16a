"""The job of the STORM program (``tests.support.processes``) for processes that share nothing
but one key in a real redis-server."""

from __future__ import annotations

from refreshing_session.testing import LocalAuthServer

from .redis_servers import RedisServer


def redis_job(
    server: LocalAuthServer, redis_server: RedisServer, key: str, **extra: object
) -> dict[str, object]:
    """The STORM job for sessions on ``server``'s API whose token is ``key`` in
    ``redis_server``; ``extra`` adds the rest (``lock_ttl``, ``threads``, ``once``, ...)."""
    return {
        "api": server.api_url,
        "url": server.api_url + "items",
        "token_url": server.token_url,
        "redis": redis_server.url,
        "key": key,
        **extra,
    }
