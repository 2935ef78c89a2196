"""The comparison as rich tables on the terminal: speed and memory, then write shape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from toolkit.measure.fields import Figure
from toolkit.measure.rows import ResultRow
from toolkit.measure.verdicts import JUDGED
from toolkit.reports.table import (
    MEMORY_FIGURES,
    SHAPE_FIGURES,
    SPEED_FIGURES,
    cv_text,
    effective_baseline,
    formatted_rows,
    memory_text,
    row_name,
)
from toolkit.sizes import format_size

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from toolkit.runner.result import CompareResult


def comparison_table(rows: Sequence[ResultRow], *, baseline: str = "single",
                     title: str | None = None, figures: Sequence[Figure] = SPEED_FIGURES,
                     extra: Sequence[tuple[str, Callable[[ResultRow], str]]] = ()) -> Table:
    """One line per cell; beside each ratio figure its ratio to the baseline's cell (for
    the judged figures: the paired ratio, its interval and the verdict). ``extra``: more
    columns, each a heading and the text of a row."""
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for heading in ("transport", "body", "label"):
        table.add_column(heading, justify="right" if heading == "body" else "left")
    for fig in figures:
        table.add_column(fig.heading, justify="right")
        if fig.ratio:
            table.add_column("× [95% CI] verdict" if fig.name in JUDGED else "×",
                             justify="right", style="cyan", no_wrap=True)
    for heading, _ in extra:
        table.add_column(heading, justify="right")
    last_group = None
    for row, formatted in formatted_rows(rows, baseline, figures):
        group = (row.transport, row.body_bytes)
        if last_group is not None and group != last_group:
            table.add_section()
        last_group = group
        cells = [row.transport, format_size(row.body_bytes), row_name(row)]
        for (text, r), fig in zip(formatted, figures, strict=True):
            cells.append(text)
            if fig.ratio:
                cells.append("—" if r is None else r)
        cells += [text_of(row) for _, text_of in extra]
        table.add_row(*cells, style="red" if row.error or row.failures else None)
    return table


def _failures(row: ResultRow) -> str:
    return ("—" if row.failures is None else str(row.failures)) + (" +error" if row.error else "")


def render_comparison(result: CompareResult, console: Console, *, baseline: str = "single"
                      ) -> None:
    from rich.text import Text

    baseline = effective_baseline(result.rows, baseline)
    meta = result.meta
    command = "profile" if " profile " in f" {meta.get('command')} " else "compare"
    title = (f"writeshape {command} — driver {meta.get('driver')}, "
             f"{meta.get('connections')}×{meta.get('streams')} streams, "
             f"{meta.get('rounds', '?')} rounds ({meta.get('repeat')}), "
             f"kernel {meta.get('kernel')}")
    console.print(comparison_table(
        result.rows, baseline=baseline, title=title + " — speed (untraced)",
        extra=[("rounds", lambda r: str(len(r.rounds))), ("CV", cv_text),
               ("fail", _failures)]))
    console.print(comparison_table(
        result.rows, baseline=baseline, figures=MEMORY_FIGURES,
        title="memory (untraced; slope of RSS per 1,000 requests over the rounds)",
        extra=[("RSS slope", memory_text)]))
    console.print(comparison_table(result.rows, baseline=baseline, figures=SHAPE_FIGURES,
                                   title="write shape (writes: separate run under strace)"))
    for row in result.rows:
        if row.error:
            # One line however wide the terminal (grep-able), the message never read as markup.
            console.print(Text.assemble(("error", "red"), f" {row_name(row)} {row.transport} "
                                        f"{format_size(row.body_bytes)}: {row.error}"),
                          soft_wrap=True)
    threshold = meta.get("noise_threshold")
    console.print(f"× = ratio to `{baseline}` in the same transport and body size: for "
                  "req/s, p99 and CPU the median of the per-round paired ratios, its 95% "
                  f"interval and a verdict ('same': the interval is within ±{threshold:.0%}; "
                  "'inconclusive': too wide to tell); beside the baseline, the 95% interval "
                  "of its own median. CV: spread of req/s over the rounds. "
                  "Timing runs untraced; writes/resp from a separate run under strace; "
                  "— = not measured." if isinstance(threshold, float) else
                  f"× = ratio to `{baseline}` in the same transport and body size.")
    for row in result.rows:
        for warning in row.warnings:
            console.print(Text.assemble(("warning", "yellow"), f" {warning}"), soft_wrap=True)
    for r in result.rows:
        if r.self_count_matches_strace is False:
            console.print(f"[red]self-count mismatch[/red] {row_name(r)} {r.transport} "
                          f"{format_size(r.body_bytes)}: server {r.server_write_syscalls} "
                          f"vs strace {r.strace_write_syscalls}")
