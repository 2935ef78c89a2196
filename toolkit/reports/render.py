"""Reports over result rows: rich tables, JSON (written atomically), CSV, Markdown.

Nothing is measured here: rows come in, text goes out.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from toolkit.errors import UsageError
from toolkit.measure.rows import ResultRow
from toolkit.sizes import format_size

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from toolkit.runner.run import CompareResult

# (field, heading, format, ratio against the baseline?), in two tables that fit a terminal.
SPEED_COLUMNS: list[tuple[str, str, str, bool]] = [
    ("req_per_s", "req/s", "{:,.0f}", True),
    ("mbytes_per_s", "MB/s", "{:,.0f}", False),
    ("latency_ms_p50", "p50 ms", "{:.2f}", False),
    ("latency_ms_p99", "p99 ms", "{:.2f}", True),
    ("cpu_s_per_request", "CPU µs/req", "{:.0f}", True),
    ("rss_delta_bytes", "RSS Δ", "size", False),
    ("live_heap_delta_bytes", "heap Δ", "size", False),
    ("alloc_bytes_per_response", "alloc/resp", "size", True),
]
SHAPE_COLUMNS: list[tuple[str, str, str, bool]] = [
    ("write_syscalls_per_response", "writes/resp", "{:.1f}", True),
    ("bytes_per_write_syscall", "B/write", "{:,.0f}", False),
    ("tls_records_per_response", "TLS rec/resp", "{:.1f}", True),
    ("tls_record_bytes_mean", "B/record", "{:,.0f}", False),
    ("tls_overhead_bytes_per_response", "TLS ovh B/resp", "{:,.0f}", False),
    ("tcp_data_segments_per_response", "TCP segs/resp", "{:.1f}", True),
    ("self_count_matches_strace", "self=strace", "bool", False),
]
COLUMNS = SPEED_COLUMNS + SHAPE_COLUMNS


def _fmt(value: Any, fmt: str, field: str) -> str:
    if value is None:
        return "—"
    if fmt == "bool":
        return "yes" if value else "NO"
    if fmt == "size":
        return human_bytes(value)
    if field == "cpu_s_per_request":
        value = value * 1e6
    return fmt.format(value)


def human_bytes(n: float) -> str:
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{sign}{n / factor:.1f} {unit}"
    return f"{sign}{n:.0f} B"


def baseline_for(rows: Sequence[ResultRow], row: ResultRow, baseline: str) -> ResultRow | None:
    for other in rows:
        if (other.strategy, other.transport, other.body_bytes) == (
                baseline, row.transport, row.body_bytes):
            return other
    return None


def ratio(value: Any, base: Any) -> float | None:
    if value is None or base is None or isinstance(value, bool) or not base:
        return None
    return float(value) / float(base)


def _formatted(rows: Sequence[ResultRow], baseline: str,
               columns: Sequence[tuple[str, str, str, bool]],
               ) -> Iterator[tuple[ResultRow, list[tuple[str, float | None]]]]:
    """Rows in reading order (by transport and body, the baseline first), each with its
    columns as (text, ratio to the baseline's cell or None): the one formatting both
    the terminal table and the Markdown use."""
    strategies = {r.strategy for r in rows}
    if rows and baseline not in strategies:
        baseline = rows[0].strategy  # ratios against something that was measured
    ordered = sorted(rows, key=lambda r: (r.transport, r.body_bytes,
                                          r.strategy != baseline, r.strategy))
    for row in ordered:
        base = baseline_for(rows, row, baseline)
        cells = []
        for field, _, fmt, with_ratio in columns:
            value = getattr(row, field)
            r = ratio(value, getattr(base, field)) if with_ratio and base is not None else None
            cells.append((_fmt(value, fmt, field), r))
        yield row, cells


def comparison_table(rows: Sequence[ResultRow], *, baseline: str = "single",
                     title: str | None = None,
                     columns: Sequence[tuple[str, str, str, bool]] = SPEED_COLUMNS,
                     with_failures: bool = True) -> Table:
    """One line per cell; ratio columns (×) against the baseline strategy's cell."""
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    table.add_column("transport")
    table.add_column("body", justify="right")
    table.add_column("strategy")
    for _, heading, _, with_ratio in columns:
        table.add_column(heading, justify="right")
        if with_ratio:
            table.add_column("×", justify="right", style="cyan")
    if with_failures:
        table.add_column("fail", justify="right")
    last_group = None
    for row, formatted in _formatted(rows, baseline, columns):
        group = (row.transport, row.body_bytes)
        if last_group is not None and group != last_group:
            table.add_section()
        last_group = group
        cells = [row.transport, format_size(row.body_bytes), row.strategy]
        for (text, r), (_, _, _, with_ratio) in zip(formatted, columns, strict=True):
            cells.append(text)
            if with_ratio:
                cells.append("—" if r is None else f"{r:.2f}")
        if with_failures:
            cells.append(str(row.failures) + (" +error" if row.error else ""))
        table.add_row(*cells, style="red" if row.error or row.failures else None)
    return table


def render_comparison(result: CompareResult, console: Console, *, baseline: str = "single") -> None:
    if result.rows and baseline not in {r.strategy for r in result.rows}:
        baseline = result.rows[0].strategy  # as _formatted does, for the legend below
    from rich.text import Text

    meta = result.meta
    title = (f"writeshape compare — driver {meta.get('driver')}, "
             f"{meta.get('connections')}×{meta.get('streams')} streams, "
             f"repeat {meta.get('repeat')}, kernel {meta.get('kernel')}")
    console.print(comparison_table(result.rows, baseline=baseline, title=title + " — speed "
                                   "and memory (untraced)"))
    console.print(comparison_table(result.rows, baseline=baseline, columns=SHAPE_COLUMNS,
                                   with_failures=False,
                                   title="write shape (writes: separate run under strace)"))
    for row in result.rows:
        if row.error:
            # One line however wide the terminal (grep-able), the message never read as markup.
            console.print(Text.assemble(("error", "red"), f" {row.strategy} {row.transport} "
                                        f"{format_size(row.body_bytes)}: {row.error}"),
                          soft_wrap=True)
    console.print(f"× = ratio to `{baseline}` in the same transport and body size. "
                  "Timing runs untraced; writes/resp from a separate run under strace; "
                  "— = not measured.")
    mismatches = [r for r in result.rows if r.self_count_matches_strace is False]
    for r in mismatches:
        console.print(f"[red]self-count mismatch[/red] {r.strategy} {r.transport} "
                      f"{format_size(r.body_bytes)}: server {r.server_write_syscalls} "
                      f"vs strace {r.strace_write_syscalls}")


# ---- files ---------------------------------------------------------------------------
def write_atomically(path: str, text: str) -> None:
    """Write to a temp file beside ``path``, then rename: a reader never sees half a file."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".writeshape-", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def results_json(result: CompareResult) -> str:
    return json.dumps(result.to_dict(), indent=2, sort_keys=False) + "\n"


def results_csv(rows: Sequence[ResultRow]) -> str:
    buf = io.StringIO()
    if not rows:
        return ""
    flat = [_flatten(r.to_dict()) for r in rows]
    names: list[str] = []
    for d in flat:
        names += [k for k in d if k not in names]
    writer = csv.DictWriter(buf, fieldnames=names)
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


def _flatten(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                out[f"{k}.{k2}"] = v2
        else:
            out[k] = "" if v is None else v
    return out


def results_markdown(result: CompareResult, *, baseline: str = "single") -> str:
    heads = ["transport", "body", "strategy"] + [h for _, h, _, _ in COLUMNS] + ["failures"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row, formatted in _formatted(result.rows, baseline, COLUMNS):
        cells = [row.transport, format_size(row.body_bytes), row.strategy]
        cells += [text if r is None or row.strategy == baseline else f"{text} ({r:.2f}×)"
                  for text, r in formatted]
        cells.append(str(row.failures))
        lines.append("| " + " | ".join(cells) + " |")
    meta = result.meta
    lines.append("")
    lines.append(f"Command: `{meta.get('command')}` — driver {meta.get('driver')}, "
                 f"Python {meta.get('python')}, kernel {meta.get('kernel')}, "
                 f"{meta.get('started')}. Ratios (×) against `{baseline}`.")
    return "\n".join(lines) + "\n"


def load_results(path: str) -> CompareResult:
    from toolkit.runner.run import CompareResult

    try:
        with open(path) as fh:
            data = json.load(fh)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or "results" not in data or "meta" not in data:
        raise UsageError(f"{path} is not a writeshape compare --json file")
    try:
        rows = [ResultRow.from_dict(r) for r in data["results"]]
    except TypeError as exc:
        raise UsageError(f"{path}: a result row is incomplete: {exc}") from exc
    return CompareResult(meta=data["meta"], rows=rows)
