"""The statistics of rounds, on synthetic rounds with a known effect and with none.

False-positive and detection rates are measured over many draws with a fixed seed; the
rates found are stated beside each assertion.
"""

from __future__ import annotations

import math
import random

import pytest

from toolkit.measure.rows import ResultRow
from toolkit.measure.stats import (
    MIN_ROUNDS_FOR_95,
    coefficient_of_variation,
    grouped_theil_sen,
    median_interval,
    order_statistic_rank,
    paired_ratios,
    theil_sen,
    verdict,
)
from toolkit.measure.verdicts import judge, memory_summary, rounds_needed

THRESHOLD = 0.05


def test_order_statistic_ranks_reach_95_percent_from_six_values() -> None:
    assert order_statistic_rank(5)[1] < 0.95  # 1 - 2/32 = 0.9375: no 95% interval yet
    assert order_statistic_rank(6) == (1, pytest.approx(1 - 2 / 64))
    assert order_statistic_rank(9)[0] == 2
    for n in range(6, 60):
        k, coverage = order_statistic_rank(n)
        assert coverage >= 0.95
        # k is the largest such rank: one more would fall below 95%.
        assert 1 - 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n < 0.95


def test_the_interval_covers_the_true_median_at_least_95_percent_of_the_time() -> None:
    """Over 2,000 draws of 8 to 20 log-normal rounds (skewed, as req/s and latency are),
    the interval held the true median in 97.7% of draws (seed 7)."""
    rng = random.Random(7)
    hits = 0
    draws = 2000
    for _ in range(draws):
        n = rng.randint(8, 20)
        interval = median_interval([math.exp(rng.gauss(0, 0.15)) for _ in range(n)])
        assert interval is not None
        hits += interval.ci_low <= 1.0 <= interval.ci_high
    assert hits / draws >= 0.95


def _rounds(rng: random.Random, n: int, effect: float, noise: float, drift: float
            ) -> tuple[list[float], list[float]]:
    """n rounds of a baseline and a cell: a common per-round drift (the machine), each
    cell its own noise, the cell ``effect`` times the baseline."""
    base, cell = [], []
    for _ in range(n):
        machine = math.exp(rng.gauss(0, drift))
        base.append(1000 * machine * math.exp(rng.gauss(0, noise)))
        cell.append(1000 * effect * machine * math.exp(rng.gauss(0, noise)))
    return cell, base


def test_no_effect_is_almost_never_called_a_difference() -> None:
    """A/A on synthetic rounds: 3,000 comparisons of 6 to 30 rounds, 5% per-round noise
    and a 20% machine drift that pairing cancels. Measured (seed 11): none called better
    or worse with criterion's rule (the whole interval beyond the threshold); 11 (0.4%)
    when a claim needed the interval to exclude 1 around a median beyond it, 61 (2%) when
    it needed only the interval to exclude 1. Then as noisy as this machine's rounds
    (13% per cell and round, 50 rounds, seed 12): 1 claim in 3,000, and 'same' in only
    31: noise that wide leaves A/A 'inconclusive', never a difference."""
    rng = random.Random(11)
    claims = 0
    draws = 3000
    for _ in range(draws):
        cell, base = _rounds(rng, rng.randint(6, 30), 1.0, 0.05, 0.20)
        v = verdict(median_interval(paired_ratios(cell, base)), higher_is_better=True,
                    threshold=THRESHOLD)
        claims += v in ("better", "worse")
    assert claims / draws <= 0.002, claims
    rng = random.Random(12)
    claims = 0
    for _ in range(draws):
        cell, base = _rounds(rng, 50, 1.0, 0.13, 0.20)
        v = verdict(median_interval(paired_ratios(cell, base)), higher_is_better=True,
                    threshold=THRESHOLD)
        claims += v in ("better", "worse")
    assert claims / draws <= 0.002, claims


def test_a_real_effect_is_found_and_pointed_the_right_way() -> None:
    """A 30% slowdown under the same noise, 12 rounds: called 'worse' in 100% of 1,000
    draws (seed 5); a 30% speed-up 'better'; a 2% change 'same' or 'inconclusive'."""
    rng = random.Random(5)
    worse = better = small_claims = 0
    for _ in range(1000):
        cell, base = _rounds(rng, 12, 0.7, 0.05, 0.2)
        worse += verdict(median_interval(paired_ratios(cell, base)), higher_is_better=True,
                         threshold=THRESHOLD) == "worse"
        cell, base = _rounds(rng, 12, 1.3, 0.05, 0.2)
        better += verdict(median_interval(paired_ratios(cell, base)), higher_is_better=True,
                          threshold=THRESHOLD) == "better"
        cell, base = _rounds(rng, 12, 1.02, 0.02, 0.2)
        small_claims += verdict(median_interval(paired_ratios(cell, base)),
                                higher_is_better=True, threshold=THRESHOLD) in (
                                    "better", "worse")
    assert worse == 1000 and better == 1000
    assert small_claims <= 20  # measured 0: a 2% effect stays inside the 5% threshold


def test_lower_is_better_flips_the_verdict() -> None:
    worse_latency = median_interval([1.5, 1.6, 1.4, 1.55, 1.45, 1.52, 1.48])
    assert verdict(worse_latency, higher_is_better=False, threshold=THRESHOLD) == "worse"
    assert verdict(worse_latency, higher_is_better=True, threshold=THRESHOLD) == "better"


def test_too_few_rounds_or_a_straddling_interval_is_inconclusive() -> None:
    five = median_interval([0.5, 0.5, 0.5, 0.5, 0.5])
    assert five is not None and five.n == 5 and five.n < MIN_ROUNDS_FOR_95
    assert verdict(five, higher_is_better=True, threshold=THRESHOLD) == "inconclusive"
    wide = median_interval([0.8, 0.9, 1.0, 1.1, 1.2, 0.85, 1.15])
    assert verdict(wide, higher_is_better=True, threshold=THRESHOLD) == "inconclusive"
    tight = median_interval([0.99, 1.01, 1.0, 1.02, 0.98, 1.0])
    assert verdict(tight, higher_is_better=True, threshold=THRESHOLD) == "same"
    assert verdict(None, higher_is_better=True, threshold=THRESHOLD) == "inconclusive"


def test_paired_ratios_skip_rounds_missing_either_side() -> None:
    assert paired_ratios([2.0, None, 3.0, 4.0], [1.0, 1.0, 0.0, 2.0]) == [2.0, 2.0]


def test_coefficient_of_variation() -> None:
    assert coefficient_of_variation([10.0, 10.0, 10.0]) == 0.0
    assert coefficient_of_variation([9.0, 11.0]) == pytest.approx(math.sqrt(2) / 10)
    assert coefficient_of_variation([5.0]) is None


def test_theil_sen_finds_growth_and_flatness() -> None:
    """RSS growing 280 KB per 1,000 requests (the review's +28 MB per 100,000) under
    allocator steps, and RSS flat with the same steps."""
    rng = random.Random(3)
    xs = [i * 0.5 for i in range(200)]  # thousands of requests
    steps = [rng.choice([0, 0, 0, 4096, 8192]) for _ in xs]
    grows = theil_sen(xs, [50e6 + 280e3 * x + s for x, s in zip(xs, steps, strict=True)])
    assert grows is not None and grows.ci_low <= 280e3 <= grows.ci_high
    assert grows.ci_low > 200e3
    flat = theil_sen(xs, [50e6 + s for s in steps])
    assert flat is not None and flat.ci_low <= 0 <= flat.ci_high + 1
    assert theil_sen([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None


def _row(label: str, rps: list[float], p99: list[float] | None = None) -> ResultRow:
    p99 = p99 or [1.0] * len(rps)
    return ResultRow(strategy=label, transport="h2c", body_bytes=1 << 20, label=label,
                     rounds=[{"round": i, "req_per_s": r, "latency_ms_p99": p,
                              "cpu_s_per_request": 1e-3 / r, "requests": 3000}
                             for i, (r, p) in enumerate(zip(rps, p99, strict=True))])


def test_judge_pairs_each_row_with_its_baseline_by_round() -> None:
    base = _row("single", [1000, 800, 1200, 900, 1100, 1000, 950, 1050])
    slow = _row("split", [500, 400, 600, 450, 550, 500, 475, 525])
    same = _row("single#2", [1000, 810, 1190, 905, 1095, 1000, 955, 1040])
    rows = [base, slow, same]
    judge(rows, "single", THRESHOLD)
    assert base.ratios is None and base.verdicts is None
    assert slow.ratios is not None and slow.ratios["req_per_s"]["median"] == pytest.approx(0.5)
    assert slow.verdicts == {"req_per_s": "worse", "latency_ms_p99": "same",
                             "cpu_s_per_request": "worse"}
    assert same.verdicts is not None and same.verdicts["req_per_s"] == "same"
    # Unpaired, the 40% spread of the baseline would hide the halving; paired, it is exact.
    assert base.cv["req_per_s"] and base.cv["req_per_s"] > 0.1
    assert base.warnings and "varies by" in base.warnings[0]
    assert not rounds_needed([slow], 0.05)  # a tight interval: no more rounds needed


def test_memory_summary_from_a_server_series() -> None:
    samples = [[i * 0.25, 40_000_000 + 300 * i * 1000, 9_000_000, i * 1000] for i in range(40)]
    # Idle samples (no response since the previous one) take over once there are enough.
    samples = [s for s in samples for _ in range(2)]
    mem = memory_summary({"interval_s": 0.25, "samples": samples})
    assert mem is not None and mem["verdict"] == "grows"
    assert mem["rss_slope_bytes_per_krequest"]["median"] == pytest.approx(300_000)
    assert mem["series"][2] == [0.25, 40_300_000, 9_000_000]
    assert mem["slope_from"] == "idle samples after warm-up"
    flat = memory_summary({"samples": [[i, 40_000_000, 9_000_000, i * 1000]
                                       for i in range(40)]})
    assert flat is not None and flat["verdict"] == "flat"
    assert memory_summary(None) is None and memory_summary({"samples": []}) is None


def test_memory_warm_up_is_not_growth_and_too_little_traffic_is_no_verdict() -> None:
    # +2 MiB over the first 1,000 requests (arenas, first-touched pages), then a plateau.
    samples = [[i * 0.25, 40_000_000 + min(i, 1) * 2_000_000, None, i * 1000]
               for i in range(20)]
    mem = memory_summary({"samples": [s for s in samples for _ in range(2)]})
    assert mem is not None and mem["verdict"] == "flat", mem["rss_slope_bytes_per_krequest"]
    assert mem["warmup_responses"] == 4000 and mem["verdict_reason"] is None
    # Five rounds' worth of traffic: no verdict either way, and the reason says so.
    short = memory_summary({"samples": [[i, 40_000_000 + i * 10**6, None, i * 1000]
                                        for i in range(6)]})
    assert short is not None and short["verdict"] is None
    assert "too little traffic" in short["verdict_reason"]


def test_workers_share_one_slope_whatever_their_own_baselines() -> None:
    """Four worker processes of one cell, each with its own RSS baseline (10 MB apart):
    slopes within each worker (the seasonal Kendall slope) are the growth itself."""
    rng = random.Random(5)
    groups = []
    for w in range(4):
        xs = [i * 0.5 for i in range(30)]
        groups.append((xs, [40e6 + w * 10e6 + 280e3 * x + rng.choice([0, 4096, 8192])
                            for x in xs]))
    grows = grouped_theil_sen(groups)
    assert grows is not None and grows.ci_low <= 280e3 <= grows.ci_high
    assert grows.ci_high - grows.ci_low < 20e3 and grows.n == 120
    # Flat workers at different baselines stay flat.
    flat = grouped_theil_sen([(xs, [40e6 + w * 10e6] * len(xs))
                              for w, (xs, _) in enumerate(groups)])
    assert flat is not None and flat.median == 0 and flat.ci_low == 0 == flat.ci_high
    # A worker with fewer than 3 distinct x adds nothing; none with enough: no slope.
    assert grouped_theil_sen([([1.0, 1.0], [1.0, 2.0])]) is None


def test_memory_summary_of_several_workers() -> None:
    workers = []
    for w in range(3):
        samples = [[i * 0.25, 30_000_000 + w * 5_000_000 + 300 * i * 1000, 9_000_000 + w,
                    i * 1000] for i in range(20)]
        workers.append({"interval_s": 0.25, "samples": [s for s in samples for _ in range(2)]})
    mem = memory_summary(workers)
    assert mem is not None and mem["verdict"] == "grows" and mem["workers"] == 3
    assert mem["rss_slope_bytes_per_krequest"]["median"] == pytest.approx(300_000)
    assert mem["heap_slope_bytes_per_krequest"]["median"] == pytest.approx(0)
    # The series shown is the first worker's; every worker's is kept.
    assert mem["series"][0] == [0, 30_000_000, 9_000_000]
    assert [w["series"][0][1] for w in mem["worker_series"]] == [30_000_000, 35_000_000,
                                                                   40_000_000]
    # One worker's series alone: the same as a single server's summary.
    one = memory_summary([workers[0], None])
    assert one is not None and one["workers"] == 1 and "worker_series" not in one
    assert memory_summary([None]) is None
