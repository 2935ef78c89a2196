"""The comparison as rich tables on the terminal: speed and memory, then write shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from toolkit.measure.fields import Figure
from toolkit.measure.rows import ResultRow
from toolkit.reports.table import (
    SHAPE_FIGURES,
    SPEED_FIGURES,
    effective_baseline,
    formatted_rows,
    row_name,
)
from toolkit.sizes import format_size

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from toolkit.runner.result import CompareResult


def comparison_table(rows: Sequence[ResultRow], *, baseline: str = "single",
                     title: str | None = None,
                     figures: Sequence[Figure] = SPEED_FIGURES,
                     with_failures: bool = True) -> Table:
    """One line per cell; ratio columns (×) against the baseline's cell."""
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    table.add_column("transport")
    table.add_column("body", justify="right")
    table.add_column("strategy")
    for fig in figures:
        table.add_column(fig.heading, justify="right")
        if fig.ratio:
            table.add_column("×", justify="right", style="cyan")
    if with_failures:
        table.add_column("fail", justify="right")
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
                cells.append("—" if r is None else f"{r:.2f}")
        if with_failures:
            cells.append(("—" if row.failures is None else str(row.failures))
                         + (" +error" if row.error else ""))
        table.add_row(*cells, style="red" if row.error or row.failures else None)
    return table


def render_comparison(result: CompareResult, console: Console, *, baseline: str = "single"
                      ) -> None:
    from rich.text import Text

    baseline = effective_baseline(result.rows, baseline)
    meta = result.meta
    title = (f"writeshape compare — driver {meta.get('driver')}, "
             f"{meta.get('connections')}×{meta.get('streams')} streams, "
             f"repeat {meta.get('repeat')}, kernel {meta.get('kernel')}")
    console.print(comparison_table(result.rows, baseline=baseline, title=title + " — speed "
                                   "and memory (untraced)"))
    console.print(comparison_table(result.rows, baseline=baseline, figures=SHAPE_FIGURES,
                                   with_failures=False,
                                   title="write shape (writes: separate run under strace)"))
    for row in result.rows:
        if row.error:
            # One line however wide the terminal (grep-able), the message never read as markup.
            console.print(Text.assemble(("error", "red"), f" {row_name(row)} {row.transport} "
                                        f"{format_size(row.body_bytes)}: {row.error}"),
                          soft_wrap=True)
    console.print(f"× = ratio to `{baseline}` in the same transport and body size. "
                  "Timing runs untraced; writes/resp from a separate run under strace; "
                  "— = not measured.")
    for r in result.rows:
        if r.self_count_matches_strace is False:
            console.print(f"[red]self-count mismatch[/red] {row_name(r)} {r.transport} "
                          f"{format_size(r.body_bytes)}: server {r.server_write_syscalls} "
                          f"vs strace {r.strace_write_syscalls}")
