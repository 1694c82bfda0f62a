"""Compare two profiles of the same type: per-function regressions and improvements.

Profiles of different lengths are only comparable after normalization: rates (cpu, block,
mutex, alloc, goroutine) are divided by the wall-clock duration, so a 30 s and a 60 s profile
of the same workload agree; memory (live bytes at the end) is a level, compared raw.
"""

from __future__ import annotations

from typing import Any

from .flamegraph import DEFAULT_MAX_NODES, build_flame_tree
from .model import FrameKey, Profile
from .summary import self_values

RAW_TYPES = frozenset({"memory"})
# A change smaller than this share of the larger normalized total is noise, whatever its percent.
NEGLIGIBLE_SHARE = 0.001


class IncomparableProfiles(ValueError):
    """The two profiles cannot be compared (different types, or no duration to normalize by)."""


def normalization_scale(profile: Profile) -> float | None:
    """Factor that turns the profile's values into compared values; None means raw values."""
    if profile.profile_type in RAW_TYPES:
        return None
    if profile.duration_seconds <= 0:
        raise IncomparableProfiles(
            f"a {profile.profile_type} profile with durationSeconds "
            f"{profile.duration_seconds} cannot be normalized per second"
        )
    return 1.0 / profile.duration_seconds


def _check_comparable(base: Profile, comparison: Profile) -> None:
    if base.profile_type != comparison.profile_type:
        raise IncomparableProfiles(
            f"cannot compare a {base.profile_type} profile with a {comparison.profile_type} profile"
        )


def _scaled(values: dict[FrameKey, float], scale: float | None) -> dict[FrameKey, float]:
    if scale is None:
        return values
    return {key: value * scale for key, value in values.items()}


def _functions_in_samples(profile: Profile) -> set[FrameKey]:
    keys, frame_ids = profile.function_table
    indices: set[int] = set()
    for sample in profile.samples:
        indices.update(sample.stack)
    return {keys[frame_ids[i]] for i in indices}


def _round2(value: float) -> float:
    return round(value, 2) + 0.0  # + 0.0 turns -0.0 into 0.0


def compare_profiles(
    base: Profile,
    comparison: Profile,
    *,
    noise_threshold_percent: float = 5.0,
    limit: int | None = 100,
) -> dict[str, Any]:
    """Per-function self-value changes from `base` to `comparison`, normalized.

    A function is unchanged when its self value moved by at most `noise_threshold_percent`
    of its base value, or by less than 0.1% of the larger normalized profile total (too small
    to matter, e.g. 1 sample appearing). Every function seen in either profile counts,
    including callers that are never a leaf (self 0 on both sides: unchanged).

    Returns {"improvements", "regressions", "unchanged", "overallDelta"}: the lists hold
    rows sorted by |delta| desc (at most `limit` each); deltaPercent is None for an added
    function (no base value); overallDelta is the percent change of the normalized totals
    (0 when both are zero, 100 when only the base is zero).
    """
    _check_comparable(base, comparison)
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0 or None")
    base_scale = normalization_scale(base)
    comparison_scale = normalization_scale(comparison)
    base_self = _scaled(self_values(base), base_scale)
    comparison_self = _scaled(self_values(comparison), comparison_scale)
    base_total = base.total * (1 if base_scale is None else base_scale)
    comparison_total = comparison.total * (1 if comparison_scale is None else comparison_scale)
    negligible = NEGLIGIBLE_SHARE * max(base_total, comparison_total)

    functions = _functions_in_samples(base) | _functions_in_samples(comparison)
    unchanged = 0
    improvements: list[tuple[float, FrameKey, float, float]] = []
    regressions: list[tuple[float, FrameKey, float, float]] = []
    for key in functions:
        before = base_self.get(key, 0)
        after = comparison_self.get(key, 0)
        delta = after - before
        if (
            delta == 0
            or abs(delta) < negligible
            or (before and abs(delta) * 100.0 <= noise_threshold_percent * before)
        ):
            unchanged += 1
        elif delta > 0:
            regressions.append((-abs(delta), key, before, after))
        else:
            improvements.append((-abs(delta), key, before, after))

    def rows(changed: list[tuple[float, FrameKey, float, float]]) -> list[dict[str, Any]]:
        changed.sort(key=lambda item: (item[0], item[1]))
        if limit is not None:
            changed = changed[:limit]
        result = []
        for _, (function, file, line), before, after in changed:
            delta = after - before
            status = "added" if not before else "removed" if not after else "changed"
            result.append(
                {
                    "function": function,
                    "file": file,
                    "line": line,
                    "baseValue": before,
                    "comparisonValue": after,
                    "delta": delta,
                    "deltaPercent": _round2(delta * 100.0 / before) if before else None,
                    "status": status,
                }
            )
        return result

    if base_total:
        overall = _round2((comparison_total - base_total) * 100.0 / base_total)
    else:
        overall = 100.0 if comparison_total else 0.0
    return {
        "improvements": rows(improvements),
        "regressions": rows(regressions),
        "unchanged": unchanged,
        "overallDelta": overall,
    }


def differential_tree(
    base: Profile, comparison: Profile, max_nodes: int = DEFAULT_MAX_NODES
) -> dict[str, Any]:
    """The comparison's flame tree with normalized "value"/"self" and the base's "baseValue".

    "baseValue" is the normalized base value of the same call path (0 where the base never
    took it). Paths only the base took have no node, but the root's baseValue is the whole
    normalized base total.
    """
    _check_comparable(base, comparison)
    return build_flame_tree(
        comparison,
        max_nodes,
        scale=normalization_scale(comparison),
        base=base,
        base_scale=normalization_scale(base),
    )
