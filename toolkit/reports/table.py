"""The rows as a table: order, baseline and cell text, shared by every renderer.

Headings, units and formats come from the row's field declarations
(toolkit/measure/fields.py); nothing is measured here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from toolkit.measure.fields import Figure, human_bytes
from toolkit.measure.rows import FIGURES, ResultRow
from toolkit.measure.verdicts import baseline_row

SPEED_FIGURES = [f for f in FIGURES.values() if f.group == "speed"]
MEMORY_FIGURES = [f for f in FIGURES.values() if f.group == "memory"]
SHAPE_FIGURES = [f for f in FIGURES.values() if f.group == "shape"]
TABLE_FIGURES = SPEED_FIGURES + MEMORY_FIGURES + SHAPE_FIGURES


def row_name(row: ResultRow) -> str:
    return row.label or row.strategy or row.server


def effective_baseline(rows: Sequence[ResultRow], baseline: str) -> str:
    """The baseline label, or the first row's when the baseline was not measured."""
    if rows and baseline not in {r.label for r in rows}:
        return row_name(rows[0])
    return baseline


def ratio(value: Any, base: Any) -> float | None:
    if value is None or base is None or isinstance(value, bool) or not base:
        return None
    return float(value) / float(base)


def judged_text(row: ResultRow, name: str) -> str | None:
    """'0.93× [0.85–1.01] same' for a judged figure of a non-baseline row, else None."""
    r = (row.ratios or {}).get(name)
    if r is None:
        return None
    verdict = (row.verdicts or {}).get(name, "")
    return f"{r['median']:.2f}× [{r['ci_low']:.2f}–{r['ci_high']:.2f}] {verdict}"


def ratio_text(row: ResultRow, base: ResultRow | None, fig: Figure) -> str | None:
    """The ratio beside a cell: paired, with its interval and verdict, for the judged
    figures; the ratio of the medians for the other ratio figures; None for the baseline."""
    if base is row and fig.ratio:  # the baseline: the 95% interval of its own median
        own = (row.intervals or {}).get(fig.name)
        return None if not own else f"[{fig.format(own['ci_low'])}–{fig.format(own['ci_high'])}]"
    if base is None or not fig.ratio:
        return None
    judged = judged_text(row, fig.name)
    if judged is not None:
        return judged
    r = ratio(getattr(row, fig.name), getattr(base, fig.name))
    return None if r is None else f"{r:.2f}×"


def memory_text(row: ResultRow) -> str:
    """'+12.0 KiB/1k req flat' from the memory slope over the rounds, '—' without."""
    mem = row.memory or {}
    slope = mem.get("rss_slope_bytes_per_krequest")
    if not slope:
        return "—"
    sign = "+" if slope["median"] >= 0 else ""
    # No verdict is said as such (the JSON's verdict_reason has the whole sentence).
    verdict = mem.get("verdict") or ("no verdict: few rounds" if mem.get("verdict_reason")
                                     else "")
    return f"{sign}{human_bytes(slope['median'])}/1k {verdict}".strip()


def cv_text(row: ResultRow) -> str:
    cv = row.cv.get("req_per_s") if row.cv else None
    return "—" if cv is None else f"{cv:.0%}"


def formatted_rows(rows: Sequence[ResultRow], baseline: str, figures: Sequence[Figure],
                   ) -> Iterator[tuple[ResultRow, list[tuple[str, str | None]]]]:
    """Rows in reading order (by transport and body, the baseline first), each with its
    cells as (text, ratio text beside it or None)."""
    baseline = effective_baseline(rows, baseline)
    ordered = sorted(rows, key=lambda r: (r.transport, r.body_bytes, r.label != baseline))
    for row in ordered:
        base = baseline_row(rows, row, baseline)
        yield row, [(fig.format(getattr(row, fig.name)), ratio_text(row, base, fig))
                    for fig in figures]
