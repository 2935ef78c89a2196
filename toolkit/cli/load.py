"""`writeshape load URL`: the built-in HTTP/2 load client, and its summary table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolkit.cli.app import app
from toolkit.cli.common import check_writable, console
from toolkit.errors import WriteshapeError

if TYPE_CHECKING:
    from rich.console import Console

    from toolkit.clients.summary import LoadSummary


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
    from toolkit.clients.builtin import LoadConfig, run_load, validate

    if requests is None and duration is None:
        requests = 1000
    cfg = LoadConfig(url=url, requests=requests, duration_s=duration, connections=connections,
                     streams=streams, warmup_requests=warmup, insecure=insecure)
    validate(cfg)
    check_writable(json_path, "--json")
    result = run_load(cfg)
    if result.requests == 0 and set(result.failures_by_cause) <= {"connect", "tls"} \
            and result.failures:
        cause = "TLS handshake" if result.failures_by_cause.get("tls") else "connection"
        raise WriteshapeError(f"no request reached {url}: {cause} failed "
                              "(is the server running, and is the scheme right?)")
    if json_path is not None:
        import json

        from toolkit.reports.files import write_atomically

        write_atomically(str(json_path), json.dumps(result.to_dict(), indent=2) + "\n")
    render_load_result(result, console())
    if result.failures:
        raise typer.Exit(1)


def _fmt(v: float | int | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def render_load_result(result: LoadSummary, out: Console) -> None:
    """Draws one load result as a small rich table."""
    from rich.table import Table

    table = Table(title=f"load {result.url} ({result.transport}, {result.connections} conn x "
                        f"{result.streams} streams)", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("requests ok", str(result.requests)),
        ("failures", str(result.failures) + (
            " (" + ", ".join(f"{k} {v}" for k, v in result.failures_by_cause.items()) + ")"
            if result.failures_by_cause else "")),
        ("duration s", _fmt(result.duration_s, ".3f")),
        ("req/s", _fmt(result.req_per_s, ",.1f")),
        ("MB/s (1e6)", _fmt(result.mbytes_per_s, ",.1f")),
        ("latency ms p50 / p90 / p99 / max",
         " / ".join(_fmt(x, ".3f") for x in (result.latency_ms_p50, result.latency_ms_p90,
                                              result.latency_ms_p99, result.latency_ms_max))),
        ("ttfb ms p50 / p99", " / ".join(_fmt(x, ".3f")
                                         for x in (result.ttfb_ms_p50, result.ttfb_ms_p99))),
    ]
    if result.tls_records_received is not None:
        rows.append(("TLS records / record bytes received",
                     f"{result.tls_records_received} / {result.tls_record_bytes_received}"))
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)
