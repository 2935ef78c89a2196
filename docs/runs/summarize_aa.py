"""The README's "Noise" figures from the stored A/A runs (docs/runs/aa-20.json).

    .venv/bin/python docs/runs/summarize_aa.py [aa-20.json]

Verdicts are recomputed from each stored interval for several thresholds, with the rule
compare uses (toolkit.measure.stats.verdict) and with the earlier rule (a claim once the
interval excluded 1 around a median beyond the threshold), so the choice of the default
threshold can be checked against the data.
"""

from __future__ import annotations

import collections
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from toolkit.measure.stats import Interval, verdict

HIGHER_IS_BETTER = {"req_per_s": True, "latency_ms_p99": False, "cpu_s_per_request": False}
THRESHOLDS = (0.05, 0.075, 0.10)


def earlier_rule(r: dict[str, float], threshold: float, higher_is_better: bool) -> str:
    lo, m, hi = r["ci_low"], r["median"], r["ci_high"]
    if lo >= 1 / (1 + threshold) and hi <= 1 + threshold:
        return "same"
    if lo > 1 and m > 1 + threshold:
        return "better" if higher_is_better else "worse"
    if hi < 1 and m < 1 / (1 + threshold):
        return "worse" if higher_is_better else "better"
    return "inconclusive"


def main(path: Path) -> None:
    runs: list[dict[str, Any]] = json.loads(path.read_text())["runs"]
    tally: collections.Counter[tuple[str, float, str]] = collections.Counter()
    half_widths: dict[str, list[float]] = collections.defaultdict(list)
    split: collections.Counter[tuple[str, str, int, str]] = collections.Counter()
    excluding_one = 0
    cvs, rounds = [], []
    for run in runs:
        for row in run["rows"]:
            if row["label"] in ("single", "single#2"):
                cvs.append(row["cv"]["req_per_s"])
            if row["label"] == "split":
                for name, r in row["ratios"].items():
                    interval = Interval(r["median"], r["ci_low"], r["ci_high"],
                                        r["confidence"], int(r["n"]))
                    split[(name, row["transport"], row["body_bytes"], verdict(
                        interval, higher_is_better=HIGHER_IS_BETTER[name],
                        threshold=0.10))] += 1
            if row["label"] != "single#2":
                continue
            rounds.append(row["rounds"])
            for name, r in row["ratios"].items():
                hib = HIGHER_IS_BETTER[name]
                interval = Interval(r["median"], r["ci_low"], r["ci_high"], r["confidence"],
                                    int(r["n"]))
                half_widths[name].append((r["ci_high"] - r["ci_low"]) / 2)
                excluding_one += not r["ci_low"] <= 1 <= r["ci_high"]
                for t in THRESHOLDS:
                    tally[("compare's rule", t, verdict(interval, higher_is_better=hib,
                                                        threshold=t))] += 1
                    tally[("earlier rule", t, earlier_rule(r, t, hib))] += 1
    judged = sum(len(half_widths[n]) for n in half_widths)
    print(f"{len(runs)} A/A runs, {min(rounds)}-{max(rounds)} rounds, {judged} judged ratios "
          f"of single#2 to single; {excluding_one} intervals exclude 1")
    print(f"req/s CV per cell: median {statistics.median(cvs):.1%}, "
          f"{min(cvs):.1%} to {max(cvs):.1%}")
    for (rule, t, v), n in sorted(tally.items()):
        print(f"  {rule:15} threshold {t:<5} {v:12} {n}")
    for name, widths in half_widths.items():
        print(f"  {name:18} half-width median {statistics.median(widths):.1%}, "
              f"{min(widths):.1%} to {max(widths):.1%}")
    for (name, transport, body, v), n in sorted(split.items()):
        print(f"  split {transport:3} {body:>8} {name:18} {v:12} {n}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("aa-20.json")))
