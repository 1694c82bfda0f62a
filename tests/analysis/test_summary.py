import pytest

from profiles.analysis import Frame, Profile, Sample, top_functions


def test_self_and_total_per_function_with_percents(make_profile):
    profile = make_profile({"main;handle;render": 60, "main;handle": 30, "main;log": 10})

    rows = {row["function"]: row for row in top_functions(profile)}

    assert rows["render"] == {
        "function": "render",
        "file": "app.py",
        "line": 1,
        "self": 60,
        "total": 60,
        "selfPercent": 60.0,
        "totalPercent": 60.0,
    }
    assert (rows["handle"]["self"], rows["handle"]["total"]) == (30, 90)
    assert (rows["main"]["self"], rows["main"]["total"]) == (0, 100)
    assert rows["main"]["totalPercent"] == 100.0
    assert rows["log"]["selfPercent"] == 10.0


def test_ordered_by_self_descending_and_limited(make_profile):
    profile = make_profile({"main;a": 5, "main;b": 50, "main;c": 20, "main": 1})

    rows = top_functions(profile, limit=3)

    assert [row["function"] for row in rows] == ["b", "c", "a"]
    assert len(top_functions(profile, limit=None)) == 4


def test_recursion_is_counted_once_in_total(make_profile):
    profile = make_profile({"main;fib;fib;fib;fib": 40, "main;other": 60})

    rows = {row["function"]: row for row in top_functions(profile)}

    assert rows["fib"]["self"] == 40
    assert rows["fib"]["total"] == 40
    assert rows["fib"]["totalPercent"] == 40.0


def test_functions_are_keyed_by_function_file_and_line():
    frames = [
        Frame("main", "m.py", 1),
        Frame("run", "a.py", 3),
        Frame("run", "b.py", 3),  # same name, another file: another function
        Frame("run", "a.py", 3),  # a repeated frame-table entry: the same function
    ]
    samples = [
        Sample((0, 1), 10, 1, "t"),
        Sample((0, 2), 20, 1, "t"),
        Sample((0, 3), 30, 1, "t"),
    ]
    profile = Profile("cpu", "nanoseconds", "py-spy", 1.0, 100, 3, frames, samples)

    rows = top_functions(profile)

    assert [(r["function"], r["file"], r["self"]) for r in rows if r["function"] == "run"] == [
        ("run", "a.py", 40),
        ("run", "b.py", 20),
    ]


def test_percents_are_rounded_to_two_decimals(make_profile):
    profile = make_profile({"a": 1, "b": 2})

    rows = top_functions(profile)

    assert [row["selfPercent"] for row in rows] == [66.67, 33.33]


def test_threads_are_merged(make_profile):
    profile = make_profile([("main;work", 10, "t1"), ("main;work", 15, "t2")])

    rows = top_functions(profile)

    assert rows[0]["function"] == "work"
    assert rows[0]["self"] == 25


def test_empty_profile_has_no_rows(make_profile):
    assert top_functions(make_profile({})) == []


def test_zero_total_gives_zero_percents(make_profile):
    rows = top_functions(make_profile({"main;idle": 0}))

    assert {(row["selfPercent"], row["totalPercent"]) for row in rows} == {(0.0, 0.0)}


def test_negative_limit_is_refused(make_profile):
    with pytest.raises(ValueError):
        top_functions(make_profile({"a": 1}), limit=-1)
