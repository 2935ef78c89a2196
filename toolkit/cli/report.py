"""`writeshape report RESULTS.json`: redraw a comparison from its JSON file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli.app import app
from toolkit.cli.common import check_readable, check_writable, console


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="a compare --json file")],
    baseline: Annotated[str, typer.Option(help="strategy the ratios are against")] = "single",
    markdown: Annotated[Path | None, typer.Option(
        "--markdown", help="write the Markdown table to this file (- for stdout)")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="draw the ratios with their intervals and memory over time (PNG)")
    ] = None,
) -> None:
    """Redraw the comparison table from a results JSON file."""
    from toolkit.reports.files import load_results, results_markdown, write_atomically
    from toolkit.reports.terminal import render_comparison

    check_readable(results)
    to_stdout = markdown is not None and str(markdown) == "-"
    if markdown is not None and not to_stdout:
        check_writable(markdown, "--markdown")
    check_writable(plot, "--plot")
    result = load_results(str(results))
    if plot is not None:
        from toolkit.reports.plot import plot_result

        plot_result(result, str(plot))
    if to_stdout:
        print(results_markdown(result, baseline=baseline), end="")
        return
    if markdown is not None:
        write_atomically(str(markdown), results_markdown(result, baseline=baseline))
    render_comparison(result, console(), baseline=baseline)
