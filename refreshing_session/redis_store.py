"""RedisTokenStore: one token shared by processes on several machines, through Redis.

Install with ``pip install ".[redis]"`` from a checkout. Every process of the fleet builds a
``RedisTokenStore`` on the same Redis server and key, and passes it as ``store=`` to its
:class:`~refreshing_session.RefreshingSession`. What the store keeps and guarantees:

- **The token** lives in one Redis hash at ``key``: the token's JSON (the token file's form),
  ``written_at`` (the writer's clock) and ``version``, a new value at every write (a write
  counter plus a random part, so that a version is never reused, even if someone deletes the
  key by hand and writing starts over).
- **The refresh lock** is a separate key, ``key + ":lock"``, set with ``SET NX PX``: its value
  names the holder. While the holder works, a daemon thread of its own renews the lock every
  third of ``lock_ttl`` (an owner-checked Lua script, so a lock lost is never taken back), however
  slow the token endpoint; when the holder finishes, the renewal stops and the lock is released.
  A holder that crashed (or froze, or was cut off from Redis) renews no more, and its lock
  expires ``lock_ttl`` seconds later: that is all ``lock_ttl`` bounds. Only the holder deletes
  it (an owner-checked Lua script). Waiters retry after 2 ms, then 4, 8, ... up to 50 ms, so
  they do not flood Redis, and stop as soon as the keeper says a new token has arrived, or the
  timeout passes.
- **Fencing.** A refreshed token is stored only if the stored version is still the one the
  refresh started from, checked and written in one Lua script, so atomically. A holder that
  stalled past its lock's expiry (a long pause, a partition) can therefore never overwrite the
  newer token that the next holder stored meanwhile: its write is refused and it adopts that
  token.
- **A cheap hot path.** The keeper asks for the version on every request; the store answers from
  memory and asks Redis at most once every ``check_interval`` seconds. A token a sibling stored
  is thus noticed up to ``check_interval`` later. That is harmless: siblings refresh early, so
  the old token is still valid then; a token that is due makes the process try the lock, which
  reads Redis afresh; and a 401 always goes through the lock, which reads afresh too.
- **Outages.** When Redis cannot be reached, or hangs, :meth:`RedisTokenStore.version` keeps
  answering with the version it last saw and looks again only every 5 seconds (logging a
  warning at most once a minute), so requests with a still-valid token keep working, held up
  by one timeout (about a second, for a store built from a URL) per 5 seconds at most. An
  early refresh that fails that way pauses as a failed refresh does. Reading, writing and
  locking raise
  :class:`~refreshing_session.errors.TokenStoreError`, whose message never contains the
  password. The keeper keeps a token it refreshed but could not store, uses it, and stores it
  once Redis is back: no refreshed token is lost.

Limits, honestly:

- Redis is taken as **one primary**. With replication and failover, a lock just taken may not
  have reached the replica that is promoted, and a second process may then take the lock while
  the first still holds it. The fencing check keeps the *stored token* consistent even then
  (the second write over the same version is refused), but both holders may already have
  presented the same refresh token to the authorization server, which a provider with reuse
  detection answers by revoking the grant. Redlock-style schemes do not remove this either.
- The same goes for a holder whose lock expired while it was still refreshing (its process was
  paused, by SIGSTOP, a debugger or a VM's freeze, or cut off from Redis, for over
  ``lock_ttl``): the fencing check refuses its write, but it may already have redeemed the
  refresh token. So ``lock_ttl`` must exceed the longest pause a holder may suffer; a slow token
  endpoint no longer counts, since the lock is renewed meanwhile. A crashed holder makes the
  others wait ``lock_ttl`` at most (the default, a minute; waiters give up after the session's
  ``lock_timeout`` with ``LockTimeout``; early refreshes never wait).
- Expiry times are absolute: the machines' clocks must agree (NTP) to well within the leeway.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, NoReturn

try:
    import redis
except ModuleNotFoundError as missing:  # pragma: no cover - depends on the installation
    raise ModuleNotFoundError(
        'RedisTokenStore needs the redis package: pip install ".[redis]" from a checkout'
    ) from missing
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .arguments import check_redis_url, seconds
from .errors import LockTimeout, TokenStoreError, redact
from .store import MAX_FILE_SIZE, Snapshot, Version, decode, storable
from .token import Token

logger = logging.getLogger(__name__)

DEFAULT_LOCK_TTL = 60.0
# One Redis round trip per second per process at most is noise next to the requests it
# serves, and a second is far less than the time an early-refreshed token still has to live.
DEFAULT_CHECK_INTERVAL = 1.0

_FIRST_PAUSE = 0.002
_LONGEST_PAUSE = 0.05
_OUTAGE_WARNING_INTERVAL = 60.0
# A held lock is renewed every third of lock_ttl: two renewals may fail (a Redis hiccup)
# before it expires under a live holder.
_RENEWALS_PER_TTL = 3
# For clients built from a URL: a dead or hung server is reported within about a second (Redis
# answers these commands in well under a millisecond), and one quick retry reconnects a pooled
# connection that a Redis restart closed.
_CONNECT_TIMEOUT = 1.0
_SOCKET_TIMEOUT = 1.0
# While Redis cannot be reached, the hot path looks again this often, not at every request.
_OUTAGE_RECHECK = 5.0
_RETRY = Retry(ExponentialBackoff(cap=0.05, base=0.01), 1)
# Connection settings that are plain data and can be carried to another process.
_PLAIN = (type(None), bool, int, float, str, bytes)
_NOT_CARRIED = ("credential_provider", "redis_connect_func")

# Takes the lock for ARGV[1] for ARGV[2] ms; also true when ARGV[1] holds it already (the
# reply to an earlier attempt may have been lost, and redis-py retried).
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""
# Extends the lock to ARGV[2] ms from now only if ARGV[1] still holds it: a lock that expired
# (or that another holder took since) is never taken back.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Deletes the lock only if ARGV[1] still holds it: 0 tells that it had expired meanwhile.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Stores the token ARGV[2] written at ARGV[3] if the stored version is ARGV[1] ('' for none,
# '*' for any); the new version is the write count and ARGV[4]. Returns it, or nil (refused).
_STORE = """
local current = redis.call('HGET', KEYS[1], 'version') or ''
if ARGV[1] ~= '*' and current ~= ARGV[1] then return false end
local version = redis.call('HINCRBY', KEYS[1], 'writes', 1) .. '-' .. ARGV[4]
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'written_at', ARGV[3], 'version', version)
return version
"""


class RedisTokenStore:
    """The token of one grant in Redis, shared by every process on every machine that uses it.

    :param url_or_client: a ``redis://[user:password@]host:port/db`` URL (``rediss://`` for
        TLS, ``unix://`` for a socket) or a ``redis.Redis`` client. A store built from a URL
        waits at most a second for Redis (and retries once); give a client of your own a
        ``socket_timeout``, or a hung Redis holds requests up as long as its timeout.
    :param key: the Redis key of the token; the lock is ``key + ":lock"``.
    :param lock_ttl: seconds after which the lock of a holder that crashed or froze expires
        by itself (a live holder's lock is renewed); must exceed the longest pause a process
        may suffer (see the module's documentation).
    :param check_interval: seconds during which the stored version is answered from memory
        (0: ask Redis on every request).

    The store pickles (into a process pool, say): the copy connects anew. For a store built
    on a client, only its plain connection settings travel (host, port, db, credentials,
    timeouts, TLS files).
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        key: str,
        *,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise (TypeError if not isinstance(key, str) else ValueError)(
                "key must be a non-empty string, the Redis key of the token, such as "
                "'refreshing-session:my-api'"
            )
        self.key = key
        self.lock_ttl = seconds("lock_ttl", lock_ttl, allow_zero=False)
        self.check_interval = seconds("check_interval", check_interval, allow_zero=True)
        self._url: str | None = None
        if isinstance(url_or_client, str):
            self._url = url_or_client
            self._client = _client_from_url(url_or_client)
        elif isinstance(url_or_client, redis.Redis):
            self._client = url_or_client
            if url_or_client.connection_pool.connection_kwargs.get("socket_timeout") is None:
                logger.warning(
                    "the Redis client for %r has no socket_timeout: a hung Redis "
                    "would hold up requests without limit; set one (1 s, say)",
                    key,
                )
        else:
            raise TypeError(
                f"pass a redis:// URL or a redis.Redis client, got {type(url_or_client).__name__}"
            )
        self._start_process_state()

    def _start_process_state(self) -> None:
        pool = self._client.connection_pool
        self._address = _address(pool)
        self._password = pool.connection_kwargs.get("password")
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)
        self._renew = self._client.register_script(_RENEW)
        self._store = self._client.register_script(_STORE)
        self._version: Version | None = None
        self._seen_version = False
        self._recheck_at = -math.inf
        self._warned_at = -math.inf

    @property
    def location(self) -> str:
        """``the Redis key 'KEY' at redis://host:port/db``, for messages (no password)."""
        return f"the Redis key {self.key!r} at {self._address}"

    @property
    def lock_key(self) -> str:
        """The key of the refresh lock. It holds only the holder's random name."""
        return self.key + ":lock"

    def version(self) -> Version | None:
        """Return the stored token's version, or None when there is none: from memory within
        ``check_interval`` of the last look, else from Redis. While Redis cannot be reached,
        return the version last seen (with a warning); raise TokenStoreError if none was."""
        # No lock here: a fork must never copy one held, and two threads that both look at
        # Redis at the same moment do no harm.
        now = time.monotonic()
        if self._seen_version and now < self._recheck_at:
            return self._version
        # Claimed before the round trip: the other threads keep answering from memory.
        self._recheck_at = now + self.check_interval
        try:
            with self._talking("read the token version of"):
                raw = self._client.hget(self.key, "version")
        except TokenStoreError as error:
            if not self._seen_version:
                raise
            self._recheck_at = time.monotonic() + max(self.check_interval, _OUTAGE_RECHECK)
            self._warn_of_outage(error)
            return self._version
        version = _text(raw)
        self._remember(version)
        return version

    def read(self) -> Snapshot | None:
        """Return the stored token and its notes, or None when there is none.

        Raises TokenStoreError when Redis cannot be reached, or the key does not hold a token
        stored by this class."""
        with self._talking("read"):
            raw, version, written_at = self._client.hmget(
                self.key, ["token", "version", "written_at"]
            )
        if raw is None and version is None:
            self._remember(None)
            return None
        snapshot = self._parse(raw, _text(version), _text(written_at))
        self._remember(snapshot.version)
        return snapshot

    def write(self, token: Token, notes: Mapping[str, Any] | None = None) -> Snapshot:
        """Store ``token`` (and ``notes``) whatever is stored now; return the new snapshot."""
        snapshot = self._put(token, notes, "*")
        assert snapshot is not None  # an unconditional write is never refused
        return snapshot

    def replace(
        self, token: Token, notes: Mapping[str, Any] | None, replacing: Version | None
    ) -> Snapshot | None:
        """Store ``token`` only if the stored version is still ``replacing`` (None: no token),
        checked and written atomically; return the new snapshot, or None when another token
        was stored since (by a holder whose lock had expired, or a login)."""
        return self._put(token, notes, "" if replacing is None else str(replacing))

    def delete(self) -> None:
        """Remove the stored token, if any. The write counter stays, so versions keep rising."""
        with self._talking("delete the token in"):
            self._client.hdel(self.key, "token", "written_at", "version")
        self._remember(None)

    @contextmanager
    def lock(self, timeout: float, stop_waiting: Callable[[], bool]) -> Iterator[None]:
        """Hold the refresh lock for the context; raise LockTimeout after ``timeout`` seconds
        or as soon as ``stop_waiting()`` is true. While held, a daemon thread renews the lock
        every third of ``lock_ttl``; when this process dies or freezes, it expires
        ``lock_ttl`` later."""
        holder = secrets.token_hex(16)
        if not self._wait_for_lock(holder, timeout, stop_waiting):
            raise LockTimeout(f"the lock of {self.location} was not had in {timeout:.3g} s")
        done = threading.Event()
        threading.Thread(
            target=self._keep_alive,
            args=(holder, done),
            daemon=True,
            name=f"refresh lock of {self.key}",
        ).start()
        try:
            yield
        finally:
            done.set()
            self._unlock(holder)

    def _keep_alive(self, holder: str, done: threading.Event) -> None:
        """Renew ``holder``'s lock until ``done`` is set or the lock is found lost."""
        ttl_ms = self._ttl_ms()
        while not done.wait(self.lock_ttl / _RENEWALS_PER_TTL):
            try:
                with self._talking("renew the refresh lock of"):
                    renewed = self._renew(keys=[self.lock_key], args=[holder, ttl_ms])
            except TokenStoreError as error:
                logger.warning(
                    "%s; the lock expires by itself unless a renewal gets through", error
                )
                continue
            if renewed != 1 and not done.is_set():
                logger.warning(
                    "the refresh lock of %s was lost (this process paused for over "
                    "lock_ttl=%s s, or Redis lost the key)",
                    self.location,
                    self.lock_ttl,
                )
                return

    def _wait_for_lock(self, holder: str, timeout: float, stop_waiting: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        pause = _FIRST_PAUSE
        ttl_ms = self._ttl_ms()
        while True:
            try:
                with self._talking("lock"):
                    if self._acquire(keys=[self.lock_key], args=[holder, ttl_ms]) == 1:
                        return True
            except TokenStoreError:
                self._unlock(holder)  # the lock may have been taken and only the reply lost
                raise
            left = deadline - time.monotonic()
            if left <= 0 or stop_waiting():
                return False
            time.sleep(min(pause, left))
            pause = min(2 * pause, _LONGEST_PAUSE)

    def _ttl_ms(self) -> int:
        return max(1, round(self.lock_ttl * 1000))

    def _unlock(self, holder: str) -> None:
        """Release the lock; never raise, since the lock expires by itself anyway."""
        try:
            with self._talking("unlock"):
                released = self._release(keys=[self.lock_key], args=[holder])
        except TokenStoreError as error:
            logger.warning("%s; it expires by itself within lock_ttl=%s s", error, self.lock_ttl)
            return
        if released != 1:
            logger.warning(
                "the refresh lock of %s expired after lock_ttl=%s s, before its "
                "holder released it: the process paused for longer, or its renewals "
                "did not reach Redis; raise lock_ttl above the longest pause",
                self.location,
                self.lock_ttl,
            )

    def _put(self, token: Token, notes: Mapping[str, Any] | None, expected: str) -> Snapshot | None:
        token, payload = storable(token, notes)
        written_at = time.time()
        with self._talking("write the token to"):
            stored = self._store(
                keys=[self.key], args=[expected, payload, repr(written_at), secrets.token_hex(8)]
            )
        if stored is None:
            self._forget()  # someone else's version is there now: look at the next check
            return None
        version = _text(stored)
        self._remember(version)
        return Snapshot(token, version, MappingProxyType(dict(notes or {})))

    def _parse(self, raw: object, version: str | None, written_at: str | None) -> Snapshot:
        if raw is None or version is None or written_at is None:
            self._fail(
                "does not hold a complete token (its 'token', 'version' and "
                "'written_at' fields are written together); delete it and log in again"
            )
        data = raw.encode() if isinstance(raw, str) else raw
        assert isinstance(data, bytes)
        if len(data) > MAX_FILE_SIZE:
            self._fail(f"holds a token larger than {MAX_FILE_SIZE} bytes")
        try:
            when = float(written_at)
        except ValueError:
            self._fail("has a 'written_at' field that is not a time; delete it and log in again")
        try:
            token, notes = decode(data, written_at=when)
        except ValueError as error:
            # decode's texts complete "the token file ...": "is not valid JSON (...)", say.
            self._fail(f"{error}; delete it and log in again")
        return Snapshot(token, version, notes)

    def _fail(self, detail: str) -> NoReturn:
        raise TokenStoreError(f"{self.location} {detail}")

    @contextmanager
    def _talking(self, action: str) -> Iterator[None]:
        """Turn redis-py's errors into a TokenStoreError saying what failed and what to do."""
        try:
            yield
        except redis.RedisError as error:
            detail = redact(str(error), [self._password])
            raise TokenStoreError(
                f"cannot {action} {self.location}: {detail} "
                f"({type(error).__name__}); {_advice(error)}"
            ) from None

    def _remember(self, version: Version | None) -> None:
        self._version = version
        self._seen_version = True
        self._recheck_at = time.monotonic() + self.check_interval

    def _forget(self) -> None:
        self._recheck_at = -math.inf

    def _warn_of_outage(self, error: TokenStoreError) -> None:
        now = time.monotonic()
        if now - self._warned_at < _OUTAGE_WARNING_INTERVAL:
            return
        self._warned_at = now
        logger.warning(
            "%s; going on with the token last read, until it is due (warned at most once a minute)",
            error,
        )

    def __getstate__(self) -> dict[str, Any]:
        connection: object = self._url if self._url is not None else _settings(self._client)
        return {
            "connection": connection,
            "key": self.key,
            "lock_ttl": self.lock_ttl,
            "check_interval": self.check_interval,
        }

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        connection = state["connection"]
        self.key, self.lock_ttl = state["key"], state["lock_ttl"]
        self.check_interval = state["check_interval"]
        if isinstance(connection, str):
            self._url, self._client = connection, _client_from_url(connection)
        else:
            pool_class, connection_class, settings = connection
            self._url = None
            self._client = redis.Redis(
                connection_pool=pool_class(connection_class=connection_class, **settings)
            )
        self._start_process_state()

    def __repr__(self) -> str:
        return f"RedisTokenStore({self._address!r}, key={self.key!r})"


def _client_from_url(url: str) -> redis.Redis:
    check_redis_url(url)
    try:
        return redis.Redis.from_url(
            url,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            socket_timeout=_SOCKET_TIMEOUT,
            retry=_RETRY,
        )
    except ValueError:
        # redis-py's own text may quote the URL, password included.
        raise ValueError(
            "the Redis URL cannot be parsed: check its port, database number and "
            "query options (redis://user:password@host:6379/0)"
        ) from None


def _settings(client: redis.Redis) -> tuple[type, type, dict[str, Any]]:
    """What rebuilds ``client``'s connection pool in another process."""
    pool = client.connection_pool
    if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):
        raise TypeError(
            f"a RedisTokenStore on a client with a {type(pool).__name__} cannot be "
            "pickled; build it from a redis:// URL instead"
        )
    settings = pool.connection_kwargs
    if any(settings.get(name) is not None for name in _NOT_CARRIED):
        raise TypeError(
            "a RedisTokenStore on a client with a credential_provider or "
            "redis_connect_func cannot be pickled; build one in each process"
        )
    plain = {
        name: value
        for name, value in settings.items()
        if isinstance(value, _PLAIN) and not name.startswith("orig_")
    }
    plain["max_connections"] = pool.max_connections
    return type(pool), pool.connection_class, plain


def _address(pool: redis.ConnectionPool) -> str:
    """Where ``pool`` connects, as a URL without credentials."""
    settings = pool.connection_kwargs
    if "path" in settings:
        return f"unix://{settings['path']}?db={settings.get('db', 0)}"
    scheme = "rediss" if issubclass(pool.connection_class, redis.SSLConnection) else "redis"
    host = str(settings.get("host", "localhost"))
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{settings.get('port', 6379)}/{settings.get('db', 0)}"


def _advice(error: redis.RedisError) -> str:
    if isinstance(error, redis.AuthenticationError):
        return "check the user name and password of the Redis URL or client"
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
        return (
            "check that Redis is running and reachable (sessions keep a token they refreshed "
            "meanwhile, and store it when Redis is back)"
        )
    if isinstance(error, redis.exceptions.NoPermissionError):
        return (
            "grant the Redis user the commands HGET, HMGET, HSET, HDEL, HINCRBY, SET, GET, "
            "DEL, PEXPIRE, EVALSHA and SCRIPT on the key and its ':lock' key"
        )
    if "WRONGTYPE" in str(error):
        return "the key holds another kind of value: choose another key, or delete it"
    return "check the Redis server's configuration"


def _text(value: object) -> str | None:
    """A Redis reply as text (replies are bytes unless the client decodes them)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
