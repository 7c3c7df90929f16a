"""Attacks through files: another local user plants token files and links in a shared folder,
and a hostile token endpoint sends an answer too large to store.

We run as root in CI's container, so "another user" is uid 65534 (nobody), whose files and links
are made with os.chown/os.lchown; a victim that is not root is a child process that drops to a
test uid after its imports (it could not start the interpreter under /root otherwise).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from refreshing_session import Token, TokenFile, TokenFileError
from refreshing_session.cli import main
from refreshing_session.store import MAX_FILE_SIZE
from refreshing_session.testing import LocalAuthServer

from .conftest import refresher_for, write_grant
from .support.hostile import HostileTokenEndpoint
from .support.processes import ROOT, unavailable

ATTACKER = 65534  # nobody
VICTIM = 64999  # a uid of no one, for a victim who is not root
PRECIOUS = b"the victim's precious data\n"
TOKEN = Token("at-attack-files", refresh_token="rt-attack-files", expires_at=time.time() + 600)


def needs_root() -> None:
    if os.geteuid() != 0:
        unavailable("playing another local user needs root (os.chown, setuid)")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A sticky, world-writable folder like /tmp, that every test uid can reach."""
    needs_root()
    folder = Path(tempfile.mkdtemp(prefix="shared-", dir="/tmp"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder)


def home_of(shared: Path, uid: int) -> Path:
    """A private folder of ``uid`` beside the shared one, holding one precious file."""
    home = shared / f"home-{uid}"
    home.mkdir(mode=0o700)
    (home / "precious.txt").write_bytes(PRECIOUS)
    for path in (home, home / "precious.txt"):
        os.chown(path, uid, uid)
    return home


def plant_link(link: Path, target: Path, owner: int = ATTACKER) -> Path:
    link.symlink_to(target)
    os.lchown(link, owner, owner)
    return link


def plant_file(path: Path, content: bytes, *, owner: int | None = None, mode: int = 0o600) -> Path:
    """Write ``path`` with ``mode``, owned by ``owner`` (None: whoever runs the test)."""
    path.write_bytes(content)
    path.chmod(mode)
    if owner is not None:
        os.chown(path, owner, owner)
    return path


# --- as root: another user's links and files are neither followed nor trusted ------------------


def test_a_link_planted_by_another_user_is_never_written_through(shared: Path) -> None:
    home = home_of(shared, 0)
    link = plant_link(shared / "token.json", home / "precious.txt")
    with pytest.raises(TokenFileError, match=r"link.*another user.*uid 65534") as caught:
        TokenFile(link).write(TOKEN)
    assert "remove" in str(caught.value)
    assert (home / "precious.txt").read_bytes() == PRECIOUS
    assert sorted(entry.name for entry in home.iterdir()) == ["precious.txt"], (
        "a .lock or a temporary file appeared beside the victim's file"
    )


def test_login_import_does_not_write_through_a_planted_link(
    shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = home_of(shared, 0)
    link = plant_link(shared / "token.json", home / "precious.txt")
    source = tmp_path / "saved.json"
    source.write_text(json.dumps({"access_token": "at-imported", "expires_in": 600}))
    assert main(["login", str(link), "--import", str(source)]) == 2
    assert "another user" in capsys.readouterr().err
    assert (home / "precious.txt").read_bytes() == PRECIOUS
    assert sorted(entry.name for entry in home.iterdir()) == ["precious.txt"]


def test_a_link_planted_by_another_user_is_not_read(shared: Path) -> None:
    planted = plant_file(
        shared / "attackers.json",
        json.dumps({"access_token": "at-of-the-attacker"}).encode(),
        owner=ATTACKER,
    )
    link = plant_link(shared / "token.json", planted)
    with pytest.raises(TokenFileError, match=r"link.*another user"):
        TokenFile(link).read()


def test_a_token_file_planted_by_another_user_is_neither_used_nor_replaced(shared: Path) -> None:
    content = json.dumps({"access_token": "at-of-the-attacker"}).encode()
    planted = plant_file(shared / "token.json", content, owner=ATTACKER)
    with pytest.raises(TokenFileError, match=r"belongs to another user.*uid 65534"):
        TokenFile(planted).read()
    with pytest.raises(TokenFileError, match="belongs to another user"):
        TokenFile(planted).write(TOKEN)
    assert planted.read_bytes() == content


def test_a_session_sends_no_token_from_a_planted_file(
    shared: Path, server: LocalAuthServer
) -> None:
    from refreshing_session import RefreshingSession

    planted = write_grant(shared / "token.json", server)
    os.chown(planted, ATTACKER, ATTACKER)
    with (
        RefreshingSession(
            server.api_url, token_file=planted, refresher=refresher_for(server)
        ) as session,
        pytest.raises(TokenFileError, match="another user"),
    ):
        session.get(server.api_url + "items", timeout=10)
    assert server.stats().token_requests == 0


def test_a_link_of_ones_own_through_a_link_of_another_user_is_refused(shared: Path) -> None:
    """A chain: my link leads to the attacker's link, which leads to my file."""
    home = home_of(shared, 0)
    middle = plant_link(shared / "middle", home / "precious.txt")
    mine = plant_link(shared / "token.json", middle, owner=0)
    with pytest.raises(TokenFileError, match="another user"):
        TokenFile(mine).write(TOKEN)
    assert (home / "precious.txt").read_bytes() == PRECIOUS
    assert sorted(entry.name for entry in home.iterdir()) == ["precious.txt"]


# --- a victim who is not root ------------------------------------------------------------------

# Drops to job["uid"] after the imports, then writes TOKEN through job["path"] (or reads it with
# job["read"]); prints "ok", or the TokenFileError's text.
AS_VICTIM = """
import os
from refreshing_session import Token, TokenFile, TokenFileError
os.setgroups([])
os.setresgid(job["uid"], job["uid"], job["uid"])
os.setresuid(job["uid"], job["uid"], job["uid"])
store = TokenFile(job["path"])
try:
    if job.get("read"):
        snapshot = store.read()
        print("read " + (snapshot.token.access_token if snapshot else "nothing"))
    else:
        store.write(Token("at-of-the-victim"))
        print("ok")
except TokenFileError as error:
    print(f"TokenFileError: {error}")
"""


def as_victim(**job: object) -> str:
    program = f"import json, sys\njob = json.loads(sys.argv[1])\n{AS_VICTIM}"
    done = subprocess.run(
        [sys.executable, "-c", program, json.dumps({"uid": VICTIM, **job})],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_victim_in_a_shared_folder_does_not_overwrite_its_own_file_through_a_planted_link(
    shared: Path,
) -> None:
    home = home_of(shared, VICTIM)
    plant_link(shared / "token.json", home / "precious.txt")
    said = as_victim(path=str(shared / "token.json"))
    assert said.startswith("TokenFileError"), said
    assert "another user" in said
    assert (home / "precious.txt").read_bytes() == PRECIOUS
    assert sorted(entry.name for entry in home.iterdir()) == ["precious.txt"]


def test_a_victim_follows_links_of_its_own_and_of_root_to_a_file_of_its_own(shared: Path) -> None:
    home = home_of(shared, VICTIM)
    token_file = home / "token.json"
    plant_file(token_file, json.dumps({"access_token": "at-mine"}).encode(), owner=VICTIM)
    plant_link(shared / "by-root.json", token_file, owner=0)
    plant_link(shared / "mine.json", token_file, owner=VICTIM)
    assert as_victim(path=str(shared / "by-root.json"), read=True) == "read at-mine"
    assert as_victim(path=str(shared / "mine.json")) == "ok"
    assert as_victim(path=str(shared / "mine.json"), read=True) == "read at-of-the-victim"


def test_a_victim_refuses_a_token_file_of_root(shared: Path) -> None:
    """Only root's own files count for root: a user's token file must be the user's."""
    home = home_of(shared, VICTIM)
    planted = plant_file(
        shared / "token.json", json.dumps({"access_token": "at-x"}).encode(), owner=0
    )
    planted.chmod(0o644)
    plant_link(home / "token.json", planted, owner=VICTIM)
    said = as_victim(path=str(home / "token.json"), read=True)
    assert said.startswith("TokenFileError"), said
    assert "belongs to another user (uid 0)" in said


# Takes the lock file at job["lock"] as job["uid"] and holds it until stdin closes.
HOLD_LOCK = """
import fcntl, os, sys
os.setgroups([])
os.setresgid(job["uid"], job["uid"], job["uid"])
os.setresuid(job["uid"], job["uid"], job["uid"])
fd = os.open(job["lock"], os.O_RDWR | os.O_CREAT, 0o666)
os.fchmod(fd, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_lock_file_held_by_another_user_costs_at_most_lock_timeout(
    shared: Path, server: LocalAuthServer
) -> None:
    from refreshing_session.errors import LockTimeout
    from refreshing_session.keeper import TokenKeeper

    token_file = write_grant(shared / "token.json", server)
    program = f"import json, sys\njob = json.loads(sys.argv[1])\n{HOLD_LOCK}"
    job = {"uid": ATTACKER, "lock": str(token_file) + ".lock"}
    holder = subprocess.Popen(
        [sys.executable, "-c", program, json.dumps(job)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        keeper = TokenKeeper(
            TokenFile(token_file), refresher_for(server), leeway=0.0, lock_timeout=0.5
        )
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            keeper.refresh_now()
        waited = time.monotonic() - started
    finally:
        holder.communicate(timeout=10)
    assert waited < 10 * 0.5, f"waited {waited:.1f} s for a lock_timeout of 0.5 s"
    assert server.stats().token_requests == 0


def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_untouched(
    shared: Path, server: LocalAuthServer
) -> None:
    from refreshing_session.keeper import TokenKeeper

    home = home_of(shared, 0)
    token_file = write_grant(shared / "token.json", server)
    plant_link(shared / "token.json.lock", home / "precious.txt")
    keeper = TokenKeeper(TokenFile(token_file), refresher_for(server), leeway=0.0, lock_timeout=0.5)
    with pytest.raises(TokenFileError, match="cannot lock"):
        keeper.refresh_now()
    assert (home / "precious.txt").read_bytes() == PRECIOUS
    assert server.stats().token_requests == 0


# --- one oversized answer must not brick the token file -----------------------------------------


def test_an_oversized_extra_field_is_dropped_with_a_warning_and_the_file_stays_readable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    answer = {
        "access_token": "at-big",
        "refresh_token": "rt-big",
        "expires_in": 600,
        "id_token": "x" * (2 * MAX_FILE_SIZE),
        "tenant": "kept",
    }
    token = Token.from_response(answer, requested_at=time.time())
    store = TokenFile(tmp_path / "token.json")
    with caplog.at_level(logging.WARNING, logger="refreshing_session.store"):
        written = store.write(token)
    assert "'id_token'" in caplog.text
    assert "x" * 100 not in caplog.text
    snapshot = TokenFile(tmp_path / "token.json").read()
    assert snapshot is not None
    assert snapshot.token == written.token
    assert snapshot.token.access_token == "at-big"
    assert snapshot.token.refresh_token == "rt-big"
    assert dict(snapshot.token.extra) == {"tenant": "kept"}


def test_a_hostile_server_with_a_huge_id_token_does_not_brick_the_file_for_the_others(
    tmp_path: Path,
) -> None:
    """The endpoint answers a refresh with an id_token of 300,000 non-ASCII characters: 600 KB
    on the wire, 1.8 MB once JSON-escaped in the file. Every other process must still read it."""
    from refreshing_session import OAuth2Refresher
    from refreshing_session.keeper import TokenKeeper

    token_file = tmp_path / "token.json"
    TokenFile(token_file).write(Token("at-old", refresh_token="rt-old", expires_at=1.0))
    answer = {
        "access_token": "at-new",
        "refresh_token": "rt-new",
        "expires_in": 600,
        "id_token": "\u00e9" * 300_000,
    }
    with HostileTokenEndpoint(200, answer) as endpoint:
        keeper = TokenKeeper(
            TokenFile(token_file),
            OAuth2Refresher(endpoint.url, "client", "secret"),
            leeway=0.0,
            lock_timeout=5.0,
        )
        assert keeper.refresh_now().access_token == "at-new"
    assert endpoint.calls == 1
    assert token_file.stat().st_size <= MAX_FILE_SIZE
    snapshot = TokenFile(token_file).read()
    assert snapshot is not None
    assert snapshot.token.refresh_token == "rt-new"
    assert "id_token" not in snapshot.token.extra
