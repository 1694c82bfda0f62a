"""Flame-graph tree: call paths merged across threads, with exact totals at every level.

Invariant of every rendered node: value == self + sum(child values). When the tree has more
than `max_nodes` nodes, the smallest subtrees are folded into one "(other)" child of their
parent, whose self is their combined value, so the invariant and all totals still hold.

The tree is never built in full: nodes are expanded best-first (largest value first) by
partitioning the distinct stacks that pass through them, so memory stays proportional to the
profile plus `max_nodes`, even for adversarial profiles with millions of distinct paths.
"""

from __future__ import annotations

import heapq
from typing import Any

from .model import Profile

OTHER = "(other)"
DEFAULT_MAX_NODES = 20_000

Stacks = tuple[list[tuple[int, ...]], list[float]]


class _Node:
    __slots__ = (
        "fid",
        "depth",
        "members",
        "base_members",
        "value",
        "base",
        "self",
        "children",
        "unkept",
    )

    def __init__(self, fid: int, depth: int, members: list[int], base_members: list[int]):
        self.fid = fid  # function id in Profile.function_table; -1 for the root
        self.depth = depth  # stacks through this node share their first `depth` functions
        self.members = members  # indices of the distinct stacks passing through
        self.base_members = base_members  # the same for the base profile (differential)
        self.value: float = 0
        self.base: float = 0
        self.self: float = 0
        self.children: list[_Node] | None = None  # None until expanded (kept)
        self.unkept = 0  # children still folded, once kept


def distinct_stacks(profile: Profile, fid_of_key: dict | None = None) -> Stacks:
    """Stacks as tuples of function ids, threads merged, with their summed values.

    With `fid_of_key` (function key -> id of another profile), ids are translated into that
    profile's id space; functions unknown there become -2, which matches no node.
    """
    keys, frame_ids = profile.function_table
    if fid_of_key is not None:
        frame_ids = tuple(fid_of_key.get(keys[fid], -2) for fid in frame_ids)
    by_stack: dict[tuple[int, ...], float] = {}
    lookup = frame_ids.__getitem__
    for sample in profile.samples:
        stack = tuple(map(lookup, sample.stack))
        by_stack[stack] = by_stack.get(stack, 0) + sample.value
    return list(by_stack), list(by_stack.values())


def _expand(node: _Node, stacks: Stacks, base: Stacks | None) -> None:
    """Create `node`'s children from the stacks passing through it; set its self value."""
    depth = node.depth
    paths, values = stacks
    if len(node.members) == 1 and not node.base_members:  # fast path: a single stack
        i = node.members[0]
        path = paths[i]
        if len(path) == depth:
            node.self, node.children = values[i], []
        else:
            child = _Node(path[depth], depth + 1, node.members, [])
            child.value = values[i]
            node.children = [child]
        return
    groups: dict[int, list[int]] = {}
    self_value = 0
    for i in node.members:
        path = paths[i]
        if len(path) == depth:
            self_value += values[i]
        else:
            groups.setdefault(path[depth], []).append(i)
    base_groups: dict[int, list[int]] = {}
    if base is not None:
        for i in node.base_members:
            path = base[0][i]
            if len(path) > depth and path[depth] in groups:
                base_groups.setdefault(path[depth], []).append(i)
    node.self = self_value
    node.children = []
    for fid, members in groups.items():
        child = _Node(fid, depth + 1, members, base_groups.get(fid, []))
        child.value = sum([values[i] for i in members])
        if base is not None:
            child.base = sum([base[1][i] for i in child.base_members])
        node.children.append(child)
    node.members = node.base_members = []  # no longer needed: free them


def _grow(stacks: Stacks, base: Stacks | None, max_nodes: int) -> _Node:
    """Expand best-first while kept nodes plus their "(other)" nodes fit in `max_nodes`.

    Candidates come off a heap largest value first, so whatever stays folded is always the
    smallest subtrees; ties go deeper first, which finishes chains before starting siblings.
    The count never overshoots the final size, so a tree that fits is expanded completely.
    """
    root = _Node(
        -1, 0, list(range(len(stacks[0]))), [] if base is None else list(range(len(base[0])))
    )
    root.value = sum(stacks[1])
    if base is not None:
        root.base = sum(base[1])
    _expand(root, stacks, base)
    assert root.children is not None
    root.unkept = len(root.children)
    count = 1 + (1 if root.children else 0)  # the root and its "(other)"
    seq = 0
    heap: list[tuple[float, int, int, _Node, _Node]] = []
    for child in root.children:
        heap.append((-child.value, -child.depth, seq, child, root))
        seq += 1
    heapq.heapify(heap)
    while heap:
        _, _, _, node, parent = heap[0]
        if node.children is None:
            _expand(node, stacks, base)
        assert node.children is not None
        # Keeping `node` adds it and (if it has children) its "(other)"; its parent's
        # "(other)" disappears when `node` was the last folded child.
        delta = 1 + (1 if node.children else 0) - (1 if parent.unkept == 1 else 0)
        if count + delta > max_nodes:
            node.children = None  # stays folded
            break
        heapq.heappop(heap)
        count += delta
        parent.unkept -= 1
        node.unkept = len(node.children)
        for child in node.children:
            heapq.heappush(heap, (-child.value, -child.depth, seq, child, node))
            seq += 1
    return root


def _render(
    root: _Node,
    keys: tuple,
    *,
    scale: float | None,
    with_base: bool,
    base_scale: float | None,
) -> dict[str, Any]:
    def scaled(value: float, factor: float | None) -> float:
        return value if factor is None else value * factor

    def make(name: str, file: str, line: int, value: float, self_: float, base: float):
        out: dict[str, Any] = {
            "name": name,
            "file": file,
            "line": line,
            "value": scaled(value, scale),
            "self": scaled(self_, scale),
        }
        if with_base:
            out["baseValue"] = scaled(base, base_scale)
        out["children"] = []
        return out

    result: dict[str, Any] = {"name": "all", "value": scaled(root.value, scale), "self": 0}
    if with_base:
        result["baseValue"] = scaled(root.base, base_scale)
    result["children"] = []

    pending = [(root, result)]
    while pending:
        node, out = pending.pop()
        entries: list[tuple[tuple, dict[str, Any], _Node | None]] = []
        other_value = other_base = 0
        folded = 0
        for child in node.children or ():
            if child.children is None:  # never kept: folded
                folded += 1
                other_value += child.value
                other_base += child.base
                continue
            name, file, line = keys[child.fid]
            child_out = make(name, file, line, child.value, child.self, child.base)
            entries.append(((-child.value, name, file, line), child_out, child))
        if folded:
            other = make(OTHER, "", 0, other_value, other_value, other_base)
            entries.append(((-other_value, OTHER, "", 0), other, None))
        entries.sort(key=lambda entry: entry[0])
        for _, child_out, child in entries:
            out["children"].append(child_out)
            if child is not None:
                pending.append((child, child_out))
    return result


def build_flame_tree(
    profile: Profile,
    max_nodes: int,
    *,
    scale: float | None = None,
    base: Profile | None = None,
    base_scale: float | None = None,
) -> dict[str, Any]:
    """Flame tree of `profile`, values multiplied by `scale` (None: as they are).

    With `base`, every node also gets "baseValue": the base profile's value on the same call
    path (times `base_scale`); paths only the base took have no node but count in the root's.
    """
    if max_nodes < 2:
        raise ValueError("max_nodes must be at least 2 (the root and one '(other)')")
    keys = profile.function_table[0]
    stacks = distinct_stacks(profile)
    base_stacks = None
    if base is not None:
        base_stacks = distinct_stacks(base, {key: fid for fid, key in enumerate(keys)})
    root = _grow(stacks, base_stacks, max_nodes)
    return _render(root, keys, scale=scale, with_base=base is not None, base_scale=base_scale)


def flame_tree(profile: Profile, max_nodes: int = DEFAULT_MAX_NODES) -> dict[str, Any]:
    """The profile's flame graph: {"name": "all", "value": total, "self": 0, "children": [...]}.

    Nodes are {"name", "file", "line", "value", "self", "children"}, children sorted by
    value descending; at most `max_nodes` nodes including the root and "(other)" nodes.
    """
    return build_flame_tree(profile, max_nodes)
