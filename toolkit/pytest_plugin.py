"""pytest plugin: writeshape servers as fixtures, measured figures in extra_info.

Registered through the ``pytest11`` entry point, so any suite in an environment with
writeshape installed can write::

    def test_writev_16k(benchmark, writeshape_server, writeshape_batch, writeshape_figures):
        server = writeshape_server("writev", "h2", body_bytes="16KiB")
        batch = writeshape_batch(server, requests=32, connections=2, streams=4)
        benchmark.pedantic(batch, rounds=3)
        writeshape_figures(benchmark, batch)  # -> benchmark.extra_info

Timing and counting are kept apart, and measured the way ``writeshape compare`` measures
them (the same snapshot-and-delta of the server, toolkit/measure/snapshot.py): the
benchmark rounds run against an untraced server without the TLS record counters; write
syscalls and TLS records are counted in a separate run of the same configuration under
strace (strace slows a server 10x or more; with ``--writeshape-no-strace`` the timing
server counts the records itself); CPU, memory and TCP segments come from the untraced
server over the benchmark rounds; allocation per response from tracemalloc in the
server, afterwards. The figures carry the names of the ``compare --json`` rows; one
that was not measured is ``None`` (null), never 0.

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
    from toolkit.clients.summary import LoadSummary
    from toolkit.measure.snapshot import Snapshot
    from toolkit.server.process import ServerOptions, ServerProcess

FIXTURES = ("writeshape_server", "writeshape_batch", "writeshape_figures")
#: extra_info keys shown in the terminal summary (names of the compare JSON rows; their
#: headings and formats come from the row's field declarations).
SUMMARY_FIELDS = ("req_per_s", "latency_ms_p99", "write_syscalls_per_response",
                  "bytes_per_write_syscall", "tls_records_per_response",
                  "alloc_bytes_per_response")


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
                 body_bytes: int | str = 16 << 10, *, tls_probe: bool = True,
                 **options: Any) -> BenchServer:
    """Start a server; ``options`` are further ``ServerOptions`` fields (threads, ...).
    ``tls_probe=False``: a TLS timing server without the record counters, as compare's."""
    from toolkit.server.process import ServerOptions, ServerProcess
    from toolkit.sizes import parse_size
    from toolkit.strategies import check_strategy

    check_strategy(strategy, transport)
    size = parse_size(body_bytes)
    opts = ServerOptions(strategy=strategy, tls=transport == "h2", body_bytes=size,
                         tls_probe=tls_probe or transport != "h2", **options)
    proc = ServerProcess(opts)
    try:
        proc.start()
    except BaseException:
        proc.cleanup()
        raise
    return BenchServer(strategy, transport, size, opts, proc)


@pytest.fixture
def writeshape_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., BenchServer]]:
    """Factory: ``writeshape_server(strategy, transport, body_bytes=..., **server_options)``
    starts a real server process; every server started is stopped at teardown. TLS
    servers run without the record counters when a counting run will count the records
    (as compare's timing servers do)."""
    started: list[BenchServer] = []
    probe_free = not request.config.getoption("writeshape_no_strace")

    def factory(strategy: str = "writev", transport: str = "h2c",
                body_bytes: int | str = 16 << 10, **options: Any) -> BenchServer:
        options.setdefault("tls_probe", not probe_free)
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

    Calling it runs the round and returns its ``LoadSummary``; a round with any failed
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
        self.results: list[LoadSummary] = []
        self.round_cpu_s: list[float | None] = []  # the server's CPU time of each round
        if warmup:
            self._run()
        from toolkit.measure.snapshot import take_snapshot

        self.baseline: Snapshot = take_snapshot(server.process)

    def __call__(self) -> LoadSummary:
        from toolkit.measure.snapshot import process_cpu_s

        pid = self.server.process.server_pid
        cpu0 = process_cpu_s(pid)
        result = self._run()
        cpu1 = process_cpu_s(pid)
        self.results.append(result)
        self.round_cpu_s.append(None if cpu0 is None or cpu1 is None else cpu1 - cpu0)
        return result

    def rounds(self) -> list[dict[str, Any]]:
        """Each benchmark round's figures, as a compare row's ``rounds``."""
        return [{"round": i, "requests": r.requests, "req_per_s": r.req_per_s,
                 "mbytes_per_s": r.mbytes_per_s, "latency_ms_p50": r.latency_ms_p50,
                 "latency_ms_p99": r.latency_ms_p99,
                 "cpu_s_per_request": cpu / r.requests if cpu is not None and r.requests
                 else None}
                for i, (r, cpu) in enumerate(zip(self.results, self.round_cpu_s,
                                                 strict=True))]

    def _run(self) -> LoadSummary:
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


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def count_writes(options: ServerOptions, *, requests: int, connections: int,
                 streams: int) -> dict[str, Any]:
    """Counting run: the same server configuration under strace, one load of ``requests``.

    Returns the compare-row figures of a counting run (write syscalls, bytes per write,
    syscalls per response, the self-count check, TLS records). Use the shape of a
    benchmark round (requests, connections, streams): connection set-up writes (SETTINGS,
    TLS handshake) are then shared out over responses as in the timed rounds.
    """
    from toolkit.clients.drivers import run_driver
    from toolkit.measure.rows import counting_figures
    from toolkit.runner.cells import counting_run

    def load(url: str) -> None:
        run_driver("builtin", url, requests=requests, connections=connections,
                   streams=streams)

    # The counting server counts TLS records (the timing server may not).
    opts = dataclasses.replace(options, port=0, tls_probe=True)
    figures = counting_figures(counting_run(opts, load))
    keep = ("write_syscalls_per_response", "bytes_per_write_syscall", "syscalls",
            "self_count_matches_strace", "counting_responses", "strace_unparsed_lines",
            "tls_records_per_response", "tls_record_bytes_mean",
            "tls_overhead_bytes_per_response", "tls_ssl_writes_per_response")
    return {k: figures[k] for k in keep}


def _rounds_summary(batch: Batch) -> LoadSummary:
    """The benchmark rounds as one load: their requests, the medians of their figures."""
    from toolkit.clients.summary import LoadSummary

    rs = batch.results

    def med(name: str) -> float | None:
        return _median([getattr(r, name) for r in rs])

    return LoadSummary(
        driver="builtin", requests=sum(r.requests for r in rs), failures=0,
        duration_s=sum(r.duration_s or 0.0 for r in rs) or None,
        req_per_s=med("req_per_s"), mbytes_per_s=med("mbytes_per_s"),
        latency_ms_p50=med("latency_ms_p50"), latency_ms_p90=med("latency_ms_p90"),
        latency_ms_p99=med("latency_ms_p99"), latency_ms_max=med("latency_ms_max"))


def verdict_figures(batch: Batch, baseline: Batch | None = None) -> dict[str, Any]:
    """The rounds, each judged figure's median with its 95% interval, the spread; and,
    against a ``baseline`` batch whose rounds ran interleaved with these (round i of both
    side by side), the paired ratios and verdicts, as compare gives them."""
    from toolkit.measure.rows import ResultRow
    from toolkit.measure.stats import median_interval
    from toolkit.measure.verdicts import JUDGED, judge

    def row(b: Batch, label: str) -> ResultRow:
        return ResultRow(strategy=b.server.strategy, transport=b.server.transport,
                         body_bytes=b.server.body_bytes, label=label, rounds=b.rounds())

    mine = row(batch, "this")
    rows = [mine] + ([row(baseline, "baseline")] if baseline is not None else [])
    judge(rows, "baseline")
    intervals = {}
    for name in JUDGED:
        interval = median_interval([r[name] for r in mine.rounds if r[name] is not None])
        intervals[name] = None if interval is None else interval.to_dict()
    return {"rounds": mine.rounds, "intervals": intervals, "cv": mine.cv,
            "ratios": mine.ratios, "verdicts": mine.verdicts}


def measure_figures(batch: Batch, *, strace: bool = True, alloc: bool = True,
                    counting_requests: int | None = None,
                    baseline: Batch | None = None) -> dict[str, Any]:
    """The figures of the batch's configuration, named as in the compare JSON rows.

    Call it after the benchmark rounds: counters are read as deltas since the batch was
    created (warm-up excluded), then the allocation probe and the counting run follow.
    With ``baseline`` (a batch run interleaved with this one), ratios and verdicts too.
    """
    from toolkit.measure.rows import timing_figures
    from toolkit.measure.snapshot import take_snapshot, timing_sample

    server = batch.server
    after = take_snapshot(server.process, after_load=True)
    sample = timing_sample(_rounds_summary(batch), batch.baseline, after)
    timing = timing_figures([sample])
    figures: dict[str, Any] = {
        "strategy": server.strategy,
        "transport": server.transport,
        "body_bytes": server.body_bytes,
        "requests_per_round": batch.requests,
        "connections": batch.connections,
        "streams": batch.streams,
        **{k: timing[k] for k in (
            "requests", "failures", "req_per_s", "mbytes_per_s", "latency_ms_p50",
            "latency_ms_p99", "cpu_s_per_request", "rss_delta_bytes",
            "live_heap_delta_bytes", "tcp_data_segments_per_response",
            "tcp_bytes_per_response", "tls_records_per_response", "tls_record_bytes_mean",
            "tls_overhead_bytes_per_response", "tls_ssl_writes_per_response",
            "timing_tls_probe")},
        "alloc_bytes_per_response": None,
        "write_syscalls_per_response": None,
        "bytes_per_write_syscall": None,
        "syscalls": None,
        "self_count_matches_strace": None,
        **verdict_figures(batch, baseline),
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
    the figures in ``benchmark.extra_info`` (so in ``--benchmark-json``); returns them:
    the compare row's figures, every round, each judged figure's median and 95% interval
    (``intervals``), and with ``baseline=other_batch`` (rounds run interleaved) the paired
    ``ratios`` and ``verdicts``.

    ``--writeshape-no-strace`` / ``--writeshape-no-alloc`` leave those figures null;
    ``strace=`` / ``alloc=`` override per call."""
    config = request.config

    def measure(benchmark: Any, batch: Batch, *, strace: bool | None = None,
                alloc: bool | None = None, baseline: Batch | None = None) -> dict[str, Any]:
        figures = measure_figures(
            batch,
            strace=not config.getoption("writeshape_no_strace") if strace is None else strace,
            alloc=not config.getoption("writeshape_no_alloc") if alloc is None else alloc,
            counting_requests=config.getoption("writeshape_counting_requests"),
            baseline=baseline)
        if benchmark is not None:
            benchmark.extra_info.update(figures)
        return figures

    return measure


# --- terminal summary -----------------------------------------------------------------------


def summary_lines(rows: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """A plain table of (source, benchmark name, extra_info) rows; headings and formats
    are those of the compare table (the row's field declarations)."""
    from toolkit.measure.rows import FIGURES

    figs = [FIGURES[k] for k in SUMMARY_FIELDS]
    header = ["source", "benchmark", *(f.heading for f in figs)]
    table = [header] + [[src, name, *(f.format(info.get(f.name)) for f in figs)]
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
