"""Statistics of interleaved rounds: paired ratios, their intervals, verdicts; memory slopes.

Pure, standard library only. Round *i* of every cell of a comparison ran side by side
(rounds visit every cell once, in rotated order), so a cell and its baseline are compared
round by round: the ratio of round *i* cancels what the machine did during round *i*.

**Interval of a median: the exact order-statistic (binomial) interval.** For *n* paired
ratios, the interval between the *k*-th smallest and the *k*-th largest holds the true
median with probability ``1 - 2 * P(Binomial(n, 1/2) < k)``; *k* is the largest that keeps
this at 95% or more. It assumes nothing about the shape of the noise (latency tails and
busy-machine spikes are skewed), it is deterministic (no resampling seed) and its coverage
is exact. A percentile bootstrap of the median, tried on simulated rounds (normal,
Student-t with 3 degrees of freedom, and skewed noise, n = 6..16), covered only 90-95% of
the time at these round counts; the order-statistic interval covered 94-99% for about 20%
more width. With fewer than 6 rounds no interval reaches 95%: the verdict is then
``inconclusive`` (the interval given is the full range, and ``confidence`` says how much
it holds).

**Verdicts, as criterion.rs does them, with a noise threshold** ``t``: an interval that
lies inside ``[1/(1+t), 1+t]`` is ``same``; one that lies wholly beyond the threshold is
``better`` or ``worse`` by the figure's direction (criterion's ``compare_to_threshold``:
both ends past the threshold: the difference is real, and big enough to matter); anything
else is ``inconclusive``: the interval straddles the threshold, too wide to call the ratio
the same and not showing a difference that matters. Measured on real A/A comparisons here
(README, "Noise"): with a claim allowed once the interval merely excluded 1 around a
median beyond the threshold, one run in a few claimed a difference between a strategy and
itself (a 0.92x [0.88-0.997] "better" CPU per request); with criterion's rule none did.

**Memory slopes: Theil-Sen** over the samples (requests served, RSS), with Sen's
distribution-free interval (from Kendall's tau): robust to the steps an allocator makes,
and what the review asks, bytes per 1,000 requests.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["better", "worse", "same", "inconclusive"]
CONFIDENCE = 0.95
MIN_ROUNDS_FOR_95 = 6  # the smallest n whose order-statistic interval reaches 95%
# Sen's interval uses the normal quantile of Kendall's S: 1.96 for 95%.
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    median: float
    ci_low: float
    ci_high: float
    confidence: float  # what the interval holds (>= 0.95 once there are >= 6 values)
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "confidence": round(self.confidence, 4), "n": self.n}

    @property
    def half_width(self) -> float:
        """Half the interval, relative to the median (0.05: +-5%)."""
        if self.median == 0:
            return math.inf
        return (self.ci_high - self.ci_low) / 2 / abs(self.median)


def _binom_cdf_half(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


def order_statistic_rank(n: int, confidence: float = CONFIDENCE) -> tuple[int, float]:
    """The largest k (1-based) such that [x_(k), x_(n-k+1)] covers the median with at least
    ``confidence``, and the coverage it has; k = 1 (the range) when none reaches it."""
    best_k, best_cov = 1, 1 - 2 * _binom_cdf_half(0, n)
    for k in range(2, n // 2 + 1):
        cov = 1 - 2 * _binom_cdf_half(k - 1, n)
        if cov < confidence:
            break
        best_k, best_cov = k, cov
    return best_k, best_cov


def median_interval(values: Sequence[float]) -> Interval | None:
    """The median and its exact order-statistic 95% interval; None without values."""
    xs = sorted(v for v in values if v is not None and math.isfinite(v))
    n = len(xs)
    if n == 0:
        return None
    k, coverage = order_statistic_rank(n)
    return Interval(statistics.median(xs), xs[k - 1], xs[n - k], coverage if n > 1 else 0.0, n)


def paired_ratios(values: Sequence[float | None], baseline: Sequence[float | None]
                  ) -> list[float]:
    """values[i] / baseline[i] for the rounds where both were measured and the base is not 0."""
    return [v / b for v, b in zip(values, baseline, strict=False)
            if v is not None and b is not None and b != 0]


def verdict(interval: Interval | None, *, higher_is_better: bool, threshold: float) -> Verdict:
    """``better``/``worse``/``same``/``inconclusive`` for a ratio's interval (see module doc)."""
    if interval is None or interval.n < MIN_ROUNDS_FOR_95 or interval.confidence < CONFIDENCE:
        return "inconclusive"
    lo, hi = interval.ci_low, interval.ci_high
    if 1 / (1 + threshold) <= lo and hi <= 1 + threshold:
        return "same"
    if lo > 1 + threshold:
        return "better" if higher_is_better else "worse"
    if hi < 1 / (1 + threshold):
        return "worse" if higher_is_better else "better"
    return "inconclusive"


def coefficient_of_variation(values: Sequence[float | None]) -> float | None:
    """Standard deviation over mean of a cell's rounds (None with fewer than 2)."""
    xs = [v for v in values if v is not None]
    if len(xs) < 2:
        return None
    mean = statistics.fmean(xs)
    return statistics.stdev(xs) / abs(mean) if mean else None


def theil_sen(xs: Sequence[float], ys: Sequence[float], *, max_points: int = 400
              ) -> Interval | None:
    """Median of pairwise slopes dy/dx with Sen's 95% interval; None with fewer than 3
    points of distinct x. Long series are thinned evenly to ``max_points`` (the pairs
    grow as n^2)."""
    return grouped_theil_sen([(xs, ys)], max_points=max_points)


def grouped_theil_sen(groups: Sequence[tuple[Sequence[float], Sequence[float]]], *,
                      max_points: int = 400) -> Interval | None:
    """One slope shared by several series with their own offsets (a cell's worker
    processes: each has its own baseline RSS): the seasonal Kendall slope of Hirsch,
    Slack and Smith (1982), the median of the pairwise slopes taken within each series
    only, with Sen's interval from the summed variances of each series' Kendall S. One
    series is plain Theil-Sen. None with fewer than 3 distinct x in every series."""
    slopes: list[float] = []
    var_s = 0.0
    n_total = 0
    per_group = max(3, max_points // max(1, len(groups)))
    for xs, ys in groups:
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None]
        if len(pts) > per_group:
            step = len(pts) / per_group
            pts = [pts[int(i * step)] for i in range(per_group)]
        if len({x for x, _ in pts}) < 3:
            continue
        n = len(pts)
        slopes += [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(pts)
                   for x2, y2 in pts[i + 1:] if x2 != x1]
        var_s += n * (n - 1) * (2 * n + 5) / 18  # Kendall's S, no ties assumed
        n_total += n
    if not slopes:
        return None
    slopes.sort()
    m = len(slopes)
    # Sen (1968): the interval's ranks from the variance of Kendall's S.
    c = _Z95 * math.sqrt(var_s)
    lo_rank = max(0, math.floor((m - c) / 2))
    hi_rank = min(m - 1, math.ceil((m + c) / 2))
    return Interval(statistics.median(slopes), slopes[lo_rank], slopes[hi_rank],
                    CONFIDENCE, n_total)
