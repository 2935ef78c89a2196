"""`writeshape compare`: strategies side by side, every figure, in one table."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolkit.cli.app import app
from toolkit.cli.common import check_writable, console
from toolkit.errors import UsageError

if TYPE_CHECKING:
    from toolkit.measure.rows import ResultRow
    from toolkit.runner.config import CompareConfig


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [s.strip() for s in text.split(",") if s.strip()]


def exit_code(rows: list[ResultRow]) -> int:
    """1 when the result is not clean: a failed request, a cell error, a self-count that
    disagrees with strace (the rows are kept and flagged all the same); else 0."""
    return 1 if any(r.failures or r.error or r.self_count_matches_strace is False
                    for r in rows) else 0


def _repeat(text: str) -> int | None:
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--repeat must be auto or a number of rounds >= 1, not {text!r}")
    return int(text)


# What a row's label states (its strategy, transport, body size, TLS) and what the runner
# sets itself: --server-args may not change them, or a row would measure something other
# than what it is labelled.
RESERVED_SERVER_FLAGS = {
    "--strategy": "the strategy is the row's: use --strategies",
    "--tls": "the transport is the row's: use --transports",
    "--tls-mode": "use compare --tls-mode",
    "--body-size": "the body size is the row's: use --body-sizes",
    "--threads": "use compare --threads",
    "--host": "the runner places the server", "--port": "the runner picks the port",
    "--stats-json": "the runner reads the server's stats",
    "--memory-sample-ms": "the runner samples memory",
    "--no-tls-probe": "the runner decides where TLS records are counted",
    "--tls-probe": "the runner decides where TLS records are counted",
}


def check_server_args(args: list[str]) -> None:
    """Parse --server-args as `serve` would, before any server starts (one-line error);
    refuse the flags whose value a row's label states or the runner sets."""
    from toolkit.cli.serve import parse_strategy_flags

    for arg in args:
        flag = arg.partition("=")[0]
        if flag in RESERVED_SERVER_FLAGS:
            raise UsageError(f"--server-args may not set {flag}: "
                             f"{RESERVED_SERVER_FLAGS[flag]}")

    serve_command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    try:
        ctx = serve_command.make_context("serve", [*args], resilient_parsing=False)
    except Exception as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise UsageError(f"--server-args: {message}") from None
    try:
        parse_strategy_flags(ctx.args)
    except UsageError as exc:
        raise UsageError(f"--server-args: {exc}") from None


def _run_with_progress(cfg: CompareConfig, on_update: object) -> bool:
    """Run the comparison under a progress bar; True if it was interrupted (Ctrl-C or
    SIGTERM), with the rows measured so far already handed to ``on_update``."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from toolkit.runner import run_compare

    main_pid = os.getpid()

    def on_term(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:  # a fork (pyroute2 helpers) must not run our cleanup
            os._exit(143)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    interrupted = False
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console(), transient=True) as bar:
        # The bar fills with the time budget: rounds go on until the intervals are tight.
        task = bar.add_task("starting", total=cfg.max_seconds if cfg.repeat is None else None)
        started = time.monotonic()
        try:
            run_compare(cfg, on_update=on_update,  # type: ignore[arg-type]
                        progress=lambda msg: bar.update(
                            task, description=msg, completed=time.monotonic() - started))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if os.getpid() != main_pid:  # a forked helper unwinding: leave no trace
                os._exit(130 if interrupted else 0)
    return interrupted


@app.command()
def compare(
    strategies: Annotated[str | None, typer.Option(help="comma list, e.g. single,split,writev")
                          ] = None,
    transports: Annotated[str | None, typer.Option(help="h2c,h2")] = None,
    body_sizes: Annotated[str | None, typer.Option(help="e.g. 16KiB,1MiB")] = None,
    requests: Annotated[int | None, typer.Option(help="requests per timing run")] = None,
    counting_requests: Annotated[int | None, typer.Option(
        help="requests per counting run under strace")] = None,
    connections: Annotated[int | None, typer.Option("--connections", "-c")] = None,
    streams: Annotated[int | None, typer.Option("--streams", "-m")] = None,
    repeat: Annotated[str | None, typer.Option(
        help="timing rounds: auto (until the intervals are within +-5%, or --max-seconds) "
             "or a number")] = None,
    max_seconds: Annotated[float | None, typer.Option(
        help="time budget of the whole comparison with --repeat auto (170)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="a one-minute look")] = False,
    workers: Annotated[int | None, typer.Option(
        help="server processes per cell; rounds rotate through them (4)")] = None,
    noise_threshold: Annotated[float | None, typer.Option(
        help="a ratio's interval within 1 +- this is 'same', wholly beyond it "
             "'better'/'worse' (0.1)")] = None,
    driver: Annotated[str, typer.Option(
        help="load client: h2load, builtin, or auto (h2load if installed)")] = "auto",
    no_strace: Annotated[bool, typer.Option("--no-strace", help="skip the counting run")
                         ] = False,
    no_alloc: Annotated[bool, typer.Option("--no-alloc", help="skip the tracemalloc probe")
                        ] = False,
    preset: Annotated[str | None, typer.Option(help="review: the review's experiment")] = None,
    baseline: Annotated[str, typer.Option(help="strategy the ratios are against")] = "single",
    threads: Annotated[bool, typer.Option("--threads", help="servers use thread per stream")
                       ] = False,
    tls_mode: Annotated[str, typer.Option(help="membio or stdlib")] = "membio",
    netns: Annotated[bool, typer.Option("--netns", help="server and client in two netns")
                     ] = False,
    mtu: Annotated[int | None, typer.Option(help="veth MTU with --netns (1500)")] = None,
    rate: Annotated[str | None, typer.Option(help="tbf rate with --netns, e.g. 1gbit")] = None,
    delay_ms: Annotated[float | None, typer.Option(help="netem delay with --netns")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="results JSON")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv")] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown")] = None,
    server_args: Annotated[str | None, typer.Option(
        help='passed to every server, e.g. "--coalesce-records-per-send 4"')] = None,
    servers: Annotated[str | None, typer.Option(
        help="reference servers as rows beside the strategies: nginx,h2o,nghttpd")] = None,
    counter: Annotated[str, typer.Option(
        help="strace (a counting run) or perf (also inside the timing rounds)")] = "strace",
) -> None:
    """Compare write strategies: throughput, latency, memory, syscalls, TLS records."""
    from toolkit.runner.config import PRESETS
    from toolkit.runner.config import preset as preset_config
    from toolkit.sizes import parse_size_list

    cfg = preset_config(preset)
    if quick:
        cfg.apply(**PRESETS["quick"])
    cfg.apply(
        strategies=_names(strategies), transports=_names(transports),
        body_sizes=parse_size_list(body_sizes) if body_sizes is not None else None,
        requests=requests, counting_requests=counting_requests, connections=connections,
        streams=streams, max_seconds=max_seconds, noise_threshold=noise_threshold,
        workers=workers,
        driver=driver, strace=not no_strace,
        alloc_probe=not no_alloc, baseline=baseline, threads=threads, tls_mode=tls_mode,
        netns=netns, mtu=mtu, rate=rate, delay_ms=delay_ms, counter=counter,
        server_args=shlex.split(server_args) if server_args else None,
        servers=_names(servers))
    if repeat is not None:
        cfg.repeat = _repeat(repeat)
    check_server_args(cfg.server_args)
    cfg.validate()
    for flag, out in (("--json", json_path), ("--csv", csv_path), ("--markdown", markdown_path)):
        check_writable(out, flag)

    execute(cfg, json_path=json_path, csv_path=csv_path, markdown_path=markdown_path)


def execute(cfg: CompareConfig, *, json_path: Path | None, csv_path: Path | None,
            markdown_path: Path | None, meta: dict[str, object] | None = None) -> None:
    """Run a validated comparison under a progress bar, the files rewritten every round,
    the tables drawn at the end; exits with its status (compare and profile)."""
    from toolkit.reports.files import ResultFiles
    from toolkit.reports.terminal import render_comparison
    from toolkit.runner import CompareResult
    from toolkit.runner.result import collect_meta

    result = CompareResult(meta=collect_meta(cfg, "writeshape " + " ".join(sys.argv[1:])),
                           rows=[])
    result.meta.update(meta or {})
    files = ResultFiles(result, json_path=str(json_path) if json_path else None,
                        csv_path=str(csv_path) if csv_path else None,
                        markdown_path=str(markdown_path) if markdown_path else None,
                        baseline=cfg.baseline)
    started = time.monotonic()

    def on_update(rows: list[ResultRow]) -> None:
        result.rows = rows
        result.meta["duration_s"] = round(time.monotonic() - started, 2)
        result.meta["rounds"] = max((len(r.rounds) for r in rows), default=0)
        files.save()  # every finished round reaches the files at once

    interrupted = _run_with_progress(cfg, on_update)
    result.meta["duration_s"] = round(time.monotonic() - started, 2)
    files.save()
    if result.rows:
        render_comparison(result, console(), baseline=cfg.baseline)
    if interrupted:
        print(f"writeshape: interrupted after {result.meta.get('rounds', 0)} rounds: "
              f"{sum(1 for r in result.rows if r.rounds)} of {len(cfg.cells())} cells measured"
              + (f", saved in {json_path}" if json_path else ""), file=sys.stderr)
        raise typer.Exit(130)
    raise typer.Exit(exit_code(result.rows))
