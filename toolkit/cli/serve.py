"""`writeshape serve`: the HTTP/2 server with a chosen DATA write strategy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from toolkit.cli.app import app
from toolkit.cli.common import check_writable
from toolkit.errors import UsageError
from toolkit.server.guard import GuardLimits as _LIMITS
from toolkit.strategies import all_options


def parse_strategy_flags(args: list[str]) -> dict[str, Any]:
    """The strategies' own flags (declared in the registry) from what typer left over."""
    by_flag = {opt.flag: opt for opt in all_options().values()}
    out: dict[str, Any] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        flag, eq, inline = arg.partition("=")
        opt = by_flag.get(flag)
        if opt is None:
            raise UsageError(f"no such option: {arg}")
        if opt.kind is bool:
            if eq:
                raise UsageError(f"{flag} takes no value")
            out[opt.name] = True
            continue
        text = inline if eq else (rest.pop(0) if rest else None)
        if text is None:
            raise UsageError(f"{flag} needs a value")
        try:
            out[opt.name] = opt.kind(text)
        except ValueError:
            raise UsageError(f"{flag}: {text!r} is not a valid {opt.kind.__name__}") from None
    return out


def _strategy_options_help() -> str:
    return "Strategy options: " + "; ".join(
        f"{o.flag}{'' if o.kind is bool else ' N'}: {o.help}"
        for o in all_options().values())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             epilog=_strategy_options_help())
def serve(
    ctx: typer.Context,
    strategy: Annotated[str, typer.Option(help="DATA write strategy")] = "single",
    tls: Annotated[bool, typer.Option("--tls", help="h2 over TLS (ALPN h2)")] = False,
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="0 picks a free port")] = 8443,
    body_size: Annotated[str, typer.Option(help="body of GET /, e.g. 64KiB")] = "1MiB",
    threads: Annotated[bool, typer.Option("--threads", help="thread per stream")] = False,
    max_frame_size: Annotated[int, typer.Option(help="cap on DATA frame payload")] = 16384,
    loop: Annotated[str, typer.Option(
        "--loop", help="event loop: asyncio or uvloop (if installed)")] = "asyncio",
    tls_mode: Annotated[str, typer.Option(help="membio (instrumented) or stdlib")] = "membio",
    tls_version: Annotated[str, typer.Option(help="1.3 or 1.2")] = "1.3",
    tls_probe: Annotated[bool, typer.Option(
        help="count records (membio); --no-tls-probe: the baseline for the probe's cost")
    ] = True,
    flush_bytes: Annotated[str, typer.Option(help="DATA payload bytes per flush")] = "1MiB",
    stream_turn: Annotated[str, typer.Option(
        help="DATA bytes of one response before the next stream's turn in a flush "
             "(1MiB: one response after another, as RFC 9218's default)")] = "1MiB",
    write_timing: Annotated[bool, typer.Option(
        help="time socket calls and TLS record work from the start (/stats write_timing; "
             "~1.5 us a socket call; GET /stats?write_timing=on|off switches it)")] = False,
    tracemalloc_on: Annotated[
        bool, typer.Option("--tracemalloc", help="trace Python allocations from the start")
    ] = False,
    stats_json: Annotated[
        Path | None, typer.Option(help="write the final /stats JSON here at exit")
    ] = None,
    memory_sample_ms: Annotated[int, typer.Option(
        help="sample RSS and heap every N ms for GET /mem/series (0: off)")] = 0,
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
    from toolkit.server.config import ServerConfig
    from toolkit.server.shell import run_server
    from toolkit.sizes import parse_size

    check_writable(stats_json, "--stats-json")
    cfg = ServerConfig(
        strategy=strategy, tls=tls, host=host, port=port, body_bytes=parse_size(body_size),
        threads=threads, max_frame_bytes=max_frame_size, tls_mode=tls_mode,
        tls_probe=tls_probe, tls_version=tls_version, flush_bytes=parse_size(flush_bytes),
        stream_turn_bytes=parse_size(stream_turn),
        strategy_options=parse_strategy_flags(ctx.args), tracemalloc=tracemalloc_on,
        write_timing=write_timing, event_loop=loop,
        stats_json=str(stats_json) if stats_json else None, memory_sample_ms=memory_sample_ms,
        max_concurrent_streams=max_concurrent_streams,
        max_header_list_bytes=parse_size(max_header_list_size), idle_timeout_s=idle_timeout,
        start_timeout_s=start_timeout,
        max_control_frames_queued=max_control_frames_queued,
        max_control_frames_per_s=max_control_frames_per_s,
        control_frames_burst=control_frames_burst, max_resets_per_s=max_resets_per_s,
        reset_burst=reset_burst, max_settings_entries=max_settings_entries,
        max_continuations=max_continuations, max_bytes_endpoint=parse_size(max_bytes_endpoint),
    )
    for line in cfg.validate():
        typer.echo(f"writeshape serve: note: {line}", err=True)
    run_server(cfg, announce=lambda line: print(line, flush=True))
