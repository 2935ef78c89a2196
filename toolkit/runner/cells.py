"""The runs of one cell: timing runs (untraced), the allocation probe, the counting run.

- timing run: a fresh server process, warmed up, then loaded; req/s, latency, CPU per
  request, RSS and heap deltas, TCP segments (toolkit/measure/snapshot.py). Its TLS
  servers run without the record counters, unless no counting run will count them.
- counting run: a fresh server under real strace, loaded the same way; its TCP writes
  counted from the log and cross-checked against the server's own final counts.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from toolkit.clients.builtin import LoadConfig, run_load
from toolkit.clients.drivers import run_driver
from toolkit.clients.summary import LoadSummary
from toolkit.clients.target import parse_target
from toolkit.errors import WriteshapeError
from toolkit.measure.rows import CountingSample, TimingSample
from toolkit.measure.snapshot import Snapshot, timing_sample
from toolkit.probes.perf_syscalls import PerfWindow
from toolkit.probes.strace_attach import StraceWindow
from toolkit.probes.tcp_segments import ServerSegments, TcpSegmentsProbe
from toolkit.probes.window import WindowCounts
from toolkit.runner.config import Cell, CompareConfig
from toolkit.runner.servers import OtherServer, OwnServer, TimedServer, start_other_server
from toolkit.server.process import ServerOptions, ServerProcess, ServerStartError


def tls_records_from(cfg: CompareConfig) -> str:
    """Which run of a cell gives its TLS records: "counting" or "timing"."""
    from toolkit.probes.strace import strace_attach_problem

    return "counting" if cfg.strace and strace_attach_problem() is None else "timing"


class CellRunner:
    """Runs the passes of one cell; all processes it starts are stopped on the way out.
    ``lab``: a NetLab when server and client run in two network namespaces."""

    def __init__(self, cfg: CompareConfig, lab: Any = None) -> None:
        self.cfg = cfg
        self.lab = lab
        # Timing runs are probe-free: the TLS records come from the counting run, which
        # parses every record as it leaves. Without a counting run (--no-strace, or strace
        # cannot trace here) the timing runs count them (1-8% of the TLS write path).
        self.timing_tls_probe = tls_records_from(cfg) == "timing"

    def options(self, cell: Cell, *, tls_probe: bool = True) -> ServerOptions:
        assert cell.strategy is not None
        return ServerOptions(strategy=cell.strategy, tls=cell.transport == "h2",
                             body_bytes=cell.body_bytes, threads=self.cfg.threads,
                             tls_mode=self.cfg.tls_mode,
                             tls_probe=tls_probe or cell.transport != "h2"
                             or self.cfg.tls_mode != "membio",
                             host=self.lab.server_addr if self.lab else "127.0.0.1",
                             extra_args=tuple(self.cfg.server_args))

    def _server(self, opts: ServerOptions, wrapper: list[str] | None = None) -> ServerProcess:
        popen = (lambda argv, **kw: self.lab.popen("server", argv, **kw)) if self.lab else None
        return ServerProcess(opts, wrapper=wrapper or (), popen=popen, call=self._client_call)

    def _client_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Client-side work (load, control requests) runs in the client namespace."""
        if self.lab is not None:
            return self.lab.call("client", fn, *args, **kwargs)
        return fn(*args, **kwargs)

    def load(self, url: str, requests: int, *, verify_body: bool = True) -> LoadSummary:
        cfg = self.cfg
        return self._client_call(run_driver, cfg.driver, url, requests=requests,
                                 connections=cfg.connections, streams=cfg.streams,
                                 verify_body=verify_body)

    def start_timing_server(self, cell: Cell, round_requests: int | None = None
                            ) -> TimedServer:
        """A server for a cell's timing rounds: untraced, sampling its memory, warm (code
        paths, the body buffer and HPACK tables exist before the first round).
        ``round_requests``: the round length, when it is already known (the cells of one
        transport and body size all run rounds of the same length)."""
        cfg = self.cfg
        srv: TimedServer
        if cell.other is None:
            opts = dataclasses.replace(self.options(cell, tls_probe=self.timing_tls_probe),
                                       memory_sample_ms=cfg.memory_sample_ms)
            srv = OwnServer(self._server(opts).start())
        else:
            srv = start_other_server(cell)
        try:
            self.load(srv.load_url, max(cfg.warmup_requests, cfg.connections * cfg.streams),
                      verify_body=srv.verify_body)
            if cfg.requests is not None:
                srv.round_requests = cfg.requests
            elif round_requests is not None:
                # A discarded round in place of the first worker's calibration load: every
                # worker starts its rounds warmed up alike (as pyperf's workers do).
                srv.round_requests = round_requests
                self.load(srv.load_url, round_requests, verify_body=srv.verify_body)
            else:  # the rate a round's length is set from (runner/run.py shares it out)
                calibration = self.load(srv.load_url, cfg.timing_requests(cell.body_bytes),
                                        verify_body=srv.verify_body)
                srv.calibration_req_per_s = calibration.req_per_s
                srv.round_requests = cfg.round_requests(cell.body_bytes,
                                                        [calibration.req_per_s])
        except BaseException:
            srv.stop()
            raise
        return srv

    def timing_round(self, cell: Cell, srv: TimedServer, round_index: int,
                     before: Snapshot | None = None) -> tuple[TimingSample, Snapshot]:
        """One timing round of a cell on its server: snapshot, load, snapshot. ``before``:
        the previous round's closing snapshot (the server was idle since), which saves a
        settled wait and a collection per round. With ``--counter perf`` the round's write
        syscalls are counted by perf (kernel tracepoints) around the load."""
        before = srv.snapshot(after_load=False) if before is None else srv.refreshed(before)
        started = datetime.now(UTC).isoformat(timespec="milliseconds")
        window = PerfWindow(srv.pids()).start() if self.cfg.counter == "perf" else None
        try:
            load = self.load(srv.load_url, srv.round_requests, verify_body=srv.verify_body)
        finally:
            counts = window.stop() if window is not None else None
            if window is not None:
                window.cleanup()
        srv.loaded(load)
        after = srv.snapshot(after_load=True)
        sample = timing_sample(load, before, after)
        sample.round, sample.started = round_index, started
        if counts is not None:
            sample.perf_write_syscalls = counts.total_calls
        return sample, after

    def alloc_probe(self, srv: TimedServer) -> int | None:
        return srv.alloc_probe(self._client_call)

    def write_timing_run(self, cell: Cell, srv: TimedServer) -> TimingSample | None:
        """One more load on the cell's warm server with its write timing switched on: the
        figures send_us/tls_us_per_response (writeshape's own server only). The timing
        rounds keep it off: the thread clock costs ~1.5 us a timed stretch
        (toolkit/server/socket_writer.py), measured at 0.6% of the server's CPU per
        response for writev h2c at 16 KiB, 1.3% over TLS, ~30% for split and cork at
        1 MiB (a syscall per segment)."""
        requests = self.cfg.strace_requests(cell.body_bytes)
        return srv.write_timing(lambda url: self.load(url, requests))

    def counting_pass(self, cell: Cell, srv: TimedServer | None = None) -> CountingSample:
        requests = self.cfg.strace_requests(cell.body_bytes)
        if cell.other is not None:
            assert isinstance(srv, OtherServer)
            return self._counting_attached(srv, requests)
        return counting_run(self.options(cell), lambda url: self.load(url, requests),
                            server=lambda opts, wrapper: self._server(opts, wrapper))

    def _counting_attached(self, srv: OtherServer, requests: int) -> CountingSample:
        """A server that is not writeshape's, counted while it runs: strace attached to its
        whole process tree for one load by the built-in client (windows of 2^30 - 1, the
        timing runs' connections and streams), which also counts the TLS records it
        receives; TCP segments of the server's side of those connections (sock_diag)."""
        cfg = self.cfg
        probe = TcpSegmentsProbe(parse_target(srv.load_url).port)
        with StraceWindow(srv.pids()) as window:
            load = self._client_call(run_load, LoadConfig(
                url=srv.load_url, requests=requests, connections=cfg.connections,
                streams=cfg.streams, insecure=True, verify_body=srv.verify_body,
                on_open=probe.on_open, before_close=probe.before_close))
            counts = window.stop()
        segments = probe.result()
        return counting_from_window(counts, load, segments)

def counting_run(opts: ServerOptions, load: Callable[[str], object], *,
                 server: Callable[[ServerOptions, list[str]], ServerProcess] | None = None,
                 ) -> CountingSample:
    """A fresh server under strace, loaded by ``load(url)``; its TCP writes counted from
    the log and cross-checked against the server's own final counts."""
    from toolkit.probes.strace import check_ptrace_allowed, count_tcp_writes, strace_wrapper

    make = server or (lambda o, w: ServerProcess(o, wrapper=w))
    with tempfile.TemporaryDirectory(prefix="writeshape-strace-") as tmp:
        log = os.path.join(tmp, "server.strace")
        srv = make(opts, strace_wrapper(log))
        try:
            try:
                srv.start()
            except ServerStartError as exc:
                check_ptrace_allowed(str(exc))  # names the fix when ptrace is refused
                raise
            load(f"{srv.url}/")
        finally:
            srv.stop()
            srv.cleanup()
        final = srv.final_stats
        if final is None:
            raise WriteshapeError(
                f"server under strace exited without its stats: {srv.stderr_tail()}")
        counts = count_tcp_writes(log)
    server_syscalls = final.get("syscalls")
    matches = None if server_syscalls is None else server_syscalls == counts.calls
    tls = final.get("tls") or {}
    return CountingSample(
        responses=final["responses"], write_syscalls=counts.total_calls,
        write_bytes=counts.bytes, syscalls=counts.calls, server_syscalls=server_syscalls,
        self_count_matches_strace=matches, unparsed_lines=counts.unparsed_lines,
        failed_write_syscalls=counts.errors,
        # Application records only: handshakes are per connection, not per response.
        tls_records=tls.get("application_records"),
        tls_record_bytes=tls.get("application_record_bytes"),
        tls_ssl_writes=tls.get("ssl_writes"),
        tls_plaintext_bytes=tls.get("plaintext_bytes"))


def counting_from_window(counts: WindowCounts, load: LoadSummary,
                         segments: ServerSegments | str) -> CountingSample:
    """A counting run of a server that is not writeshape's: its writes as the counter saw
    them, its TLS records as the client received them (application records only)."""
    records = record_bytes = None
    if load.tls_records_received is not None:
        records = load.tls_records_received - (load.tls_handshake_records_received or 0)
        record_bytes = load.tls_application_record_bytes_received
    return CountingSample(
        responses=load.requests, write_syscalls=counts.total_calls,
        write_bytes=counts.bytes or 0, syscalls=dict(counts.calls), server_syscalls=None,
        self_count_matches_strace=None, unparsed_lines=counts.unparsed_lines or 0,
        failed_write_syscalls=counts.errors or 0, tls_records=records,
        tls_record_bytes=record_bytes,
        tcp_data_segments=segments.data_segs_out if isinstance(segments, ServerSegments)
        else None)
