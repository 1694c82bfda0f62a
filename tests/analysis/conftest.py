"""Builders for small synthetic profiles (no database, no Django)."""

from __future__ import annotations

import pytest

from profiles.analysis import UNIT_BY_TYPE, Frame, Profile, Sample


def build_profile(
    stacks: dict[str, float] | list[tuple[str, float, str]],
    *,
    profile_type: str = "cpu",
    duration: float = 10.0,
    file: str = "app.py",
    engine: str | None = None,
    counts: dict[str, int] | None = None,
) -> Profile:
    """A profile from folded-like stacks: {"main;work;leaf": value} or [(stack, value, thread)].

    Each distinct name becomes one frame in `file`; "name:12" sets its line (default 1), so
    equal names in two profiles are the same function. Each stack is one sample unless
    `counts` gives its number of samples; `engine` defaults to py-spy (memray for memory types).
    """
    if isinstance(stacks, dict):
        stacks = [(stack, value, "MainThread") for stack, value in stacks.items()]
    index: dict[str, int] = {}
    samples = []
    for stack, value, thread in stacks:
        frames = tuple(index.setdefault(name, len(index)) for name in stack.split(";"))
        samples.append(Sample(frames, value, (counts or {}).get(stack, 1), thread))
    return Profile(
        profile_type=profile_type,
        unit=UNIT_BY_TYPE[profile_type],
        engine=engine or ("memray" if profile_type in ("memory", "alloc") else "py-spy"),
        duration_seconds=duration,
        sample_rate=100,
        sample_count=len(samples),
        frames=[_frame(name, file) for name in index],
        samples=samples,
        started_at=1_764_000_000.5,
    )


def _frame(name: str, file: str) -> Frame:
    function, _, line = name.partition(":")
    return Frame(function, file, int(line or 1))


@pytest.fixture
def make_profile():
    return build_profile
