"""Writes, TLS records and TCP segments per response of the reference servers (and writeshape's
own server for scale), h2c and TLS, 16 KiB and 1 MiB bodies.

    PATH=.venv/bin:$PATH PYTHONPATH=tests/support .venv/bin/python tests/support/target_figures.py

Two runs per cell, same load (the built-in client, 2 connections x 4 streams): one under
perf only (writes, TCP segments, TLS records: the server at nearly full speed), one with
strace attached (writes on TCP sockets, and on other fds). Not a test; figures for reports.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from nghttpd_fixtures import free_port

from toolkit.clients.builtin import LoadConfig, run_load
from toolkit.probes.perf_syscalls import PerfWindow
from toolkit.probes.strace_attach import StraceWindow
from toolkit.probes.tcp_segments import ServerSegments, TcpSegmentsProbe, wait_server_closed
from toolkit.targets import ProcessTreeTarget, ReferenceServer


def _cell(target: ProcessTreeTarget, requests: int) -> dict[str, Any]:
    cfg = {"url": target.url, "requests": requests, "connections": 2, "streams": 4,
           "insecure": True}
    probe = TcpSegmentsProbe(target.port)
    with PerfWindow(target.pids()) as perf:
        load = run_load(LoadConfig(**cfg, on_open=probe.on_open,
                                   before_close=probe.before_close))
        wait_server_closed(target.port)
    with StraceWindow(target.pids()) as strace:
        traced = run_load(LoadConfig(**cfg))
        wait_server_closed(target.port)
    assert load.failures == traced.failures == 0
    segs = probe.result()
    out: dict[str, Any] = {
        "perf": perf.counts.per_response(requests) if perf.counts else None,
        "strace": strace.counts.per_response(requests) if strace.counts else None,
        "calls": strace.counts.calls if strace.counts else None,
        "other": strace.counts.other_fd_calls if strace.counts else None,
        "segs": segs.per_response(requests) if isinstance(segs, ServerSegments) else None,
    }
    if load.tls_records_received is not None:
        app = load.tls_records_received - (load.tls_handshake_records_received or 0)
        sizes = sorted((load.tls_record_sizes_received or {}).items(), key=lambda kv: -kv[1])
        out["records"] = app / requests
        out["mix"] = ", ".join(f"{n}x{size}" for size, n in sizes[:3])
    return out


def _writeshape(strategy: str, transport: str, body: int) -> ProcessTreeTarget:
    port = free_port()
    cmd = [sys.executable, "-m", "toolkit", "serve", "--strategy", strategy, "--port",
           str(port), "--body-size", str(body)] + (["--tls"] if transport == "h2" else [])
    scheme = "https" if transport == "h2" else "http"
    return ProcessTreeTarget.launch(shlex.join(cmd), f"{scheme}://127.0.0.1:{port}/")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", default="nginx,h2o,nghttpd,writeshape")
    args = ap.parse_args()
    for name in args.servers.split(","):
        for transport in ("h2c", "h2"):
            for body, requests in ((16384, 400), (1 << 20, 60)):
                server: Any = (
                    _writeshape("writev" if transport == "h2c" else "coalesce", transport, body)
                    if name == "writeshape"
                    else ReferenceServer(name, transport=transport, body_bytes=body))
                with server:
                    target = server.target if isinstance(server, ReferenceServer) else server
                    f = _cell(target, requests)
                rec = (f"records {f['records']:.2f} ({f['mix']})" if "records" in f else "")
                print(f"{name:10} {transport:3} {body:>8}: writes perf {f['perf']:.2f} "
                      f"strace {f['strace']:.2f} {f['calls']} other-fd {f['other']}; "
                      f"segments {f['segs']:.2f}; {rec}", flush=True)


if __name__ == "__main__":
    main()
