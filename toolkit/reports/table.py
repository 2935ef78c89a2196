"""The rows as a table: order, baseline and cell text, shared by every renderer.

Headings, units and formats come from the row's field declarations
(toolkit/measure/fields.py); nothing is measured here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from toolkit.measure.fields import Figure
from toolkit.measure.rows import FIGURES, ResultRow

SPEED_FIGURES = [f for f in FIGURES.values() if f.group == "speed"]
SHAPE_FIGURES = [f for f in FIGURES.values() if f.group == "shape"]
TABLE_FIGURES = SPEED_FIGURES + SHAPE_FIGURES


def row_name(row: ResultRow) -> str:
    return row.label or row.strategy or row.server


def effective_baseline(rows: Sequence[ResultRow], baseline: str) -> str:
    """The baseline label, or the first row's when the baseline was not measured."""
    if rows and baseline not in {r.label for r in rows}:
        return row_name(rows[0])
    return baseline


def baseline_for(rows: Sequence[ResultRow], row: ResultRow, baseline: str) -> ResultRow | None:
    for other in rows:
        if (other.label, other.transport, other.body_bytes) == (
                baseline, row.transport, row.body_bytes):
            return other
    return None


def ratio(value: Any, base: Any) -> float | None:
    if value is None or base is None or isinstance(value, bool) or not base:
        return None
    return float(value) / float(base)


def formatted_rows(rows: Sequence[ResultRow], baseline: str, figures: Sequence[Figure],
                   ) -> Iterator[tuple[ResultRow, list[tuple[str, float | None]]]]:
    """Rows in reading order (by transport and body, the baseline first), each with its
    cells as (text, ratio to the baseline's cell or None)."""
    baseline = effective_baseline(rows, baseline)
    ordered = sorted(rows, key=lambda r: (r.transport, r.body_bytes, r.label != baseline))
    for row in ordered:
        base = baseline_for(rows, row, baseline)
        cells = []
        for fig in figures:
            value = getattr(row, fig.name)
            r = ratio(value, getattr(base, fig.name)) if fig.ratio and base is not None else None
            cells.append((fig.format(value), r))
        yield row, cells
