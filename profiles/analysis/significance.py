"""How much of a change between two profiles is beyond noise.

A sampled value is a sum of samples, so it carries sampling noise: an aggregated sample of
`count` samples and value `v` (each sample worth v/count) has, with a Poisson number of
samples, variance count * (v/count)^2 = v^2/count. A function's self value is the sum over its
leaf samples, and so is its variance. Exact engines (yappi, memray) do not sample. Where many windows stand behind a value (a baseline of
windows), their spread says more than the counts do: the larger of the two variances is used.

Normalizations turn values into what is compared:
- perSecond: value / duration (rates); a change of load moves it.
- share: value / profile total; a change of load that leaves the code alone does not move it.
- none: the value itself (memory is a level in bytes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean, variance

from profiling_agent.profile_format import EXACT_ENGINES

from .model import FrameKey, Profile

NORMALIZATIONS = ("perSecond", "share", "none")
RAW_TYPES = frozenset({"memory"})
# Chance that a compare marks at least one unchanged function significant (family-wise, Bonferroni).
DEFAULT_FALSE_ALARM_RATE = 0.01


@dataclass(frozen=True, slots=True)
class Estimate:
    """A measured value and the variance of its noise (in the value's unit squared)."""

    value: float
    variance: float = 0.0

    def scaled(self, factor: float) -> Estimate:
        return Estimate(self.value * factor, self.variance * factor * factor)


class CannotNormalize(ValueError):
    """The profile cannot be normalized as asked (e.g. per second with no duration)."""


def default_normalization(profile_type: str) -> str:
    """What compare used before normalization was a choice: per second, memory as it is."""
    return "none" if profile_type in RAW_TYPES else "perSecond"


def sampled_self_estimates(profile: Profile) -> tuple[dict[FrameKey, Estimate], Estimate]:
    """Raw self value and sampling variance of every function in a sample, and of the total.

    Functions that are never a leaf have Estimate(0, 0); an exact engine's values have no
    sampling variance.
    """
    sampled = profile.engine not in EXACT_ENGINES
    keys, frame_ids = profile.function_table
    value_by_id: dict[int, float] = {}
    variance_by_id: dict[int, float] = {}
    seen: set[int] = set()
    for sample in profile.samples:
        seen.update(frame_ids[i] for i in sample.stack)
        leaf = frame_ids[sample.stack[-1]]
        value_by_id[leaf] = value_by_id.get(leaf, 0) + sample.value
        # A sample recorded with count 0 still stands for at least one observation.
        if sampled:
            variance_by_id[leaf] = variance_by_id.get(leaf, 0) + sample.value * sample.value / max(sample.count, 1)
    estimates = {keys[fid]: Estimate(value_by_id.get(fid, 0), variance_by_id.get(fid, 0)) for fid in seen}
    total = Estimate(sum(value_by_id.values()), sum(variance_by_id.values()))
    return estimates, total


def normalize(
    estimates: Mapping[FrameKey, Estimate], total: Estimate, *, normalization: str, duration_seconds: float
) -> dict[FrameKey, Estimate]:
    """The estimates in the compared unit; share uses the delta method on value / total."""
    if normalization == "none":
        return dict(estimates)
    if normalization == "perSecond":
        if duration_seconds <= 0:
            raise CannotNormalize(f"durationSeconds {duration_seconds} cannot be normalized per second")
        return {key: e.scaled(1.0 / duration_seconds) for key, e in estimates.items()}
    if normalization == "share":
        if total.value <= 0:
            return {key: Estimate(0.0, 0.0) for key in estimates}
        return {key: _share(e, total) for key, e in estimates.items()}
    raise CannotNormalize(f"unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}")


def _share(part: Estimate, total: Estimate) -> Estimate:
    # s = V / (V + R) with V and R independent: ds/dV = R/T^2, ds/dR = -V/T^2.
    rest_value = total.value - part.value
    rest_variance = max(total.variance - part.variance, 0.0)
    t2 = total.value * total.value
    var = (rest_value * rest_value * part.variance + part.value * part.value * rest_variance) / (t2 * t2)
    return Estimate(part.value / total.value, var)


def window_estimates(windows: Sequence[Mapping[FrameKey, Estimate]]) -> dict[FrameKey, Estimate]:
    """The mean over windows (already normalized) of each function, absent = 0.

    Its variance is the larger of the windows' own sampling noise (averaged) and their spread
    (the sample variance over n, which also holds load and code changes between windows).
    """
    n = len(windows)
    if n == 0:
        return {}
    keys: set[FrameKey] = set()
    for window in windows:
        keys.update(window)
    result = {}
    for key in keys:
        values = [w[key].value if key in w else 0.0 for w in windows]
        sampling = sum(w[key].variance for w in windows if key in w) / (n * n)
        spread = variance(values) / n if n > 1 else 0.0
        result[key] = Estimate(fmean(values), max(sampling, spread))
    return result


def critical_z(tests: int, false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE) -> float:
    """The |z| beyond which one of `tests` changes is significant (two-sided, Bonferroni)."""
    return NormalDist().inv_cdf(1.0 - false_alarm_rate / (2.0 * max(tests, 1)))


def change_noise(before: Estimate, after: Estimate) -> float:
    """The standard deviation of after - before when nothing changed but noise."""
    return math.sqrt(before.variance + after.variance)


def is_significant(before: Estimate, after: Estimate, z: float) -> bool:
    delta = after.value - before.value
    noise = change_noise(before, after)
    return abs(delta) > z * noise if noise > 0 else delta != 0
