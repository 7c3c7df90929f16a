"""The protected API, the counting token endpoint, and the test-only endpoints.

Routes (urls.py): ``POST /o/token/`` (DOT's TokenView, counted), ``GET /api/items`` (the
protected resource), and, for tests only, ``POST /test/grant`` (a first login without a
browser), ``GET /test/stats`` (the counters) and ``GET /test/family`` (the tokens of one login).

Counters live in this process (the server is one process with a thread per request), behind a
lock; tests compare two readings. A family revocation (``grants_revoked``) is seen by
comparing, around DOT's answer, whether the presented token's family still has a live token.

How reuse is counted. A refresh token is *reused* when it is presented to the token endpoint
after it was already presented once, or after it was revoked: DOT revokes a refresh token when
it rotates it (``RefreshToken.revoked`` is set and its access token deleted) and when it revokes
a whole family. The token view below is wrapped: before DOT sees a refresh_token grant, the
SHA-256 of the presented token (DOT's own ``token_checksum``) is looked up in a set of every
refresh token presented so far (this catches two concurrent presentations of the same token,
before either has been rotated), and the ``RefreshToken`` rows with that checksum are read (this
catches a token rotated or revoked by any other path). Either makes it a reuse, whatever DOT
answers: within a grace period DOT accepts the replay, and it is still counted.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model  # type: ignore[import-untyped]
from django.db import transaction  # type: ignore[import-untyped]
from django.http import (  # type: ignore[import-untyped]
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
)
from django.utils import timezone  # type: ignore[import-untyped]
from oauth2_provider.models import (  # type: ignore[import-untyped]
    AccessToken,
    Application,
    RefreshToken,
)
from oauth2_provider.views import ProtectedResourceView, TokenView  # type: ignore[import-untyped]
from oauth2_provider.views.mixins import (  # type: ignore[import-untyped]
    ProtectedResourceMetadataMixin,
)
from oauthlib.common import generate_token  # type: ignore[import-untyped]

from .clients import ACCESS_TOKEN_TTL, BASIC_CLIENT_ID, SCOPE, USERNAME

_LOCK = threading.Lock()
_COUNTS: Counter[str] = Counter()
_PRESENTED: set[str] = set()  # checksums of every refresh token presented so far

COUNTERS = (
    "token_calls",  # every POST to the token endpoint
    "auth_basic",  # ...that authenticated the client with HTTP Basic
    "auth_post",  # ...that sent client_secret in the form body
    "invalid_client",  # ...that DOT answered invalid_client
    "refresh_calls",  # refresh_token grants
    "refresh_successes",  # ...answered 200
    "invalid_grant",  # ...answered invalid_grant
    "refresh_other_errors",  # ...answered another error
    "reuse_detections",  # ...presenting a refresh token already presented or revoked
    "grants_revoked",  # ...after which the token's family had no live token left
    "cc_calls",  # client_credentials grants
    "cc_successes",  # ...answered 200
    "api_ok",  # GET /api/items answered 200
    "api_unauthorized",  # GET /api/items answered 401
    "grants_issued",  # POST /test/grant
)


def _record(counts: Counter[str]) -> None:
    with _LOCK:
        _COUNTS.update(counts)


def _error_code(response: HttpResponse) -> str:
    if response.status_code == 200:
        return ""
    try:
        answer = json.loads(response.content)
    except ValueError:
        return "not json"
    return str(answer.get("error", "")) if isinstance(answer, dict) else "not an object"


def _presentation(refresh_token: str) -> tuple[bool, uuid.UUID | None]:
    """Record that ``refresh_token`` was presented; return whether that is a reuse, and the
    token's family (None when DOT does not know the token)."""
    checksum = hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()
    with _LOCK:
        presented_before = checksum in _PRESENTED
        _PRESENTED.add(checksum)
    revoked, token_family = _lookup(refresh_token)
    return presented_before or revoked, token_family


def _lookup(refresh_token: str) -> tuple[bool, uuid.UUID | None]:
    """Whether DOT has revoked ``refresh_token`` (rotated it, or revoked its grant), and its
    family (None when DOT does not know the token)."""
    checksum = hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()
    rows = list(RefreshToken.objects.filter(token_checksum=checksum))
    revoked = bool(rows) and all(row.revoked is not None for row in rows)
    token_family: uuid.UUID | None = rows[0].token_family if rows else None
    return revoked, token_family


def _family_live(token_family: uuid.UUID | None) -> bool:
    return token_family is not None and bool(
        RefreshToken.objects.filter(token_family=token_family, revoked__isnull=True).exists()
    )


class CountingTokenView(TokenView):  # type: ignore[misc]  # Django is untyped
    """DOT's token endpoint, unchanged, with counters around it."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        counts: Counter[str] = Counter(token_calls=1)
        if request.headers.get("Authorization", "").startswith("Basic "):
            counts["auth_basic"] += 1
        elif "client_secret" in request.POST:
            counts["auth_post"] += 1
        grant_type = request.POST.get("grant_type", "")
        reuse, token_family, live_before = False, None, False
        if grant_type == "refresh_token":
            reuse, token_family = _presentation(request.POST.get("refresh_token", ""))
            live_before = _family_live(token_family)
        response = super().post(request, *args, **kwargs)
        error = _error_code(response)
        counts["invalid_client"] += error == "invalid_client"
        if grant_type == "refresh_token":
            counts["refresh_calls"] += 1
            counts["refresh_successes"] += not error
            counts["invalid_grant"] += error == "invalid_grant"
            counts["refresh_other_errors"] += error not in ("", "invalid_grant")
            counts["reuse_detections"] += reuse
            revoked = bool(error) and live_before and not _family_live(token_family)
            counts["grants_revoked"] += revoked
        elif grant_type == "client_credentials":
            counts["cc_calls"] += 1
            counts["cc_successes"] += not error
        _record(counts)
        return response


class ItemsView(ProtectedResourceMetadataMixin, ProtectedResourceView):  # type: ignore[misc]
    """``GET /api/items``: 200 and JSON with a valid access token.

    DOT's plain ``ProtectedResourceView`` answers a bare 403 to a missing, expired or unknown
    token; ``ProtectedResourceMetadataMixin`` (RFC 9728) makes that the RFC 6750 answer, a 401
    with ``WWW-Authenticate: Bearer error="invalid_token"``, which is what clients refresh on.
    """

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        _record(Counter(api_ok=1))
        owner = getattr(request.resource_owner, "username", None)
        return JsonResponse({"items": ["apple", "pear"], "user": owner})

    def unauthenticated_response(
        self, request: HttpRequest, oauthlib_request: Any = None
    ) -> HttpResponse:
        response = super().unauthenticated_response(request, oauthlib_request)
        _record(Counter(api_unauthorized=int(response.status_code == 401)))
        return response


def grant(request: HttpRequest) -> HttpResponse:
    """``POST /test/grant`` (form: optional ``client_id``): log the user in without a browser.

    Creates an AccessToken and a RefreshToken (a new token family) for the user and the client
    through DOT's models, as DOT's own authorization_code exchange would, and answers the RFC
    6749 section 5.1 token JSON.
    """
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    user = get_user_model().objects.get(username=USERNAME)
    application = Application.objects.get(client_id=request.POST.get("client_id", BASIC_CLIENT_ID))
    with transaction.atomic():
        access = AccessToken.objects.create(
            user=user,
            application=application,
            token=generate_token(),
            scope=SCOPE,
            expires=timezone.now() + timedelta(seconds=ACCESS_TOKEN_TTL),
        )
        refresh = RefreshToken.objects.create(
            user=user,
            application=application,
            token=generate_token(),
            access_token=access,
            token_family=uuid.uuid4(),
        )
    _record(Counter(grants_issued=1))
    return JsonResponse(
        {
            "access_token": access.token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_TTL,
            "refresh_token": refresh.token,
            "scope": SCOPE,
        }
    )


def stats(request: HttpRequest) -> HttpResponse:
    """``GET /test/stats``: the counters, as a JSON object."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    with _LOCK:
        return JsonResponse({name: _COUNTS[name] for name in COUNTERS})


def family(request: HttpRequest) -> HttpResponse:
    """``GET /test/family?refresh_token=...``: the login that refresh token belongs to.

    ``tokens``: refresh tokens issued in it (by /test/grant, then one per rotation); ``due``:
    those whose access token had reached half its lifetime by now, when RefreshingSession
    refreshes (each can be redeemed once, so a client needs at most that many refresh calls);
    ``live``: those neither rotated nor revoked (0 once the grant was revoked).
    """
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    _, token_family = _lookup(request.GET.get("refresh_token", ""))
    rows = RefreshToken.objects.filter(token_family=token_family)
    halfway = timezone.now() - timedelta(seconds=ACCESS_TOKEN_TTL / 2)
    return JsonResponse(
        {
            "tokens": rows.count(),
            "due": rows.filter(created__lte=halfway).count(),
            "live": rows.filter(revoked__isnull=True).count(),
        }
    )
