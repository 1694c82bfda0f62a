"""The label picker and the "by endpoint / by task" table of the profile and service pages.

Both pages read `labels=` and `groupBy=` like the API (analysis.labels); the picker offers the
profile's label values, the table splits the (filtered) profile by the grouped key's values.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from profiling_agent.profile_format import LABEL_ROUTE, LABEL_TASK

from ..analysis.flamegraph import flame_tree
from ..analysis.labels import (
    InvalidLabelQuery,
    Labels,
    apply_labels,
    parse_group_by,
    parse_label_filter,
)
from ..analysis.model import Profile
from ..analysis.summary import top_functions
from .flamegraph import FlameGraph, render_flamegraph
from .formatting import format_value

#: Quick links of the table, when the profile has these keys.
GROUP_SHORTCUTS = ((LABEL_ROUTE, "By endpoint"), (LABEL_TASK, "By task"))


@dataclass(frozen=True)
class LabelQuery:
    labels: Labels = ()
    group_by: str | None = None
    error: str = ""

    @property
    def active(self) -> bool:
        return bool(self.labels or self.group_by)


def label_query(params) -> LabelQuery:
    """The page's `labels=` and `groupBy=`; unreadable ones are dropped and explained."""
    try:
        return LabelQuery(parse_label_filter(params.get("labels")), parse_group_by(params.get("groupBy")))
    except InvalidLabelQuery as exc:
        return LabelQuery(error=str(exc))


@dataclass(frozen=True)
class LabelledView:
    """A profile cut and split by a LabelQuery: its flame graph, top functions and groups."""

    graph: FlameGraph
    functions: list[dict]
    block: dict
    profile: Profile


def labelled_view(profile: Profile, query: LabelQuery, *, max_nodes: int) -> LabelledView:
    filtered, block = apply_labels(profile, labels=query.labels, group_by=query.group_by)
    graph = render_flamegraph(flame_tree(filtered, max_nodes=max_nodes), unit=filtered.unit)
    return LabelledView(graph=graph, functions=top_functions(filtered), block=block, profile=filtered)


def picker_context(
    params, query: LabelQuery, *, values: dict[str, list[str]], groups: list[dict] | None, unit: str, overflow: int = 0
) -> dict:
    """What templates/profiles/_labels.html shows: the picker, the applied filter, the table."""
    kept = [(k, v) for k, v in params.items() if k not in ("labels", "groupBy")]

    def link(**extra) -> str:
        return "?" + urlencode([*kept, *((k, v) for k, v in extra.items() if v)])

    labels_text = ",".join(f"{k}:{v}" for k, v in query.labels)
    return {
        "keys": list(values),
        "options": [f"{key}:{value}" for key, vals in values.items() for value in vals],
        "hidden": kept,
        "labels_text": labels_text,
        "group_by": query.group_by or "",
        "error": query.error,
        "overflow": overflow,
        "clear_url": link() if query.active else "",
        "shortcuts": [(label, link(labels=labels_text, groupBy=key), key == query.group_by)
                      for key, label in GROUP_SHORTCUTS if key in values],
        "groups": [
            {**row, "text": format_value(row["total"], unit),
             "url": link(labels=",".join(filter(None, [labels_text, f"{query.group_by}:{row['value']}"])),
                         groupBy=query.group_by)
             if row["value"] is not None and "," not in row["value"] else ""}
            for row in groups
        ] if groups is not None else None,
    }
