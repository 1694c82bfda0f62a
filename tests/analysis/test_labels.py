"""Labels on samples: the loader keeps them (and refuses bad ones), merges keep them apart,
and filter/group answer per endpoint."""

import pytest
from profiling_agent.profile_format import (
    LABEL_OVERFLOW_VALUE,
    MAX_LABEL_KEYS,
    MAX_LABEL_VALUES_PER_KEY,
)

from profiles.analysis import InvalidProfile, Profile, top_functions
from profiles.analysis.labels import (
    InvalidLabelQuery,
    apply_labels,
    filter_profile,
    group_profile,
    label_values,
    parse_group_by,
    parse_label_filter,
)
from profiles.analysis.merge import merge_documents
from tests.profiles.samples import labelled_profile

MS = 1_000_000
ITEMS = {"route": "api/items/", "view": "shop.views.items"}
ORDERS = {"route": "api/orders/", "view": "shop.views.orders"}


def two_endpoints(**kwargs) -> dict:
    return labelled_profile([
        ("list_items", 300 * MS, ITEMS, "MainThread"),
        ("serialize", 100 * MS, ITEMS, "worker"),
        ("list_orders", 500 * MS, ORDERS, "MainThread"),
        ("serialize", 50 * MS, ORDERS, "MainThread"),
        ("housekeeping", 50 * MS, {}, "MainThread"),
    ], **kwargs)


def test_labels_and_their_overflow_survive_a_round_trip():
    profile = Profile.from_raw(two_endpoints(labels_overflow=3))
    assert profile.labels_overflow == 3
    assert {s.labels for s in profile.samples} == {
        (("route", "api/items/"), ("view", "shop.views.items")),
        (("route", "api/orders/"), ("view", "shop.views.orders")),
        (),
    }
    assert Profile.from_raw(profile.to_raw()) == profile


def test_the_same_stack_and_thread_with_other_labels_stays_a_sample_of_its_own():
    raw = labelled_profile([
        ("serialize", 10 * MS, ITEMS, "t"),
        ("serialize", 20 * MS, ORDERS, "t"),
        ("serialize", 5 * MS, ITEMS, "t"),
    ])
    profile = Profile.from_raw(raw)
    assert sorted((dict(s.labels)["route"], s.value) for s in profile.samples) == [
        ("api/items/", 15 * MS), ("api/orders/", 20 * MS),
    ]


def test_a_merge_keeps_labels_apart_and_adds_their_overflow():
    merged = merge_documents([two_endpoints(labels_overflow=2), two_endpoints(labels_overflow=5)])
    assert merged.labels_overflow == 7
    by_route = {row["value"]: row["total"] for row in group_profile(merged, "route")}
    assert by_route == {"api/items/": 800 * MS, "api/orders/": 1100 * MS, None: 100 * MS}


def test_a_filter_keeps_only_the_matching_samples_and_thread_is_a_label():
    profile = Profile.from_raw(two_endpoints())
    items = filter_profile(profile, parse_label_filter("route:api/items/"))
    assert items.total == 400 * MS
    assert {row["function"]: row["self"] for row in top_functions(items) if row["self"]} == {
        "list_items": 300 * MS, "serialize": 100 * MS,
    }
    both = filter_profile(profile, parse_label_filter("route:api/items/,thread:MainThread"))
    assert both.total == 300 * MS
    assert filter_profile(profile, parse_label_filter("route:nowhere/")).total == 0


def test_grouping_gives_each_value_its_share_heaviest_first():
    rows = group_profile(Profile.from_raw(two_endpoints()), "route")
    assert [(r["value"], r["percent"]) for r in rows] == [("api/orders/", 55.0), ("api/items/", 40.0), (None, 5.0)]
    assert rows[0]["sampleCount"] == 55


def test_apply_labels_says_what_was_applied():
    filtered, block = apply_labels(
        Profile.from_raw(two_endpoints(labels_overflow=4)), labels=parse_label_filter("thread:MainThread"), group_by="route"
    )
    assert block["filter"] == {"thread": "MainThread"} and block["groupBy"] == "route" and block["overflow"] == 4
    assert [(r["value"], r["total"]) for r in block["groups"]] == [
        ("api/orders/", 550 * MS), ("api/items/", 300 * MS), (None, 50 * MS),
    ]


def test_label_values_lists_every_key_with_its_values_heaviest_first():
    values = label_values(Profile.from_raw(two_endpoints()))
    assert values == {
        "route": ["api/orders/", "api/items/"],
        "thread": ["MainThread", "worker"],
        "view": ["shop.views.orders", "shop.views.items"],
    }


def test_a_value_may_hold_colons():
    assert parse_label_filter("route:api/<int:pk>/, task:send") == (("route", "api/<int:pk>/"), ("task", "send"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("route", "is not key:value"),
        ("route:", "is not key:value"),
        (":x", "is not key:value"),
        ("route:a,,task:b", "is not key:value"),
        ("route:a,route:b", "given twice"),
        ("k:" + "v" * 300, "at most 200 characters"),
    ],
)
def test_a_bad_filter_is_refused_saying_how_to_write_it(text, message):
    with pytest.raises(InvalidLabelQuery, match=message):
        parse_label_filter(text)


def test_a_bad_group_key_is_refused():
    with pytest.raises(InvalidLabelQuery, match="not a label key"):
        parse_group_by("route:x")


def _with_labels(labels) -> dict:
    raw = labelled_profile([("work", 10 * MS, {"route": "r"}, "t")])
    raw["samples"][0]["labels"] = labels
    return raw


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["route", "r"], "samples[0].labels: expected an object of strings, got array"),
        ({"route": 7}, "samples[0].labels.route: expected a string, got integer"),
        ({"route": "x" * 201}, "samples[0].labels.route: 201 characters, the limit is 200"),
        ({"": "x"}, "a key must have 1 to 200 characters"),
        ({"route": "a\x00b"}, "NUL"),
        ({"thread": "worker"}, "is the sample's thread field"),
        ({f"k{i}": "v" for i in range(MAX_LABEL_KEYS + 1)}, f"the limit is {MAX_LABEL_KEYS}"),
    ],
)
def test_bad_labels_are_refused_naming_the_sample(labels, message):
    with pytest.raises(InvalidProfile) as caught:
        Profile.from_raw(_with_labels(labels))
    assert message in str(caught.value)


def test_more_values_of_a_key_than_the_cap_are_refused_but_the_overflow_value_is_not_counted():
    rows = [("work", MS, {"customer": f"c{i}"}, "t") for i in range(MAX_LABEL_VALUES_PER_KEY)]
    rows.append(("work", MS, {"customer": LABEL_OVERFLOW_VALUE}, "t"))
    assert len(Profile.from_raw(labelled_profile(rows)).samples) == MAX_LABEL_VALUES_PER_KEY + 1
    rows.append(("work", MS, {"customer": "one-too-many"}, "t"))
    with pytest.raises(InvalidProfile, match=f"more than {MAX_LABEL_VALUES_PER_KEY} distinct values of 'customer'"):
        Profile.from_raw(labelled_profile(rows))


@pytest.mark.parametrize("overflow", [-1, "3", 1.5])
def test_a_bad_overflow_count_is_refused(overflow):
    raw = two_endpoints()
    raw["labelsOverflow"] = overflow
    with pytest.raises(InvalidProfile, match="labelsOverflow"):
        Profile.from_raw(raw)


def test_an_upload_with_thousands_of_labelled_samples_loads():
    # Each sample's labels object is a JSON object of its own: they must not count against
    # the cap of objects that are neither frames nor samples.
    from profiles.analysis.model import MAX_OTHER_OBJECTS, load_upload
    from tests.profiles.samples import gzip_json

    rows = [(f"f{i}", MS, {"route": f"r{i % 100}", "task": "t"}, f"thread-{i % 40}") for i in range(3 * MAX_OTHER_OBJECTS)]
    profile = load_upload(gzip_json(labelled_profile(rows)), 50 * 1024 * 1024)
    assert len(profile.samples) == 3 * MAX_OTHER_OBJECTS
    assert {row["value"] for row in group_profile(profile, "route")} == {f"r{i}" for i in range(100)}


def test_a_key_may_hold_inner_spaces():
    assert parse_label_filter(" customer id : acme ") == (("customer id", "acme"),)
    assert parse_group_by(" customer id ") == "customer id"
