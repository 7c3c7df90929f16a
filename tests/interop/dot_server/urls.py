"""Routes of the test authorization server."""

from __future__ import annotations

from django.urls import path  # type: ignore[import-untyped]

from . import views

urlpatterns = [
    path("o/token/", views.CountingTokenView.as_view(), name="token"),
    path("api/items", views.ItemsView.as_view(), name="items"),
    path("test/grant", views.grant, name="test-grant"),
    path("test/stats", views.stats, name="test-stats"),
    path("test/family", views.family, name="test-family"),
]
