"""Per-function totals: what the "topFunctions" of a profile result shows."""

from __future__ import annotations

from typing import Any

from .model import FrameKey, Profile


def function_values(profile: Profile) -> tuple[dict[FrameKey, float], dict[FrameKey, float]]:
    """(self, total) value per function key, for functions that occur in some sample.

    self: value of samples whose leaf is the function. total: value of samples that contain
    the function anywhere, counted once per sample even when it recurses.
    """
    keys, frame_ids = profile.function_table
    self_by_id: dict[int, float] = {}
    total_by_id: dict[int, float] = {}
    for sample in profile.samples:
        value = sample.value
        stack = sample.stack
        leaf = frame_ids[stack[-1]]
        self_by_id[leaf] = self_by_id.get(leaf, 0) + value
        for fid in {frame_ids[i] for i in stack}:
            total_by_id[fid] = total_by_id.get(fid, 0) + value
    self_values = {keys[fid]: self_by_id.get(fid, 0) for fid in total_by_id}
    total_values = {keys[fid]: v for fid, v in total_by_id.items()}
    return self_values, total_values


def self_values(profile: Profile) -> dict[FrameKey, float]:
    """Self value per function key (leaf frames only); cheaper than `function_values`."""
    keys, frame_ids = profile.function_table
    by_id: dict[int, float] = {}
    for sample in profile.samples:
        leaf = frame_ids[sample.stack[-1]]
        by_id[leaf] = by_id.get(leaf, 0) + sample.value
    return {keys[fid]: v for fid, v in by_id.items()}


def percent(part: float, whole: float) -> float:
    return round(part * 100.0 / whole, 2) if whole else 0.0


def top_functions(profile: Profile, limit: int | None = 50) -> list[dict[str, Any]]:
    """Functions ordered by self value (desc), then total; at most `limit` (None: all).

    Each row: function, file, line, self, total (in the profile's unit) and selfPercent,
    totalPercent relative to the profile total, rounded to 2 decimals.
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0 or None")
    self_map, total_map = function_values(profile)
    grand_total = profile.total
    order = sorted(total_map, key=lambda k: (-self_map[k], -total_map[k], k))
    if limit is not None:
        order = order[:limit]
    return [
        {
            "function": key[0],
            "file": key[1],
            "line": key[2],
            "self": self_map[key],
            "total": total_map[key],
            "selfPercent": percent(self_map[key], grand_total),
            "totalPercent": percent(total_map[key], grand_total),
        }
        for key in order
    ]
