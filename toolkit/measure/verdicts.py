"""Rows judged against their baseline: paired ratios, intervals, verdicts, spread, memory.

Pure: rows with their ``rounds`` in, the same rows with ``ratios``, ``verdicts``, ``cv``,
``memory`` and ``warnings`` filled. The statistics are in toolkit/measure/stats.py.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from typing import Any

from toolkit.measure.rows import FIGURES, ResultRow
from toolkit.measure.stats import (
    Interval,
    coefficient_of_variation,
    grouped_theil_sen,
    median_interval,
    paired_ratios,
    verdict,
)

# The figures a comparison judges (contract: ROW.ratios), each with its direction.
JUDGED = ("req_per_s", "latency_ms_p99", "cpu_s_per_request")
SPREAD = ("req_per_s", "mbytes_per_s", "latency_ms_p99", "cpu_s_per_request")
NOISY_CV = 0.10  # pyperf warns when the standard deviation is >= 10% of the mean
# Default noise threshold, from A/A comparisons on the 2-core development machine (README,
# "Noise"; 16 runs of the default 12-cell comparison, 4 workers per cell, one round length
# per transport and body size): no A/A claim at 5%, 7.5% or 10%; A/A `same` in 38, 70 and
# 97 of 192 ratios. At 10% an A/A pair is `same` about half the time in 170 s (req/s
# intervals +-6%, CPU +-4.4%, p99 +-13.5% at the median), otherwise `inconclusive`.
NOISE_THRESHOLD = 0.10
# Memory "grows" when the whole interval of its slope is above this many bytes per 1,000
# requests (64 bytes a request; the review's leak was 280 KB per 1,000). Measured here
# (idle samples): --threads servers (1 MiB, h2c, 20,000 requests) single 181 KiB/1k
# [138-204], writev 9 KiB/1k [8.5-10]; the default comparison's servers 2-13 KiB/1k on
# h2c and 23-29 KiB/1k on h2 (new TLS connections every round: the session cache).
GROWTH_BYTES_PER_KREQUEST = 64 << 10
_MIN_IDLE_SAMPLES = 10
MIN_TRAFFIC_POINTS = 6  # distinct request counts (rounds) a memory verdict needs
# The first fifth of the traffic is warm-up, as pyperf and criterion discard theirs: the
# allocator's arenas, TLS contexts and first-touched pages arrive there (measured: +232
# KiB in the first 20 requests of a 1 MiB writev server, then +24 KiB over the next 600),
# and a slope through them calls a short run "grows" that a long one shows flat.
WARMUP_FRACTION = 0.2


def baseline_row(rows: Sequence[ResultRow], row: ResultRow, baseline: str) -> ResultRow | None:
    for other in rows:
        if (other.label, other.transport, other.body_bytes) == (
                baseline, row.transport, row.body_bytes):
            return other
    return None


def _by_round(row: ResultRow, name: str) -> dict[int, float | None]:
    return {r["round"]: r.get(name) for r in row.rounds}


def ratio_interval(row: ResultRow, base: ResultRow, name: str) -> Interval | None:
    """The paired ratio row/base of figure ``name`` over the rounds both ran."""
    mine, theirs = _by_round(row, name), _by_round(base, name)
    common = sorted(set(mine) & set(theirs))
    return median_interval(paired_ratios([mine[r] for r in common],
                                         [theirs[r] for r in common]))


def judge(rows: Sequence[ResultRow], baseline: str, threshold: float = NOISE_THRESHOLD
          ) -> None:
    """Fill each row's ratios and verdicts against the baseline row of its transport and
    body size (the baseline's own stay None), its spread and its warnings."""
    for row in rows:
        row.cv = {name: coefficient_of_variation([r.get(name) for r in row.rounds])
                  for name in SPREAD}
        own = {name: median_interval([r[name] for r in row.rounds
                                      if r.get(name) is not None]) for name in JUDGED}
        row.intervals = {name: i.to_dict() if i else None for name, i in own.items()}
        row.warnings = spread_warnings(row)
        base = baseline_row(rows, row, baseline)
        if base is None or base is row:
            row.ratios = row.verdicts = None
            continue
        ratios: dict[str, dict[str, float]] = {}
        verdicts: dict[str, str] = {}
        for name in JUDGED:
            interval = ratio_interval(row, base, name)
            if interval is not None:
                ratios[name] = interval.to_dict()
            verdicts[name] = verdict(interval, threshold=threshold,
                                     higher_is_better=FIGURES[name].better == "higher")
        row.ratios, row.verdicts = ratios, verdicts


def spread_warnings(row: ResultRow) -> list[str]:
    """One line per noisy figure, naming what to suspect and the flag that helps."""
    cv = row.cv.get("req_per_s")
    if cv is None or cv < NOISY_CV:
        return []
    lengths = [r["requests"] / r["req_per_s"] for r in row.rounds
               if r.get("requests") and r.get("req_per_s")]
    # Measured here (h2load, 16 KiB h2c, 12-60 rounds each): req/s CV 20% at 0.03 s a
    # round, 12% at 0.06 s, 13-17% at 0.23 s, 14.5% at 1 s. Only the shortest rounds are
    # too short to average the noise; past that, longer rounds do not help, more do.
    short = bool(lengths) and statistics.median(lengths) < 0.05
    cause = ("rounds too short to average the noise (more --requests per round)" if short
             else "a busy machine (stop other work), or more rounds (--max-seconds)")
    return [f"{row.label} {row.transport}: req/s varies by {cv:.0%} between rounds; "
            f"suspect {cause}"]


def rounds_needed(rows: Sequence[ResultRow], target_half_width: float) -> bool:
    """True while some judged ratio's interval is wider than +-target (or not yet 95%),
    or still straddles the noise threshold: more rounds can still decide it."""
    for row in rows:
        if row.ratios is None:
            continue
        for name in JUDGED:
            r = row.ratios.get(name)
            if r is None:
                continue
            interval = Interval(r["median"], r["ci_low"], r["ci_high"], r["confidence"],
                                int(r["n"]))
            if interval.confidence < 0.95 or interval.half_width > target_half_width:
                return True
            if (row.verdicts or {}).get(name) == "inconclusive":
                return True
    return False


def _fit_samples(samples: list[list[Any]]) -> tuple[list[list[Any]], bool]:
    """One worker's samples the slope is taken over, and whether they are the idle ones."""
    served = max(s[3] for s in samples)
    warm = [s for s in samples if s[3] >= WARMUP_FRACTION * served]
    # The slope is taken over the samples where the server was idle (no response since the
    # previous sample): between rounds, what it keeps; during a round RSS also holds the
    # transient buffers of the responses in flight, which is noise for this question.
    idle = [s for prev, s in itertools.pairwise(warm) if s[3] == prev[3]]
    return (idle, True) if len(idle) >= _MIN_IDLE_SAMPLES else (warm, False)


def memory_summary(series: dict[str, Any] | Sequence[dict[str, Any] | None] | None
                   ) -> dict[str, Any] | None:
    """Slopes of RSS and live heap against requests served (bytes per 1,000 requests), with
    their intervals, a verdict, and the series itself as [s, rss_bytes, heap_bytes].

    ``series``: one server's, or one per worker process of a cell: each worker has its own
    baseline, so the slope is the one they share (pairs within a worker only: a grouped
    Theil-Sen), each worker's warm-up skipped; ``series`` shows the first worker's."""
    listed = [series] if isinstance(series, dict) else list(series or [])
    listed = [s for s in listed if s and s.get("samples")]
    workers = [s["samples"] for s in listed]
    if not workers:
        return None
    fits = [_fit_samples(samples) for samples in workers]
    rss = grouped_theil_sen([([s[3] / 1000 for s in fit], [s[1] for s in fit])
                             for fit, _ in fits])
    heap = None
    if all(s[2] is not None for fit, _ in fits for s in fit):
        heap = grouped_theil_sen([([s[3] / 1000 for s in fit], [s[2] for s in fit])
                                  for fit, _ in fits])
    slopes = [s for s in (rss, heap) if s is not None]
    # Request counts in the workers a slope can use (3 or more each).
    points = sum(n for n in (len({s[3] for s in fit}) for fit, _ in fits) if n >= 3)
    reason = None
    if points < MIN_TRAFFIC_POINTS or not slopes:
        # A slope needs 3 request counts within one worker: a few rounds spread over
        # several workers give none.
        reason = (f"too little traffic to tell growth from a step: {points} request counts "
                  f"after warm-up over {len(workers)} worker(s), {MIN_TRAFFIC_POINTS} and 3 "
                  "per worker needed (more rounds, --requests, or fewer --workers)")
    # Either kind of growth counts: RSS alone misses a heap that grows into freed pages,
    # the heap alone misses arenas that never give memory back (the review saw both).
    grows = any(s.ci_low > GROWTH_BYTES_PER_KREQUEST for s in slopes)
    first = workers[0]
    all_idle = all(idle for _, idle in fits)
    out = {
        "rss_slope_bytes_per_krequest": rss.to_dict() if rss else None,
        "heap_slope_bytes_per_krequest": heap.to_dict() if heap else None,
        "verdict": None if reason else ("grows" if grows else "flat"),
        "verdict_reason": reason,
        "series": [[s[0], s[1], s[2]] for s in first],
        "responses": [s[3] for s in first],
        "interval_s": listed[0].get("interval_s"),
        "slope_from": ("idle samples" if all_idle else "all samples") + " after warm-up",
        "warmup_responses": min(min(s[3] for s in fit) for fit, _ in fits if fit),
        "workers": len(workers),
    }
    if len(workers) > 1:
        out["worker_series"] = [{"series": [[s[0], s[1], s[2]] for s in w],
                                 "responses": [s[3] for s in w]} for w in workers]
    return out
