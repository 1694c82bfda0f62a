"""A stored profile's analysis data for the pages: flame graphs and comparisons, cached per process."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..analysis.compare import differential_tree, normalization_scale
from ..models import ProfileResult
from ..selectors import profile_compare, profile_flame_tree, profile_load_analysis
from .flamegraph import FlameGraph, render_flamegraph
from .labels import LabelledView, LabelQuery, labelled_view

# --- flame graphs, cached per process -------------------------------------------------------------

# A profile's flame graph is drawn from the tree that processing stored (bounded in nodes, no
# payload is parsed); a comparison's is built from both payloads, up to MAX_NODES nodes. A
# completed profile never changes, so the last few graphs are kept per process.
MAX_NODES = 20_000
_CACHE_SIZE = 8
T = TypeVar("T")
_cache: OrderedDict[tuple, Any] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: tuple, build: Callable[[], T]) -> T:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    graph = build()
    with _cache_lock:
        _cache[key] = graph
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return graph


def _version(profile: ProfileResult) -> tuple:
    return (str(profile.pk), profile.completed_at.isoformat() if profile.completed_at else "", profile.size_bytes)


def profile_flamegraph(profile: ProfileResult) -> FlameGraph:
    """The profile's flame graph, from its stored tree (raises selectors.ProfileNotReady)."""
    return profile_flamegraph_and_labels(profile)[0]


def profile_flamegraph_and_labels(profile: ProfileResult) -> tuple[FlameGraph, dict[str, list[str]]]:
    """(the flame graph, the label values) from what processing stored; no payload is parsed."""

    def build() -> tuple[FlameGraph, dict[str, list[str]]]:
        tree, unit, values = profile_flame_tree(profile=profile)
        return render_flamegraph(tree, unit=unit), values

    return _cached(("flame", *_version(profile)), build)


def profile_labelled_view(profile: ProfileResult, query: LabelQuery) -> LabelledView:
    """The profile cut and split by `query` (parses the payload; raises selectors.ProfileNotReady)."""

    def build() -> LabelledView:
        return labelled_view(profile_load_analysis(profile=profile), query, max_nodes=MAX_NODES)

    return _cached(("labelled", query.labels, query.group_by, *_version(profile)), build)


@dataclass(frozen=True)
class Comparison:
    result: dict
    graph: FlameGraph
    unit: str
    per_second: bool


def profiles_comparison(
    base: ProfileResult, comparison: ProfileResult, *, normalization: str | None = None, allow_mismatch: bool = False
) -> Comparison:
    """The API's comparison (selectors.profile_compare) and the differential flame graph of two profiles.

    Raises selectors.ProfileNotReady (either side unreadable), selectors.ProfilesIncomparable
    or IncomparableProfiles.
    """

    def build() -> Comparison:
        result = profile_compare(
            base=base, comparison=comparison, normalization=normalization, allow_mismatch=allow_mismatch
        )
        before = profile_load_analysis(profile=base)
        after = profile_load_analysis(profile=comparison)
        per_second = normalization_scale(after) is not None
        graph = render_flamegraph(
            differential_tree(before, after, max_nodes=MAX_NODES),
            unit=after.unit,
            per_second=per_second,
            differential=True,
        )
        return Comparison(result=result, graph=graph, unit=after.unit, per_second=per_second)

    return _cached(("compare", normalization, allow_mismatch, *_version(base), *_version(comparison)), build)
