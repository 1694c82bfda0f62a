"""Merging profiles: many windows (or rollups of windows) into one profile.

A merge is exact: every (call path, thread, labels) of the result carries the sum of the values and
counts of the same path in the parts, so totals, top functions and flame graphs of a merge
equal those of the windows added up by hand. Only profiles of one type, unit and engine merge:
values of different engines do not measure the same thing (py-spy's wall-weighted samples and
yappi's deterministic CPU time differ in kind), so a mix is refused with the engines named.

The parts are pyprof-raw/1 documents as this server stores them (validated when uploaded),
consumed one at a time: a range of a week reads dozens of files, and building a `Profile` of
each only to take it apart again would double the time (benchmarks/ranges.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .model import Frame, FrameKey, InvalidProfile, Labels, Profile, Sample


class MixedProfiles(ValueError):
    """The parts differ in type, unit or engine; `engines` names the engines seen."""

    def __init__(self, message: str, engines: Iterable[str] = ()):
        super().__init__(message)
        self.engines = tuple(sorted(engines))


def merge_documents(documents: Iterable[Mapping[str, Any]]) -> Profile:
    """One profile holding all of `documents` (at least one), which share type, unit, engine.

    durationSeconds is the sum of the parts' durations (the covered time, not the span),
    startedAt the earliest start, sampleRate the highest, notes the distinct notes in order.
    Raises MixedProfiles for a mix, InvalidProfile for a document that is not what we store.
    """
    frame_index: dict[FrameKey, int] = {}
    frames: list[Frame] = []
    merged: dict[tuple[tuple[int, ...], str, Labels], list] = {}
    label_sets: dict[Labels, Labels] = {}  # one tuple per distinct label set
    notes: dict[str, None] = {}
    kinds: set[tuple[str, str]] = set()
    engines: set[str] = set()
    duration = 0.0
    sample_count = sample_rate = parts = labels_overflow = 0
    started_at = float("inf")
    for doc in documents:
        try:
            kinds.add((doc["profileType"], doc["unit"]))
            engines.add(doc["engine"])
            if len(kinds) > 1:
                raise MixedProfiles(f"cannot merge profiles of different types or units: {sorted(kinds)}")
            if len(engines) > 1:
                raise MixedProfiles(f"cannot merge profiles of different engines: {', '.join(sorted(engines))}", engines)
            # This part's frame indices in the merged frame table, translated once per frame.
            local = []
            for f in doc["frames"]:
                key = (f["function"], f["file"], f["line"])
                index = frame_index.get(key)
                if index is None:
                    index = frame_index[key] = len(frames)
                    frames.append(Frame(*key))
                local.append(index)
            lookup = local.__getitem__
            for sample in doc["samples"]:
                labels = sample.get("labels")
                if labels:
                    labels = tuple(sorted(labels.items()))
                    labels = label_sets.setdefault(labels, labels)
                key = (tuple(map(lookup, sample["stack"])), sample["thread"], labels or ())
                entry = merged.get(key)
                if entry is None:
                    merged[key] = [sample["value"], sample["count"]]
                else:
                    entry[0] += sample["value"]
                    entry[1] += sample["count"]
            duration += doc["durationSeconds"]
            sample_count += doc["sampleCount"]
            labels_overflow += doc.get("labelsOverflow", 0)
            sample_rate = max(sample_rate, doc["sampleRate"])
            started_at = min(started_at, doc.get("startedAt", 0.0))
            notes.update(dict.fromkeys(doc.get("notes", ())))
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise InvalidProfile(f"not a stored pyprof-raw/1 profile ({type(exc).__name__}: {exc})") from None
        parts += 1
    if not parts:
        raise ValueError("merge_documents needs at least one document")
    (profile_type, unit), engine = kinds.pop(), engines.pop()
    return Profile(
        profile_type=profile_type,
        unit=unit,
        engine=engine,
        duration_seconds=duration,
        sample_rate=sample_rate,
        sample_count=sample_count,
        frames=tuple(frames),
        samples=tuple(Sample(stack, v, c, thread, labels) for (stack, thread, labels), (v, c) in merged.items()),
        notes=tuple(notes),
        started_at=started_at,
        labels_overflow=labels_overflow,
    )
