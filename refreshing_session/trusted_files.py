"""Trusted files: the rule a file must pass before the library believes what it says.

A profile file decides where the client secret and the refresh token are sent; a key, a
certificate or a secret file decides who the client is. Whoever can change such a file, or
plant a symbolic link on the way to it, can have those secrets sent to a server of their own.
So, as OpenSSH does with its configuration and keys, a file is trusted only when:

- every symbolic link on its path (the file's own, and any folder's) belongs to the current
  user or root;
- the file is a regular file that belongs to the current user or root;
- neither its group nor other users can write to it;
- and, for a file that holds a private key or a secret, other users cannot read it, nor can its
  group unless root owns it (which is how a system shares a key with a service's group).

A file that breaks the rule raises :class:`UntrustedFile`, whose text names the file (its
absolute path), the rule it breaks, and the command that mends it; each caller restates it as
its own error (a ProfileError, a TokenFileError). The token file's owner rule is stricter (the
current user only): :func:`check_owner` takes whom to accept. On Windows, where files have no
POSIX owner or mode, only the regular-file check applies.
"""

from __future__ import annotations

import os
import stat
from pathlib import PurePath

# As the kernel allows (Linux's MAXSYMLINKS).
_MOST_LINKS = 40
#: The flags a checked file is opened with. O_NOFOLLOW: a link swapped in after the walk is
#: refused, not followed. O_NONBLOCK: a FIFO planted at the path must not hang the reader (it
#: is then refused as not a regular file).
OPEN_CHECKED = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_POSIX_OWNERS = hasattr(os, "geteuid")
_ROOT = 0


class UntrustedFile(Exception):
    """A file (or a link on its path) breaks the rule; the text says which rule and what to do."""


def read_trusted(path: str | os.PathLike[str], what: str, *, private: bool = False) -> bytes:
    """Return the contents of the file at ``path`` once it passes the rule; ``what`` names it
    in messages ("the profile file"). With ``private`` (a private key, a secret, a DPoP key
    file), a file that others can read is refused too.

    The checks are made on the file opened, not on the path, so a file swapped in meanwhile is
    never read. Raises UntrustedFile when the rule is broken, OSError when the file cannot be
    read."""
    fd, _ = _open_trusted(path, what, private=private)
    with os.fdopen(fd, "rb") as file:
        return file.read()


def trusted_path(path: str | os.PathLike[str], what: str, *, private: bool = False) -> str:
    """Check the file at ``path`` as :func:`read_trusted` does, for a file that another library
    opens itself (a client certificate, a CA bundle), and return the path it was found at, its
    symbolic links followed. Raises UntrustedFile or OSError."""
    fd, found = _open_trusted(path, what, private=private)
    os.close(fd)
    return found


def follow_links(path: str | os.PathLike[str], what: str) -> str:
    """Return ``path`` with every symbolic link on it replaced by where it leads, as the kernel
    would follow it, after checking that each link belongs to the current user or root.
    A path that does not exist (yet) keeps its missing part as written; a path without links
    comes back as given (normalised as :class:`~pathlib.PurePath` does). Raises UntrustedFile
    for another user's link or a loop, OSError when a folder cannot be inspected."""
    pending, walked = _parts(os.fspath(path), "")
    links = 0
    while pending:
        here = os.path.join(walked, pending.pop())
        try:
            status = os.lstat(here)
        except FileNotFoundError:
            return os.path.join(here, *reversed(pending))
        if not stat.S_ISLNK(status.st_mode):
            walked = here
            continue
        _check_link(here, status, what, last=not pending)
        links += 1
        if links > _MOST_LINKS:
            raise UntrustedFile(
                f"{what}'s symbolic links go round in circles ({os.path.abspath(path)})"
            )
        # Relative to the link's folder, as the kernel does; not normalised, so that ".."
        # after a linked folder means what it means to the kernel.
        target, walked = _parts(os.readlink(here), walked)
        pending.extend(target)
    return walked


def check_owner(status: os.stat_result, what: str, *, root_too: bool = True, advice: str) -> None:
    """Refuse a file (``status``; ``what`` names it) that belongs to someone other than the
    current user (or root, with ``root_too``); ``advice`` says what to do instead."""
    if not _POSIX_OWNERS:
        return
    owners = (os.geteuid(), _ROOT) if root_too else (os.geteuid(),)
    if status.st_uid not in owners:
        raise UntrustedFile(f"{what} belongs to another user (uid {status.st_uid}); {advice}")


def check_trusted(status: os.stat_result, path: str, what: str, *, private: bool = False) -> None:
    """Refuse the file at ``path`` (absolute; ``status`` is its own, ``what`` names it) when it
    is not a regular file of the current user's or root's, when its group or others can write
    it, or (``private``) when anyone else can read it."""
    named = f"{what} {path}"
    if not stat.S_ISREG(status.st_mode):
        raise UntrustedFile(f"{named} is not a regular file")
    if not _POSIX_OWNERS:
        return
    check_owner(
        status,
        named,
        advice="only files of your own or root's are trusted: move your own copy into a "
        "folder of your own (after reading what it says), or have it chowned to you",
    )
    mode = stat.S_IMODE(status.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedFile(
            f"{named} can be changed by {_who(mode, stat.S_IWGRP, stat.S_IWOTH)} (mode "
            f"{mode:04o}), and only files that no one else can change are trusted: "
            f"chmod go-w {path}"
        )
    readers = mode & _unwanted_readers(status)
    if private and readers:
        fix = "chmod 600" if readers & stat.S_IRGRP else "chmod o-r"
        raise UntrustedFile(
            f"{named} holds a secret that {_who(readers, stat.S_IRGRP, stat.S_IROTH)} can read "
            f"(mode {mode:04o}); as ssh does with its keys, such a file is used only when no "
            f"one else can read it: {fix} {path}"
        )


def _open_trusted(path: str | os.PathLike[str], what: str, *, private: bool) -> tuple[int, str]:
    """A read-only descriptor of the file at ``path``, once it and its links pass the rule,
    and the path it was found at."""
    found = follow_links(path, what)
    fd = os.open(found, OPEN_CHECKED)
    try:
        check_trusted(os.fstat(fd), os.path.abspath(found), what, private=private)
    except BaseException:
        os.close(fd)
        raise
    return fd, found


def _parts(path: str, walked: str) -> tuple[list[str], str]:
    """The components of ``path`` still to walk, last first (the next one is ``pop()``), and
    where the walk goes on from: the path's anchor when it is absolute, else ``walked``."""
    pure = PurePath(path)
    parts = list(pure.parts[1:] if pure.anchor else pure.parts)
    parts.reverse()
    return parts, pure.anchor or walked


def _check_link(link: str, status: os.stat_result, what: str, *, last: bool) -> None:
    if not _POSIX_OWNERS or status.st_uid in (os.geteuid(), _ROOT):
        return
    owner = f"another user (uid {status.st_uid})"
    if last:
        raise UntrustedFile(
            f"{what} {os.path.abspath(link)} is a symbolic link that belongs to {owner}, so "
            f"it is not followed; remove it, and keep {what} in a folder of your own"
        )
    raise UntrustedFile(
        f"{what} is reached through {os.path.abspath(link)}, a symbolic link that belongs to "
        f"{owner}, so it is not followed; remove that link, or name a path without it"
    )


def _unwanted_readers(status: os.stat_result) -> int:
    """The read bits that would let someone read a secret: others', and its group's too
    unless root owns the file (root may share a key with a service's group on purpose)."""
    shared_by_root = status.st_uid == _ROOT and os.geteuid() != _ROOT
    return stat.S_IROTH if shared_by_root else stat.S_IRGRP | stat.S_IROTH


def _who(mode: int, group_bit: int, others_bit: int) -> str:
    if mode & group_bit and mode & others_bit:
        return "its group and other users"
    return "its group" if mode & group_bit else "other users"
