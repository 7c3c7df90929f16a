"""Errors travel: every exported error survives pickle and copy with its message and fields,
including through a process pool and the keeper's back-off."""

from __future__ import annotations

import copy
import os
import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import refreshing_session
from refreshing_session import (
    ClientRejected,
    LockTimeout,
    LoginRequired,
    ProfileError,
    RefreshFailed,
    Token,
    TokenError,
    TokenFile,
    TokenFileError,
    TokenStoreError,
)
from refreshing_session.errors import AnswerUnderway
from refreshing_session.testing import LocalAuthServer

from .conftest import SessionFactory

TIMEOUT = 10

EXAMPLES: dict[type[BaseException], BaseException] = {
    TokenError: TokenError("no usable token"),
    LoginRequired: LoginRequired("log in again"),
    RefreshFailed: RefreshFailed("the endpoint answered 503"),
    ClientRejected: ClientRejected("client rejected", error="invalid_client"),
    TokenStoreError: TokenStoreError("Redis is down"),
    TokenFileError: TokenFileError("cannot lock", path="/some/token.json.lock"),
    LockTimeout: LockTimeout("another process held the lock"),
    ProfileError: ProfileError("unknown key", path="/c.toml", profile="prod", key="tokn_url"),
    AnswerUnderway: AnswerUnderway(
        "the token endpoint was too slow", finish=lambda timeout: Token("at-finished")
    ),
}
FIELDS = ("path", "profile", "key", "error", "status_code")


def exported_errors() -> list[type[BaseException]]:
    found = [getattr(refreshing_session, name) for name in refreshing_session.__all__]
    return [
        thing for thing in found if isinstance(thing, type) and issubclass(thing, BaseException)
    ]


def test_every_exported_error_has_an_example() -> None:
    # AnswerUnderway is raised by OAuthClient.grant, whether or not the package exports it
    assert set(exported_errors()) | {AnswerUnderway} == set(EXAMPLES), "add the error to EXAMPLES"


@pytest.mark.parametrize("kind", list(EXAMPLES), ids=lambda kind: kind.__name__)
@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_every_error_survives_pickle_and_copy(kind: type[BaseException], how: str) -> None:
    original = EXAMPLES[kind]
    twin = {
        "pickle": lambda e: pickle.loads(pickle.dumps(e)),
        "copy": copy.copy,
        "deepcopy": copy.deepcopy,
    }[how](original)
    assert type(twin) is kind
    assert str(twin) == str(original)
    for field in FIELDS:
        assert getattr(twin, field, None) == getattr(original, field, None), field


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy], ids=["copy", "deepcopy"])
def test_a_copied_answer_underway_can_still_be_finished(how: Any) -> None:
    twin = how(EXAMPLES[AnswerUnderway])
    assert isinstance(twin, AnswerUnderway)
    assert twin.finish(1).access_token == "at-finished"


def test_a_pickled_answer_underway_says_it_cannot_be_finished_there() -> None:
    twin = pickle.loads(pickle.dumps(EXAMPLES[AnswerUnderway]))
    assert isinstance(twin, AnswerUnderway)
    with pytest.raises(RefreshFailed, match="only the process that began the exchange"):
        twin.finish(1)


def test_restated_keeps_the_type_and_fields() -> None:
    rejected = ClientRejected("client rejected", error="invalid_client")
    again = rejected.restated("client rejected (not retried for 3 s)")
    assert isinstance(again, ClientRejected)
    assert (str(again), again.error) == ("client rejected (not retried for 3 s)", "invalid_client")


def _raise_token_file_error(path: str) -> None:
    raise TokenFileError("cannot read the token file", path=path)


def test_a_token_file_error_comes_back_from_a_process_pool_intact() -> None:
    with ProcessPoolExecutor(1) as pool:
        future = pool.submit(_raise_token_file_error, "/somewhere/token.json")
        with pytest.raises(TokenFileError) as caught:
            future.result(timeout=60)
    assert caught.value.path == "/somewhere/token.json"


def test_a_401_after_an_early_refresh_failed_on_the_lock_raises_the_lock_error(
    make_session: SessionFactory, server: LocalAuthServer, token_file: Path
) -> None:
    snapshot = TokenFile(token_file).read()
    assert snapshot is not None
    due = Token(
        snapshot.token.access_token,
        refresh_token=snapshot.token.refresh_token,
        expires_at=time.time() + 20,
        lifetime=60.0,
    )  # due (leeway 30), still valid
    TokenFile(token_file).write(due)
    os.mkdir(TokenFile(token_file).lock_path)  # a lock file no one can open
    session = make_session()
    assert session.get(server.api_url + "items", timeout=TIMEOUT).status_code == 200
    server.revoke_access_tokens()  # the valid token is refused: the keeper must renew it
    with pytest.raises(TokenFileError, match="cannot lock") as caught:
        session.get(server.api_url + "items", timeout=TIMEOUT)
    assert caught.value.path.endswith(".lock")
    assert "not retried for another" in str(caught.value)
