"""The `writeshape` command. Thin: parses arguments, calls the library, prints.

Every user error becomes one line on stderr and a non-zero exit; library code never prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from toolkit.errors import UsageError, WriteshapeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Profile how an HTTP/2 server's DATA frames reach the socket.",
)


def _console(stderr: bool = False):  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


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
    flush_bytes: Annotated[str, typer.Option(help="DATA payload bytes per flush")] = "1MiB",
    dynamic_records: Annotated[
        bool, typer.Option("--dynamic-records", help="small TLS records first (coalesce)")
    ] = False,
    tracemalloc_on: Annotated[
        bool, typer.Option("--tracemalloc", help="trace Python allocations from the start")
    ] = False,
    stats_json: Annotated[
        Path | None, typer.Option(help="write the final /stats JSON here at exit")
    ] = None,
) -> None:
    """Run the HTTP/2 server with a chosen DATA write strategy."""
    from toolkit.server import ServerConfig, run_server
    from toolkit.sizes import parse_size

    cfg = ServerConfig(
        strategy=strategy, tls=tls, host=host, port=port, body_bytes=parse_size(body_size),
        threads=threads, max_frame_bytes=max_frame_size, tls_mode=tls_mode,
        tls_version=tls_version, flush_bytes=parse_size(flush_bytes),
        dynamic_records=dynamic_records, tracemalloc=tracemalloc_on,
        stats_json=str(stats_json) if stats_json else None,
    )
    cfg.validate()
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
    result = run_load(cfg)
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
        bool, typer.Option("--strict", help="fail at the first unparsed line")
    ] = False,
) -> None:
    """Count syscalls, errors and bytes in real strace output."""
    from toolkit.syscalls_command import run_syscalls

    code = run_syscalls([str(p) for p in paths], as_json=as_json, pid=pid, fd_kind=fd_kind,
                        strict=strict, console=_console())
    raise typer.Exit(code)


def main() -> None:
    try:
        app(standalone_mode=True)
    except WriteshapeError as exc:
        print(f"writeshape: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("writeshape: interrupted", file=sys.stderr)
        sys.exit(130)


__all__ = ["UsageError", "app", "main"]
