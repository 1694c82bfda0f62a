"""Server-rendered SVG line charts over time, with axes, gridlines, labels and linked points."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

WIDTH, HEIGHT = 1240, 320
LEFT, RIGHT, TOP, BOTTOM = 92, 28, 20, 52
PAD_X = 18  # keeps the first and last points off the axes
# Colours of the second and later series (the first uses the stylesheet's accent).
SERIES_COLOURS = ("#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#1098ad")


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float
    href: str = ""
    title: str = ""
    hollow: bool = False  # drawn as an open circle (e.g. "not measured" rather than zero)
    series: str = ""  # points of different series are never joined by one line (e.g. engines)


def nice_ticks(maximum: float, count: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 x 10^n) up to at least `maximum`."""
    if maximum <= 0 or not math.isfinite(maximum):
        return [0.0, 1.0]
    raw_step = maximum / (count - 1)
    power = 10 ** math.floor(math.log10(raw_step))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw_step)
    ticks = [0.0]
    while ticks[-1] < maximum * (1 - 1e-9):
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def time_ticks(start: datetime, end: datetime, count: int = 6) -> list[tuple[datetime, str]]:
    span = end - start
    if span <= timedelta(minutes=10):
        fmt = "%H:%M:%S"
    elif span <= timedelta(days=1):
        fmt = "%H:%M"
    elif span <= timedelta(days=7):
        fmt = "%b %d %H:%M"
    else:
        fmt = "%b %d"
    ticks = [start + span * (k / (count - 1)) for k in range(count)]
    return [(tick, tick.strftime(fmt)) for tick in ticks]


def line_chart(
    points: Sequence[Point],
    *,
    y_label: str,
    y_format: Callable[[float], str],
    x_label: str = "time (UTC)",
    label: str = "",
    empty_text: str = "No data points yet.",
) -> str:
    """An SVG time-series chart (escaped markup). Points are drawn in time order, linked when they have an href.

    Each series gets its own line and colour, and a legend when there is more than one.
    """
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(label or y_label)}">',
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    points = sorted(points, key=lambda p: p.at)
    if not points:
        out.append(
            f'<text class="empty" x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle">'
            f"{escape(empty_text)}</text></svg>"
        )
        return "".join(out)

    start, end = points[0].at, points[-1].at
    if end - start < timedelta(seconds=1):
        start, end = start - timedelta(minutes=5), end + timedelta(minutes=5)
    span = (end - start).total_seconds()
    ticks = nice_ticks(max(p.value for p in points))
    top_value = ticks[-1]

    def sx(at: datetime) -> float:
        return LEFT + PAD_X + (plot_w - 2 * PAD_X) * (at - start).total_seconds() / span

    def sy(value: float) -> float:
        return TOP + plot_h * (1 - value / top_value)

    for tick in ticks:
        y = sy(tick)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
        text = "0" if tick == 0 else y_format(tick)
        out.append(f'<text class="tick y" x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(text)}</text>')
    for at, text in time_ticks(start, end):
        x = sx(at)
        out.append(f'<line class="tick-mark" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 5}"/>')
        out.append(f'<text class="tick x" x="{x:.1f}" y="{TOP + plot_h + 19}" text-anchor="middle">{escape(text)}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}"/>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>')
    out.append(f'<text class="axis-label" x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(
        f'<text class="axis-label" transform="translate(16 {TOP + plot_h / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )

    names = list(dict.fromkeys(p.series for p in points))
    style = {
        name: "" if i == 0 else f' style="stroke:{SERIES_COLOURS[(i - 1) % len(SERIES_COLOURS)]}"'
        for i, name in enumerate(names)
    }
    fill = {name: value.replace("stroke:", "fill:") if value else "" for name, value in style.items()}
    for name in names:
        coords = [(sx(p.at), sy(p.value)) for p in points if p.series == name]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            out.append(f'<polyline class="line" data-series="{escape(name)}"{style[name]} points="{path}"/>')
    for point in points:
        x, y = sx(point.at), sy(point.value)
        title = f"<title>{escape(point.title)}</title>" if point.title else ""
        css = "point hollow" if point.hollow else "point"
        colour = style[point.series] if point.hollow else fill[point.series]
        circle = f'<circle class="{css}"{colour} cx="{x:.1f}" cy="{y:.1f}" r="4.5">{title}</circle>'
        out.append(f'<a href="{escape(point.href)}">{circle}</a>' if point.href else circle)
    if len(names) > 1:
        for i, name in enumerate(names):
            y = TOP + 14 + 16 * i
            out.append(
                f'<g class="legend"><line class="line"{style[name]} x1="{LEFT + plot_w - 150}" x2="{LEFT + plot_w - 130}" '
                f'y1="{y - 4}" y2="{y - 4}"/><text class="tick" x="{LEFT + plot_w - 124}" y="{y}">{escape(name or "unknown")}</text></g>'
            )
    out.append("</svg>")
    return "".join(out)


TIMELINE_HEIGHT = 170


def timeline_chart(
    bars: Sequence[tuple[datetime, float, str]],
    *,
    start: datetime,
    end: datetime,
    step_seconds: float,
    y_format: Callable[[float], str],
    selections: Sequence[tuple[str, datetime, datetime]] = (),
    label: str = "",
) -> str:
    """An SVG bar timeline of [start, end) with highlighted selections (css class, from, to).

    The plot's time span and position are in data attributes, so static/js/ranges.js turns a
    drag on it into a range without asking the server.
    """
    plot_w, plot_h = WIDTH - LEFT - RIGHT, TIMELINE_HEIGHT - TOP - 34
    span = (end - start).total_seconds()

    def sx(at: datetime) -> float:
        return LEFT + plot_w * min(max((at - start).total_seconds() / span, 0.0), 1.0)

    out = [
        f'<svg class="chart timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {TIMELINE_HEIGHT}" '
        f'role="img" aria-label="{escape(label)}" data-start="{start.timestamp() * 1000:.0f}" '
        f'data-end="{end.timestamp() * 1000:.0f}" data-left="{LEFT}" data-width="{plot_w}">',
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for css, sel_start, sel_end in selections:
        x0, x1 = sx(sel_start), sx(sel_end)
        out.append(f'<rect class="selection {css}" x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 1.5):.1f}" height="{plot_h}"/>')
    top_value = nice_ticks(max((value for _, value, _ in bars), default=0.0))[-1]
    out.append(f'<text class="tick y" x="{LEFT - 8}" y="{TOP + 8}" text-anchor="end">{escape(y_format(top_value))}</text>')
    out.append(f'<text class="tick y" x="{LEFT - 8}" y="{TOP + plot_h}" text-anchor="end">0</text>')
    bar_w = max(plot_w * step_seconds / span - 0.6, 0.8)
    for at, value, title in bars:
        height = plot_h * value / top_value if top_value else 0
        out.append(
            f'<rect class="bar" x="{sx(at):.1f}" y="{TOP + plot_h - height:.1f}" width="{bar_w:.1f}" '
            f'height="{height:.1f}"><title>{escape(title)}</title></rect>'
        )
    for at, text in time_ticks(start, end):
        out.append(f'<text class="tick x" x="{sx(at):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{escape(text)}</text>')
    out.append(f'<rect class="drag" x="{LEFT}" y="{TOP}" width="0" height="{plot_h}" visibility="hidden"/>')
    out.append("</svg>")
    return "".join(out)
