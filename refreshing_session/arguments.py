"""Checks of the arguments users give the constructors, with errors that say how to fix them."""

from __future__ import annotations

import math


def seconds(name: str, value: object, *, allow_zero: bool) -> float:
    """Return ``value`` as a float number of seconds; raise TypeError for a non-number and
    ValueError for a negative, infinite or NaN one (or zero, unless ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "more than 0"
        raise ValueError(f"{name} must be a finite number of seconds, {bound}; got {value!r}")
    return float(value)
