"""Argument checks shared by the server's configuration and its controls."""

from __future__ import annotations

import math


def check_non_negative(name: str, value: float | None) -> None:
    """Raise ValueError when ``value`` is given and below zero."""
    if value is not None and value < 0:
        raise ValueError(f"{name} must be >= 0")


def check_finite(name: str, value: float) -> None:
    """Raise ValueError when ``value`` is not a finite number."""
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds")
