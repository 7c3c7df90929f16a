"""Small statistics helpers: percentiles, latency summaries and the machine's load."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile (0..1) of ``values``, linearly interpolated; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Spread:
    """A median with its interquartile range."""

    median: float
    low: float  # 25th percentile
    high: float  # 75th percentile

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """Summarise ``values``."""
        return cls(percentile(values, 0.5), percentile(values, 0.25), percentile(values, 0.75))


@dataclass(frozen=True)
class Latency:
    """Latency percentiles in milliseconds over ``count`` samples."""

    count: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        """Summarise durations given in seconds."""
        if not seconds:
            return cls(0, math.nan, math.nan, math.nan)
        return cls(
            len(seconds),
            1000 * percentile(seconds, 0.5),
            1000 * percentile(seconds, 0.99),
            1000 * max(seconds),
        )


def load_average() -> float | None:
    """The 1-minute load average (None where the platform has none): other work on the
    machine shows up in the figures, so the report states it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
