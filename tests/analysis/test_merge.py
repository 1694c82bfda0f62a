"""merge_documents: a merge is the sum of its parts, and only one engine and unit merge."""

import pytest

from profiles.analysis import Frame, InvalidProfile, Profile, Sample, top_functions
from profiles.analysis.merge import MixedProfiles, merge_documents


def cpu(samples, *, engine="py-spy", frames=None, duration=60.0, started_at=0.0):
    frames = frames or [Frame("main", "/a.py", 1), Frame("parse", "/a.py", 10), Frame("render", "/a.py", 20)]
    return Profile("cpu", "nanoseconds", engine, duration, 100, sum(s.count for s in samples), frames,
                   samples, started_at=started_at)


def test_a_merge_adds_values_and_counts_per_path_and_thread_across_frame_tables():
    first = cpu([Sample((0, 1), 30, 3, "MainThread"), Sample((0, 2), 10, 1, "MainThread")])
    # The same functions in another order, plus a thread of its own.
    second = cpu(
        [Sample((2, 0), 5, 1, "MainThread"), Sample((2, 1), 7, 2, "worker")],
        frames=[Frame("parse", "/a.py", 10), Frame("render", "/a.py", 20), Frame("main", "/a.py", 1)],
        duration=30.0, started_at=60.0,
    )
    merged = merge_documents([first.to_raw(), second.to_raw()])
    assert merged.total == first.total + second.total == 52
    assert merged.sample_count == 7 and merged.duration_seconds == 90.0 and merged.started_at == 0.0
    by_path = {(tuple(merged.frames[i].function for i in s.stack), s.thread): (s.value, s.count) for s in merged.samples}
    assert by_path == {
        (("main", "parse"), "MainThread"): (35, 4),
        (("main", "render"), "MainThread"): (10, 1),
        (("main", "render"), "worker"): (7, 2),
    }
    selfs = {row["function"]: row["self"] for row in top_functions(merged)}
    assert selfs == {"parse": 35, "render": 17, "main": 0}


def test_profiles_of_two_engines_do_not_merge_and_the_error_names_both():
    with pytest.raises(MixedProfiles) as caught:
        merge_documents([cpu([Sample((0, 1), 1, 1, "t")]).to_raw(), cpu([Sample((0, 1), 1, 1, "t")], engine="yappi").to_raw()])
    assert caught.value.engines == ("py-spy", "yappi")
    assert "py-spy" in str(caught.value) and "yappi" in str(caught.value)


def test_a_merge_of_nothing_is_refused():
    with pytest.raises(ValueError):
        merge_documents([])


def test_a_document_that_is_not_what_we_store_is_invalid():
    broken = cpu([Sample((0, 1), 1, 1, "t")]).to_raw()
    broken["samples"][0]["stack"] = [0, 7]  # no frame 7
    with pytest.raises(InvalidProfile):
        merge_documents([broken])
