"""The `writeshape` command. Thin: parses arguments, calls the library, prints.

Every user error becomes one line on stderr and a non-zero exit; library code never prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolkit.errors import UsageError, WriteshapeError
from toolkit.guard import GuardLimits as _LIMITS

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Profile how an HTTP/2 server's DATA frames reach the socket.",
)


def _console(stderr: bool = False) -> Console:
    import shutil

    from rich.console import Console

    # Tables are wide: off a terminal (pipes, CI logs) draw them at 160 columns.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(160, shutil.get_terminal_size().columns)
    return Console(stderr=stderr, highlight=False, width=width)


@app.command()
def serve(
    strategy: Annotated[str, typer.Option(help="DATA write strategy")] = "single",
    tls: Annotated[bool, typer.Option("--tls", help="h2 over TLS (ALPN h2)")] = False,
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="0 picks a free port")] = 8443,
    body_size: Annotated[str, typer.Option(help="body of GET /, e.g. 64KiB")] = "1MiB",
    threads: Annotated[bool, typer.Option("--threads", help="thread per stream")] = False,
    max_frame_size: Annotated[int, typer.Option(help="cap on DATA frame payload")] = 16384,
    tls_mode: Annotated[str, typer.Option(help="membio (instrumented) or stdlib")] = "membio",
    tls_version: Annotated[str, typer.Option(help="1.3 or 1.2")] = "1.3",
    tls_probe: Annotated[bool, typer.Option(
        help="count records (membio); --no-tls-probe: the baseline for the probe's cost")
    ] = True,
    flush_bytes: Annotated[str, typer.Option(help="DATA payload bytes per flush")] = "1MiB",
    coalesce_records_per_send: Annotated[int, typer.Option(
        help="coalesce: records gathered into one sendmsg")] = 1,
    dynamic_records: Annotated[
        bool, typer.Option("--dynamic-records", help="small TLS records first (coalesce)")
    ] = False,
    tracemalloc_on: Annotated[
        bool, typer.Option("--tracemalloc", help="trace Python allocations from the start")
    ] = False,
    stats_json: Annotated[
        Path | None, typer.Option(help="write the final /stats JSON here at exit")
    ] = None,
    # Protection limits, per connection (docs/limits.md).
    max_concurrent_streams: Annotated[int, typer.Option(help="SETTINGS value")] = 100,
    max_header_list_size: Annotated[str, typer.Option(help="also caps a header block")] = "64KiB",
    idle_timeout: Annotated[float, typer.Option(help="s idle or stalled, then close")] = 120.0,
    start_timeout: Annotated[float, typer.Option(
        help="s to finish the TLS handshake and HTTP/2 preface")] = 10.0,
    max_control_frames_queued: Annotated[int, typer.Option(help="unread replies")
                      ] = _LIMITS.max_control_frames_queued,
    max_control_frames_per_s: Annotated[float, typer.Option(help="PING/SETTINGS/..")
                      ] = _LIMITS.max_control_frames_per_s,
    control_frames_burst: Annotated[int, typer.Option(help="before the rate applies")
                      ] = _LIMITS.control_frames_burst,
    max_resets_per_s: Annotated[float, typer.Option(help="RST_STREAM rate")
                      ] = _LIMITS.max_resets_per_s,
    reset_burst: Annotated[int, typer.Option(help="RST_STREAM burst")
                      ] = _LIMITS.reset_burst,
    max_settings_entries: Annotated[int, typer.Option(help="per SETTINGS frame")
                      ] = _LIMITS.max_settings_entries,
    max_continuations: Annotated[int, typer.Option(help="per header block")
                      ] = _LIMITS.max_continuations,
    max_bytes_endpoint: Annotated[str, typer.Option(help="largest GET /bytes/N")] = "1GiB",
) -> None:
    """Run the HTTP/2 server with a chosen DATA write strategy."""
    from toolkit.server import ServerConfig, run_server
    from toolkit.sizes import parse_size

    _check_writable(stats_json)
    cfg = ServerConfig(
        strategy=strategy, tls=tls, host=host, port=port, body_bytes=parse_size(body_size),
        threads=threads, max_frame_bytes=max_frame_size, tls_mode=tls_mode,
        tls_probe=tls_probe, tls_version=tls_version, flush_bytes=parse_size(flush_bytes),
        dynamic_records=dynamic_records, tracemalloc=tracemalloc_on,
        coalesce_records_per_send=coalesce_records_per_send,
        stats_json=str(stats_json) if stats_json else None,
        max_concurrent_streams=max_concurrent_streams,
        max_header_list_bytes=parse_size(max_header_list_size), idle_timeout_s=idle_timeout,
        start_timeout_s=start_timeout,
        max_control_frames_queued=max_control_frames_queued,
        max_control_frames_per_s=max_control_frames_per_s,
        control_frames_burst=control_frames_burst, max_resets_per_s=max_resets_per_s,
        reset_burst=reset_burst, max_settings_entries=max_settings_entries,
        max_continuations=max_continuations, max_bytes_endpoint=parse_size(max_bytes_endpoint),
    )
    cfg.validate()
    for line in cfg.ignored_options():
        typer.echo(f"writeshape serve: note: {line}", err=True)
    run_server(cfg, announce=lambda line: print(line, flush=True))


@app.command()
def load(
    url: str,
    requests: Annotated[int | None, typer.Option(help="requests in total")] = None,
    duration: Annotated[float | None, typer.Option(help="seconds, instead of --requests")] = None,
    connections: Annotated[int, typer.Option("--connections", "-c")] = 1,
    streams: Annotated[int, typer.Option("--streams", "-m", help="concurrent per connection")] = 1,
    warmup: Annotated[int, typer.Option(help="requests before measuring")] = 0,
    insecure: Annotated[bool, typer.Option("--insecure", "-k")] = False,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Load a server with the built-in HTTP/2 client and print the summary."""
    from toolkit.load import LoadConfig, render_load_result, run_load

    if requests is None and duration is None:
        requests = 1000
    cfg = LoadConfig(url=url, requests=requests, duration_s=duration, connections=connections,
                     streams=streams, warmup_requests=warmup, insecure=insecure)
    _check_writable(json_path)
    result = run_load(cfg)
    if result.requests == 0 and set(result.failures_by_cause) <= {"connect", "tls"} \
            and result.failures:
        cause = "TLS handshake" if result.failures_by_cause.get("tls") else "connection"
        raise WriteshapeError(f"no request reached {url}: {cause} failed "
                              "(is the server running, and is the scheme right?)")
    if json_path is not None:
        import json

        json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    render_load_result(result, _console())
    if result.failures:
        raise typer.Exit(1)


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
    from toolkit.syscalls_command import run_syscalls

    code = run_syscalls([str(p) for p in paths], as_json=as_json, pid=pid, fd_kind=fd_kind,
                        strict=strict, console=_console(), stats=stats)
    raise typer.Exit(code)


def _check_server_args(args: list[str]) -> None:
    """Parse --server-args as `serve` would, before any server starts (one-line error)."""
    serve_command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    try:
        serve_command.make_context("serve", [*args], resilient_parsing=False)
    except Exception as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise UsageError(f"--server-args: {message}") from None


def _check_writable(path: Path | None) -> None:
    """Fail before measuring, not after the first cell, when an output cannot be written."""
    if path is None:
        return
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {parent} does not exist")
    import os

    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write {path}: permission denied")


PRESETS: dict[str, dict[str, object]] = {
    # The review's experiment: one large fixed body, h2c and h2, many requests, memory
    # before/after, req/s, latency, syscalls (HTTP.jl PR 1282 measured 100,000 requests).
    "review": {"strategies": ["single", "split", "writev"], "transports": ["h2c", "h2"],
               "body_sizes": [1 << 20], "requests": 100_000, "counting_requests": 400,
               "connections": 4, "streams": 4, "repeat": 1},
}


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
    repeat: Annotated[int | None, typer.Option(help="timing runs per cell (medians)")] = None,
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
    mtu: Annotated[int, typer.Option(help="veth MTU with --netns")] = 1500,
    rate: Annotated[str | None, typer.Option(help="tbf rate with --netns, e.g. 1gbit")] = None,
    delay_ms: Annotated[float | None, typer.Option(help="netem delay with --netns")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="results JSON")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv")] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown")] = None,
    server_args: Annotated[str | None, typer.Option(
        help='passed to every server, e.g. "--coalesce-records-per-send 4"')] = None,
) -> None:
    """Compare write strategies: throughput, latency, memory, syscalls, TLS records."""
    import os
    import signal
    import time

    from toolkit.reports import (
        render_comparison,
        results_csv,
        results_json,
        results_markdown,
        write_atomically,
    )
    from toolkit.runner import CompareConfig, CompareResult, collect_meta, run_compare
    from toolkit.sizes import parse_size_list

    cfg = CompareConfig()
    if preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        for key, value in PRESETS[preset].items():
            setattr(cfg, key, value)
    if strategies:
        cfg.strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    if transports:
        cfg.transports = [t.strip() for t in transports.split(",") if t.strip()]
    if body_sizes:
        cfg.body_sizes = parse_size_list(body_sizes)
    for name, value in (("requests", requests), ("counting_requests", counting_requests),
                        ("connections", connections), ("streams", streams),
                        ("repeat", repeat)):
        if value is not None:
            setattr(cfg, name, value)
    cfg.driver, cfg.strace, cfg.alloc_probe = driver, not no_strace, not no_alloc
    cfg.baseline, cfg.threads, cfg.tls_mode = baseline, threads, tls_mode
    cfg.netns, cfg.mtu, cfg.rate, cfg.delay_ms = netns, mtu, rate, delay_ms
    if server_args:
        import shlex

        cfg.server_args = shlex.split(server_args)
        _check_server_args(cfg.server_args)
    cfg.validate()
    baseline = cfg.baseline
    for out in (json_path, csv_path, markdown_path):
        _check_writable(out)

    console = _console()
    meta = collect_meta(cfg, "writeshape " + " ".join(sys.argv[1:]))
    result = CompareResult(meta=meta, rows=[])
    started = time.monotonic()

    def save() -> None:
        result.meta["duration_s"] = round(time.monotonic() - started, 2)
        if json_path:
            write_atomically(str(json_path), results_json(result))
        if csv_path:
            write_atomically(str(csv_path), results_csv(result.rows))
        if markdown_path:
            write_atomically(str(markdown_path), results_markdown(result, baseline=baseline))

    def on_row(row: object) -> None:
        result.rows.append(row)  # type: ignore[arg-type]
        save()  # each finished cell reaches the files at once

    main_pid = os.getpid()

    def on_term(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:  # a fork (pyroute2 helpers) must not run our cleanup
            os._exit(143)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    steps = len(cfg.cells()) * (cfg.repeat + (1 if cfg.strace else 0))
    interrupted = False
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total}"), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("starting", total=steps)

        def progress(msg: str) -> None:
            bar.update(task, description=msg, advance=0 if msg == "starting" else 1)

        try:
            run_compare(cfg, on_row=on_row, progress=progress)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if os.getpid() != main_pid:  # a forked helper unwinding: leave no trace
                os._exit(130 if interrupted else 0)
    order = cfg.cells()
    result.rows.sort(key=lambda row: order.index(row.key) if row.key in order else len(order))
    save()
    if result.rows:
        render_comparison(result, console, baseline=baseline)
    if interrupted:
        print(f"writeshape: interrupted: {len(result.rows)} of {len(cfg.cells())} cells "
              f"finished" + (f", saved in {json_path}" if json_path else ""), file=sys.stderr)
        raise typer.Exit(130)
    if any(r.failures or r.error for r in result.rows):
        raise typer.Exit(1)


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="a compare --json file")],
    baseline: Annotated[str, typer.Option(help="strategy the ratios are against")] = "single",
    markdown: Annotated[bool, typer.Option("--markdown", help="print Markdown instead")
                        ] = False,
) -> None:
    """Redraw the comparison table from a results JSON file."""
    from toolkit.reports import load_results, render_comparison, results_markdown

    result = load_results(str(results))
    if markdown:
        print(results_markdown(result, baseline=baseline), end="")
    else:
        render_comparison(result, _console(), baseline=baseline)


def _strace_errors() -> tuple[type[Exception], ...]:
    """strace_parsers' error base, once that package is in use (importing it costs ~40 ms
    that other commands need not pay; before it is imported, none can be raised)."""
    errors = sys.modules.get("strace_parsers.errors")
    return (errors.StraceError,) if errors is not None else ()


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except WriteshapeError as exc:
        print(f"writeshape: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("writeshape: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if isinstance(exc, _strace_errors()):  # strace_parsers' user errors: as above
            print(f"writeshape: error: {exc}", file=sys.stderr)
            sys.exit(2)
        # Usage errors from click (typer vendors its own copy, so match by shape):
        # one line, not a usage box.
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            print(f"writeshape: error: {exc.format_message()}", file=sys.stderr)
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            print("writeshape: interrupted", file=sys.stderr)
            sys.exit(130)
        raise
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["UsageError", "app", "main"]
