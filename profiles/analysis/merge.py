"""Merging profiles: many windows (or rollups of windows) into one profile.

A merge is exact: every (call path, thread) of the result carries the sum of the values and
counts of the same path in the parts, so totals, top functions and flame graphs of a merge
equal those of the windows added up by hand. Only profiles of one type, unit and engine merge:
values of different engines do not measure the same thing (py-spy's wall-weighted samples and
yappi's deterministic CPU time differ in kind), so a mix is refused with the engines named.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .model import Frame, FrameKey, Profile, Sample


class MixedProfiles(ValueError):
    """The profiles differ in type, unit or engine; `engines` names the engines seen."""

    def __init__(self, message: str, engines: Sequence[str] = ()):
        super().__init__(message)
        self.engines = tuple(engines)


def check_mergeable(profiles: Sequence[Profile]) -> None:
    kinds = {(p.profile_type, p.unit) for p in profiles}
    if len(kinds) > 1:
        raise MixedProfiles(f"cannot merge profiles of different types or units: {sorted(kinds)}")
    engines = sorted({p.engine for p in profiles})
    if len(engines) > 1:
        raise MixedProfiles(f"cannot merge profiles of different engines: {', '.join(engines)}", engines)


def merge_profiles(profiles: Iterable[Profile]) -> Profile:
    """One profile holding all of `profiles` (at least one), which must share type, unit, engine.

    durationSeconds is the sum of the parts' durations (the covered time, not the span),
    startedAt the earliest start, sampleRate the highest, notes the distinct notes in order.
    """
    parts = list(profiles)
    if not parts:
        raise ValueError("merge_profiles needs at least one profile")
    check_mergeable(parts)
    if len(parts) == 1:
        return parts[0]
    frame_index: dict[FrameKey, int] = {}
    frames: list[Frame] = []
    merged: dict[tuple[tuple[int, ...], str], list] = {}
    notes: dict[str, None] = {}
    for part in parts:
        # Translate this part's frame indices into the merged frame table once per frame.
        local = []
        for frame in part.frames:
            index = frame_index.get(frame.key)
            if index is None:
                index = frame_index[frame.key] = len(frames)
                frames.append(frame)
            local.append(index)
        lookup = local.__getitem__
        for sample in part.samples:
            key = (tuple(map(lookup, sample.stack)), sample.thread)
            entry = merged.get(key)
            if entry is None:
                merged[key] = [sample.value, sample.count]
            else:
                entry[0] += sample.value
                entry[1] += sample.count
        notes.update(dict.fromkeys(part.notes))
    first = parts[0]
    return Profile(
        profile_type=first.profile_type,
        unit=first.unit,
        engine=first.engine,
        duration_seconds=sum(p.duration_seconds for p in parts),
        sample_rate=max(p.sample_rate for p in parts),
        sample_count=sum(p.sample_count for p in parts),
        frames=tuple(frames),
        samples=tuple(Sample(stack, v, c, thread) for (stack, thread), (v, c) in merged.items()),
        notes=tuple(notes),
        started_at=min(p.started_at for p in parts),
    )
