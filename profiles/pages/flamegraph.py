"""The flame graph as server-rendered SVG, plus the node table that static/js/flamegraph.js zooms.

Layout is an icicle (root on top, callees below), `WIDTH` units wide at full zoom. Frames
narrower than `MIN_WIDTH_PX` are not drawn as SVG elements: they are only in the node table,
and the script creates their elements when a zoom makes them wide enough. So a profile with
tens of thousands of tree nodes still ships a DOM of at most a few thousand elements.

The node table is a list of rows in depth-first pre-order (a parent before its children,
siblings left to right), each `[name, file, line, value, self, x, depth, color]` (+ `base`
for a differential graph), where name/file index `strings`, color indexes `colors`, and
`x` is the left offset in value units. Pre-order makes "matched share" and subtree tests
simple interval arithmetic in the script.
"""

from __future__ import annotations

import colorsys
import math
import zlib
from dataclasses import dataclass
from html import escape
from typing import Any

WIDTH = 1200
ROW_HEIGHT = 18
FRAME_HEIGHT = 17
MIN_WIDTH_PX = 1.0
CHAR_WIDTH_PX = 6.7  # 11px monospace, see .flamegraph text in app.css
TEXT_PAD_PX = 4
MIN_LABEL_CHARS = 3

ROOT_NAME = "all"
OTHER_NAME = "(other)"

# Field positions in a node row (mirrored in flamegraph.js).
NAME, FILE, LINE, VALUE, SELF, X, DEPTH, COLOR, BASE = range(9)

NEUTRAL = "#cdd3dc"
OTHER = "#dcdfe4"
DIFF_NEUTRAL = "#e3e6eb"
DIFF_LEVELS = 10
DIFF_NOISE = 0.02  # relative changes below 2% are drawn neutral


def _warm_palette() -> list[str]:
    colors = []
    for hue in (2, 10, 18, 26, 34, 42):
        for saturation, lightness in ((0.80, 0.64), (0.72, 0.58), (0.85, 0.70), (0.70, 0.62)):
            r, g, b = colorsys.hls_to_rgb(hue / 360, lightness, saturation)
            colors.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return colors


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> str:
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))


def _diff_palette() -> list[str]:
    neutral, red, green = (0xE3, 0xE6, 0xEB), (0xE0, 0x3B, 0x3B), (0x2E, 0xB3, 0x5C)
    levels = [0.2 + 0.8 * k / DIFF_LEVELS for k in range(1, DIFF_LEVELS + 1)]
    return [DIFF_NEUTRAL] + [_mix(neutral, red, t) for t in levels] + [_mix(neutral, green, t) for t in levels]


WARM = _warm_palette()
PALETTE = [NEUTRAL, OTHER, *WARM]
DIFF_PALETTE = _diff_palette()


def frame_color(name: str, file: str) -> int:
    """Palette index: frames of one file share a hue, names vary the shade. Stable across pages."""
    if name == OTHER_NAME:
        return 1
    hue = zlib.crc32(file.encode()) % 6
    shade = zlib.crc32(name.encode()) % 4
    return 2 + hue * 4 + shade


def diff_color(value: float, base: float) -> int:
    """Palette index: red where the comparison is larger (slower), green where smaller."""
    largest = max(value, base)
    if largest <= 0:
        return 0
    change = (value - base) / largest
    if abs(change) < DIFF_NOISE:
        return 0
    level = min(DIFF_LEVELS, math.ceil(abs(change) * DIFF_LEVELS))
    return level if change > 0 else DIFF_LEVELS + level


def label(name: str, width_px: float) -> str:
    chars = int((width_px - 2 * TEXT_PAD_PX) / CHAR_WIDTH_PX)
    if chars < MIN_LABEL_CHARS:
        return ""
    return name if len(name) <= chars else name[: chars - 1] + "…"


@dataclass(frozen=True)
class FlameGraph:
    svg: str  # escaped markup, safe to mark_safe
    data: dict[str, Any]  # for json_script
    node_count: int
    drawn_count: int
    height: int


def _compact(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def render_flamegraph(
    tree: dict[str, Any], *, unit: str, per_second: bool = False, differential: bool = False
) -> FlameGraph:
    """Lay out `tree` (from `flame_tree` or `differential_tree`) and draw the wide-enough frames."""
    strings: dict[str, int] = {}

    def intern(text: str) -> int:
        index = strings.get(text)
        if index is None:
            index = strings[text] = len(strings)
        return index

    total = tree["value"]
    scale = WIDTH / total if total > 0 else 0.0
    rows: list[list[Any]] = []
    parts: list[str] = []
    max_depth = 0
    pending: list[tuple[dict[str, Any], float, int]] = [(tree, 0.0, 0)]
    while pending:
        node, x, depth = pending.pop()
        value = node["value"]
        if value <= 0 and depth > 0:
            continue
        name = node["name"] if depth else ROOT_NAME
        file = node.get("file", "")
        if differential:
            base = node.get("baseValue", 0)
            color = diff_color(value, base)
        else:
            base = None
            color = 0 if depth == 0 else frame_color(name, file)
        index = len(rows)
        row = [intern(name), intern(file), node.get("line", 0), _compact(value), _compact(node.get("self", 0)),
               _compact(x), depth, color]
        if differential:
            row.append(_compact(base))
        rows.append(row)
        max_depth = max(max_depth, depth)

        width_px = value * scale
        if width_px >= MIN_WIDTH_PX or depth == 0:
            left = x * scale
            top = depth * ROW_HEIGHT
            text = label(name, width_px)
            fill = (DIFF_PALETTE if differential else PALETTE)[color]
            parts.append(
                f'<g class="fr" data-i="{index}"><rect x="{left:.2f}" y="{top}" width="{width_px:.2f}" '
                f'height="{FRAME_HEIGHT}" fill="{fill}"/>'
                + (f'<text x="{left + TEXT_PAD_PX:.2f}" y="{top + 12}">{escape(text, quote=False)}</text>' if text else "")
                + "</g>"
            )
        children = []
        offset = x
        for child in node.get("children", ()):
            children.append((child, offset, depth + 1))
            offset += child["value"]
        pending.extend(reversed(children))

    height = (max_depth + 1) * ROW_HEIGHT
    svg = (
        f'<svg class="flamegraph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'preserveAspectRatio="xMinYMin meet" role="img" aria-label="Flame graph">'
        f'<g class="frames">{"".join(parts)}</g></svg>'
    )
    data = {
        "unit": unit,
        "perSecond": per_second,
        "differential": differential,
        "width": WIDTH,
        "rowHeight": ROW_HEIGHT,
        "frameHeight": FRAME_HEIGHT,
        "minWidth": MIN_WIDTH_PX,
        "charWidth": CHAR_WIDTH_PX,
        "textPad": TEXT_PAD_PX,
        "minLabelChars": MIN_LABEL_CHARS,
        "strings": list(strings),
        "colors": DIFF_PALETTE if differential else PALETTE,
        "nodes": rows,
    }
    return FlameGraph(svg=svg, data=data, node_count=len(rows), drawn_count=len(parts), height=height)
