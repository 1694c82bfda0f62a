import random

import pytest

from profiles.analysis import flame_tree
from profiles.analysis.flamegraph import OTHER


def walk(node):
    yield node
    for child in node["children"]:
        yield from walk(child)


def assert_consistent(node):
    """value == self + sum(children) everywhere; children sorted by value desc."""
    for item in walk(node):
        children = item["children"]
        assert item["value"] == pytest.approx(item["self"] + sum(c["value"] for c in children))
        values = [c["value"] for c in children]
        assert values == sorted(values, reverse=True)


def test_tree_merges_paths_and_threads(make_profile):
    profile = make_profile(
        [
            ("main;handle;render", 60, "t1"),
            ("main;handle", 30, "t2"),
            ("main;handle;render", 5, "t2"),
            ("main;log", 10, "t1"),
        ]
    )

    tree = flame_tree(profile)

    assert tree == {
        "name": "all",
        "value": 105,
        "self": 0,
        "children": [
            {
                "name": "main",
                "file": "app.py",
                "line": 1,
                "value": 105,
                "self": 0,
                "children": [
                    {
                        "name": "handle",
                        "file": "app.py",
                        "line": 1,
                        "value": 95,
                        "self": 30,
                        "children": [
                            {
                                "name": "render",
                                "file": "app.py",
                                "line": 1,
                                "value": 65,
                                "self": 65,
                                "children": [],
                            }
                        ],
                    },
                    {
                        "name": "log",
                        "file": "app.py",
                        "line": 1,
                        "value": 10,
                        "self": 10,
                        "children": [],
                    },
                ],
            }
        ],
    }


def test_recursion_keeps_one_node_per_level(make_profile):
    tree = flame_tree(make_profile({"fib;fib;fib": 7}))

    depth = 0
    node = tree
    while node["children"]:
        (node,) = node["children"]
        depth += 1
        assert node["value"] == 7
    assert depth == 3
    assert node["self"] == 7


def test_empty_profile_is_just_the_root(make_profile):
    assert flame_tree(make_profile({})) == {"name": "all", "value": 0, "self": 0, "children": []}


def random_profile(make_profile, seed=7, samples=3000):
    rng = random.Random(seed)
    names = [f"f{i}" for i in range(60)]
    stacks = {}
    for _ in range(samples):
        stack = ";".join(
            rng.choice(names[:8]) if d == 0 else rng.choice(names) for d in range(rng.randint(1, 8))
        )
        stacks[stack] = stacks.get(stack, 0) + rng.randint(1, 1000)
    return make_profile(stacks)


@pytest.mark.parametrize("max_nodes", [2, 3, 10, 50, 500, 5000])
def test_folding_respects_max_nodes_and_keeps_totals_exact(make_profile, max_nodes):
    profile = random_profile(make_profile)
    full = flame_tree(profile, max_nodes=10**9)
    full_size = sum(1 for _ in walk(full))
    assert full_size > 5000  # the random profile really needs folding

    tree = flame_tree(profile, max_nodes=max_nodes)

    nodes = list(walk(tree))
    assert len(nodes) <= max_nodes
    assert tree["value"] == profile.total
    assert any(node["name"] == OTHER for node in nodes)
    assert_consistent(tree)
    for node in nodes:
        if node["name"] == OTHER:
            assert node["children"] == []
            assert node["self"] == node["value"]


def test_folding_hides_the_smallest_subtrees_first(make_profile):
    profile = make_profile({"main;big": 1000, "main;mid": 100, "main;small": 10, "main;tiny": 1})

    tree = flame_tree(profile, max_nodes=5)  # all, main, big, mid, (other)

    main = tree["children"][0]
    assert [(c["name"], c["value"]) for c in main["children"]] == [
        ("big", 1000),
        ("mid", 100),
        (OTHER, 11),
    ]


def test_no_other_node_when_the_tree_fits(make_profile):
    profile = make_profile({"main;a": 3, "main;b": 2})  # all, main, a, b

    tree = flame_tree(profile, max_nodes=4)

    assert all(node["name"] != OTHER for node in walk(tree))
    assert sum(1 for _ in walk(tree)) == 4


def test_folded_paths_of_a_random_profile_match_the_unfolded_values(make_profile):
    profile = random_profile(make_profile, seed=11)
    full = flame_tree(profile, max_nodes=10**9)
    folded = flame_tree(profile, max_nodes=300)

    def index(tree):
        out = {}
        stack = [((), tree)]
        while stack:
            path, node = stack.pop()
            out[path] = node["value"]
            for child in node["children"]:
                stack.append((path + (child["name"],), child))
        return out

    full_values = index(full)
    for path, value in index(folded).items():
        if path and path[-1] != OTHER:
            assert full_values[path] == value


def test_max_nodes_below_two_is_refused(make_profile):
    with pytest.raises(ValueError):
        flame_tree(make_profile({"a": 1}), max_nodes=1)


def test_a_tree_of_exactly_max_nodes_is_not_folded(make_profile):
    profile = random_profile(make_profile, seed=3, samples=300)
    size = sum(1 for _ in walk(flame_tree(profile, max_nodes=10**9)))

    exact = flame_tree(profile, max_nodes=size)
    one_less = flame_tree(profile, max_nodes=size - 1)

    assert sum(1 for _ in walk(exact)) == size
    assert all(node["name"] != OTHER for node in walk(exact))
    assert sum(1 for _ in walk(one_less)) <= size - 1
    assert any(node["name"] == OTHER for node in walk(one_less))
