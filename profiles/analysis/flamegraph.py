"""Flame-graph tree: call paths merged across threads, with exact totals at every level.

Invariant of every rendered node: value == self + sum(child values). When the tree has more
than `max_nodes` nodes, the smallest subtrees are folded into one "(other)" child of their
parent, whose self is their combined value, so the invariant and all totals still hold.
"""

from __future__ import annotations

import heapq
from typing import Any

from .model import FrameKey, Profile

OTHER = "(other)"
DEFAULT_MAX_NODES = 20_000


class TreeNode:
    __slots__ = ("fid", "value", "self", "base", "children", "kept", "dropped")

    def __init__(self, fid: int) -> None:
        self.fid = fid  # function id in Profile.function_table; -1 for the root
        self.value: float = 0
        self.self: float = 0
        self.base: float = 0  # value of the same call path in a base profile (differential)
        self.children: dict[int, TreeNode] = {}
        self.kept = True
        self.dropped = 0  # children folded into "(other)"


def build_tree(profile: Profile) -> TreeNode:
    """Merge the samples' call paths into a prefix tree keyed by function id."""
    _, frame_ids = profile.function_table
    by_stack: dict[tuple[int, ...], float] = {}
    for sample in profile.samples:  # threads are merged: aggregate equal stacks first
        by_stack[sample.stack] = by_stack.get(sample.stack, 0) + sample.value
    root = TreeNode(-1)
    for stack, value in by_stack.items():
        root.value += value
        node = root
        for index in stack:
            fid = frame_ids[index]
            child = node.children.get(fid)
            if child is None:
                child = node.children[fid] = TreeNode(fid)
            child.value += value
            node = child
        node.self += value
    return root


def add_base(root: TreeNode, tree_profile: Profile, base: Profile) -> None:
    """Add `base`'s values onto the nodes of `root` (built from `tree_profile`) on shared paths.

    Paths that exist only in `base` have no node; their value still counts in `root.base`.
    """
    tree_ids = {key: fid for fid, key in enumerate(tree_profile.function_table[0])}
    base_keys, base_frame_ids = base.function_table
    to_tree = [tree_ids.get(key, -2) for key in base_keys]
    for sample in base.samples:
        value = sample.value
        root.base += value
        node = root
        for index in sample.stack:
            child = node.children.get(to_tree[base_frame_ids[index]])
            if child is None:
                break
            child.base += value
            node = child


def _fold(root: TreeNode, max_nodes: int) -> None:
    """Mark which nodes to keep so that kept nodes plus "(other)" nodes fit in `max_nodes`.

    Best-first from the root: the largest remaining subtree is kept next, so whatever is
    left over is always the smallest subtrees. A node's value bounds its descendants', so
    the kept set is closed under parents.
    """
    nodes = list(_walk(root))
    if len(nodes) <= max_nodes:
        for node in nodes:
            node.kept, node.dropped = True, 0
        return
    for node in nodes:
        node.kept, node.dropped = False, len(node.children)
    root.kept = True
    count = 1 + (1 if root.children else 0)  # the root and its "(other)"
    seq = 0
    heap: list[tuple[float, int, int, TreeNode, TreeNode]] = []
    for child in root.children.values():
        heap.append((-child.value, 1, seq, child, root))
        seq += 1
    heapq.heapify(heap)
    while heap:
        _, depth, _, node, parent = heap[0]
        # Keeping `node` adds it and (if it has children) its own "(other)"; its parent's
        # "(other)" disappears when `node` was the last folded child.
        delta = 1 + (1 if node.children else 0) - (1 if parent.dropped == 1 else 0)
        if count + delta > max_nodes:
            break
        heapq.heappop(heap)
        count += delta
        node.kept = True
        parent.dropped -= 1
        for child in node.children.values():
            heapq.heappush(heap, (-child.value, depth + 1, seq, child, node))
            seq += 1


def _walk(root: TreeNode):
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children.values())


def render_tree(
    root: TreeNode,
    keys: tuple[FrameKey, ...],
    max_nodes: int,
    *,
    scale: float | None = None,
    with_base: bool = False,
    base_scale: float | None = None,
) -> dict[str, Any]:
    """Fold to `max_nodes` and turn the tree into JSON-ready dicts.

    `scale` multiplies values, `base_scale` base values (None: keep them as they are).
    With `with_base`, every node also gets "baseValue".
    """
    if max_nodes < 2:
        raise ValueError("max_nodes must be at least 2 (the root and one '(other)')")
    _fold(root, max_nodes)

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
        entries: list[tuple[tuple, dict[str, Any], TreeNode | None]] = []
        other_value = other_base = 0
        for child in node.children.values():
            if child.kept:
                name, file, line = keys[child.fid]
                child_out = make(name, file, line, child.value, child.self, child.base)
                entries.append(((-child.value, name, file, line), child_out, child))
            else:
                other_value += child.value
                other_base += child.base
        if node.dropped:
            other = make(OTHER, "", 0, other_value, other_value, other_base)
            entries.append(((-other_value, OTHER, "", 0), other, None))
        entries.sort(key=lambda entry: entry[0])
        for _, child_out, child in entries:
            out["children"].append(child_out)
            if child is not None:
                pending.append((child, child_out))
    return result


def flame_tree(profile: Profile, max_nodes: int = DEFAULT_MAX_NODES) -> dict[str, Any]:
    """The profile's flame graph: {"name": "all", "value": total, "self": 0, "children": [...]}.

    Nodes are {"name", "file", "line", "value", "self", "children"}, children sorted by
    value descending; at most `max_nodes` nodes including the root and "(other)" nodes.
    """
    keys = profile.function_table[0]
    return render_tree(build_tree(profile), keys, max_nodes)
