"""Hand-written SVG charts, so the benchmarks need no plotting library.

A chart is one or more panels side by side; each panel has a y scale (linear or log), a
category or numeric x axis, and draws dots with whiskers, grouped bars, or lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

COLORS = {
    "ours": "#1f5fbf",
    "ours_at_expiry": "#6fa8ff",
    "plain": "#7f7f7f",
    "requests_oauthlib": "#d9822b",
    "authlib": "#2e9e5b",
    "google_auth": "#c23b3b",
    "interceptor": "#8e5cc2",
}
_PANEL_W, _PANEL_H = 420, 300
_LEFT, _TOP, _BOTTOM, _RIGHT = 64, 56, 92, 20
_FONT = 'font-family="Helvetica, Arial, sans-serif"'


@dataclass(frozen=True)
class Scale:
    """Maps values in ``[low, high]`` to pixels from ``bottom`` up to ``top``."""

    low: float
    high: float
    log: bool
    bottom: float
    top: float

    def y(self, value: float) -> float:
        """The pixel row of ``value`` (clamped into the range)."""
        value = min(max(value, self.low), self.high)
        if self.log:
            share = math.log10(value / self.low) / math.log10(self.high / self.low)
        else:
            share = (value - self.low) / (self.high - self.low)
        return self.bottom - share * (self.bottom - self.top)

    def ticks(self) -> list[float]:
        """Round values to label on the axis."""
        if self.log:
            first, last = math.floor(math.log10(self.low)), math.ceil(math.log10(self.high))
            return [10.0**e for e in range(first, last + 1) if self.low <= 10.0**e <= self.high]
        step = _nice_step((self.high - self.low) / 5)
        start = math.ceil(self.low / step) * step
        return [start + i * step for i in range(int((self.high - start) / step) + 1)]


def _nice_step(raw: float) -> float:
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def fit_scale(
    values: Sequence[float],
    *,
    log: bool,
    include: Sequence[float] = (),
    top: float = _TOP,
    bottom: float = _TOP + _PANEL_H,
) -> Scale:
    """A scale that shows every finite value (and those in ``include``) with a margin."""
    finite = [v for v in (*values, *include) if math.isfinite(v) and (v > 0 or not log)]
    low, high = (min(finite), max(finite)) if finite else (1.0, 10.0)
    if log:
        return Scale(
            10 ** math.floor(math.log10(low)), 10 ** math.ceil(math.log10(high)), True, bottom, top
        )
    pad = (high - low) * 0.1 or abs(high) * 0.1 or 1.0
    return Scale(low - pad, high + pad, False, bottom, top)


@dataclass(frozen=True)
class Panel:
    """One panel: its title, y label, scale, and the SVG elements drawn inside its plot area."""

    title: str
    y_label: str
    scale: Scale
    x_labels: Sequence[tuple[float, str]]  # (x offset inside the plot area, text)
    body: Sequence[str]


def _plot_width() -> float:
    return _PANEL_W - _LEFT - _RIGHT


def dots_panel(
    title: str,
    y_label: str,
    points: Mapping[str, tuple[float, float, float]],
    labels: Mapping[str, str],
    reference: float | None = None,
) -> Panel:
    """One dot per key, with a whisker from low to high: ``points[key] = (value, low, high)``;
    a dashed line marks ``reference``."""
    flat = [v for triple in points.values() for v in triple]
    scale = fit_scale(flat, log=False, include=[] if reference is None else [reference])
    slot = _plot_width() / len(points)
    body = [] if reference is None else [_hline(scale.y(reference), dashed=True)]
    for position, (key, (value, low, high)) in enumerate(points.items()):
        x, color = _LEFT + slot * (position + 0.5), COLORS.get(key, "#333")
        body.append(_line(x, scale.y(low), x, scale.y(high), color, 2))
        body.append(f'<circle cx="{x:.1f}" cy="{scale.y(value):.1f}" r="4.5" fill="{color}"/>')
    x_labels = [(slot * (i + 0.5), labels[key]) for i, key in enumerate(points)]
    return Panel(title, y_label, scale, x_labels, body)


def bars_panel(
    title: str,
    y_label: str,
    categories: Sequence[str],
    values: Mapping[str, Sequence[float]],
    *,
    log: bool,
    reference: float | None = None,
    floor: float | None = None,
) -> Panel:
    """Grouped bars: one group per category, one bar per series. On a log scale, values at
    or below the scale's bottom (such as 0) are drawn as a stub; a dashed line marks
    ``reference``, which the scale keeps well inside; the scale reaches down to ``floor``."""
    flat = [v for series in values.values() for v in series]
    include = [0.0] if not log else [] if reference is None else [reference / 5]
    include += [] if floor is None else [floor]
    scale = fit_scale(flat, log=log, include=include)
    slot = _plot_width() / len(categories)
    width = slot * 0.8 / len(values)
    body = [] if reference is None else [_hline(scale.y(reference), dashed=True)]
    for index, (key, series) in enumerate(values.items()):
        for position, value in enumerate(series):
            x = _LEFT + slot * position + slot * 0.1 + index * width
            top = scale.y(value) if math.isfinite(value) else scale.bottom
            height = max(scale.bottom - top, 1.5)
            body.append(
                f'<rect x="{x:.1f}" y="{scale.bottom - height:.1f}" width="{width:.1f}" '
                f'height="{height:.1f}" fill="{COLORS.get(key, "#333")}"/>'
            )
    labels = [(slot * (i + 0.5), name) for i, name in enumerate(categories)]
    return Panel(title, y_label, scale, labels, body)


def lines_panel(
    title: str,
    y_label: str,
    xs: Sequence[float],
    values: Mapping[str, Sequence[float | None]],
    *,
    log: bool,
    reference: float | None = None,
) -> Panel:
    """One line per series over ``xs`` (spaced evenly, as with powers of two); None is a gap.
    A dashed line marks ``reference``."""
    flat = [v for series in values.values() for v in series if v is not None]
    include = [0.0] if not log else [] if reference is None else [reference / 5]
    scale = fit_scale(flat, log=log, include=include)
    step = _plot_width() / max(len(xs) - 1, 1)
    body = [] if reference is None else [_hline(scale.y(reference), dashed=True)]
    for key, series in values.items():
        color = COLORS.get(key, "#333")
        points = [(_LEFT + step * i, scale.y(v)) for i, v in enumerate(series) if v is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>' for x, y in points]
    labels = [(step * i, f"{x:g}") for i, x in enumerate(xs)]
    return Panel(title, y_label, scale, labels, body)


def document(
    title: str, panels: Sequence[Panel], legend: Mapping[str, str], x_label: str = ""
) -> str:
    """Lay ``panels`` out side by side under ``title``, with a legend (key -> label) below."""
    width = _PANEL_W * len(panels)
    height = _TOP + _PANEL_H + _BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {_FONT} font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        _text(width / 2, 20, title, size=14, anchor="middle", bold=True),
    ]
    for index, panel in enumerate(panels):
        parts.append(f'<g transform="translate({index * _PANEL_W},0)">')
        parts += _axes(panel, x_label)
        parts += panel.body
        parts.append("</g>")
    parts += _legend(legend, _TOP + _PANEL_H + 56, width)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _axes(panel: Panel, x_label: str) -> list[str]:
    scale, right = panel.scale, _PANEL_W - _RIGHT
    parts = [
        _text(_LEFT + _plot_width() / 2, _TOP - 14, panel.title, anchor="middle", bold=True),
        _line(_LEFT, scale.top, _LEFT, scale.bottom, "#333", 1),
        _line(_LEFT, scale.bottom, right, scale.bottom, "#333", 1),
        f'<text transform="translate(14,{(scale.top + scale.bottom) / 2:.0f}) '
        f'rotate(-90)" text-anchor="middle">{escape(panel.y_label)}</text>',
    ]
    for tick in scale.ticks():
        y = scale.y(tick)
        parts.append(_line(_LEFT, y, right, y, "#e5e5e5", 1))
        parts.append(_text(_LEFT - 6, y + 4, f"{tick:g}", anchor="end"))
    slanted = len(panel.x_labels) > 4 and any(len(label) > 6 for _, label in panel.x_labels)
    for offset, label in panel.x_labels:
        x, y = _LEFT + offset, scale.bottom + 16
        if slanted:
            parts.append(
                f'<text transform="translate({x + 4:.1f},{y - 4:.1f}) rotate(-30)" '
                f'text-anchor="end">{escape(label)}</text>'
            )
        else:
            parts.append(_text(x, y, label, anchor="middle"))
    if x_label:
        parts.append(_text(_LEFT + _plot_width() / 2, scale.bottom + 34, x_label, anchor="middle"))
    return parts


def _legend(legend: Mapping[str, str], y: float, width: float) -> list[str]:
    """Swatches and labels, flowing onto a second row when the first is full."""
    parts, x = [], 12.0
    for key, label in legend.items():
        advance = 30 + 6.2 * len(label)
        if x + advance > width:
            x, y = 12.0, y + 16
        parts.append(
            f'<rect x="{x:.0f}" y="{y - 9:.0f}" width="10" height="10" '
            f'fill="{COLORS.get(key, "#333")}"/>'
        )
        parts.append(_text(x + 14, y, label))
        x += advance
    return parts


def _hline(y: float, *, dashed: bool) -> str:
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    return (
        f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_PANEL_W - _RIGHT}" y2="{y:.1f}" '
        f'stroke="#555"{dash}/>'
    )


def _line(x1: float, y1: float, x2: float, y2: float, color: str, width: float) -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
        f'stroke="{color}" stroke-width="{width}"/>'
    )


def _text(
    x: float, y: float, text: str, *, size: int = 11, anchor: str = "start", bold: bool = False
) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"'
        f"{weight}>{escape(text)}</text>"
    )
