"""Device login, token import and revocation, against the local authorization server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import requests

from refreshing_session import (
    ClientRejected,
    LoginRequired,
    OAuth2Refresher,
    RefreshFailed,
    Token,
)
from refreshing_session.dpop import key_of
from refreshing_session.login import DeviceAuthorization, DeviceLogin, import_token, revoke
from refreshing_session.testing import LocalAuthServer

from .conftest import refresher_for

INTERVAL = 0.05


class Waits:
    """A sleep that records the waits the client asks for and spends at most ``cap`` seconds
    of each (``first_cap`` of the first), running ``during(count)`` before the ``count``-th."""

    def __init__(
        self,
        cap: float,
        during: Callable[[int], object] = lambda count: None,
        first_cap: float | None = None,
    ) -> None:
        self.asked: list[float] = []
        self.caps = (cap if first_cap is None else first_cap, cap)
        self.during = during

    def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.during(len(self.asked))
        time.sleep(min(seconds, self.caps[len(self.asked) > 1]))


def device_server(device_code_ttl: float = 600.0) -> LocalAuthServer:
    return LocalAuthServer(device_interval=INTERVAL, device_code_ttl=device_code_ttl)


def approver(server: LocalAuthServer, at: int) -> Callable[[int], None]:
    """Approve the pending device codes just before the client's ``at``-th wait."""

    def during(count: int) -> None:
        if count == at:
            for code in server.pending_user_codes():
                server.approve(code)

    return during


def test_device_login_shows_the_code_and_returns_the_token_once_approved() -> None:
    shown: list[DeviceAuthorization] = []
    with device_server() as server:
        waits = Waits(INTERVAL, approver(server, 3))
        login = DeviceLogin(
            refresher_for(server, scope="read"), server.device_authorization_url, sleep=waits
        )
        token = login(shown.append)
        assert shown[0].verification_uri == server.verification_url
        assert shown[0].device_code not in repr(shown[0])
        assert token.refresh_token
        assert token.scope == "read"
        assert waits.asked == [INTERVAL] * 3  # the server's interval, each time
        assert server.stats().device_grants == 1
        assert server.stats().slow_downs == 0
        assert refresher_for(server)(token).access_token != token.access_token


@pytest.mark.parametrize("client", ["client", "public"])
def test_a_dpop_device_login_polls_with_one_key_and_stores_it_with_the_bound_token(
    client: str,
) -> None:
    """Every poll signs with the one key the token comes bound to (and, for a public client,
    its refresh tokens), and a nonce challenge costs one retry of the poll it answers."""
    with LocalAuthServer(
        device_interval=INTERVAL, clients={"client": "secret", "public": None}, dpop_nonce=True
    ) as server:
        refresher = OAuth2Refresher(
            server.token_url, client, "secret" if client == "client" else None, dpop=True
        )
        login = DeviceLogin(
            refresher, server.device_authorization_url, sleep=Waits(INTERVAL, approver(server, 3))
        )
        token = login(lambda authorization: None)
        key = key_of(token)
        assert token.is_dpop
        assert key is not None, "the key was not stored with the token"
        proofs = server.dpop_proofs()
        assert {proof.jkt for proof in proofs} == {key.jkt}, "the polls signed with several keys"
        assert [proof.problem for proof in proofs].count("nonce is required in the DPoP proof") == 1
        assert server.stats().device_grants == 1
        renewed = refresher(token)  # the key stored with it refreshes it
        assert (renewed.is_dpop, key_of(renewed)) == (True, key)


def test_slow_down_adds_five_seconds_to_every_later_wait() -> None:
    with device_server() as server:
        # The first wait is cut to nothing, so the poll comes too soon: a real slow_down.
        waits = Waits(INTERVAL, approver(server, 3), first_cap=0.0)
        login = DeviceLogin(refresher_for(server), server.device_authorization_url, sleep=waits)
        assert login(lambda authorization: None).access_token
        assert waits.asked == [INTERVAL, INTERVAL + 5, INTERVAL + 5]
        assert server.stats().slow_downs == 1


def test_a_denied_login_says_so() -> None:
    with device_server() as server:

        def deny(count: int) -> None:
            server.deny(server.pending_user_codes()[0])

        login = DeviceLogin(
            refresher_for(server), server.device_authorization_url, sleep=Waits(INTERVAL, deny)
        )
        with pytest.raises(LoginRequired, match="refused on the verification page"):
            login(lambda authorization: None)


def test_an_expired_code_says_to_log_in_again() -> None:
    with device_server(device_code_ttl=0.2) as server:
        login = DeviceLogin(
            refresher_for(server), server.device_authorization_url, sleep=Waits(INTERVAL)
        )
        with pytest.raises(LoginRequired, match="code expired"):
            login(lambda authorization: None)


def test_the_client_gives_up_at_the_codes_expiry_on_its_own_clock() -> None:
    now = [0.0]
    # Each real poll comes too soon for the server's 1 s interval: the waits grow 1, 6, 11, and
    # the last one (16 s) is cut short at the code's expiry (30 s), where the last poll goes.
    with LocalAuthServer(device_interval=1, device_code_ttl=30) as server:

        def sleep(seconds: float) -> None:
            now[0] += seconds

        login = DeviceLogin(
            refresher_for(server),
            server.device_authorization_url,
            sleep=sleep,
            clock=lambda: now[0],
        )
        with pytest.raises(LoginRequired, match="code expired"):
            login(lambda authorization: None)
        assert now[0] == 30
        assert server.stats().slow_downs == 4


def test_a_wrong_client_secret_is_a_client_error_without_the_secret() -> None:
    with device_server() as server:
        login = DeviceLogin(
            refresher_for(server, secret="wrong-secret-value"), server.device_authorization_url
        )
        with pytest.raises(ClientRejected) as raised:
            login.start()
        assert "wrong-secret-value" not in str(raised.value)


def test_a_device_endpoint_over_plain_http_elsewhere_is_refused() -> None:
    refresher = OAuth2Refresher("https://auth.example.com/token", "client")
    with pytest.raises(ValueError, match=r"device_authorization_url .* plain http"):
        DeviceLogin(refresher, "http://auth.example.com/device")


# --- import --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("saved", "expected"),
    [
        pytest.param(
            {
                "access_token": "at-1",
                "token_type": "Bearer",
                "refresh_token": "rt-1",
                "expires_in": 3600,
                "expires_at": 1_900_000_000.5,
                "scope": ["read", "write"],
            },
            {"expires_at": 1_900_000_000.5, "lifetime": 3600, "scope": "read write"},
            id="requests-oauthlib",
        ),
        pytest.param(
            {
                "access_token": "at-2",
                "token_type": "bearer",
                "refresh_token": "rt-2",
                "expires_at": 1_900_000_000,
                "id_token": "a.b.c",
            },
            {"expires_at": 1_900_000_000, "extra": {"id_token": "a.b.c"}},
            id="authlib",
        ),
    ],
)
def test_import_of_a_token_another_library_saved(
    saved: dict[str, object], expected: dict[str, object]
) -> None:
    """The token's fields as the library saved them (its expiry, lifetime, scope list, extra
    fields) come through, without warnings."""
    token, warnings = import_token(json.dumps(saved).encode(), source="x", written_at=None)
    assert {name: getattr(token, name) for name in expected} == expected
    assert warnings == []


def test_import_of_a_raw_answer_counts_from_the_files_time() -> None:
    raw = json.dumps(
        {"access_token": "at-3", "token_type": "Bearer", "expires_in": 600, "refresh_token": "rt-3"}
    ).encode()
    written = time.time() - 100
    token, warnings = import_token(raw, source="x", written_at=written)
    assert token.expires_at == written + 600
    assert warnings == []
    from_stdin, warnings = import_token(raw, source="stdin", written_at=None)
    assert from_stdin.expires_at == pytest.approx(time.time() + 600, abs=5)
    assert len(warnings) == 1
    assert "counted from now" in warnings[0]


def test_import_warns_about_a_token_that_cannot_be_refreshed() -> None:
    raw = json.dumps({"access_token": "at-4", "expires_at": time.time() - 60}).encode()
    _, warnings = import_token(raw, source="x", written_at=None)
    assert any("no refresh token" in warning for warning in warnings)
    assert any("expired 6" in warning for warning in warnings)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "stdin is empty"),
        (b"{nope", "stdin is not valid JSON"),
        (b'{"token": {"access_token": "x"}}', "stdin does not hold a usable token"),
        (b'{"access_token": "has space", "refresh_token": "rt-secret"}', "not printable"),
    ],
)
def test_import_of_something_else_says_what_is_wrong(raw: bytes, expected: str) -> None:
    with pytest.raises(ValueError, match=expected) as raised:
        import_token(raw, source="stdin", written_at=None)
    assert "rt-secret" not in str(raised.value)


# --- revocation ----------------------------------------------------------------------------------


def test_revoke_ends_the_grant() -> None:
    with LocalAuthServer() as server:
        refresher = refresher_for(server)
        token = refresher(_fresh(server))
        revoke(refresher, server.revocation_url, token)
        assert server.stats().revocations == 1
        with pytest.raises(LoginRequired, match="grant has been revoked"):
            refresher(token)


def test_a_server_that_revokes_no_refresh_tokens_gets_the_access_token() -> None:
    with LocalAuthServer(revokes_refresh_tokens=False) as server:
        refresher = refresher_for(server)
        token = refresher(_fresh(server))
        revoke(refresher, server.revocation_url, token)
        assert server.stats().revocations == 1
        headers = {"Authorization": token.authorization}
        assert requests.get(server.api_url + "items", headers=headers, timeout=5).status_code == 401


def test_a_failed_revocation_is_an_error_without_the_token() -> None:
    with LocalAuthServer() as server:
        token = _fresh(server)
        with pytest.raises(RefreshFailed, match="answered 404") as raised:
            revoke(refresher_for(server), server.url + "/nothing", token)
        assert token.refresh_token
        assert token.refresh_token not in str(raised.value)
        assert server.stats().revoked_grants == 0


def _fresh(server: LocalAuthServer) -> Token:
    return Token.from_response(server.issue_token(), requested_at=time.time())
