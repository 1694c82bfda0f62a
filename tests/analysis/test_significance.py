"""Significance of compare entries: sampling noise from the counts, window-to-window spread."""

import random

import pytest

from profiles.analysis import compare_profiles
from profiles.analysis.compare import compare_estimates
from profiles.analysis.significance import Estimate, window_estimates

from .conftest import build_profile

# One service's cpu time by stack: the workload's shape, which load does not change.
WORKLOAD = {
    "main;handle;render": 0.30,
    "main;handle;query": 0.25,
    "main;handle;serialize": 0.15,
    "main;log": 0.10,
    "main;auth": 0.08,
    "main;cache": 0.07,
    "main": 0.05,
}
TICK_NS = 10_000_000  # one sample at 100 Hz


def sampled(weights: dict[str, float], samples: int, rng: random.Random, duration: float = 60.0):
    """A py-spy-like profile: `samples` ticks drawn from the stack distribution `weights`."""
    stacks = rng.choices(list(weights), weights=list(weights.values()), k=samples)
    counts = {stack: stacks.count(stack) for stack in weights}
    counts = {stack: n for stack, n in counts.items() if n}
    return build_profile({stack: n * TICK_NS for stack, n in counts.items()}, duration=duration, counts=counts)


def slowed(weights: dict[str, float], stack: str, factor: float) -> dict[str, float]:
    return {s: w * factor if s == stack else w for s, w in weights.items()}


@pytest.mark.parametrize("seed", range(10))
def test_the_same_workload_under_different_load_has_no_significant_share_change(seed):
    rng = random.Random(seed)
    quiet = sampled(WORKLOAD, 3_000, rng)  # 0.5 core for 60 s
    busy = sampled(WORKLOAD, 5_400, rng)  # 0.9 core: more requests, the same code

    by_share = compare_profiles(quiet, busy, normalization="share", noise_threshold_percent=0)

    assert by_share["normalization"] == "share"
    assert by_share["regressions"] == [] and by_share["improvements"] == []
    # Per second, the load shows as every function slowing down: what share is there to see past.
    per_second = compare_profiles(quiet, busy, noise_threshold_percent=0)
    assert len(per_second["regressions"]) == len(WORKLOAD)
    assert per_second["normalization"] == "perSecond"


@pytest.mark.parametrize("seed", range(10))
def test_a_2x_slowdown_of_one_function_is_significant_by_share(seed):
    rng = random.Random(seed)
    base = sampled(WORKLOAD, 3_000, rng)
    comparison = sampled(slowed(WORKLOAD, "main;auth", 2.0), 5_400, rng)

    result = compare_profiles(base, comparison, normalization="share")

    assert [row["function"] for row in result["regressions"]] == ["auth"]
    [row] = result["regressions"]
    assert row["significant"] is True
    # auth's share goes from 8 % to 16 / 108: the others' shares shrink, by less than the noise.
    assert row["comparisonValue"] / row["baseValue"] == pytest.approx(2 / 1.08, rel=0.25)


def test_few_samples_make_a_large_percent_change_insignificant():
    # 4 samples -> 6 samples of one function: +50 %, and well within Poisson noise.
    base = build_profile({"main;a": 4 * TICK_NS, "main;b": 96 * TICK_NS}, counts={"main;a": 4, "main;b": 96})
    comparison = build_profile({"main;a": 6 * TICK_NS, "main;b": 96 * TICK_NS}, counts={"main;a": 6, "main;b": 96})

    result = compare_profiles(base, comparison)
    assert result["regressions"] == [] and result["droppedAsNoise"] == 1

    listed = compare_profiles(base, comparison, include_noise=True)
    [row] = listed["regressions"]
    assert row["function"] == "a" and row["significant"] is False and row["deltaPercent"] == 50.0


def test_window_spread_widens_the_noise_beyond_what_the_counts_say():
    key = ("query", "app.py", 1)
    steady = [{key: Estimate(100.0, 1.0)} for _ in range(10)]
    swinging = [{key: Estimate(value, 1.0)} for value in (60.0, 140.0) * 5]

    assert window_estimates(steady)[key] == Estimate(100.0, pytest.approx(0.1))
    swing = window_estimates(swinging)[key]
    assert swing.value == 100.0
    assert swing.variance == pytest.approx(1600 * 10 / 9 / 10)  # sample variance over n


def test_a_function_absent_from_some_windows_counts_as_zero_there():
    key = ("rare", "app.py", 1)
    windows = [{key: Estimate(10.0, 0.0)}, {}, {}, {}]
    assert window_estimates(windows)[key].value == 2.5


def test_windows_that_swing_make_a_difference_of_their_means_noise():
    key = ("query", "app.py", 1)
    # Each window is measured precisely (tiny sampling variance) but the windows swing +-40 %.
    before = [{key: Estimate(value, 0.01)} for value in (60.0, 140.0) * 5]
    after = [{key: Estimate(value, 0.01)} for value in (75.0, 155.0) * 5]  # means 100 -> 115
    by_counts = compare_estimates({key: Estimate(100.0, 0.01)}, {key: Estimate(115.0, 0.01)})
    assert by_counts["regressions"][0]["significant"] is True  # what the sampling noise alone says
    by_windows = compare_estimates(window_estimates(before), window_estimates(after))
    assert by_windows["regressions"] == [] and by_windows["droppedAsNoise"] == 1
