"""Tests for Token: reading a token endpoint's answer and a token file, expiry, and secrecy."""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refreshing_session import Token

# Random-looking so that no fragment of them appears in ordinary error text by chance.
ACCESS = "at-Q7vXk2Rm9Lp4Wz"
REFRESH = "rt-J3nB8sYh5Fd1Tq"
NOW = 1_700_000_000.0
KNOWN_FIELDS = ["access_token", "token_type", "refresh_token", "expires_in", "expires_at", "scope"]


def jwt(claims: Mapping[str, Any] | bytes) -> str:
    """An unsigned JWT whose payload is ``claims`` (or these raw payload bytes)."""

    def segment(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    header = segment(b'{"alg":"none","typ":"JWT"}')
    payload = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    return f"{header}.{segment(payload)}.signature"


def answer(**fields: Any) -> dict[str, Any]:
    """A token endpoint's answer carrying ACCESS and REFRESH, with ``fields`` on top."""
    return {"access_token": ACCESS, "token_type": "Bearer", "refresh_token": REFRESH, **fields}


PARSERS = [
    pytest.param(lambda data: Token.from_response(data, requested_at=NOW), id="from_response"),
    pytest.param(lambda data: Token.from_file(data, written_at=NOW), id="from_file"),
]


def assert_no_secret(text: str) -> None:
    """Fail if any 6-character fragment of ACCESS or REFRESH appears in ``text``."""
    for secret in (ACCESS, REFRESH):
        fragments = {secret[i : i + 6] for i in range(len(secret) - 5)}
        assert not [fragment for fragment in fragments if fragment in text], text


# from_response: expiry


@pytest.mark.parametrize("expires_in", [3600, 3600.0, "3600", " 3600.0 "])
def test_expires_in_counts_from_when_the_request_left(expires_in: object) -> None:
    token = Token.from_response(answer(expires_in=expires_in), requested_at=NOW)
    assert (token.expires_at, token.lifetime) == (NOW + 3600, 3600)


def test_expires_at_alone_gives_the_lifetime_left_at_the_request() -> None:
    token = Token.from_response(answer(expires_at=NOW + 900), requested_at=NOW)
    assert (token.expires_at, token.lifetime) == (NOW + 900, 900)


def test_without_expiry_fields_the_jwt_exp_claim_is_the_expiry() -> None:
    data = answer(access_token=jwt({"sub": "me", "exp": NOW + 300}))
    token = Token.from_response(data, requested_at=NOW)
    assert (token.expires_at, token.lifetime) == (NOW + 300, None)


@pytest.mark.parametrize(
    "access_token",
    [
        pytest.param(ACCESS, id="opaque"),
        pytest.param(jwt({"sub": "me"}), id="jwt-without-exp"),
        pytest.param(jwt({"exp": "tomorrow"}), id="jwt-string-exp"),
        pytest.param(jwt({"exp": True}), id="jwt-bool-exp"),
        pytest.param(jwt(b"[1, 2]"), id="jwt-payload-not-an-object"),
        pytest.param("a.b!.c", id="dots-but-not-base64"),
        pytest.param("a.bm90IGpzb24.c", id="dots-but-not-json"),
    ],
)
def test_without_expiry_fields_or_jwt_exp_the_expiry_is_unknown(access_token: str) -> None:
    token = Token.from_response(answer(access_token=access_token), requested_at=NOW)
    assert (token.expires_at, token.lifetime) == (None, None)


# from_response: refresh token, token type, scope, extra fields


@pytest.mark.parametrize("fields", [{}, {"refresh_token": None}], ids=["absent", "null"])
def test_the_previous_refresh_token_is_kept_when_the_answer_has_none(
    fields: dict[str, Any],
) -> None:
    previous = Token("old-access", refresh_token=REFRESH)
    data = {"access_token": ACCESS, **fields}
    assert Token.from_response(data, requested_at=NOW, previous=previous).refresh_token == REFRESH


def test_a_new_refresh_token_replaces_the_previous_one() -> None:
    previous = Token("old-access", refresh_token="rt-old")
    token = Token.from_response(answer(), requested_at=NOW, previous=previous)
    assert token.refresh_token == REFRESH


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER"])
def test_bearer_token_type_is_accepted_in_any_case(token_type: str) -> None:
    token = Token.from_response(answer(token_type=token_type), requested_at=NOW)
    assert token.authorization == f"Bearer {ACCESS}"


def test_missing_token_type_means_bearer() -> None:
    token = Token.from_response({"access_token": ACCESS}, requested_at=NOW)
    assert token.token_type == "Bearer"
    assert token.authorization == f"Bearer {ACCESS}"


@pytest.mark.parametrize("token_type", ["DPoP", "dpop", "DPOP"])
def test_a_dpop_token_is_sent_with_the_dpop_scheme(token_type: str) -> None:
    token = Token.from_response(answer(token_type=token_type), requested_at=NOW)
    assert token.is_dpop
    assert token.authorization == f"DPoP {ACCESS}"
    assert not Token(ACCESS).is_dpop


# Stands for a PEM private key: what matters here is that it never shows.
KEY = "-----BEGIN PRIVATE KEY-----\nMIGHkey-Zp6Vt3Wq8Ls1\n-----END PRIVATE KEY-----\n"


def test_the_dpop_key_is_stored_with_the_token_and_read_back() -> None:
    token = Token(ACCESS, "DPoP", REFRESH, expires_at=NOW + 60, dpop_key=KEY)
    written = token.to_dict()
    assert written["dpop_key"] == KEY
    assert Token.from_file(json.loads(json.dumps(written)), written_at=NOW) == token


def test_a_token_endpoint_cannot_choose_the_dpop_key() -> None:
    token = Token.from_response(answer(token_type="DPoP", dpop_key=KEY), requested_at=NOW)
    assert token.dpop_key is None
    assert "dpop_key" not in token.extra
    assert "dpop_key" not in token.to_dict()


def test_the_dpop_key_never_shows_in_repr_or_str() -> None:
    token = Token(ACCESS, "DPoP", dpop_key=KEY)
    for shown in (repr(token), str(token), f"{token}", repr([token])):
        assert "Zp6Vt3Wq8Ls1" not in shown
        assert "PRIVATE" not in shown


@pytest.mark.parametrize("stored", [42, {"kty": "EC", "d": "Zp6Vt3Wq8Ls1"}, ["Zp6Vt3Wq8Ls1"]])
def test_a_stored_dpop_key_that_is_not_a_string_is_refused_without_showing_it(
    stored: object,
) -> None:
    with pytest.raises(ValueError, match="dpop_key") as caught:
        Token.from_file({"access_token": ACCESS, "dpop_key": stored}, written_at=NOW)
    assert "Zp6Vt3Wq8Ls1" not in str(caught.value)


def test_a_tokens_jwt_claims_are_read_without_checking_the_signature() -> None:
    from refreshing_session.token import jwt_claims

    assert jwt_claims(jwt({"cnf": {"jkt": "abc"}})) == {"cnf": {"jkt": "abc"}}
    assert jwt_claims(jwt(b"[1, 2]")) is None
    assert jwt_claims("opaque") is None


def test_scope_list_is_joined_with_spaces() -> None:
    token = Token.from_response(answer(scope=["read", "write"]), requested_at=NOW)
    assert token.scope == "read write"


def test_unknown_fields_are_kept_in_extra_and_written_back() -> None:
    unknown = {"id_token": "idt", "custom": {"nested": [1, 2.5, None]}}
    token = Token.from_response(answer(**unknown), requested_at=NOW)
    assert dict(token.extra) == unknown
    written = token.to_dict()
    assert {key: written[key] for key in unknown} == unknown


@pytest.mark.parametrize(
    ("data", "named_field"),
    [
        pytest.param(answer(token_type="mac"), "token_type", id="mac"),
        pytest.param(answer(token_type="N_A"), "token_type", id="exchange-n-a"),
        pytest.param({"refresh_token": REFRESH}, "access_token", id="access-missing"),
        pytest.param(answer(access_token=""), "access_token", id="access-empty"),
        pytest.param(answer(access_token=42), "access_token", id="access-number"),
        pytest.param(answer(access_token=[ACCESS]), "access_token", id="access-list"),
        pytest.param(answer(expires_in=True), "expires_in", id="expires-in-bool"),
        pytest.param(answer(expires_in=float("nan")), "expires_in", id="expires-in-nan"),
        pytest.param(answer(expires_in=float("inf")), "expires_in", id="expires-in-inf"),
        pytest.param(answer(expires_in="-inf"), "expires_in", id="expires-in-inf-string"),
        pytest.param(answer(expires_in="NaN"), "expires_in", id="expires-in-nan-string"),
        pytest.param(answer(expires_in="an hour"), "expires_in", id="expires-in-words"),
        pytest.param(answer(expires_in=""), "expires_in", id="expires-in-empty"),
        pytest.param(answer(expires_in=[60]), "expires_in", id="expires-in-list"),
        pytest.param(answer(expires_at="tomorrow"), "expires_at", id="expires-at-words"),
        pytest.param(answer(refresh_token=12345), "refresh_token", id="refresh-number"),
        pytest.param(answer(refresh_token=[REFRESH]), "refresh_token", id="refresh-list"),
        pytest.param(answer(scope=42), "scope", id="scope-number"),
        pytest.param(answer(scope=["read", 7]), "scope", id="scope-list-of-mixed"),
        pytest.param(answer(scope={"read": True}), "scope", id="scope-object"),
    ],
)
def test_unusable_answer_raises_value_error_naming_the_field_and_no_secret(
    data: dict[str, Any], named_field: str
) -> None:
    with pytest.raises(ValueError, match=named_field) as caught:
        Token.from_response(data, requested_at=NOW)
    assert_no_secret(str(caught.value))


@pytest.mark.parametrize("refresh_token", [False, 0, [], {}])
def test_falsy_non_string_refresh_token_raises_value_error(refresh_token: object) -> None:
    with pytest.raises(ValueError, match="refresh_token"):
        Token.from_response(answer(refresh_token=refresh_token), requested_at=NOW)


@pytest.mark.parametrize("field", ["expires_in", "expires_at"])
@pytest.mark.parametrize("parse", PARSERS)
def test_integer_beyond_float_range_raises_value_error(
    parse: Callable[[dict[str, Any]], Token], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        parse(answer(**{field: 10**400}))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(json.dumps({"exp": 10**400}).encode(), id="huge-exp"),
        pytest.param(b"[" * 100_000, id="deeply-nested"),
    ],
)
def test_unreadable_jwt_payload_leaves_the_expiry_unknown(payload: bytes) -> None:
    token = Token.from_response(answer(access_token=jwt(payload)), requested_at=NOW)
    assert token.expires_at is None


# from_file


@pytest.mark.parametrize(
    ("saved", "expected"),
    [
        pytest.param(
            {
                "access_token": ACCESS,
                "refresh_token": REFRESH,
                "token_type": "Bearer",
                "expires_in": 3600,
                "expires_at": 1700003600.25,
                "scope": ["read", "write"],
            },
            Token(ACCESS, "Bearer", REFRESH, 1700003600.25, 3600, "read write"),
            id="requests-oauthlib",
        ),
        pytest.param(
            {
                "access_token": ACCESS,
                "refresh_token": REFRESH,
                "token_type": "bearer",
                "expires_in": 3600,
                "expires_at": 1700003600,
                "scope": "read write",
                "id_token": "idt",
            },
            Token(ACCESS, "bearer", REFRESH, 1700003600, 3600, "read write", {"id_token": "idt"}),
            id="authlib",
        ),
    ],
)
def test_files_saved_by_other_libraries_load_as_is(saved: dict[str, Any], expected: Token) -> None:
    assert Token.from_file(saved, written_at=NOW + 50) == expected


def test_file_with_only_expires_in_counts_from_when_it_was_written() -> None:
    written_at = NOW - 7200
    token = Token.from_file(answer(expires_in=3600), written_at=written_at)
    assert (token.expires_at, token.lifetime) == (written_at + 3600, 3600)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(Token(ACCESS), id="minimal"),
        pytest.param(
            Token.from_response(
                answer(expires_in=3600, scope=["a", "b"], id_token="idt", custom={"k": [1]}),
                requested_at=NOW,
            ),
            id="full",
        ),
        pytest.param(
            Token.from_response({"access_token": jwt({"exp": NOW + 60})}, requested_at=NOW),
            id="jwt-expiry",
        ),
    ],
)
def test_to_dict_then_from_file_gives_an_equal_token(token: Token) -> None:
    assert Token.from_file(token.to_dict(), written_at=NOW + 999) == token


# refresh_due_at


@pytest.mark.parametrize(
    ("lifetime", "leeway", "due_before_expiry"),
    [
        pytest.param(3600.0, 30.0, 30.0, id="long-lifetime"),
        pytest.param(2.0, 30.0, 1.0, id="short-lifetime-caps-at-half"),
        pytest.param(60.0, 30.0, 30.0, id="leeway-exactly-half"),
        pytest.param(None, 30.0, 30.0, id="unknown-lifetime"),
        pytest.param(0.0, 30.0, 30.0, id="zero-lifetime"),
    ],
)
def test_refresh_is_due_leeway_before_expiry_but_not_before_half_the_lifetime(
    lifetime: float | None, leeway: float, due_before_expiry: float
) -> None:
    token = Token(ACCESS, expires_at=NOW, lifetime=lifetime)
    assert token.refresh_due_at(leeway) == NOW - due_before_expiry


def test_refresh_due_at_is_none_when_the_expiry_is_unknown() -> None:
    assert Token(ACCESS, lifetime=3600).refresh_due_at(30) is None


# rendering and identity


@pytest.mark.parametrize("render", [repr, str, "{}".format, lambda token: repr([token])])
def test_rendering_a_token_never_shows_its_secrets(render: Callable[[Token], str]) -> None:
    token = Token.from_response(answer(expires_in=60, scope="read"), requested_at=NOW)
    text = render(token)
    assert_no_secret(text)
    assert token.fingerprint in text


def test_fingerprint_is_short_and_tells_tokens_apart() -> None:
    fingerprint = Token(ACCESS).fingerprint
    assert 8 <= len(fingerprint) <= 16
    assert_no_secret(fingerprint)
    assert fingerprint == Token(ACCESS, refresh_token="rt-other").fingerprint
    assert fingerprint != Token(ACCESS + "x").fingerprint


def test_fingerprint_is_the_same_in_another_process() -> None:
    """Logs from several processes must be comparable, so no per-process hash seed."""
    script = "import sys, refreshing_session as r; print(r.Token(sys.argv[1]).fingerprint)"
    other = subprocess.run(
        [sys.executable, "-c", script, ACCESS],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert other.stdout.strip() == Token(ACCESS).fingerprint


# property: any JSON-like answer gives a Token or a ValueError

INTERESTING_STRINGS = st.sampled_from(
    [
        "Bearer",
        "bearer",
        "mac",
        "60",
        "1e400",
        "nan",
        "-inf",
        " 12.5 ",
        "a.b.c",
        jwt({"exp": NOW}),
        jwt({"exp": "x"}),
        jwt(b"not json"),
    ]
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | INTERESTING_STRINGS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=5,
)
NUMBERS = (
    st.integers(-(10**6), 10**10)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["60", " 3600 ", "12.5"])
)
PLAUSIBLE = {
    "access_token": st.text(min_size=1, max_size=12) | st.just(jwt({"exp": NOW})),
    "token_type": st.sampled_from(["Bearer", "bearer", "BEARER", "DPoP"]),
    "refresh_token": st.none() | st.text(max_size=12),
    "expires_in": NUMBERS,
    "expires_at": NUMBERS,
    "scope": st.none() | st.text(max_size=12) | st.lists(st.text(max_size=6), max_size=3),
}
# A mostly plausible token, overlaid with arbitrary values under known or unknown keys.
TOKEN_LIKE = st.builds(
    lambda plausible, arbitrary: {**plausible, **arbitrary},
    st.fixed_dictionaries(
        {"access_token": PLAUSIBLE["access_token"]},
        optional={key: value for key, value in PLAUSIBLE.items() if key != "access_token"},
    ),
    st.dictionaries(st.sampled_from(KNOWN_FIELDS) | st.text(max_size=12), JSON_VALUES, max_size=3),
)


@pytest.mark.parametrize("parse", PARSERS)
@settings(max_examples=200, deadline=None)
@given(data=TOKEN_LIKE)
def test_any_json_like_dict_gives_a_token_or_value_error(
    parse: Callable[[dict[str, Any]], Token], data: dict[str, Any]
) -> None:
    try:
        token = parse(data)
    except ValueError:
        return
    assert isinstance(token.access_token, str)
    assert token.access_token


@pytest.mark.parametrize("access_token", ["two words", "line\nbreak", "tab\t", "\ud800", "é"])
def test_an_access_token_that_would_break_the_header_is_refused(access_token: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        Token.from_response({"access_token": access_token}, requested_at=0)


def test_a_token_built_directly_must_have_finite_times() -> None:
    with pytest.raises(ValueError, match="expires_at"):
        Token("abc", expires_at=math.inf)
    with pytest.raises(ValueError, match="lifetime"):
        Token("abc", lifetime=math.nan)


def test_extra_is_a_read_only_copy() -> None:
    extra = {"id_token": "x"}
    token = Token("abc", extra=extra)
    extra["id_token"] = "changed"
    assert token.extra == {"id_token": "x"}
    with pytest.raises(TypeError):
        token.extra["id_token"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"refresh_expires_in": 1800}, 1000.0 + 1800),
        ({"refresh_expires_in": 0}, None),
        ({}, None),
        ({"refresh_expires_at": 5000}, 5000.0),
    ],
)
def test_the_refresh_token_expiry_the_server_states_is_kept(
    answer: dict[str, object], expected: float | None
) -> None:
    token = Token.from_response(
        {"access_token": "a", "refresh_token": "r", **answer}, requested_at=1000.0
    )
    assert token.refresh_expires_at == expected
    assert Token.from_file(token.to_dict(), written_at=0) == token


def test_a_kept_refresh_token_keeps_its_expiry() -> None:
    first = Token.from_response(
        {"access_token": "a", "refresh_token": "r", "refresh_expires_in": 60}, requested_at=1000.0
    )
    second = Token.from_response({"access_token": "b"}, requested_at=1010.0, previous=first)
    assert (second.refresh_token, second.refresh_expires_at) == ("r", 1060.0)
