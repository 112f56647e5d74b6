"""Line charts as inline SVG for the admin and dashboards: no JavaScript, no plotting
library on the web server, readable without a legend hunt (each series is labelled)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

Scale = Callable[[float], float]  # a data value to its SVG coordinate

PALETTE = ("#3b6fd4", "#d9822b", "#2e9e5b", "#c23b6b", "#7a55c4", "#6b7280")


@dataclass
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False
    color: str | None = None


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    series: list[Series] = field(default_factory=list)
    y_range: tuple[float, float] | None = None
    width: int = 640
    height: int = 260


MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 150, 28, 40


def render(chart: Chart) -> str:
    """The chart as an ``<svg>`` element (safe to mark_safe: every label is escaped)."""
    points = [p for s in chart.series for p in s.points if _finite(p)]
    if not points:
        return _empty(chart)
    x_low, x_high = _span([x for x, _ in points])
    y_low, y_high = chart.y_range or _span([y for _, y in points])
    plot_w = chart.width - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = chart.height - MARGIN_TOP - MARGIN_BOTTOM

    def sx(x: float) -> float:
        return MARGIN_LEFT + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return MARGIN_TOP + (1 - (y - y_low) / (y_high - y_low)) * plot_h

    parts = [_frame(chart, plot_w, plot_h)]
    parts += _y_ticks(y_low, y_high, sy, plot_w)
    whole = all(float(x).is_integer() for x, _ in points)
    parts += _x_ticks(x_low, x_high, sx, plot_h, whole)
    for index, series in enumerate(chart.series):
        color = series.color or PALETTE[index % len(PALETTE)]
        parts.append(_line(series, color, sx, sy))
        parts.append(_legend_entry(series, color, index, chart.width))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'width="{chart.width}" height="{chart.height}" viewBox="0 0 {chart.width} {chart.height}" '
        f'aria-label="{escape(chart.title)}" font-family="system-ui, sans-serif" font-size="11">'
        + "".join(parts)
        + "</svg>"
    )


def _finite(point: tuple[float, float]) -> bool:
    return all(value is not None and math.isfinite(value) for value in point)


def _span(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high == low:
        return low - 1, high + 1
    pad = (high - low) * 0.05
    return low - pad, high + pad


def _frame(chart: Chart, plot_w: float, plot_h: float) -> str:
    return (
        f'<text x="{MARGIN_LEFT}" y="16" font-size="13" font-weight="600">'
        f"{escape(chart.title)}</text>"
        f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" '
        'fill="#fff" stroke="#c8ccd2"/>'
        f'<text x="{MARGIN_LEFT + plot_w / 2}" y="{chart.height - 6}" text-anchor="middle">'
        f"{escape(chart.x_label)}</text>"
        f'<text x="12" y="{MARGIN_TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {MARGIN_TOP + plot_h / 2})">{escape(chart.y_label)}</text>'
    )


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2 or 5 × a power of ten apart)."""
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _y_ticks(low: float, high: float, sy: Scale, plot_w: float) -> list[str]:
    return [
        f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
        'stroke="#eceef1"/>'
        f'<text x="{MARGIN_LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>'
        for t in nice_ticks(low, high)
    ]


def _x_ticks(low: float, high: float, sx: Scale, plot_h: float, whole: bool) -> list[str]:
    """Ticks under the plot; only whole numbers when x counts things (versions, steps)."""
    y = MARGIN_TOP + plot_h
    ticks = [t for t in nice_ticks(low, high) if not whole or float(t).is_integer()]
    return [
        f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{y}" y2="{y + 4}" stroke="#8a9099"/>'
        f'<text x="{sx(t):.1f}" y="{y + 16}" text-anchor="middle">{_fmt(t)}</text>'
        for t in ticks
    ]


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) >= 0.01 or value == 0 else f"{value:.1e}"


def _line(series: Series, color: str, sx: Scale, sy: Scale) -> str:
    points = [p for p in series.points if _finite(p)]
    dash = ' stroke-dasharray="6 4"' if series.dashed else ""
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    dots = "".join(
        f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>'
        for x, y in points
        if len(points) <= 40
    )
    return (
        f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{path}">'
        f"<title>{escape(series.label)}</title></polyline>{dots}"
    )


def _legend_entry(series: Series, color: str, index: int, width: int) -> str:
    x, y = width - MARGIN_RIGHT + 12, MARGIN_TOP + 14 + index * 18
    dash = ' stroke-dasharray="6 4"' if series.dashed else ""
    return (
        f'<line x1="{x}" x2="{x + 22}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" '
        f'stroke-width="2"{dash}/>'
        f'<text x="{x + 28}" y="{y}">{escape(series.label)}</text>'
    )


def _empty(chart: Chart) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{chart.width}" '
        f'height="60" font-family="system-ui, sans-serif" font-size="12">'
        f'<text x="8" y="20" font-weight="600">{escape(chart.title)}</text>'
        '<text x="8" y="42" fill="#6b7280">no data yet</text></svg>'
    )


@dataclass
class Bars:
    """Horizontal bars: one labelled value each (annotators, aspects, generators)."""

    title: str
    value_label: str
    bars: Sequence[tuple[str, float]]
    max_value: float | None = None
    width: int = 640
    bar_height: int = 18


BAR_LABEL_WIDTH = 190


def render_bars(chart: Bars) -> str:
    """The bars as an ``<svg>`` element; labels and values escaped, None values skipped."""
    bars = [(label, value) for label, value in chart.bars if value is not None]
    if not bars:
        return _empty(Chart(chart.title, "", ""))
    top = max([value for _, value in bars] + [chart.max_value or 0]) or 1.0
    plot_w = chart.width - BAR_LABEL_WIDTH - 70
    height = MARGIN_TOP + len(bars) * (chart.bar_height + 6) + 28
    rows = [
        _bar(index, label, value, top, plot_w, chart.bar_height)
        for index, (label, value) in enumerate(bars)
    ]
    footer_y = height - 8
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'width="{chart.width}" height="{height}" viewBox="0 0 {chart.width} {height}" '
        f'aria-label="{escape(chart.title)}" font-family="system-ui, sans-serif" font-size="11">'
        f'<text x="8" y="16" font-size="13" font-weight="600">{escape(chart.title)}</text>'
        + "".join(rows)
        + f'<text x="{BAR_LABEL_WIDTH}" y="{footer_y}" fill="#6b7280">'
        f"{escape(chart.value_label)} (full width = {_fmt(top)})</text></svg>"
    )


def _bar(index: int, label: str, value: float, top: float, plot_w: float, size: int) -> str:
    y = MARGIN_TOP + index * (size + 6)
    length = max(0.0, value) / top * plot_w
    color = PALETTE[0] if value >= 0 else PALETTE[1]
    return (
        f'<text x="{BAR_LABEL_WIDTH - 6}" y="{y + size - 5}" text-anchor="end">'
        f"{escape(str(label))[:28]}</text>"
        f'<rect x="{BAR_LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{size}" '
        f'fill="{color}"><title>{escape(str(label))}: {_fmt(value)}</title></rect>'
        f'<text x="{BAR_LABEL_WIDTH + length + 4:.1f}" y="{y + size - 5}">'
        f"{_bar_value(value)}</text>"
    )


def _bar_value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
