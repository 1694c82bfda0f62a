"""Raw profiles for the page tests: a realistic small one and a wide one with 10,000 frames."""

import random

from tests.profiles.samples import raw_document

# A web request handler's shape: folded stacks with values in milliseconds of CPU.
SERVICE_STACKS = {
    "main;serve_forever;handle_request;view_checkout;compute_prices;apply_discounts": 310,
    "main;serve_forever;handle_request;view_checkout;compute_prices;tax_for_region": 140,
    "main;serve_forever;handle_request;view_checkout;render_template;escape_html": 95,
    "main;serve_forever;handle_request;view_checkout;render_template": 40,
    "main;serve_forever;handle_request;view_search;parse_query;tokenize": 120,
    "main;serve_forever;handle_request;view_search;rank_results;score_document;bm25": 260,
    "main;serve_forever;handle_request;view_search;rank_results;sort_results": 60,
    "main;serve_forever;handle_request;json_dumps": 80,
    "main;serve_forever;handle_request;db_query;fetch_rows": 55,
    "main;housekeeping;compact_cache;<listcomp>": 45,
}


def service_profile(scale: dict[str, float] | None = None, duration: float = 10.0) -> dict:
    """A cpu profile of a small web service; `scale` multiplies the stacks whose leaf is named."""
    scale = scale or {}
    index: dict[str, int] = {}
    samples = []
    for stack, ms in SERVICE_STACKS.items():
        names = stack.split(";")
        ms *= scale.get(names[-1], 1.0)
        if ms <= 0:
            continue
        ids = [index.setdefault(name, len(index)) for name in names]
        samples.append({"stack": ids, "value": int(ms * 1_000_000), "count": max(1, int(ms // 10)), "thread": "MainThread"})
    files = {"tokenize": "/app/search/query.py", "bm25": "/app/search/rank.py", "score_document": "/app/search/rank.py"}
    frames = [
        {"function": name, "file": files.get(name, "/app/shop/views.py" if "view" in name else "/app/server.py"), "line": 10 + i * 7}
        for name, i in index.items()
    ]
    return raw_document("cpu", frames, samples, duration)


def busier(raw: dict, factor: int) -> dict:
    """The same profile with `factor` times the samples (a busier service, or more threads):
    enough samples that compare's significance test sees the changes a test makes."""
    samples = [{**s, "value": s["value"] * factor, "count": s["count"] * factor} for s in raw["samples"]]
    return {**raw, "samples": samples, "sampleCount": raw["sampleCount"] * factor}


def wide_profile(n_frames: int = 10_000, seed: int = 7) -> dict:
    """A cpu profile with `n_frames` distinct functions in one call tree, every one on a stack.

    Each function has one caller (a random earlier function, mostly a near one, so the tree
    has both deep chains and wide fan-out); every function is the leaf of one sample whose
    value is heavy-tailed, so a few paths are hot and the long tail is thin, as in real profiles.
    """
    rng = random.Random(seed)
    frames = [
        {"function": f"module{i % 97}.function_{i}", "file": f"/app/pkg{i % 53}/mod{i % 211}.py", "line": 1 + i % 900}
        for i in range(n_frames)
    ]
    parent = [-1] + [rng.randrange(max(0, i - rng.choice((1, 2, 8, 60, 600))), i) for i in range(1, n_frames)]
    samples = []
    for leaf in range(n_frames):
        stack = []
        node = leaf
        while node >= 0:
            stack.append(node)
            node = parent[node]
        stack.reverse()
        value = int(rng.paretovariate(1.2) * 1_000_000)
        samples.append({"stack": stack[-512:], "value": value, "count": 1, "thread": "MainThread"})
    return raw_document("cpu", frames, samples, 10.0)
