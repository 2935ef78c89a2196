"""pytest plugin: writeshape servers as fixtures, measured figures in extra_info.

Registered through the ``pytest11`` entry point, so any suite in an environment with
writeshape installed can write::

    def test_writev_16k(benchmark, writeshape_server, writeshape_batch, writeshape_figures):
        server = writeshape_server("writev", "h2", body_bytes="16KiB")
        batch = writeshape_batch(server, requests=32, connections=2, streams=4)
        benchmark.pedantic(batch, rounds=3)
        writeshape_figures(benchmark, batch)  # -> benchmark.extra_info

Timing and counting are kept apart, as in ``writeshape compare``: the benchmark rounds
run against an untraced server; write syscalls are counted in a separate run of the
same configuration under strace (strace slows a server 10x or more); TLS records, CPU
and memory come from the untraced server's own counters (``/stats``, ``/mem``) over the
benchmark rounds; allocation per response from tracemalloc in the server, afterwards.
The figures carry the names of the ``compare --json`` rows; one that was not measured
is ``None`` (null), never 0.

Importing this module costs nothing beyond pytest: everything else is imported by the
fixtures when a test uses them, so unrelated suites are not slowed down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from toolkit.errors import UsageError, WriteshapeError

if TYPE_CHECKING:
    from toolkit.clients.builtin import LoadResult
    from toolkit.server.process import ServerOptions, ServerProcess

FIXTURES = ("writeshape_server", "writeshape_batch", "writeshape_figures")
#: extra_info keys shown in the terminal summary (names of the compare JSON rows).
SUMMARY_FIELDS = (
    ("req_per_s", "req/s", ".0f"),
    ("latency_ms_p99", "p99 ms", ".2f"),
    ("write_syscalls_per_response", "writes/resp", ".2f"),
    ("bytes_per_write_syscall", "B/write", ".0f"),
    ("tls_records_per_response", "TLS rec/resp", ".2f"),
    ("alloc_bytes_per_response", "alloc B/resp", ".0f"),
)


class BatchFailedError(WriteshapeError):
    """A benchmark round had failed requests: the timing would describe errors, not writes."""


class BatchTimeoutError(WriteshapeError):
    """A benchmark round did not finish in time."""


# --- options and markers ------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("writeshape", "writeshape write-shape benchmarks")
    group.addoption("--writeshape-no-strace", action="store_true", default=False,
                    help="skip the counting run under strace: write-syscall figures are null")
    group.addoption("--writeshape-no-alloc", action="store_true", default=False,
                    help="skip the tracemalloc probe: alloc_bytes_per_response is null")
    group.addoption("--writeshape-counting-requests", type=int, default=None, metavar="N",
                    help="requests in the counting run under strace "
                         "(default: the requests of one benchmark round)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "writeshape: uses writeshape server fixtures (added automatically; "
                   "deselect with -m 'not writeshape')")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if any(name in names for name in FIXTURES):
            item.add_marker("writeshape")


# --- the server --------------------------------------------------------------------------


@dataclasses.dataclass
class BenchServer:
    """A running ``writeshape serve`` process for one (strategy, transport, body size)."""

    strategy: str
    transport: str
    body_bytes: int
    options: ServerOptions
    process: ServerProcess

    @property
    def url(self) -> str:
        """Base URL (``http://127.0.0.1:PORT`` or ``https://...``), no trailing slash."""
        return self.process.url

    def stats(self) -> dict[str, Any]:
        return self.process.stats()

    def mem(self) -> dict[str, Any]:
        return self.process.mem()


def start_server(strategy: str = "writev", transport: str = "h2c",
                 body_bytes: int | str = 16 << 10, **options: Any) -> BenchServer:
    """Start a server; ``options`` are further ``ServerOptions`` fields (threads, ...)."""
    from toolkit.runner.run import TRANSPORTS
    from toolkit.server.process import ServerOptions, ServerProcess
    from toolkit.sizes import parse_size
    from toolkit.strategies import STRATEGIES

    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if transport not in TRANSPORTS:
        raise UsageError(f"unknown transport {transport!r}; choose h2c or h2")
    if strategy == "coalesce" and transport != "h2":
        raise UsageError("coalesce is a TLS strategy: use transport 'h2'")
    size = parse_size(body_bytes)
    opts = ServerOptions(strategy=strategy, tls=transport == "h2", body_bytes=size, **options)
    proc = ServerProcess(opts)
    try:
        proc.start()
    except BaseException:
        proc.cleanup()
        raise
    return BenchServer(strategy, transport, size, opts, proc)


@pytest.fixture
def writeshape_server() -> Iterator[Callable[..., BenchServer]]:
    """Factory: ``writeshape_server(strategy, transport, body_bytes=..., **server_options)``
    starts a real server process; every server started is stopped at teardown."""
    started: list[BenchServer] = []

    def factory(strategy: str = "writev", transport: str = "h2c",
                body_bytes: int | str = 16 << 10, **options: Any) -> BenchServer:
        server = start_server(strategy, transport, body_bytes, **options)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.process.stop()
        server.process.cleanup()


# --- one benchmark round -------------------------------------------------------------------


class Batch:
    """One benchmark round: ``requests`` real requests over ``connections`` x ``streams``.

    Calling it runs the round and returns its ``LoadResult``; a round with any failed
    request raises :class:`BatchFailedError`. Creating it runs one untimed warm-up round
    and snapshots the server's counters, so that :func:`measure_figures` sees exactly
    the benchmark rounds.
    """

    def __init__(self, server: BenchServer, *, requests: int = 32, connections: int = 2,
                 streams: int = 4, timeout_s: float = 30.0, warmup: bool = True) -> None:
        if requests < 1 or connections < 1 or streams < 1:
            raise UsageError("requests, connections and streams must be at least 1")
        self.server = server
        self.requests = requests
        self.connections = connections
        self.streams = streams
        self.timeout_s = timeout_s
        self.results: list[LoadResult] = []
        if warmup:
            self._run()
        self.baseline = _Snapshot.take(server)

    def __call__(self) -> LoadResult:
        result = self._run()
        self.results.append(result)
        return result

    def _run(self) -> LoadResult:
        from toolkit.clients.builtin import LoadConfig, run_load_async

        cfg = LoadConfig(url=f"{self.server.url}/", requests=self.requests,
                         connections=self.connections, streams=self.streams, insecure=True,
                         timeout_s=self.timeout_s)
        try:
            # The load client's own timeout covers streams in flight; this one also covers
            # a round that stops issuing requests.
            result = asyncio.run(asyncio.wait_for(run_load_async(cfg), 2 * self.timeout_s))
        except TimeoutError:
            raise BatchTimeoutError(
                f"a round of {self.requests} requests to {cfg.url} did not finish in "
                f"{2 * self.timeout_s:.0f} s: check the server log "
                f"({self.server.process.stderr_tail() or 'empty'})") from None
        if result.failures or result.requests != self.requests:
            raise BatchFailedError(
                f"{result.failures} of {self.requests} requests to {cfg.url} failed "
                f"({result.failures_by_cause}); server log: "
                f"{self.server.process.stderr_tail() or 'empty'}")
        return result

    @property
    def responses(self) -> int:
        """Responses received in the benchmark rounds (warm-up excluded)."""
        return sum(r.requests for r in self.results)


@pytest.fixture
def writeshape_batch() -> Callable[..., Batch]:
    """Factory: ``writeshape_batch(server, requests=32, connections=2, streams=4)`` returns
    a callable for ``benchmark.pedantic`` / ``benchmark`` that runs one round."""
    return Batch


# --- figures ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Snapshot:
    stats: dict[str, Any]
    mem: dict[str, Any]
    cpu_s: float | None

    @classmethod
    def take(cls, server: BenchServer) -> _Snapshot:
        # /mem collects garbage: read it before /stats so the snapshot of counters is last.
        mem = server.mem()
        stats = server.stats()
        return cls(stats=stats, mem=mem, cpu_s=_cpu_s(server.process.server_pid))


def _cpu_s(pid: int | None) -> float | None:
    if pid is None:
        return None
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(t.user + t.system)


def _dig(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)  # type: ignore[assignment]
    return d


def _delta(a: dict[str, Any], b: dict[str, Any], *path: str) -> int | None:
    x, y = _dig(a, *path), _dig(b, *path)
    return None if x is None or y is None else y - x


def _tls_deltas(before: dict[str, Any], after: dict[str, Any],
                overhead: dict[str, Any]) -> dict[str, int | None]:
    """TLS counter deltas over the rounds, minus what the snapshots themselves cost
    (``overhead``: the delta between two back-to-back snapshots)."""
    out: dict[str, int | None] = {}
    for key in ("records", "record_bytes", "plaintext_bytes", "ssl_writes"):
        d = _delta(before, after, "tls", key)
        o = _dig(overhead, key)
        out[key] = None if d is None else d - (o or 0)
    return out


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def _per(total: float | None, count: int | None) -> float | None:
    return None if total is None or not count else total / count


def count_writes(options: ServerOptions, *, requests: int, connections: int,
                 streams: int) -> dict[str, Any]:
    """Counting run: the same server configuration under strace, one load of ``requests``.

    Returns the compare-row figures write_syscalls_per_response, bytes_per_write_syscall,
    syscalls (per response), self_count_matches_strace, plus counting_responses. Use the
    shape of a benchmark round (requests, connections, streams): connection set-up writes
    (SETTINGS, TLS handshake) are then shared out over responses as in the timed rounds.
    """
    from toolkit.clients.builtin import LoadConfig, run_load
    from toolkit.measure.rows import counting_figures
    from toolkit.runner.run import counting_run

    def load(url: str) -> None:
        run_load(LoadConfig(url=url, requests=requests, connections=connections,
                            streams=streams, insecure=True))

    figures = counting_figures(counting_run(dataclasses.replace(options, port=0), load))
    keep = ("write_syscalls_per_response", "bytes_per_write_syscall", "syscalls",
            "self_count_matches_strace", "counting_responses", "strace_unparsed_lines")
    return {k: figures[k] for k in keep}


def measure_figures(batch: Batch, *, strace: bool = True, alloc: bool = True,
                    counting_requests: int | None = None) -> dict[str, Any]:
    """The figures of the batch's configuration, named as in the compare JSON rows.

    Call it after the benchmark rounds: counters are read as deltas since the batch was
    created (warm-up excluded), then the allocation probe and the counting run follow.
    """
    server = batch.server
    after = _Snapshot.take(server)
    # A second snapshot right after: what taking a snapshot itself adds to the counters
    # (its connections' handshakes and records), subtracted below.
    again = _Snapshot.take(server).stats
    overhead = {k: _delta(after.stats, again, "tls", k)
                for k in ("records", "record_bytes", "plaintext_bytes", "ssl_writes")}
    before = batch.baseline
    n = batch.responses
    tls = _tls_deltas(before.stats, after.stats, overhead)
    cpu = None if before.cpu_s is None or after.cpu_s is None else after.cpu_s - before.cpu_s
    heap0, heap1 = before.mem.get("live_heap_bytes"), after.mem.get("live_heap_bytes")
    server_calls = _delta(before.stats, after.stats, "send_calls", "send")
    server_msgs = _delta(before.stats, after.stats, "send_calls", "sendmsg")
    figures: dict[str, Any] = {
        "strategy": server.strategy,
        "transport": server.transport,
        "body_bytes": server.body_bytes,
        "requests_per_round": batch.requests,
        "connections": batch.connections,
        "streams": batch.streams,
        "requests": n,
        "failures": 0,  # a round with failures raises
        "req_per_s": _median([r.req_per_s for r in batch.results]),
        "mbytes_per_s": _median([r.mbytes_per_s for r in batch.results]),
        "latency_ms_p50": _median([r.latency_ms_p50 for r in batch.results]),
        "latency_ms_p99": _median([r.latency_ms_p99 for r in batch.results]),
        "cpu_s_per_request": _per(cpu, n),
        "rss_delta_bytes": after.mem["rss_bytes"] - before.mem["rss_bytes"],
        "live_heap_delta_bytes": None if heap0 is None or heap1 is None else heap1 - heap0,
        # The untraced server's own count of its socket calls during the rounds.
        "server_send_calls_per_response": None if server_calls is None or server_msgs is None
        else _per(server_calls + server_msgs, n),
        "tls_records_per_response": _per(tls["records"], n),
        "tls_record_bytes_mean": _per(tls["record_bytes"], tls["records"]),
        "tls_overhead_bytes_per_response": None
        if tls["record_bytes"] is None or tls["plaintext_bytes"] is None
        else _per(tls["record_bytes"] - tls["plaintext_bytes"], n),
        "tls_ssl_writes_per_response": _per(tls["ssl_writes"], n),
        "alloc_bytes_per_response": None,
        "write_syscalls_per_response": None,
        "bytes_per_write_syscall": None,
        "syscalls": None,
        "self_count_matches_strace": None,
    }
    if alloc:
        from toolkit.probes.alloc import measure_alloc_per_response

        figures["alloc_bytes_per_response"] = measure_alloc_per_response(server.url, "/",
                                                                         samples=5)
    if strace:
        figures.update(count_writes(server.options,
                                    requests=counting_requests or batch.requests,
                                    connections=batch.connections, streams=batch.streams))
    return figures


@pytest.fixture
def writeshape_figures(request: pytest.FixtureRequest) -> Callable[..., dict[str, Any]]:
    """``writeshape_figures(benchmark, batch)``: measure the batch's configuration and put
    the figures in ``benchmark.extra_info`` (so in ``--benchmark-json``); returns them.

    ``--writeshape-no-strace`` / ``--writeshape-no-alloc`` leave those figures null;
    ``strace=`` / ``alloc=`` override per call."""
    config = request.config

    def measure(benchmark: Any, batch: Batch, *, strace: bool | None = None,
                alloc: bool | None = None) -> dict[str, Any]:
        figures = measure_figures(
            batch,
            strace=not config.getoption("writeshape_no_strace") if strace is None else strace,
            alloc=not config.getoption("writeshape_no_alloc") if alloc is None else alloc,
            counting_requests=config.getoption("writeshape_counting_requests"))
        if benchmark is not None:
            benchmark.extra_info.update(figures)
        return figures

    return measure


# --- terminal summary -----------------------------------------------------------------------


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_lines(rows: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """A plain table of (source, benchmark name, extra_info) rows."""
    header = ["source", "benchmark", *(label for _k, label, _s in SUMMARY_FIELDS)]
    table = [header] + [[src, name, *(_fmt(info.get(k), s) for k, _l, s in SUMMARY_FIELDS)]
                        for src, name, info in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in table]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The writeshape figures of this run's benchmarks, and of the saved runs that
    ``--benchmark-compare`` loaded (pytest-benchmark's own table shows timings only)."""
    session = getattr(config, "_benchmarksession", None)
    if session is None:
        return
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for bench in getattr(session, "benchmarks", None) or ():
        info = getattr(bench, "extra_info", None) or {}
        if "write_syscalls_per_response" not in info:
            continue
        for path, mapping in (getattr(session, "compared_mapping", None) or {}).items():
            saved = mapping.get(bench.fullname)
            if saved and "write_syscalls_per_response" in saved.get("extra_info", {}):
                rows.append((os.path.basename(str(path)).split("_")[0], bench.name,
                             saved["extra_info"]))
        rows.append(("NOW", bench.name, info))
    if not rows:
        return
    terminalreporter.write_sep("-", "writeshape figures (benchmark extra_info)")
    for line in summary_lines(rows):
        terminalreporter.write_line(line)
