"""`writeshape profile`: any HTTP/2 server measured the way compare measures strategies.

The target is a command writeshape starts (``--cmd``; its process group is stopped
afterwards, children included), a running server writeshape attaches to (``--pid``; never
stopped), or a reference server writeshape configures (``--reference``). The same rounds,
intervals, counting run and JSON as ``compare``: one row, ``server`` naming the target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from toolkit.cli.app import app
from toolkit.cli.common import check_readable, check_writable
from toolkit.errors import UsageError

# Figures a server that is not writeshape's cannot give, and why (meta "unmeasured").
NOT_FROM_OUTSIDE = {
    "live_heap_delta_bytes": "the live heap is read inside writeshape's own server only",
    "alloc_bytes_per_response": "tracemalloc runs inside writeshape's own server only",
    "self_count_matches_strace": "the server does not count its own socket calls",
    "tls_overhead_bytes_per_response": "the plaintext is not seen from outside the server",
    "tls_ssl_writes_per_response": "SSL_write calls are not seen from outside the server",
}


def _transport_of(url: str) -> str:
    """h2 for an https:// URL (ALPN h2), h2c (prior knowledge) otherwise."""
    return "h2" if url.startswith("https:") else "h2c"

def _body_bytes(url: str, insecure: bool) -> int:
    """What the URL answers: the body size of the row."""
    from toolkit.clients.fetch import H2Fetcher
    from toolkit.clients.target import parse_target
    from toolkit.errors import WriteshapeError

    target = parse_target(url)
    try:
        with H2Fetcher(url, insecure=insecure) as f:
            resp = f.get(target.path)
    except WriteshapeError as exc:
        hint = " (a self-signed certificate? pass --insecure)" if "CERTIFICATE" in str(
            exc).upper() else ""
        raise UsageError(f"cannot GET {url}: {exc}{hint}") from None
    if resp.status != 200:
        raise UsageError(f"{url} answers {resp.status}: profile a URL that answers 200")
    return len(resp.body)


def _running_target(url: str, cmd: str | None, pid: int | None, start_timeout: float
                    ) -> Any:
    from toolkit.targets import ProcessTreeTarget

    if cmd is not None:
        return ProcessTreeTarget.launch(cmd, url, start_timeout_s=start_timeout)
    assert pid is not None
    return ProcessTreeTarget.attach(pid, url)


def _checked_choice(url: str | None, cmd: str | None, pid: int | None,
                    reference: str | None, transport: str | None, config: Path | None) -> None:
    given = [name for name, v in (("--cmd", cmd), ("--pid", pid), ("--reference", reference))
             if v is not None]
    if len(given) != 1:
        raise UsageError("give one target: --cmd \"COMMAND\", --pid PID or --reference NAME"
                         + (f" (not {' and '.join(given)})" if given else ""))
    if reference is None and url is None:
        raise UsageError(f"{given[0]} needs --url: where the server answers HTTP/2")
    if transport is not None and transport not in ("h2c", "h2"):
        raise UsageError(f"--transport must be h2c or h2, not {transport!r}")
    if url is not None and transport is not None and reference is None:
        scheme = _transport_of(url)
        if scheme != transport:
            raise UsageError(f"--transport {transport} but {url} is {scheme}: the URL decides")
    if config is not None and reference is None:
        raise UsageError("--config is a reference server's configuration: use --reference")
    if config is not None:
        check_readable(config)


@app.command()
def profile(
    url: Annotated[str | None, typer.Option(help="where the server answers HTTP/2")] = None,
    cmd: Annotated[str | None, typer.Option(
        help="start this server (stopped afterwards, children included)")] = None,
    pid: Annotated[int | None, typer.Option(help="attach to this running server")] = None,
    reference: Annotated[str | None, typer.Option(
        help="nginx, h2o or nghttpd, configured by writeshape")] = None,
    config: Annotated[Path | None, typer.Option(
        help="the reference server's config instead of writeshape's")] = None,
    transport: Annotated[str | None, typer.Option(help="h2c or h2 (with --reference)")] = None,
    body_size: Annotated[str, typer.Option(help="body with --reference")] = "1MiB",
    requests: Annotated[int | None, typer.Option(help="requests per timing round")] = None,
    counting_requests: Annotated[int | None, typer.Option(
        help="requests of the counting run")] = None,
    connections: Annotated[int | None, typer.Option("--connections", "-c")] = None,
    streams: Annotated[int | None, typer.Option("--streams", "-m")] = None,
    repeat: Annotated[str | None, typer.Option(help="auto or a number of rounds")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="time budget (auto)")] = None,
    counter: Annotated[str, typer.Option(
        help="strace (a counting run) or perf (also inside the timing rounds)")] = "strace",
    no_strace: Annotated[bool, typer.Option("--no-strace", help="skip the counting run")
                         ] = False,
    insecure: Annotated[bool, typer.Option(
        "--insecure", "-k", help="https: accept a certificate no CA vouches for (the loads "
        "never check it: h2load cannot)")] = False,
    start_timeout: Annotated[float, typer.Option(help="s for --cmd to answer")] = 30.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="results JSON")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv")] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown")] = None,
) -> None:
    """Profile any HTTP/2 server: speed with intervals, CPU, memory, writes, TLS records."""
    from toolkit.cli.compare import _repeat, execute
    from toolkit.runner.config import CompareConfig, TargetSpec
    from toolkit.sizes import parse_size

    _checked_choice(url, cmd, pid, reference, transport, config)
    for flag, out in (("--json", json_path), ("--csv", csv_path), ("--markdown", markdown_path)):
        check_writable(out, flag)
    if not 0 < start_timeout <= 3600:
        raise UsageError("--start-timeout must be more than 0 and at most 3600 s")
    # One server process, as the user runs it: its memory over time is that process's.
    cfg = CompareConfig(strategies=[], alloc_probe=False, workers=1).apply(
        requests=requests, counting_requests=counting_requests, connections=connections,
        streams=streams, max_seconds=max_seconds, counter=counter, strace=not no_strace)
    if repeat is not None:
        cfg.repeat = _repeat(repeat)
    meta: dict[str, Any] = {"unmeasured": NOT_FROM_OUTSIDE, "counting_client": {
        "client": "writeshape's built-in client (counts the TLS records it receives)",
        "initial_window_bytes": 2**30 - 1, "connections": cfg.connections,
        "streams": cfg.streams}}
    if reference is not None:
        cfg.servers, cfg.transports = [reference], [
            transport or (_transport_of(url) if url else "h2c")]
        cfg.body_sizes = [parse_size(body_size)]
        if config is not None:
            cfg.reference_configs = {reference: str(config)}
        cfg.validate()
        execute(cfg, json_path=json_path, csv_path=csv_path, markdown_path=markdown_path,
                meta=meta)
        return
    assert url is not None
    cfg.validate_options()
    target = _running_target(url, cmd, pid, start_timeout)
    try:
        spec = TargetSpec(target.label, target=target,
                          transport=_transport_of(url),
                          body_bytes=_body_bytes(url, insecure))
        cfg.targets = [spec]
        cfg.baseline = spec.name
        meta["target"] = {"url": url, "command": cmd, "pid": target.root_pid,
                          "pids": list(target.pids()), "started_by_writeshape": target.owned}
        cfg.validate()
        execute(cfg, json_path=json_path, csv_path=csv_path, markdown_path=markdown_path,
                meta=meta)
    finally:
        if target.owned:
            target.stop()
            target.cleanup()
