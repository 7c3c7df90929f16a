"""Token stores: where the processes sharing a grant keep its token, and the lock they share.

:class:`TokenStore` is what the keeper needs from a store; :class:`TokenFile`, the default, is
a JSON file on a local filesystem with a file lock beside it. Its reads are cheap to repeat:
:meth:`TokenFile.version` is one ``fstat`` call on the file last read, held open (a ``stat`` by
path when that file changed or was replaced), and the keeper re-reads only when the version
changed. Its writes are atomic: a private temporary file in the same folder, created 0600,
flushed to disk, then renamed over the old one, so a reader sees either the old token or the
new one, never a mixture.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import stat
import tempfile
import weakref
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import filelock

from .errors import LockTimeout, TokenFileError, TokenStoreError
from .token import Token
from .trusted_files import OPEN_CHECKED, UntrustedFile, check_owner, follow_links

logger = logging.getLogger(__name__)

MAX_FILE_SIZE = 1 << 20
# Notes the sessions keep about the stored token; a new token written without them clears them.
NOTES_KEY = "refreshing_session"

# Waiting processes poll the lock this often; short, because a refresh is a round trip.
_LOCK_POLL = 0.002

_NOT_YOURS = (
    "a token file must be your own: remove it (or ask its owner to) and log in again, in a "
    "folder of your own"
)
# Windows cannot rename a file over one that is open, so there no file is held open.
_WATCHABLE = os.name == "posix"

# What identifies one stored version of the token; opaque to everyone but its store.
Version = Hashable


@dataclass(frozen=True)
class Snapshot:
    """A store's token at one moment, with the notes kept beside it and the version it was
    read as (None for a token that is not in the store yet)."""

    token: Token
    version: Version | None
    notes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@runtime_checkable
class TokenStore(Protocol):
    """Where the token lives, shared by every process that uses the grant.

    The keeper calls :meth:`version` on every request, so it must be cheap; everything else
    runs only around a refresh. A store whose ``version()`` never blocks (a local file) may say
    so with a class attribute ``version_never_blocks = True``: async front ends then ask it on
    the event loop instead of in a worker thread. A store raises a :class:`TokenStoreError`
    when it cannot be used, and never loses a token it said it wrote.
    """

    @property
    def location(self) -> str:
        """Where the token is, for messages: ``the token file /path``, say."""

    def version(self) -> Version | None:
        """Return what identifies the stored token's version, or None when there is none."""

    def read(self) -> Snapshot | None:
        """Return the stored token and its notes, or None when there is none."""

    def write(self, token: Token, notes: Mapping[str, Any] | None = None) -> Snapshot:
        """Store ``token`` (and ``notes``) whatever is stored now; return the new snapshot."""

    def replace(
        self, token: Token, notes: Mapping[str, Any] | None, replacing: Version | None
    ) -> Snapshot | None:
        """Store ``token`` only if the stored version is still ``replacing``; return the new
        snapshot, or None (and store nothing) when someone else stored a token since."""

    def delete(self) -> None:
        """Remove the stored token, if any."""

    def lock(
        self, timeout: float, stop_waiting: Callable[[], bool]
    ) -> AbstractContextManager[object]:
        """Hold the store's exclusive refresh lock for the context; raise LockTimeout when it
        could not be had within ``timeout`` seconds, or as soon as ``stop_waiting()`` says the
        wait is pointless. (What the context yields is not used.)"""


class TokenFile:
    """The token file at ``path``, with its lock file beside it: the :class:`TokenStore` a
    session builds for ``token_file=``. Use it to write a first token (a login) or to read the
    current one. A relative ``path`` is taken from the working folder when the TokenFile is
    made; ``path`` is then absolute.

    As OpenSSH does with its files, the token file must belong to the current user, and a
    symlink is followed (its target read and replaced) only when the link belongs to the
    current user or root: another user's file or link in a shared folder is refused with a
    TokenFileError, never read or written through.
    """

    #: :meth:`version` is one ``fstat`` or ``stat`` of a local file: async front ends may ask it
    #: on the event loop.
    version_never_blocks = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        # Absolute from the start: the file meant is the one named where the store was made,
        # whatever the process's working folder later, and messages name it unambiguously.
        # pathlib drops "." but keeps "..", which after a linked folder is the kernel's to read.
        self.path = str(Path(path).absolute())
        self._watch: _Watch | None = None

    @property
    def location(self) -> str:
        """``the token file PATH``, for messages."""
        return f"the token file {self.path}"

    @property
    def lock_path(self) -> str:
        """The lock file beside the real token file. It holds no secret."""
        return os.path.realpath(self._resolved()) + ".lock"

    def version(self) -> Version | None:
        """Return what identifies the current version of the file, or None if it is missing:
        one ``fstat`` of the file last read or written, when it is unchanged and still in place,
        else one ``stat`` by path."""
        watch = self._watch
        if watch is not None and watch.unchanged():
            return watch.version
        return self._version_at_path()

    def _version_at_path(self) -> Version | None:
        try:
            return _signature(os.stat(self.path))
        except FileNotFoundError:
            return None
        except OSError as error:
            raise TokenFileError(
                f"cannot inspect the token file ({error.strerror})", path=self.path
            ) from None

    def read(self) -> Snapshot | None:
        """Read and parse the file. Return None if it does not exist.

        Raises TokenFileError when it exists but does not hold a usable token.
        """
        resolved = self._resolved()
        try:
            fd = os.open(resolved, OPEN_CHECKED)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._error(f"cannot open the token file ({error.strerror})") from None
        try:
            status, raw = self._contents(fd)
        except BaseException:
            os.close(fd)
            raise
        self._watch_or_close(fd, resolved, status)
        if len(raw) > MAX_FILE_SIZE:
            raise self._error(f"the token file is larger than {MAX_FILE_SIZE} bytes")
        if status.st_mode & 0o077:
            logger.warning(
                "the token file %s is open to other users (mode %04o): run `chmod 600 %s` "
                "(the next refresh makes it private too)",
                self.path,
                stat.S_IMODE(status.st_mode),
                shlex.quote(self.path),
            )
        return self._parse(raw, status)

    def _contents(self, fd: int) -> tuple[os.stat_result, bytes]:
        """The status and the first bytes (one more than allowed) of the token file open at
        ``fd``; raises TokenFileError when it is not a regular file of this user's."""
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise self._error("the token file is not a regular file")
            self._check_owner(status)
            return status, _read_up_to(fd, MAX_FILE_SIZE + 1)
        except TokenFileError:
            raise
        except OSError as error:
            raise self._error(f"cannot read the token file ({error.strerror})") from None

    def write(self, token: Token, notes: Mapping[str, Any] | None = None) -> Snapshot:
        """Atomically replace the file with ``token`` (and ``notes``); return the new snapshot."""
        token, payload = storable(token, notes)
        target = self._resolved()
        existing = self._lstat(target)
        if existing is not None:
            self._check_owner(existing)
        try:
            _replace_atomically(target, payload)
            fd = os.open(target, OPEN_CHECKED)
        except OSError as error:
            raise self._error(f"cannot write the token file ({error.strerror})") from None
        status = self._watch_or_close(fd, target, os.fstat(fd))
        return Snapshot(token, _signature(status), MappingProxyType(dict(notes or {})))

    def replace(
        self, token: Token, notes: Mapping[str, Any] | None, replacing: Version | None
    ) -> Snapshot | None:
        """Write ``token`` if the file is still the version ``replacing``, else return None.

        Under the lock, only a login by hand can change the file between the check and the
        write; the window is one ``stat`` long. The check is by path, whatever the file held
        open says: a token newer than ``replacing`` is never overwritten.
        """
        if self._version_at_path() != replacing:
            return None
        return self.write(token, notes)

    def delete(self) -> None:
        """Remove the token file, if any (the lock file stays: others may be waiting on it)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as error:
            raise self._error(f"cannot remove the token file ({error.strerror})") from None

    @contextmanager
    def lock(self, timeout: float, stop_waiting: Callable[[], bool]) -> Iterator[None]:
        """Hold the file lock beside the token file; raise LockTimeout after ``timeout``
        seconds, or as soon as ``stop_waiting()`` is true, as filelock raises Timeout."""
        # Not thread-local: a refresh whose answer the deadline cut off hands its lock to the
        # thread that reads the rest, which releases it.
        lock = filelock.FileLock(
            self.lock_path, thread_local=False, fallback_to_soft=False, poll_interval=_LOCK_POLL
        )
        try:
            lock.acquire(timeout=max(0.0, timeout), cancel_check=stop_waiting)
        except filelock.Timeout:
            raise LockTimeout(
                f"the lock of {self.location} was not had in {timeout:.3g} s"
            ) from None
        except OSError as error:
            raise TokenFileError(
                f"cannot lock ({error.strerror}); check that the folder "
                "is writable and the lock file is yours",
                path=self.lock_path,
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _resolved(self) -> str:
        """The path of the real token file: ``path``, with the symbolic links on it followed
        when each belongs to the current user or root. Raises TokenFileError otherwise."""
        try:
            return follow_links(self.path, "the token file")
        except UntrustedFile as error:
            raise self._error(str(error)) from None
        except OSError as error:
            raise self._error(f"cannot inspect the token file ({error.strerror})") from None

    def _lstat(self, path: str) -> os.stat_result | None:
        """``path``'s own status (a link's, not its target's), or None when it is missing."""
        try:
            return os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._error(f"cannot inspect the token file ({error.strerror})") from None

    def _check_owner(self, status: os.stat_result) -> None:
        """Refuse a token file of another user (root's too, unless we are root): its token is
        not ours to send or replace."""
        try:
            check_owner(status, "the token file", root_too=False, advice=_NOT_YOURS)
        except UntrustedFile as error:
            raise self._error(str(error)) from None

    def _parse(self, raw: bytes, status: os.stat_result) -> Snapshot:
        try:
            token, notes = decode(raw, written_at=status.st_mtime)
        except ValueError as error:
            raise self._error(f"the token file {error}") from None
        return Snapshot(token, _signature(status), notes)

    def _watch_or_close(self, fd: int, opened: str, status: os.stat_result) -> os.stat_result:
        """Hold ``fd`` (the file at ``opened``, with ``status``) open for :meth:`version`, or
        close it; return ``status``. A file reached through a symlink is not held: a link can
        be pointed elsewhere without touching the file it led to."""
        if _WATCHABLE and opened == self.path:
            self._watch = _Watch(fd, _signature(status))
        else:
            os.close(fd)
        return status

    def _error(self, message: str) -> TokenFileError:
        return TokenFileError(message, path=self.path)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}  # a file held open belongs to this process

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.path, self._watch = state["path"], None

    def __repr__(self) -> str:
        return f"TokenFile({self.path!r})"


class _Watch:
    """The token file as last read or written, held open: an ``fstat`` on it costs less than a
    ``stat`` by path (on every request), and tells whether the file changed in place, or was
    replaced or removed (a replace renames another file over the path, which unlinks this one).
    It is closed once no thread uses it any more, so a thread never sees its number reused."""

    def __init__(self, fd: int, version: Version) -> None:
        self.fd, self.version = fd, version
        weakref.finalize(self, os.close, fd)

    def unchanged(self) -> bool:
        """Whether the file is as it was, and still at its path."""
        try:
            status = os.fstat(self.fd)
        except OSError:
            return False
        return status.st_nlink > 0 and _signature(status) == self.version


def storable(token: Token, notes: Mapping[str, Any] | None = None) -> tuple[Token, bytes]:
    """Return ``token`` as it is stored, and its stored form with ``notes``: a JSON object, as
    in a token file, of at most MAX_FILE_SIZE bytes, so that every reader accepts it.

    When the whole token would be larger, its largest extra fields (an ``id_token``, say; not
    what a session needs) are dropped with a warning. Raises TokenStoreError when even the
    token without them is too large."""
    payload = _encoded(token, notes)
    while len(payload) > MAX_FILE_SIZE and token.extra:
        token = _without_largest_extras(token, len(payload) - MAX_FILE_SIZE)
        payload = _encoded(token, notes)
    if len(payload) > MAX_FILE_SIZE:
        raise TokenStoreError(
            f"the token cannot be stored: it takes {len(payload)} bytes "
            f"without its extra fields, and a store holds {MAX_FILE_SIZE} "
            "at most; the token endpoint's answer is not a usable token"
        )
    return token, payload


def _encoded(token: Token, notes: Mapping[str, Any] | None) -> bytes:
    data = token.to_dict()
    data.pop(NOTES_KEY, None)  # a token field of that name must not pass for notes
    if notes:
        data[NOTES_KEY] = dict(notes)
    return _json(data)


def _json(data: Mapping[str, Any]) -> bytes:
    # default=str: an odd value in an extra field must not stop a refreshed token's write.
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode() + b"\n"


def _without_largest_extras(token: Token, excess: int) -> Token:
    """``token`` without the largest extra fields whose stored size makes up ``excess`` bytes
    (measured field by field: a server may send thousands of them)."""
    sizes = sorted(
        ((len(_json({key: value})), key) for key, value in token.extra.items()), reverse=True
    )
    dropped: list[str] = []
    for size, key in sizes:
        if excess <= 0:
            break
        dropped.append(key)
        excess -= size
    logger.warning(
        "dropped the token's extra fields %s from the stored token: with them it "
        "would exceed the %d bytes a token store holds",
        ", ".join(repr(key[:40]) for key in dropped),
        MAX_FILE_SIZE,
    )
    kept = {key: value for key, value in token.extra.items() if key not in dropped}
    return replace(token, extra=kept)


def decode(raw: bytes, *, written_at: float) -> tuple[Token, Mapping[str, Any]]:
    """Parse what :func:`storable` wrote (or a token dict saved by another tool). ``written_at``
    is when it was stored. Raises ValueError, whose text completes "the token file ...", when
    ``raw`` does not hold a usable token."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:  # JSON, UTF-8, digit-limit and depth errors
        raise ValueError(
            "is empty" if not raw.strip() else f"is not valid JSON ({error})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError("does not hold a JSON object")
    notes = data.pop(NOTES_KEY, {})
    if not isinstance(notes, dict):
        raise ValueError(f"has a {NOTES_KEY!r} field that is not an object")
    try:
        token = Token.from_file(data, written_at=written_at)
    except ValueError as error:
        raise ValueError(f"does not hold a usable token: {error}") from None
    return token, MappingProxyType(notes)


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _signature(status: os.stat_result) -> tuple[int, int, int, int]:
    # A replace makes a new inode, so a sibling's write is seen even within one mtime tick.
    return (status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size)


def _replace_atomically(target: str, payload: bytes) -> None:
    folder, name = os.path.split(target)
    # mkstemp creates the file 0600 from the start: no moment where others may read it.
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder or ".")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(folder or ".")


def _sync_folder(folder: str) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
