"""Regression detection over windows of one service: is a function's share beyond its baseline?

Values are self shares (a function's fraction of its window's total), which a change of load
leaves alone. A baseline is many windows: its mean, the variance of that mean, and how far one
window strays from it (the spread between windows, or the sampling noise when that is larger).
The newest windows regress a function when its share rose by more than the threshold and by
more than the noise of "one more window like the baseline's" at a 1 % family-wise false-alarm
rate. An alert recovers when the share is back within half the threshold of the baseline it
was raised against, so a share hovering at the threshold does not open and close alerts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean, variance

from .model import FrameKey
from .significance import Estimate, critical_z

# A function under this share is too small to page anyone about, whatever its rise.
MIN_ALERT_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class Baseline:
    share: float
    mean_variance: float
    window_variance: float
    windows: int


@dataclass(frozen=True, slots=True)
class Regression:
    key: FrameKey
    baseline: Baseline
    share: float


def stored_window_shares(
    top_functions: Sequence[Mapping], *, total_value: float, sample_count: int, exact: bool
) -> dict[FrameKey, Estimate]:
    """A window's self shares from its stored top functions, with binomial sampling variance.

    A sampled window of n samples measures a share p with variance p(1 - p)/n; an exact
    engine's window has none. Functions outside the stored top functions are absent (0).
    """
    if total_value <= 0:
        return {}
    shares = {}
    for row in top_functions:
        p = row["self"] / total_value
        var = 0.0 if exact or sample_count <= 0 else p * (1 - p) / sample_count
        shares[(row["function"], row["file"], row["line"])] = Estimate(p, var)
    return shares


def baselines(windows: Sequence[Mapping[FrameKey, Estimate]]) -> dict[FrameKey, Baseline]:
    n = len(windows)
    keys = {key for window in windows for key in window}
    result = {}
    for key in keys:
        values = [w[key].value if key in w else 0.0 for w in windows]
        sampling = fmean(w[key].variance if key in w else 0.0 for w in windows)
        one_window = max(variance(values) if n > 1 else 0.0, sampling)
        result[key] = Baseline(fmean(values), one_window / n, one_window, n)
    return result


def latest_shares(windows: Sequence[Mapping[FrameKey, Estimate]]) -> dict[FrameKey, Estimate]:
    """The mean share over the newest windows, with the sampling variance of that mean."""
    n = len(windows)
    keys = {key for window in windows for key in window}
    return {
        key: Estimate(
            fmean(w[key].value if key in w else 0.0 for w in windows),
            sum(w[key].variance for w in windows if key in w) / (n * n),
        )
        for key in keys
    }


def rose_beyond(baseline: Baseline, latest: Estimate, *, latest_windows: int, threshold_percent: float, z: float) -> bool:
    rise = latest.value - baseline.share
    noise = math.sqrt(baseline.mean_variance + max(latest.variance, baseline.window_variance / latest_windows))
    return (
        latest.value >= MIN_ALERT_SHARE
        and rise * 100.0 > threshold_percent * baseline.share
        and (rise > z * noise if noise > 0 else rise > 0)
    )


def has_recovered(baseline_share: float, share: float, *, threshold_percent: float) -> bool:
    return (share - baseline_share) * 200.0 <= threshold_percent * baseline_share


def find_regressions(
    baseline_windows: Sequence[Mapping[FrameKey, Estimate]],
    latest_windows: Sequence[Mapping[FrameKey, Estimate]],
    *,
    threshold_percent: float,
) -> tuple[list[Regression], dict[FrameKey, Estimate]]:
    """(functions whose share regressed, the latest shares of every function seen)."""
    base = baselines(baseline_windows)
    latest = latest_shares(latest_windows)
    zero = Baseline(0.0, 0.0, 0.0, len(baseline_windows))
    keys = set(base) | set(latest)
    z = critical_z(len(keys))
    found = [
        Regression(key, base.get(key, zero), latest[key].value)
        for key in sorted(latest)
        if rose_beyond(
            base.get(key, zero), latest[key], latest_windows=len(latest_windows), threshold_percent=threshold_percent, z=z
        )
    ]
    return found, latest
