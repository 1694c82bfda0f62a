"""Compare's rows and thresholds, on exact-engine profiles (no sampling noise; see test_significance.py)."""

import functools

import pytest

from profiles.analysis import IncomparableProfiles, compare_profiles, differential_tree

from .conftest import build_profile

WORKLOAD = {"main;handle;render": 400, "main;handle;query": 300, "main;log": 200, "main": 100}


@pytest.fixture
def make_profile():
    """Profiles of yappi, which records every call: every change beyond the threshold is significant."""
    return functools.partial(build_profile, engine="yappi")


def scaled(stacks, factor):
    return {stack: value * factor for stack, value in stacks.items()}


def test_a_function_made_twice_as_slow_is_a_regression(make_profile):
    base = make_profile(WORKLOAD, duration=10.0)
    slower = dict(WORKLOAD, **{"main;handle;query": 600})
    comparison = make_profile(slower, duration=10.0)

    result = compare_profiles(base, comparison)

    assert result["improvements"] == []
    assert result["regressions"] == [
        {
            "function": "query",
            "file": "app.py",
            "line": 1,
            "baseValue": pytest.approx(30.0),  # per second: 300 over 10 s
            "comparisonValue": pytest.approx(60.0),
            "delta": pytest.approx(30.0),
            "deltaPercent": 100.0,
            "status": "changed",
            "significant": True,
            "noise": 0.0,
        }
    ]
    assert result["unchanged"] == 4  # main, handle, render, log
    assert result["overallDelta"] == 30.0  # 1000 -> 1300


def test_30s_and_60s_profiles_of_the_same_workload_are_unchanged(make_profile):
    short = make_profile(scaled(WORKLOAD, 3), duration=30.0)
    long = make_profile(scaled(WORKLOAD, 6), duration=60.0)

    result = compare_profiles(short, long)

    assert result == {
        "improvements": [],
        "regressions": [],
        "unchanged": 5,
        "droppedAsNoise": 0,
        "overallDelta": 0.0,
        "normalization": "perSecond",
    }


def test_memory_is_compared_raw_not_per_second(make_profile):
    base = make_profile({"main;cache": 1_000_000}, profile_type="memory", duration=10.0)
    same_bytes = make_profile({"main;cache": 1_000_000}, profile_type="memory", duration=60.0)
    grown = make_profile({"main;cache": 3_000_000}, profile_type="memory", duration=60.0)

    assert compare_profiles(base, same_bytes)["overallDelta"] == 0.0
    (row,) = compare_profiles(base, grown)["regressions"]
    assert (row["baseValue"], row["comparisonValue"], row["delta"]) == (
        1_000_000,
        3_000_000,
        2_000_000,
    )
    assert row["deltaPercent"] == 200.0


@pytest.mark.parametrize("profile_type", ["alloc", "block", "mutex", "goroutine"])
def test_rate_types_are_normalized_per_second(make_profile, profile_type):
    base = make_profile({"main;work": 50}, profile_type=profile_type, duration=5.0)
    comparison = make_profile({"main;work": 100}, profile_type=profile_type, duration=10.0)

    assert compare_profiles(base, comparison)["overallDelta"] == 0.0


def test_added_and_removed_functions(make_profile):
    base = make_profile({"main;old_path": 500, "main;shared": 500})
    comparison = make_profile({"main;new_path": 500, "main;shared": 500})

    result = compare_profiles(base, comparison)

    (added,) = result["regressions"]
    assert (added["function"], added["status"], added["baseValue"]) == ("new_path", "added", 0)
    assert added["deltaPercent"] is None
    (removed,) = result["improvements"]
    assert (removed["function"], removed["status"], removed["comparisonValue"]) == (
        "old_path",
        "removed",
        0,
    )
    assert removed["deltaPercent"] == -100.0
    assert result["unchanged"] == 2  # main, shared
    assert result["overallDelta"] == 0.0


def test_changes_within_the_noise_threshold_are_unchanged(make_profile):
    base = make_profile({"main;a": 1000, "main;b": 1000, "main;c": 1000})
    comparison = make_profile({"main;a": 1040, "main;b": 1060, "main;c": 900})

    result = compare_profiles(base, comparison, noise_threshold_percent=5.0)

    assert [row["function"] for row in result["regressions"]] == ["b"]
    assert [row["function"] for row in result["improvements"]] == ["c"]
    assert result["unchanged"] == 2  # main, a (+4%)
    lenient = compare_profiles(base, comparison, noise_threshold_percent=15)
    assert (lenient["regressions"], lenient["improvements"], lenient["unchanged"]) == ([], [], 4)


def test_changes_negligible_against_the_total_are_unchanged(make_profile):
    # "rare" triples, but it is 0.02% of the profile: sampling noise, not a regression.
    base = make_profile({"main;hot": 100_000, "main;rare": 10})
    comparison = make_profile({"main;hot": 100_000, "main;rare": 30, "main;blip": 5})

    result = compare_profiles(base, comparison)

    assert result["regressions"] == []
    assert result["unchanged"] == 4


def test_rows_are_sorted_by_absolute_delta_and_limited(make_profile):
    base = make_profile({"a": 100, "b": 100, "c": 100, "d": 100})
    comparison = make_profile({"a": 150, "b": 400, "c": 250, "d": 100})

    result = compare_profiles(base, comparison, limit=2)

    assert [row["function"] for row in result["regressions"]] == ["b", "c"]
    assert result["unchanged"] == 1


def test_overall_delta_of_empty_profiles(make_profile):
    empty = make_profile({})

    assert compare_profiles(empty, empty) == {
        "improvements": [],
        "regressions": [],
        "unchanged": 0,
        "droppedAsNoise": 0,
        "overallDelta": 0.0,
        "normalization": "perSecond",
    }
    assert compare_profiles(empty, make_profile({"a": 1}))["overallDelta"] == 100.0


def test_profiles_of_different_types_are_incomparable(make_profile):
    with pytest.raises(IncomparableProfiles, match="cannot compare a cpu profile with a memory"):
        compare_profiles(make_profile({"a": 1}), make_profile({"a": 1}, profile_type="memory"))


def test_a_rate_profile_without_duration_cannot_be_normalized(make_profile):
    with pytest.raises(IncomparableProfiles, match="cannot be normalized per second"):
        compare_profiles(make_profile({"a": 1}, duration=0.0), make_profile({"a": 1}))


def test_ten_thousand_functions(make_profile):
    n = 10_000
    hot = set(range(100)) | {n - 1}  # 100 000 each; the other 9 899 functions 1 000 each

    def base_value(i):
        return 100_000 if i in hot else 1000

    base = make_profile({f"main;f{i}": base_value(i) for i in range(n)}, duration=10.0)
    later = {}
    for i in range(n):
        value = base_value(i)
        if i < 50:
            value *= 2  # regressions
        elif i < 100:
            value //= 2  # improvements
        later[f"main;f{i}"] = 2 * value  # 20 s profile: twice the raw value, same rate
    later.pop(f"main;f{n - 1}")  # removed
    later["main;brand_new"] = 2 * 500_000  # added
    comparison = make_profile(later, duration=20.0)

    result = compare_profiles(base, comparison, limit=None)

    regressions = {row["function"] for row in result["regressions"]}
    improvements = {row["function"] for row in result["improvements"]}
    assert regressions == {f"f{i}" for i in range(50)} | {"brand_new"}
    assert improvements == {f"f{i}" for i in range(50, 100)} | {f"f{n - 1}"}
    assert result["unchanged"] == n + 1 - 100 - 1  # + main, - changed, - removed
    deltas = [abs(row["delta"]) for row in result["regressions"]]
    assert deltas == sorted(deltas, reverse=True)
    first = result["regressions"][0]
    assert (first["function"], first["status"], first["delta"]) == ("brand_new", "added", 50_000)
    doubled = next(row for row in result["regressions"] if row["function"] == "f7")
    assert (doubled["baseValue"], doubled["comparisonValue"]) == (10_000, 20_000)
    assert doubled["deltaPercent"] == 100.0
    # per second, before: 101 hot * 10 000 + 9 899 * 100 = 1 999 900; after: +50 * 10 000
    # (doubled) - 50 * 5 000 (halved) - 10 000 (removed) + 50 000 (added) = +290 000
    assert result["overallDelta"] == round(100 * 290_000 / 1_999_900, 2) == 14.5
    assert len(compare_profiles(base, comparison)["regressions"]) == 51  # default limit 100


# --- differential flame graph -----------------------------------------------------------------


def find(tree, *path):
    node = tree
    for name in path:
        node = next(child for child in node["children"] if child["name"] == name)
    return node


def test_differential_tree_normalizes_both_sides(make_profile):
    base = make_profile({"main;handle;query": 300, "main;gone": 100}, duration=10.0)
    comparison = make_profile({"main;handle;query": 1200, "main;handle;new": 600}, duration=20.0)

    tree = differential_tree(base, comparison)

    assert tree["value"] == pytest.approx(90.0)  # 1800 / 20 s
    assert tree["baseValue"] == pytest.approx(40.0)  # 400 / 10 s, including "gone"
    query = find(tree, "main", "handle", "query")
    assert (query["value"], query["baseValue"]) == (pytest.approx(60.0), pytest.approx(30.0))
    assert find(tree, "main", "handle", "new")["baseValue"] == 0
    assert find(tree, "main")["baseValue"] == pytest.approx(40.0)
    assert [child["name"] for child in find(tree, "main")["children"]] == ["handle"]


def test_differential_tree_folds_with_base_values(make_profile):
    stacks = {f"main;f{i}": 10 * (i + 1) for i in range(20)}
    base = make_profile(stacks)
    comparison = make_profile(scaled(stacks, 2))

    tree = differential_tree(base, comparison, max_nodes=6)

    main = find(tree, "main")
    other = find(main, "(other)")
    assert sum(c["value"] for c in main["children"]) == pytest.approx(main["value"])
    assert sum(c["baseValue"] for c in main["children"]) == pytest.approx(main["baseValue"])
    assert other["value"] == pytest.approx(2 * other["baseValue"])


def test_differential_tree_refuses_different_types(make_profile):
    with pytest.raises(IncomparableProfiles):
        differential_tree(make_profile({"a": 1}), make_profile({"a": 1}, profile_type="alloc"))
