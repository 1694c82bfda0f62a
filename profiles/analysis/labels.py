"""Filtering and grouping a profile by its samples' labels: the one implementation behind
`labels=` and `groupBy=` of results, merged ranges, compares, exports and pages.

A sample's labels are its "labels" pairs plus its thread under the key "thread", so a thread
filters and groups like any label.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from profiling_agent.profile_format import LABEL_THREAD, MAX_LABEL_CHARS, MAX_LABEL_KEYS

from .model import Labels, Profile, Sample
from .summary import percent

# A key as a query can name it: ':' and ',' are the syntax, outer spaces are trimmed.
_KEY = re.compile(r"[^:,]*[^\s:,]")


class InvalidLabelQuery(ValueError):
    """A `labels=` or `groupBy=` parameter that cannot be read; the message says how to write it."""


def parse_label_filter(text: str | None) -> Labels:
    """`key:value,key:value` as sorted pairs (all must match); empty or None: no filter.

    A value may hold ':' (everything after the first one is the value), not ','.
    """
    if not text:
        return ()
    pairs: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.fullmatch(key) or not value:
            raise InvalidLabelQuery(
                f"{part.strip()[:60]!r} is not key:value; write labels=route:api/items/,task:send_mail"
            )
        if len(key) > MAX_LABEL_CHARS or len(value) > MAX_LABEL_CHARS:
            raise InvalidLabelQuery(f"keys and values have at most {MAX_LABEL_CHARS} characters")
        if pairs.get(key, value) != value:
            raise InvalidLabelQuery(f"{key!r} is given twice with different values; a sample has one")
        pairs[key] = value
    if len(pairs) > MAX_LABEL_KEYS + 1:  # the sample's own keys and its thread
        raise InvalidLabelQuery(f"at most {MAX_LABEL_KEYS + 1} pairs")
    return tuple(sorted(pairs.items()))


def parse_group_by(text: str | None) -> str | None:
    """A label key to group by, or None."""
    if not text:
        return None
    key = text.strip()
    if not _KEY.fullmatch(key) or len(key) > MAX_LABEL_CHARS:
        raise InvalidLabelQuery(f"{text[:60]!r} is not a label key; write groupBy=route")
    return key


def sample_label(sample: Sample, key: str) -> str | None:
    if key == LABEL_THREAD:
        return sample.thread
    for name, value in sample.labels:
        if name == key:
            return value
    return None


def filter_profile(profile: Profile, labels: Labels) -> Profile:
    """The profile with only the samples that carry every pair of `labels` (AND)."""
    if not labels:
        return profile
    kept = tuple(s for s in profile.samples if all(sample_label(s, k) == v for k, v in labels))
    return dataclasses.replace(profile, samples=kept, sample_count=sum(s.count for s in kept))


def group_profile(profile: Profile, key: str) -> list[dict[str, Any]]:
    """One row per value of `key`, heaviest first: value (None for samples without the key),
    total (in the profile's unit), percent of the profile total, and the samples behind it."""
    totals: dict[str | None, list] = {}
    for sample in profile.samples:
        entry = totals.setdefault(sample_label(sample, key), [0, 0])
        entry[0] += sample.value
        entry[1] += sample.count
    whole = profile.total
    rows = [
        {"value": value, "total": total, "percent": percent(total, whole), "sampleCount": count}
        for value, (total, count) in totals.items()
    ]
    rows.sort(key=lambda row: (-row["total"], row["value"] is None, row["value"] or ""))
    return rows


def label_values(profile: Profile) -> dict[str, list[str]]:
    """Every label key of the profile ("thread" included) with its values, heaviest first: what a
    picker offers."""
    weights: dict[str, dict[str, float]] = {}
    for sample in profile.samples:
        for key, value in ((LABEL_THREAD, sample.thread), *sample.labels):
            by_value = weights.setdefault(key, {})
            by_value[value] = by_value.get(value, 0) + sample.value
    return {
        key: sorted(by_value, key=lambda v: (-by_value[v], v))
        for key, by_value in sorted(weights.items())
    }


def apply_labels(profile: Profile, *, labels: Labels = (), group_by: str | None = None) -> tuple[Profile, dict[str, Any]]:
    """(the filtered profile, the response's "labels" block) for the API and the pages.

    The block says which filter and grouping were applied; `groups` (with groupBy) splits the
    filtered profile by the key's values; `overflow` is the samples whose value the agent
    replaced by "(other)" because a key had too many values.
    """
    filtered = filter_profile(profile, labels)
    return filtered, {
        "filter": dict(labels),
        "groupBy": group_by,
        "groups": group_profile(filtered, group_by) if group_by else None,
        "overflow": profile.labels_overflow,
    }
