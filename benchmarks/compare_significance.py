"""How often compare's significance test is fooled, and how often it catches a real slowdown.

    .venv/bin/python benchmarks/compare_significance.py [--trials 300] [--samples 3000]

Each trial draws two cpu profiles from one stack distribution (a service with eight functions),
the second under more load (1.8x the samples), with independent sampling noise, as py-spy
would record them at 100 Hz. False alarms: the fraction of trials where the compare lists any
function, per normalization (perSecond sees the load; share should not). Detection: the fraction
of trials where a slowdown of one function (8 % of the time before) is listed as a regression,
for several factors. The baseline figure of the run is the share false-alarm rate, printed first;
the detection rates are the comparison. Pure analysis (no Django); never fails.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from profiles.analysis import Frame, Profile, Sample, compare_profiles  # noqa: E402

WORKLOAD = {"render": 0.25, "query": 0.2, "serialize": 0.15, "log": 0.1, "auth": 0.08, "cache": 0.08, "json": 0.07, "idle": 0.07}
TICK_NS = 10_000_000


def sampled(weights: dict[str, float], samples: int, rng: random.Random) -> Profile:
    names = list(weights)
    drawn = rng.choices(names, weights=list(weights.values()), k=samples)
    frames = [Frame("main", "app.py", 1)] + [Frame(name, "app.py", 10 * i) for i, name in enumerate(names, 1)]
    rows = [Sample((0, i), drawn.count(n) * TICK_NS, drawn.count(n), "MainThread") for i, n in enumerate(names, 1) if drawn.count(n)]
    return Profile("cpu", "nanoseconds", "py-spy", 60.0, 100, samples, frames, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--samples", type=int, default=3000)
    args = parser.parse_args()
    rng = random.Random(2026)
    busy = int(args.samples * 1.8)

    def rate(make_comparison, normalization, predicate) -> float:
        hits = 0
        for _ in range(args.trials):
            base = sampled(WORKLOAD, args.samples, rng)
            result = compare_profiles(base, make_comparison(), normalization=normalization, noise_threshold_percent=0)
            hits += predicate(result)
        return hits / args.trials

    def any_listed(result) -> bool:
        return bool(result["regressions"] or result["improvements"])

    share_false = rate(lambda: sampled(WORKLOAD, busy, rng), "share", any_listed)
    per_second_false = rate(lambda: sampled(WORKLOAD, busy, rng), "perSecond", any_listed)
    print(f"{args.trials} trials, {args.samples} vs {busy} samples (1.8x the load), threshold 0 %")
    print(f"false alarms, share:     {share_false:6.1%}  (the test's design: at most 1 %)")
    print(f"false alarms, perSecond: {per_second_false:6.1%}  (load, not code, moves every function)")
    for factor in (1.25, 1.5, 2.0):
        slower = dict(WORKLOAD, auth=WORKLOAD["auth"] * factor)
        caught = rate(
            lambda slower=slower: sampled(slower, busy, rng),
            "share",
            lambda result: any(row["function"] == "auth" for row in result["regressions"]),
        )
        print(f"auth {factor:>4}x slower, share: caught in {caught:6.1%}")


if __name__ == "__main__":
    main()
