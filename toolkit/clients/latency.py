"""Latency recording in an HDR histogram: exact-enough percentiles at bounded memory.

Values are recorded in integer microseconds (what wrk and h2load do) and reported in
milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

# 1 us .. 1 hour at 3 significant figures: ~0.1% error, about 200 KiB per histogram.
_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_SIGNIFICANT_FIGURES = 3


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles in milliseconds; every figure is None when nothing was recorded."""

    count: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None


class LatencyHistogram:
    """Records durations (seconds or microseconds) and answers percentiles in ms."""

    def __init__(self) -> None:
        self._hist = HdrHistogram(_LOWEST_US, _HIGHEST_US, _SIGNIFICANT_FIGURES)
        self._sum_us = 0  # exact mean without walking the buckets

    def record_us(self, micros: int) -> None:
        # Clamp into the trackable range instead of raising: a 0 us loopback reply
        # is a real sample, and an over-range one is still the worst seen.
        v = min(max(int(micros), _LOWEST_US), _HIGHEST_US)
        self._hist.record_value(v)
        self._sum_us += v

    def record_s(self, seconds: float) -> None:
        self.record_us(round(seconds * 1_000_000))

    @property
    def count(self) -> int:
        return int(self._hist.get_total_count())

    def percentile_ms(self, percentile: float) -> float | None:
        if self.count == 0:
            return None
        return self._hist.get_value_at_percentile(percentile) / 1000.0

    def max_ms(self) -> float | None:
        if self.count == 0:
            return None
        return self._hist.get_max_value() / 1000.0

    def mean_ms(self) -> float | None:
        if self.count == 0:
            return None
        return self._sum_us / self.count / 1000.0

    def summary(self) -> LatencySummary:
        if self.count == 0:
            return LatencySummary(0, None, None, None, None, None)
        # One pass over the buckets for all percentiles (each lookup is a full walk).
        values = self._hist.get_percentile_to_value_dict([50.0, 90.0, 99.0])
        return LatencySummary(
            count=self.count,
            p50_ms=values[50.0] / 1000.0,
            p90_ms=values[90.0] / 1000.0,
            p99_ms=values[99.0] / 1000.0,
            max_ms=self.max_ms(),
            mean_ms=self.mean_ms(),
        )

