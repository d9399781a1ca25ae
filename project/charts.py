"""Server-rendered SVG charts of the operator console: line charts over sessions with level
lines, small price lines with their levels, and horizontal bar charts.

Pure: values in, SVG text out, no Django, no clock, no database, no script, so a page works
offline and every chart can be tested without a browser. Every value that reaches the SVG is
escaped. Colours are CSS classes (``series-<style>``, ``level-<style>``, ``bar-<style>``) that
``portfolio/static/portfolio/console.css`` maps to the admin's theme variables, so the light and
the dark theme both read.

Each chart's root ``<svg>`` carries ``data-chart`` (its name) and ``data-series-count`` (how many
series it draws); each series a ``data-series`` name and each level line a ``data-level`` name,
for the browser tests and anyone reading the page's source.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = [
    "Bar",
    "Level",
    "Series",
    "bar_chart",
    "decline_from_peak",
    "line_chart",
    "price_line",
    "running_max",
]

Number = float | int


@dataclass(frozen=True)
class Series:
    """One line of a chart: ``values`` one per label, None where there is no point."""

    name: str
    values: tuple[Number | None, ...]
    style: str = "main"
    dashed: bool = False


@dataclass(frozen=True)
class Level:
    """A horizontal line at ``value`` (a threshold: a risk threshold, a limit, a mark)."""

    name: str
    value: Number
    style: str = "warn"


@dataclass(frozen=True)
class Bar:
    """One bar of a bar chart (a sizing step: the amount after it)."""

    label: str
    value: Number
    style: str = "main"
    note: str = ""


def running_max(values: Sequence[Number | None]) -> list[float | None]:
    """The highest value so far at each point (the high-water line); None before the first
    value and where the input has none."""
    out: list[float | None] = []
    peak: float | None = None
    for value in values:
        if value is not None:
            peak = float(value) if peak is None else max(peak, float(value))
        out.append(peak if value is not None else None)
    return out


def decline_from_peak(values: Sequence[Number | None]) -> list[float | None]:
    """The decline from the running peak at each point, as a fraction (0.12 = 12 % below the
    peak); 0 at a new peak, None where there is no value or the peak is not positive."""
    out: list[float | None] = []
    for value, peak in zip(values, running_max(values), strict=True):
        if value is None or peak is None or peak <= 0:
            out.append(None)
        else:
            out.append(max(0.0, 1.0 - float(value) / peak))
    return out


def _finite(values: Sequence[Number | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _bounds(numbers: Sequence[float], *, floor: float | None) -> tuple[float, float]:
    """The y range with a little room above and below; ``floor`` forces the bottom."""
    low, high = min(numbers), max(numbers)
    if floor is not None:
        low = min(low, floor)
    if high == low:
        pad = abs(high) * 0.05 or 1.0
        return low - pad if floor is None else low, high + pad
    pad = (high - low) * 0.08
    return (low - pad if floor is None else low), high + pad


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def line_chart(
    name: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    levels: Sequence[Level] = (),
    y_format: Callable[[float], str] = lambda v: f"{v:,.0f}",
    floor: float | None = None,
    width: int = 560,
    height: int = 200,
) -> str:
    """A line chart of ``series`` over ``labels`` (sessions, oldest first) with ``levels`` as
    horizontal lines, an axis with the range's ends and middle, and a legend. ``floor`` forces
    the bottom of the y axis (0 for fractions). Without any value: a chart frame saying so."""
    left, right, top, bottom = 64, 12, 26, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    numbers = [n for s in series for n in _finite(s.values)] + [float(lv.value) for lv in levels]
    head = (
        f'<svg class="console-chart" data-chart="{escape(name)}" '
        f'data-series-count="{len(series)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<text class="chart-title" x="{left}" y="14">{escape(title)}</text>'
    )
    if not numbers or not labels:
        return (
            head + f'<text class="chart-empty" x="{left}" y="{top + plot_h / 2:.0f}">'
            "No data yet</text></svg>"
        )
    low, high = _bounds(numbers, floor=floor)
    count = len(labels)

    def x(i: int) -> float:
        return left + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - low) / (high - low))

    parts = [head]
    for v in (low, (low + high) / 2, high):
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{_fmt(y(v))}" '
            f'y2="{_fmt(y(v))}"/><text class="axis" x="{left - 4}" y="{_fmt(y(v) + 4)}" '
            f'text-anchor="end">{escape(y_format(v))}</text>'
        )
    parts.append(
        f'<text class="axis" x="{left}" y="{height - 6}">{escape(labels[0])}</text>'
        f'<text class="axis" x="{left + plot_w}" y="{height - 6}" text-anchor="end">'
        f"{escape(labels[-1])}</text>"
    )
    for level in levels:
        ly = _fmt(y(float(level.value)))
        parts.append(
            f'<line class="level level-{escape(level.style)}" data-level="{escape(level.name)}" '
            f'x1="{left}" x2="{left + plot_w}" y1="{ly}" y2="{ly}"/>'
            f'<text class="level-label level-{escape(level.style)}" x="{left + plot_w - 2}" '
            f'y="{_fmt(float(ly) - 3)}" text-anchor="end">{escape(level.name)}</text>'
        )
    for s in series:
        points = " ".join(
            f"{_fmt(x(i))},{_fmt(y(float(v)))}" for i, v in enumerate(s.values) if v is not None
        )
        dash = " dashed" if s.dashed else ""
        parts.append(
            f'<polyline class="series series-{escape(s.style)}{dash}" '
            f'data-series="{escape(s.name)}" fill="none" points="{points}"/>'
        )
        last = next(((i, v) for i, v in reversed(list(enumerate(s.values))) if v is not None), None)
        if last is not None:
            parts.append(
                f'<circle class="series-dot series-{escape(s.style)}" cx="{_fmt(x(last[0]))}" '
                f'cy="{_fmt(y(float(last[1])))}" r="2.5"/>'
            )
    legend_x = left + 8 + len(title) * 6.5
    for s in series:
        parts.append(
            f'<line class="series series-{escape(s.style)}{" dashed" if s.dashed else ""}" '
            f'x1="{_fmt(legend_x)}" x2="{_fmt(legend_x + 14)}" y1="10" y2="10"/>'
            f'<text class="legend" x="{_fmt(legend_x + 18)}" y="14">{escape(s.name)}</text>'
        )
        legend_x += 28 + len(s.name) * 6
    parts.append("</svg>")
    return "".join(parts)


def price_line(
    name: str,
    values: Sequence[Number | None],
    levels: Sequence[Level],
    *,
    width: int = 240,
    height: int = 56,
) -> str:
    """A small price line (closes, oldest first) with its levels (entry, risk threshold, gain
    target) drawn across it; no axis, the levels carry the scale. Levels outside the prices'
    range widen the range, so every level is visible."""
    numbers = _finite(values) + [float(lv.value) for lv in levels]
    label = f"{name}: " + ", ".join(f"{lv.name} {lv.value:,.2f}" for lv in levels)
    head = (
        f'<svg class="console-chart price-line" data-chart="price-{escape(name)}" '
        f'data-series-count="1" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>'
    )
    if not numbers:
        return head + "</svg>"
    low, high = _bounds(numbers, floor=None)
    pad = 3
    count = max(len(values), 1)

    def x(i: int) -> float:
        return pad + (width - 2 * pad) * (i / (count - 1) if count > 1 else 0.5)

    def y(v: float) -> float:
        return pad + (height - 2 * pad) * (1 - (v - low) / (high - low))

    parts = [head]
    for level in levels:
        ly = _fmt(y(float(level.value)))
        parts.append(
            f'<line class="level level-{escape(level.style)}" data-level="{escape(level.name)}" '
            f'x1="0" x2="{width}" y1="{ly}" y2="{ly}"/>'
        )
    points = " ".join(
        f"{_fmt(x(i))},{_fmt(y(float(v)))}" for i, v in enumerate(values) if v is not None
    )
    parts.append(
        f'<polyline class="series series-main" data-series="close" fill="none" '
        f'points="{points}"/></svg>'
    )
    return "".join(parts)


def bar_chart(
    name: str,
    title: str,
    bars: Sequence[Bar],
    *,
    value_format: Callable[[float], str] = lambda v: f"{v:,.2f}",
    width: int = 420,
    row_height: int = 22,
) -> str:
    """Horizontal bars from zero, one row per bar with its label and value (the sizing
    waterfall: the amount after each step). Negative values are drawn as zero-width bars."""
    label_w, value_w = 150, 90
    bar_w = width - label_w - value_w
    height = 20 + row_height * max(len(bars), 1)
    top = max((float(b.value) for b in bars), default=0.0)
    parts = [
        f'<svg class="console-chart bar-chart" data-chart="{escape(name)}" '
        f'data-series-count="1" data-bar-count="{len(bars)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<text class="chart-title" x="0" y="13">{escape(title)}</text>'
    ]
    for i, bar in enumerate(bars):
        y = 20 + i * row_height
        value = float(bar.value)
        length = bar_w * max(value, 0.0) / top if top > 0 else 0.0
        tip = f"{bar.label}: {value_format(value)}" + (f" ({bar.note})" if bar.note else "")
        parts.append(
            f'<g data-bar="{escape(bar.label)}"><title>{escape(tip)}</title>'
            f'<text class="axis" x="{label_w - 6}" y="{y + row_height * 0.65:.0f}" '
            f'text-anchor="end">{escape(bar.label[:24])}</text>'
            f'<rect class="bar bar-{escape(bar.style)}" x="{label_w}" y="{y + 3}" '
            f'width="{_fmt(length)}" height="{row_height - 6}"/>'
            f'<text class="axis" x="{_fmt(label_w + length + 4)}" '
            f'y="{y + row_height * 0.65:.0f}">{escape(value_format(value))}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
