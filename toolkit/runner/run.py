"""The comparison runner: strategies x transports x body sizes, measured the right way.

For every cell (strategy, transport, body size):
- timing passes, untraced, one fresh server process each, interleaved across cells and
  repeated (``repeat``) so that machine drift does not decide a ranking: req/s, MB/s,
  latency, server CPU per request (psutil), RSS and live heap before/after (``/mem``),
  TLS records (the server's instrumented BIO) and TCP data segments (tcp_info);
- an allocation probe (tracemalloc in the server, one response at a time);
- a counting pass under real strace, parsed by strace_parsers; the server's own counts
  must equal strace's (``self_count_matches_strace``).

Rows go to ``on_row`` as each cell finishes, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil

from tls_probe.records import RECORD_COUNTER
from toolkit.errors import UsageError, WriteshapeError
from toolkit.measure.rows import CountingSample, ResultRow, TimingSample, build_row
from toolkit.probes.alloc import measure_alloc_per_response
from toolkit.server.process import ServerOptions, ServerProcess, ServerStartError
from toolkit.sizes import format_size
from toolkit.strategies import STRATEGIES

TRANSPORTS = ("h2c", "h2")
DRIVERS = ("auto", "builtin", "h2load")


@dataclass
class CompareConfig:
    strategies: list[str] = field(default_factory=lambda: ["single", "split", "writev"])
    transports: list[str] = field(default_factory=lambda: ["h2c", "h2"])
    body_sizes: list[int] = field(default_factory=lambda: [16 << 10, 1 << 20])
    requests: int | None = None  # per timing pass; default scales with the body size
    counting_requests: int | None = None  # per counting pass under strace
    connections: int = 4
    streams: int = 4
    repeat: int = 2  # two timing runs per cell by default: a median, and a spread
    # auto: h2load when installed (a C client is never the bottleneck on 2 cores, so the
    # server's cost decides the ranking), else the built-in client.
    driver: str = "auto"
    strace: bool = True
    alloc_probe: bool = True
    baseline: str = "single"
    threads: bool = False
    tls_mode: str = "membio"
    warmup_requests: int = 16
    server_args: list[str] = field(default_factory=list)
    netns: bool = False
    mtu: int = 1500
    rate: str | None = None
    delay_ms: float | None = None

    def validate(self) -> None:
        if not self.strategies:
            raise UsageError("--strategies is empty")
        for s in self.strategies:
            if s not in STRATEGIES:
                raise UsageError(f"unknown strategy {s!r}; choose from {', '.join(STRATEGIES)}")
        for t in self.transports:
            if t not in TRANSPORTS:
                raise UsageError(f"unknown transport {t!r}; choose h2c or h2")
        if "coalesce" in self.strategies and self.transports == ["h2c"]:
            raise UsageError("coalesce is a TLS strategy: add --transports h2")
        if self.driver not in DRIVERS:
            raise UsageError(f"--driver must be auto, builtin or h2load, not {self.driver!r}")
        if self.driver == "auto":
            import shutil

            self.driver = "h2load" if shutil.which("h2load") else "builtin"
        if not self.body_sizes:
            raise UsageError("--body-sizes is empty")
        if min(self.body_sizes) < 1:
            raise UsageError("--body-sizes must be at least 1 byte each")
        if self.baseline not in self.strategies and self.baseline == "single":
            self.baseline = self.strategies[0]  # the default follows --strategies
        if self.baseline not in self.strategies:
            raise UsageError(f"--baseline {self.baseline!r} is not among --strategies "
                             f"({','.join(self.strategies)})")
        if self.repeat < 1 or self.connections < 1 or self.streams < 1:
            raise UsageError("--repeat, --connections and --streams must be at least 1")
        if self.requests is not None and self.requests < 1:
            raise UsageError("--requests must be at least 1")
        if self.driver == "h2load":
            from toolkit.clients.h2load import find_h2load

            find_h2load()
        if self.strace:
            from toolkit.probes.strace import strace_wrapper

            strace_wrapper("/dev/null")  # raises MissingToolError early
        if self.netns:
            from toolkit.lab.netlab import require_root

            require_root()

    def cells(self) -> list[tuple[str, str, int]]:
        return [(s, t, b) for b in self.body_sizes for t in self.transports
                for s in self.strategies if not (s == "coalesce" and t == "h2c")]

    def timing_requests(self, body_bytes: int) -> int:
        if self.requests is not None:
            return self.requests
        # About 768 MiB per pass, within 300..3000 requests: about a second per pass,
        # steady enough to rank, short enough that the default comparison ends in ~a minute.
        return max(300, min(3000, (768 << 20) // max(body_bytes, 1)))

    def strace_requests(self, body_bytes: int) -> int:
        if self.counting_requests is not None:
            return self.counting_requests
        return max(32, min(400, self.timing_requests(body_bytes) // 4))


def tls_records_from(cfg: CompareConfig) -> str:
    """Which run of a cell gives its TLS records: "counting" or "timing"."""
    from toolkit.probes.strace import strace_attach_problem

    return "counting" if cfg.strace and strace_attach_problem() is None else "timing"


def collect_meta(cfg: CompareConfig, command: str) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for pkg in ("writeshape", "h2", "hyperframe", "hpack", "psutil", "pyroute2", "rich",
                "hdrhistogram"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    import ssl

    versions["openssl"] = ssl.OPENSSL_VERSION
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "versions": versions,
        "driver": cfg.driver,
        "cpus": os.cpu_count(),
        "connections": cfg.connections,
        "streams": cfg.streams,
        "repeat": cfg.repeat,
        "strace": cfg.strace,
        # Where the TLS records come from: "counting" (timing runs are probe-free) or
        # "timing" (--no-strace: the timing runs parse them).
        "tls_records_from": tls_records_from(cfg),
        # The probe's record counter in this install: "c" (tls_probe/_recordwalk.c) or
        # "python" (no compiler at install: a few % more per flush in a timing run).
        "tls_record_counter": RECORD_COUNTER,
        "netns": cfg.netns,
        "server_args": list(cfg.server_args),
    }


class CellRunner:
    """Runs the passes of one cell; all processes it starts are stopped on the way out."""

    def __init__(self, cfg: CompareConfig, lab: Any = None) -> None:
        self.cfg = cfg
        self.lab = lab

    def _options(self, strategy: str, transport: str, body_bytes: int, *,
                 tls_probe: bool = True) -> ServerOptions:
        return ServerOptions(strategy=strategy, tls=transport == "h2", body_bytes=body_bytes,
                             threads=self.cfg.threads, tls_mode=self.cfg.tls_mode,
                             tls_probe=tls_probe or transport != "h2"
                             or self.cfg.tls_mode != "membio",
                             host=self.lab.server_addr if self.lab else "127.0.0.1",
                             extra_args=tuple(self.cfg.server_args))

    @property
    def timing_tls_probe(self) -> bool:
        """Timing runs are probe-free: the TLS records come from the counting run, which
        parses every record as it leaves. Without a counting run (--no-strace, or strace
        cannot trace here) the timing runs count them (1-8% of the TLS write path)."""
        return tls_records_from(self.cfg) == "timing"

    def _server(self, opts: ServerOptions, wrapper: list[str] | None = None) -> ServerProcess:
        popen = (lambda argv, **kw: self.lab.popen("server", argv, **kw)) if self.lab else None
        return ServerProcess(opts, wrapper=wrapper or (), popen=popen, call=self._client_call)

    def _client_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Client-side work (load, control requests) runs in the client namespace."""
        if self.lab is not None:
            return self.lab.call("client", fn, *args, **kwargs)
        return fn(*args, **kwargs)

    def _load(self, url: str, requests: int) -> dict[str, Any]:
        return self._client_call(self._load_here, url, requests)

    def _load_here(self, url: str, requests: int) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.driver == "h2load":
            from toolkit.clients.h2load import run_h2load

            h = run_h2load(url, requests=requests, connections=cfg.connections,
                           streams=cfg.streams)
            # h2load's "errored" is a subset of its "failed": not added twice.
            return {"requests": h.requests, "failures": h.failures,
                    "req_per_s": h.req_per_s, "mbytes_per_s": h.mbytes_per_s,
                    "latency_ms_p50": h.latency_ms_p50, "latency_ms_p90": h.latency_ms_p90,
                    "latency_ms_p99": h.latency_ms_p99, "latency_ms_max": h.latency_ms_max,
                    "tls_records_received": None, "failures_by_cause": {}}
        from toolkit.clients.builtin import LoadConfig, run_load

        r = run_load(LoadConfig(url=url, requests=requests, connections=cfg.connections,
                                streams=cfg.streams, warmup_requests=0, insecure=True))
        return {"requests": r.requests, "failures": r.failures, "req_per_s": r.req_per_s,
                "mbytes_per_s": r.mbytes_per_s, "latency_ms_p50": r.latency_ms_p50,
                "latency_ms_p90": r.latency_ms_p90, "latency_ms_p99": r.latency_ms_p99,
                "latency_ms_max": r.latency_ms_max,
                "tls_records_received": r.tls_records_received,
                "failures_by_cause": {k: v for k, v in r.failures_by_cause.items() if v}}

    @staticmethod
    def _settled_stats(srv: ServerProcess, timeout_s: float = 10.0) -> tuple[dict[str, Any], bool]:
        """/stats once the server has closed the connections the load closed (only the
        control connection open) and read their tcp_info; and whether it got there.

        Without the first condition a /stats request can overtake the EOFs of the load's
        connections on the server's loop, and their bytes would be missing."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = srv.stats()
            tcp = stats.get("tcp") or {}
            open_conns = stats["connections_accepted"] - stats["connections_closed"]
            settled = open_conns <= 1 and not tcp.get("pending")
            if settled or time.monotonic() > deadline:
                return stats, settled
            time.sleep(0.02)

    def timing_pass(self, strategy: str, transport: str, body_bytes: int,
                    with_alloc_probe: bool) -> tuple[TimingSample, int | None]:
        cfg = self.cfg
        opts = self._options(strategy, transport, body_bytes, tls_probe=self.timing_tls_probe)
        with self._server(opts) as srv:
            url = f"{srv.url}/"
            # Warm-up: code paths, the body buffer and hpack tables exist before "before".
            self._load(url, max(cfg.warmup_requests, cfg.connections * cfg.streams))
            proc = psutil.Process(srv.server_pid)
            # Settled first: the warm-up's closing connections are read and gone.
            stats0, settled0 = self._settled_stats(srv)
            mem0 = srv.mem()
            cpu0 = proc.cpu_times()
            load = self._load(url, cfg.timing_requests(body_bytes))
            cpu1 = proc.cpu_times()
            stats1, settled1 = self._settled_stats(srv)
            mem1 = srv.mem()
            alloc = (self._client_call(measure_alloc_per_response, srv.url, "/", samples=5)
                     if with_alloc_probe else None)
        responses = stats1["responses"] - stats0["responses"]
        cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)

        def delta(path: tuple[str, ...]) -> int | None:
            a: Any = stats0
            b: Any = stats1
            for k in path:
                a = a.get(k) if isinstance(a, dict) else None
                b = b.get(k) if isinstance(b, dict) else None
            return None if a is None or b is None else b - a

        # tcp_info is read when a connection closes: a figure only if every connection
        # the load closed was read (one unreadable connection would undercount).
        tcp_ok = (settled0 and settled1 and bool(delta(("tcp", "connections")))
                  and not delta(("tcp", "failed")))
        sample = TimingSample(
            requests=load["requests"], failures=load["failures"],
            req_per_s=load["req_per_s"], mbytes_per_s=load["mbytes_per_s"],
            latency_ms_p50=load["latency_ms_p50"], latency_ms_p90=load["latency_ms_p90"],
            latency_ms_p99=load["latency_ms_p99"], latency_ms_max=load["latency_ms_max"],
            cpu_s_per_request=cpu_s / load["requests"] if load["requests"] else None,
            rss_delta_bytes=mem1["rss_bytes"] - mem0["rss_bytes"],
            live_heap_delta_bytes=(mem1["live_heap_bytes"] - mem0["live_heap_bytes"])
            if mem1["live_heap_bytes"] is not None else None,
            responses=responses,
            # Application records only: handshakes are per connection, not per response.
            tls_records=delta(("tls", "application_records")),
            tls_record_bytes=delta(("tls", "application_record_bytes")),
            tls_ssl_writes=delta(("tls", "ssl_writes")),
            tls_plaintext_bytes=delta(("tls", "plaintext_bytes")),
            tls_records_received_client=load["tls_records_received"],
            tcp_data_segments=delta(("tcp", "data_segs_out")) if tcp_ok else None,
            tcp_bytes_sent=delta(("tcp", "bytes_sent")) if tcp_ok else None,
            server_rss_bytes_after=mem1["rss_bytes"],
            failures_by_cause=load["failures_by_cause"],
            server_tls_probe=stats1.get("tls_probe"),
        )
        return sample, alloc

    def counting_pass(self, strategy: str, transport: str, body_bytes: int) -> CountingSample:
        requests = self.cfg.strace_requests(body_bytes)
        return counting_run(self._options(strategy, transport, body_bytes),
                            lambda url: self._load(url, requests),
                            server=lambda opts, wrapper: self._server(opts, wrapper))


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


ProgressFn = Callable[[str], None]


def run_compare(cfg: CompareConfig, *, on_row: Callable[[ResultRow], None] | None = None,
                progress: ProgressFn | None = None) -> list[ResultRow]:
    """Run the whole matrix; returns one row per cell (also passed to ``on_row``)."""
    cfg.validate()
    with _lab(cfg) as lab:
        return _run(cfg, CellRunner(cfg, lab), on_row, progress)


@contextlib.contextmanager
def _lab(cfg: CompareConfig) -> Iterator[Any]:
    if not cfg.netns:
        yield None
        return
    from toolkit.lab.netlab import NetLab

    with NetLab(mtu=cfg.mtu, rate=cfg.rate, delay_ms=cfg.delay_ms) as lab:
        yield lab


def _run(cfg: CompareConfig, runner: CellRunner, on_row: Callable[[ResultRow], None] | None,
         progress: ProgressFn | None) -> list[ResultRow]:
    cells = cfg.cells()
    timing: dict[tuple[str, str, int], list[TimingSample]] = {c: [] for c in cells}
    alloc: dict[tuple[str, str, int], int | None] = {}
    errors: dict[tuple[str, str, int], str] = {}
    rows: list[ResultRow] = []
    say = progress or (lambda _msg: None)

    def label(cell: tuple[str, str, int]) -> str:
        return f"{cell[0]} {cell[1]} {format_size(cell[2])}"

    def finish(cell: tuple[str, str, int]) -> None:
        counting = None
        if cfg.strace and cell not in errors:
            say(f"counting {label(cell)} under strace")
            try:
                counting = runner.counting_pass(*cell)
            except WriteshapeError as exc:
                errors[cell] = f"counting pass: {exc}"
        row = build_row(strategy=cell[0], transport=cell[1], body_bytes=cell[2],
                        driver=cfg.driver, timing=timing[cell], counting=counting,
                        alloc_bytes_per_response=alloc.get(cell), threads=cfg.threads,
                        tls_mode=cfg.tls_mode if cell[1] == "h2" else None,
                        error=errors.get(cell))
        rows.append(row)
        if on_row:
            on_row(row)

    for r in range(cfg.repeat):
        # Rotate the order each repeat so no cell always runs first (or last).
        order = cells[r % len(cells):] + cells[:r % len(cells)]
        for cell in order:
            if cell in errors:
                continue
            say(f"timing {label(cell)} (run {r + 1}/{cfg.repeat})")
            try:
                sample, a = runner.timing_pass(*cell, with_alloc_probe=cfg.alloc_probe
                                               and cell not in alloc)
            except WriteshapeError as exc:
                errors[cell] = str(exc)
                continue
            timing[cell].append(sample)
            if a is not None:
                alloc[cell] = a
            if r == cfg.repeat - 1:
                finish(cell)
    for cell in cells:  # cells that failed early still get a row that says why
        if cell in errors and not any(row.key == cell for row in rows):
            finish(cell)
    rows.sort(key=lambda row: cells.index(row.key))  # matrix order, not finishing order
    return rows


def compare(strategies: list[str] | None = None, transports: list[str] | None = None,
            body_sizes: list[int | str] | None = None, **kwargs: Any) -> CompareResult:
    """Python API: run a comparison and get its rows (``.to_pandas()`` for notebooks)."""
    from toolkit.sizes import parse_size

    cfg = CompareConfig(**kwargs)
    if strategies is not None:
        cfg.strategies = list(strategies)
    if transports is not None:
        cfg.transports = list(transports)
    if body_sizes is not None:
        cfg.body_sizes = [parse_size(b) for b in body_sizes]
    started = time.time()
    rows = run_compare(cfg)
    meta = collect_meta(cfg, "toolkit.compare(...)")
    meta["duration_s"] = round(time.time() - started, 2)
    return CompareResult(meta=meta, rows=rows)


@dataclass
class CompareResult:
    meta: dict[str, Any]
    rows: list[ResultRow]

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "results": [r.to_dict() for r in self.rows]}

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.rows])

    @classmethod
    def load(cls, path: str) -> CompareResult:
        from toolkit.reports.render import load_results

        return load_results(path)
