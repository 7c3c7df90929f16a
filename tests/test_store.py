"""Tests for TokenFile against real files, folders, links, FIFOs and permissions."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import pickle
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refreshing_session import LockTimeout, Token, TokenFile, TokenFileError, TokenStoreError
from refreshing_session.store import MAX_FILE_SIZE, NOTES_KEY, Snapshot

ACCESS = "at-Q7vXk2Rm9Lp4Wz"
NOW = 1_700_000_000.0
TOKEN = Token(
    ACCESS,
    refresh_token="rt-J3nB8sYh5Fd1Tq",
    expires_at=NOW + 3600,
    lifetime=3600.0,
    scope="read write",
    extra={"id_token": "idt"},
)
AS_ROOT = os.geteuid() == 0
skip_as_root = pytest.mark.skipif(AS_ROOT, reason="root ignores file permissions")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "token.json"


def read(store: TokenFile) -> Snapshot:
    snapshot = store.read()
    assert snapshot is not None
    return snapshot


def plant(path: Path, content: bytes) -> None:
    """Put ``content`` at ``path`` as a private file, the way a token file should be."""
    path.write_bytes(content)
    path.chmod(0o600)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under the umask given as the parameter."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


# write


@pytest.mark.parametrize("umask", [0o022, 0o000], indirect=True)
def test_write_creates_a_private_file_whatever_the_umask(path: Path, umask: int) -> None:
    TokenFile(path).write(TOKEN)
    assert mode(path) == 0o600


def test_write_replaces_the_file_so_an_open_reader_keeps_the_old_version(path: Path) -> None:
    store = TokenFile(path)
    first = store.write(Token("at-first"))
    with path.open("rb") as old_reader:
        second = store.write(Token("at-second"))
        assert json.loads(old_reader.read())["access_token"] == "at-first"
    assert second.version != first.version
    assert read(store).token.access_token == "at-second"


def test_write_leaves_no_temporary_file_behind(path: Path) -> None:
    store = TokenFile(path)
    store.write(TOKEN)
    store.write(TOKEN, notes={"note": 1})
    assert [entry.name for entry in path.parent.iterdir()] == [path.name]


def test_write_returns_the_snapshot_a_fresh_read_gives(path: Path) -> None:
    store = TokenFile(path)
    written = store.write(TOKEN)
    assert written.version == store.version()
    assert written.token == read(store).token == TOKEN


def test_notes_are_read_back_apart_from_the_token(path: Path) -> None:
    notes = {"refused": "invalid_grant", "attempts": 2}
    store = TokenFile(path)
    written = store.write(TOKEN, notes)
    snapshot = read(store)
    assert dict(snapshot.notes) == dict(written.notes) == notes
    assert NOTES_KEY not in snapshot.token.extra
    assert snapshot.token == TOKEN


def test_write_without_notes_clears_them(path: Path) -> None:
    store = TokenFile(path)
    store.write(TOKEN, {"refused": "invalid_grant"})
    assert dict(store.write(TOKEN).notes) == {}
    assert dict(read(store).notes) == {}


def test_a_token_field_named_like_the_notes_key_does_not_spoil_the_file(path: Path) -> None:
    token = Token.from_response({"access_token": ACCESS, NOTES_KEY: "x"}, requested_at=NOW)
    store = TokenFile(path)
    store.write(token)
    assert dict(read(store).notes) == {}


@skip_as_root
def test_writing_into_a_read_only_folder_fails_naming_the_path_and_keeps_the_file(
    path: Path,
) -> None:
    store = TokenFile(path)
    store.write(TOKEN)
    before = path.read_bytes()
    path.parent.chmod(0o500)
    try:
        with pytest.raises(TokenFileError, match="cannot write") as caught:
            store.write(Token("at-new"))
    finally:
        path.parent.chmod(0o700)
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before


# read


def test_a_missing_file_reads_as_none_and_has_no_version(path: Path) -> None:
    assert TokenFile(path).read() is None
    assert TokenFile(path).version() is None


VALID = json.dumps({"access_token": ACCESS}).encode()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b" \n\t\n", "empty", id="whitespace"),
        pytest.param(VALID[:-5], "not valid JSON", id="truncated-json"),
        pytest.param(b"access_token=" + ACCESS.encode(), "not valid JSON", id="not-json"),
        pytest.param(b'{"access_token": "at-\xff\xfe"}', "not valid JSON", id="invalid-utf8"),
        pytest.param(b"[" + VALID + b"]", "JSON object", id="json-list"),
        pytest.param(json.dumps(ACCESS).encode(), "JSON object", id="json-string"),
        pytest.param(b'{"token_type": "Bearer"}', "access_token", id="no-access-token"),
        pytest.param(b'{"access_token": 42}', "access_token", id="access-token-number"),
        pytest.param(
            b'{"access_token": "at", "expires_at": "soon"}', "expires_at", id="expires-at-words"
        ),
        pytest.param(
            json.dumps({"access_token": ACCESS, NOTES_KEY: ["a"]}).encode(),
            NOTES_KEY,
            id="notes-list",
        ),
        pytest.param(
            json.dumps({"access_token": ACCESS, "pad": "x" * MAX_FILE_SIZE}).encode(),
            "larger than",
            id="larger-than-max",
        ),
    ],
)
def test_a_bad_file_raises_an_error_naming_it_and_is_left_as_is(
    path: Path, content: bytes, problem: str
) -> None:
    plant(path, content)
    with pytest.raises(TokenFileError, match=problem) as caught:
        TokenFile(path).read()
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    assert ACCESS not in str(caught.value)
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"[" * 100_000, id="deeply-nested"),
        pytest.param(b'{"access_token": "at", "n": ' + b"1" * 5000 + b"}", id="5000-digit-int"),
        pytest.param(b'{"access_token": "at", "expires_in": 1' + b"0" * 400 + b"}", id="huge-int"),
    ],
)
def test_a_pathological_json_file_raises_token_file_error(path: Path, content: bytes) -> None:
    plant(path, content)
    with pytest.raises(TokenFileError):
        TokenFile(path).read()


def test_a_directory_at_the_path_raises_an_error_naming_it(path: Path) -> None:
    path.mkdir()
    with pytest.raises(TokenFileError, match="not a regular file") as caught:
        TokenFile(path).read()
    assert caught.value.path == str(path)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_reading_a_directory_leaks_no_file_descriptor(path: Path) -> None:
    path.mkdir()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with contextlib.suppress(OSError):  # TokenFileError is an OSError too
            TokenFile(path).read()
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.timeout(5)
def test_a_fifo_at_the_path_raises_an_error_without_hanging(path: Path) -> None:
    os.mkfifo(path, 0o600)
    with pytest.raises(TokenFileError, match="not a regular file") as caught:
        TokenFile(path).read()
    assert caught.value.path == str(path)
    assert stat.S_ISFIFO(path.stat().st_mode)


@skip_as_root
def test_an_unreadable_file_raises_an_error_naming_it_and_is_left_as_is(path: Path) -> None:
    TokenFile(path).write(TOKEN)
    before = path.read_bytes()
    path.chmod(0o000)
    try:
        with pytest.raises(TokenFileError, match="cannot open") as caught:
            TokenFile(path).read()
    finally:
        path.chmod(0o600)
    assert caught.value.path == str(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("loose_mode", [0o644, 0o640, 0o604])
def test_a_file_others_can_read_loads_with_a_warning_and_is_made_private_on_write(
    path: Path, loose_mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    store = TokenFile(path)
    store.write(TOKEN)
    path.chmod(loose_mode)
    with caplog.at_level(logging.WARNING, logger="refreshing_session.store"):
        assert read(store).token == TOKEN
    assert [r.levelno for r in caplog.records if str(path) in r.getMessage()] == [logging.WARNING]
    store.write(TOKEN)
    assert mode(path) == 0o600


def test_a_private_file_loads_without_a_warning(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    TokenFile(path).write(TOKEN)
    with caplog.at_level(logging.DEBUG, logger="refreshing_session.store"):
        read(TokenFile(path))
    assert caplog.records == []


# symlinks


@pytest.fixture
def link_and_target(tmp_path: Path) -> tuple[Path, Path]:
    """A symlink ``link.json`` pointing into another folder, at ``real/token.json``."""
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "token.json"
    link = tmp_path / "link.json"
    link.symlink_to(target)
    return link, target


def test_read_through_a_symlink_reads_the_target(link_and_target: tuple[Path, Path]) -> None:
    link, target = link_and_target
    TokenFile(target).write(TOKEN)
    assert read(TokenFile(link)).token == TOKEN


def test_write_through_a_symlink_replaces_the_target_and_keeps_the_link(
    link_and_target: tuple[Path, Path],
) -> None:
    link, target = link_and_target
    TokenFile(target).write(Token("at-old"))
    TokenFile(link).write(TOKEN)
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert read(TokenFile(target)).token == TOKEN
    assert mode(target) == 0o600
    assert sorted(entry.name for entry in target.parent.iterdir()) == [target.name]


def test_the_lock_file_sits_beside_the_symlink_target(link_and_target: tuple[Path, Path]) -> None:
    link, target = link_and_target
    assert TokenFile(link).lock_path == os.path.realpath(target) + ".lock"


# property: any bytes give a Snapshot or a TokenFileError

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON_VALUES = (
    JSON_LEAVES
    | st.lists(JSON_LEAVES, max_size=3)
    | st.dictionaries(st.text(max_size=8), JSON_LEAVES, max_size=3)
)
TOKEN_JSON = st.dictionaries(
    st.sampled_from(["access_token", "token_type", "expires_in", "expires_at", NOTES_KEY])
    | st.text(max_size=8),
    JSON_VALUES,
    max_size=6,
).map(lambda data: json.dumps(data).encode())


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=256) | TOKEN_JSON)
def test_any_bytes_give_a_snapshot_or_a_token_file_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "token.json"
        plant(path, content)
        try:
            snapshot = TokenFile(path).read()
        except TokenFileError:
            return
        assert snapshot is not None
        assert snapshot.version == TokenFile(path).version()


# --- the TokenStore operations the keeper relies on ----------------------------------------------


def test_replace_writes_only_over_the_version_it_replaces(path: Path) -> None:
    store = TokenFile(path)
    assert store.replace(TOKEN, None, replacing=None) is not None
    first = read(store)
    other = Token("at-someone-else", expires_at=NOW)
    store.write(other)
    assert store.replace(TOKEN, {"note": 1}, replacing=first.version) is None
    assert read(store).token == other
    written = store.replace(TOKEN, {"note": 1}, replacing=store.version())
    assert written is not None
    assert (read(store).token, dict(read(store).notes)) == (TOKEN, {"note": 1})


def test_delete_removes_the_file_and_tolerates_its_absence(path: Path) -> None:
    store = TokenFile(path)
    store.write(TOKEN)
    store.delete()
    assert not path.exists()
    store.delete()
    assert store.version() is None


@pytest.mark.timeout(10)
def test_the_lock_raises_lock_timeout_on_timeout_or_when_told_to_stop_waiting(path: Path) -> None:
    store = TokenFile(path)
    with store.lock(1.0, lambda: False):
        with (
            pytest.raises(LockTimeout, match=r"not had in 0\.05 s"),
            store.lock(0.05, lambda: False),
        ):
            pytest.fail("a second holder got the lock")
        started = time.monotonic()
        with pytest.raises(LockTimeout), store.lock(30.0, lambda: True):
            pytest.fail("a second holder got the lock")
        # Giving up when stop_waiting() is already true takes one poll of filelock (50 ms):
        # 5 s holds on a loaded machine and, unlike the test's 10 s timeout, can fail.
        waited = time.monotonic() - started
        assert waited < 5, f"stop_waiting() did not end the wait at once: {waited:.2f} s"
    with store.lock(1.0, lambda: False):
        pass  # free again once released


def test_a_token_too_large_even_without_its_extra_fields_is_refused_and_the_file_kept(
    path: Path,
) -> None:
    TokenFile(path).write(TOKEN)
    before = path.read_bytes()
    huge = Token("at-" + "x" * MAX_FILE_SIZE, extra={"id_token": "idt"})
    with pytest.raises(TokenStoreError, match="without its extra fields"):
        TokenFile(path).write(huge)
    assert path.read_bytes() == before


# The file held open for version(): every change a sibling or a person makes is seen at once


def test_a_siblings_write_changes_the_version_at_once(path: Path) -> None:
    ours, sibling = TokenFile(path), TokenFile(path)
    ours.write(TOKEN)
    held = ours.version()
    sibling.write(Token("at-from-a-sibling"))
    assert ours.version() != held
    assert read(ours).token.access_token == "at-from-a-sibling"


def test_a_write_in_place_by_another_tool_changes_the_version(path: Path) -> None:
    store = TokenFile(path)
    store.write(TOKEN)
    held = store.version()
    with open(path, "r+b") as file:  # same inode: as an editor or `cat > file` would
        file.truncate()
        file.write(json.dumps({"access_token": "at-typed-in-by-hand"}).encode())
    assert store.version() != held
    assert read(store).token.access_token == "at-typed-in-by-hand"


def test_a_removed_file_has_no_version_although_it_is_held_open(path: Path) -> None:
    store = TokenFile(path)
    store.write(TOKEN)
    read(store)
    path.unlink()
    assert store.version() is None


def test_a_symlink_pointed_at_another_file_changes_the_version(tmp_path: Path) -> None:
    first, second, link = tmp_path / "first.json", tmp_path / "second.json", tmp_path / "t.json"
    TokenFile(first).write(TOKEN)
    TokenFile(second).write(Token("at-second"))
    link.symlink_to(first)
    store = TokenFile(link)
    held = read(store).version
    link.unlink()
    link.symlink_to(second)  # what a Kubernetes secret volume does on an update
    assert store.version() != held
    assert read(store).token.access_token == "at-second"


def test_replace_never_overwrites_a_newer_file_the_held_one_cannot_see(path: Path) -> None:
    store = TokenFile(path)
    held = store.write(TOKEN).version
    path.rename(path.with_name("moved-aside.json"))  # the held file stays linked
    TokenFile(path).write(Token("at-newer"))
    assert store.replace(Token("at-ours"), None, replacing=held) is None
    assert read(store).token.access_token == "at-newer"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_one_file_at_most_is_held_open_and_none_after_the_store_is_gone(path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    store = TokenFile(path)
    for number in range(5):
        store.write(Token(f"at-{number}"))
        read(store)
    assert len(os.listdir("/proc/self/fd")) == before + 1
    del store
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_pickled_or_copied_store_holds_no_file_of_the_original(path: Path) -> None:
    store = TokenFile(path)
    store.write(TOKEN)
    for twin in (pickle.loads(pickle.dumps(store)), copy.copy(store), copy.deepcopy(store)):
        assert twin.path == store.path
        assert twin.version() == store.version()
        TokenFile(path).write(Token("at-later"))
        assert read(twin).token.access_token == "at-later"
