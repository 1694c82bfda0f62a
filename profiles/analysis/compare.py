"""Compare two profiles of the same type: per-function regressions and improvements.

Profiles of different lengths are only comparable after normalization: by default rates (cpu,
block, mutex, alloc, goroutine) are divided by the wall-clock duration, so a 30 s and a 60 s
profile of the same workload agree, and memory (live bytes at the end) is a level, compared raw;
`share` compares each function's fraction of its profile, which a change of load does not move.
Each change is tested against the sampling noise (significance.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .flamegraph import DEFAULT_MAX_NODES, build_flame_tree
from .model import FrameKey, Profile
from .significance import (
    DEFAULT_FALSE_ALARM_RATE,
    RAW_TYPES,
    CannotNormalize,
    Estimate,
    change_noise,
    critical_z,
    default_normalization,
    is_significant,
    normalize,
    sampled_self_estimates,
)

# A change smaller than this share of the larger normalized total is noise, whatever its percent.
NEGLIGIBLE_SHARE = 0.001


class IncomparableProfiles(ValueError):
    """The two profiles cannot be compared (different types, or no duration to normalize by)."""


def normalization_scale(profile: Profile) -> float | None:
    """Factor that turns the profile's values into per-second values; None means raw values."""
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


def _round2(value: float) -> float:
    return round(value, 2) + 0.0  # + 0.0 turns -0.0 into 0.0


def profile_estimates(profile: Profile, normalization: str) -> dict[FrameKey, Estimate]:
    """Each function's normalized self value with its sampling noise."""
    estimates, total = sampled_self_estimates(profile)
    try:
        return normalize(estimates, total, normalization=normalization, duration_seconds=profile.duration_seconds)
    except CannotNormalize as exc:
        raise IncomparableProfiles(f"a {profile.profile_type} profile with {exc}") from None


def _default_total(profile: Profile) -> float:
    scale = normalization_scale(profile)
    return profile.total * (1 if scale is None else scale)


def compare_profiles(
    base: Profile,
    comparison: Profile,
    *,
    normalization: str | None = None,
    noise_threshold_percent: float = 5.0,
    limit: int | None = 100,
    include_noise: bool = False,
) -> dict[str, Any]:
    """Per-function self-value changes from `base` to `comparison`, normalized.

    `normalization` is perSecond, share or none (None: perSecond, memory none). overallDelta is
    always the percent change of the per-second totals (bytes for memory): shares sum to 1.
    See `compare_estimates` for the rows.
    """
    _check_comparable(base, comparison)
    normalization = normalization or default_normalization(base.profile_type)
    result = compare_estimates(
        profile_estimates(base, normalization),
        profile_estimates(comparison, normalization),
        noise_threshold_percent=noise_threshold_percent,
        limit=limit,
        include_noise=include_noise,
    )
    base_total, comparison_total = _default_total(base), _default_total(comparison)
    if base_total:
        overall = _round2((comparison_total - base_total) * 100.0 / base_total)
    else:
        overall = 100.0 if comparison_total else 0.0
    return {**result, "overallDelta": overall, "normalization": normalization}


def compare_estimates(
    base: Mapping[FrameKey, Estimate],
    comparison: Mapping[FrameKey, Estimate],
    *,
    noise_threshold_percent: float = 5.0,
    limit: int | None = 100,
    include_noise: bool = False,
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
) -> dict[str, Any]:
    """Rows of the functions whose normalized value changed beyond the threshold and the noise.

    A function is unchanged when its value moved by at most `noise_threshold_percent` of its
    base value, or by less than 0.1% of the larger total (too small to matter, e.g. 1 sample
    appearing). A change beyond that is `significant` when it exceeds the sampling noise
    (`noise`: the standard deviation of the delta) at a family-wise false-alarm rate of 1%
    over all functions; the others are dropped as noise (counted in droppedAsNoise) unless
    `include_noise`.

    Returns {"improvements", "regressions", "unchanged", "droppedAsNoise"}: the lists hold
    rows sorted by |delta| desc (at most `limit` each); deltaPercent is None for an added
    function (no base value).
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0 or None")
    zero = Estimate(0.0, 0.0)
    functions = set(base) | set(comparison)
    negligible = NEGLIGIBLE_SHARE * max(
        sum(e.value for e in base.values()), sum(e.value for e in comparison.values())
    )
    z = critical_z(len(functions), false_alarm_rate)
    unchanged = dropped = 0
    improvements: list[tuple[float, FrameKey, Estimate, Estimate, bool]] = []
    regressions: list[tuple[float, FrameKey, Estimate, Estimate, bool]] = []
    for key in functions:
        before, after = base.get(key, zero), comparison.get(key, zero)
        delta = after.value - before.value
        if (
            delta == 0
            or abs(delta) < negligible
            or (before.value and abs(delta) * 100.0 <= noise_threshold_percent * before.value)
        ):
            unchanged += 1
            continue
        significant = is_significant(before, after, z)
        if not significant:
            dropped += 1
            if not include_noise:
                continue
        (regressions if delta > 0 else improvements).append((-abs(delta), key, before, after, significant))

    def rows(changed: list[tuple[float, FrameKey, Estimate, Estimate, bool]]) -> list[dict[str, Any]]:
        changed.sort(key=lambda item: (item[0], item[1]))
        if limit is not None:
            changed = changed[:limit]
        result = []
        for _, (function, file, line), before, after, significant in changed:
            delta = after.value - before.value
            status = "added" if not before.value else "removed" if not after.value else "changed"
            result.append(
                {
                    "function": function,
                    "file": file,
                    "line": line,
                    "baseValue": before.value,
                    "comparisonValue": after.value,
                    "delta": delta,
                    "deltaPercent": _round2(delta * 100.0 / before.value) if before.value else None,
                    "status": status,
                    "significant": significant,
                    "noise": change_noise(before, after),
                }
            )
        return result

    return {
        "improvements": rows(improvements),
        "regressions": rows(regressions),
        "unchanged": unchanged,
        "droppedAsNoise": dropped,
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
