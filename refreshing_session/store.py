"""TokenFile: the JSON file that every process sharing a grant reads and replaces.

Reads are cheap to repeat: :meth:`TokenFile.signature` is one ``stat`` call, and a caller
re-reads only when the signature changed. Writes are atomic: a private temporary file in the
same folder, created 0600, flushed to disk, then renamed over the old one, so a reader sees
either the old token or the new one, never a mixture.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import TokenFileError
from .token import Token

logger = logging.getLogger(__name__)

MAX_FILE_SIZE = 1 << 20
# Notes the sessions keep about the stored token; a new token written without them clears them.
NOTES_KEY = "refreshing_session"

Signature = tuple[int, int, int, int]


@dataclass(frozen=True)
class Snapshot:
    """The token file's content at one moment, and the signature of that version (None for a
    token that is not in the file yet)."""

    token: Token
    signature: Signature | None
    notes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class TokenFile:
    """The token file at ``path``. A symlink is followed: its target is read and replaced."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    @property
    def lock_path(self) -> str:
        """The lock file beside the real token file. It holds no secret."""
        return os.path.realpath(self.path) + ".lock"

    def signature(self) -> Signature | None:
        """Return what identifies the current version of the file, or None if it is missing."""
        try:
            return _signature(os.stat(self.path))
        except FileNotFoundError:
            return None
        except OSError as error:
            raise TokenFileError(f"cannot inspect the token file ({error.strerror})",
                                 path=self.path) from None

    def read(self) -> Snapshot | None:
        """Read and parse the file. Return None if it does not exist.

        Raises TokenFileError when it exists but does not hold a usable token.
        """
        try:
            # O_NONBLOCK: a FIFO planted at the path must not hang the reader.
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._error(f"cannot open the token file ({error.strerror})") from None
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise self._error("the token file is not a regular file")
            raw = _read_up_to(fd, MAX_FILE_SIZE + 1)
        except TokenFileError:
            raise
        except OSError as error:
            raise self._error(f"cannot read the token file ({error.strerror})") from None
        finally:
            os.close(fd)
        if len(raw) > MAX_FILE_SIZE:
            raise self._error(f"the token file is larger than {MAX_FILE_SIZE} bytes")
        if status.st_mode & 0o077:
            logger.warning("token file %s is readable by other users (mode %o); "
                           "it will be made private (0600) at the next refresh",
                           self.path, stat.S_IMODE(status.st_mode))
        return self._parse(raw, status)

    def write(self, token: Token, notes: Mapping[str, Any] | None = None) -> Snapshot:
        """Atomically replace the file with ``token`` (and ``notes``); return the new snapshot."""
        data = token.to_dict()
        data.pop(NOTES_KEY, None)  # a token field of that name must not pass for notes
        if notes:
            data[NOTES_KEY] = dict(notes)
        # default=str: an odd value in an extra field must not stop a refreshed token's write.
        payload = json.dumps(data, indent=2, sort_keys=True, default=str).encode() + b"\n"
        target = os.path.realpath(self.path)
        try:
            _replace_atomically(target, payload)
            status = os.stat(target)
        except OSError as error:
            raise self._error(f"cannot write the token file ({error.strerror})") from None
        return Snapshot(token, _signature(status), MappingProxyType(dict(notes or {})))

    def _parse(self, raw: bytes, status: os.stat_result) -> Snapshot:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as error:  # JSON, UTF-8, digit-limit and depth errors
            problem = "empty" if not raw.strip() else f"not valid JSON ({error})"
            raise self._error(f"the token file is {problem}") from None
        if not isinstance(data, dict):
            raise self._error("the token file does not hold a JSON object")
        notes = data.pop(NOTES_KEY, {})
        if not isinstance(notes, dict):
            raise self._error(f"the token file's {NOTES_KEY!r} field is not an object")
        try:
            token = Token.from_file(data, written_at=status.st_mtime)
        except ValueError as error:
            raise self._error(f"the token file does not hold a usable token: {error}") from None
        return Snapshot(token, _signature(status), MappingProxyType(notes))

    def _error(self, message: str) -> TokenFileError:
        return TokenFileError(message, path=self.path)

    def __repr__(self) -> str:
        return f"TokenFile({self.path!r})"


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


def _signature(status: os.stat_result) -> Signature:
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

