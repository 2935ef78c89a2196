"""`writeshape syscalls LOG_OR_DIR...`: count syscalls in real strace output.

Thin shell over strace_parsers: the library reads and counts, this module renders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolkit.cli.app import app
from toolkit.cli.common import console as make_console

if TYPE_CHECKING:  # strace_parsers and rich are imported when the command runs
    from rich.console import Console
    from rich.table import Table

    from strace_parsers import Summary

MAX_EXAMPLES_SHOWN = 5


@app.command()
def syscalls(
    paths: Annotated[list[Path], typer.Argument(help="strace logs, or -ff directories")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    pid: Annotated[int | None, typer.Option(help="only this pid")] = None,
    fd_kind: Annotated[str, typer.Option(help="socket, pipe, file or any")] = "any",
    strict: Annotated[
        bool, typer.Option("--strict", help="fail at the first unparsed line, and on an empty "
                           "log, a last line cut short or a --pid that matched nothing")
    ] = False,
    stats: Annotated[
        bool, typer.Option("--stats", help="print lines/s and which counter ran (stderr)")
    ] = False,
) -> None:
    """Count syscalls, errors and bytes in real strace output."""
    code = run_syscalls([str(p) for p in paths], as_json=as_json, pid=pid, fd_kind=fd_kind,
                        strict=strict, console=make_console(), stats=stats)
    raise typer.Exit(code)


def run_syscalls(paths: list[str], *, as_json: bool, pid: int | None, fd_kind: str,
                 strict: bool, console: Console, stats: bool = False) -> int:
    """Print the per-syscall counts of strace logs (or -ff directories); return the exit code.

    Bad paths, an unknown fd kind and (with strict) input that cannot be trusted raise
    strace_parsers.StraceError subclasses whose message is the one line the CLI shows.
    Without strict, each warning is one line on stderr.
    """
    from strace_parsers import summarize_paths

    summary = summarize_paths(paths, pid=pid, fd_kind=fd_kind, strict=strict)
    for warning in summary.warnings:
        print(f"writeshape: warning: {warning}", file=sys.stderr)
    if stats:
        print(f"writeshape: {summary.lines} lines in {summary.seconds or 0:.3f} s: "
              f"{summary.lines_per_s or 0:,.0f} lines/s ({summary.implementation} counter)",
              file=sys.stderr)
    if as_json:
        console.print(json.dumps(summary.to_json(), indent=2), markup=False, highlight=False,
                      soft_wrap=True)
        return 0
    console.print(render_table(summary))
    console.print(
        f"{summary.lines} lines in {len(summary.files)} file(s); "
        f"{summary.unparsed} unparsed, {summary.truncated} truncated, "
        f"{summary.orphan_resumed} resumed without a start",
        markup=False, highlight=False,
    )
    for ex in summary.unparsed_examples[:MAX_EXAMPLES_SHOWN]:
        console.print(f"  unparsed {ex['file']}:{ex['line']}: {ex['text'][:160]}",
                      markup=False, highlight=False, soft_wrap=True)
    if fd_kind != "any" and summary.annotated_calls == 0:
        console.print("note: no fd annotations in these logs, so no call has a known fd "
                      "kind; record with strace -yy to filter by fd kind",
                      markup=False, highlight=False)
    return 0


def render_table(summary: Summary) -> Table:
    """A rich table of the per-syscall tallies, busiest syscall first."""
    from rich.table import Table

    from strace_parsers import WRITE_FAMILY

    table = Table(title="syscalls", show_footer=False)
    for col in ("syscall", "calls", "errors", "bytes", "seconds", "unreturned"):
        table.add_column(col, justify="left" if col == "syscall" else "right")
    rows = sorted(summary.syscalls.items(), key=lambda kv: (-kv[1].calls, kv[0]))
    for name, st in rows:
        table.add_row(
            name,
            str(st.calls),
            str(st.errors),
            str(st.bytes) if name in WRITE_FAMILY else "",
            f"{st.seconds:.6f}" if st.timed_calls else "",
            str(st.unreturned) if st.unreturned else "",
        )
    return table
