"""Measurement rows: plain data with units in the names. Nothing is measured here.

A timing run gives a :class:`TimingSample` (untraced), a counting run a
:class:`CountingSample` (under strace); :func:`build_row` folds a cell's samples into its
:class:`ResultRow`. A figure that was not measured in a run is ``None`` (null in JSON),
never 0. How each figure is shown lives with its field (toolkit/measure/fields.py).
"""

from __future__ import annotations

import statistics
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from toolkit.measure.fields import figure, figures_of


@dataclass
class TimingSample:
    """One untraced timing run of one cell (one fresh server process)."""

    requests: int
    failures: int
    req_per_s: float | None
    mbytes_per_s: float | None
    latency_ms_p50: float | None
    latency_ms_p90: float | None
    latency_ms_p99: float | None
    latency_ms_max: float | None
    cpu_s_per_request: float | None
    rss_delta_bytes: int | None
    live_heap_delta_bytes: int | None
    responses: int | None
    tls_records: int | None = None
    tls_record_bytes: int | None = None
    tls_ssl_writes: int | None = None
    tls_plaintext_bytes: int | None = None
    tls_records_received_client: int | None = None
    tcp_data_segments: int | None = None
    tcp_bytes_sent: int | None = None
    server_rss_bytes_after: int | None = None
    failures_by_cause: dict[str, int] = field(default_factory=dict)
    server_tls_probe: bool | None = None  # the server's /stats "tls_probe" (membio only)
    round: int = 0
    started: str = ""  # ISO 8601, when the run began
    worker: int = 0  # which of the cell's server processes ran it
    rss_bytes_before: int | None = None
    live_heap_bytes_before: int | None = None
    live_heap_bytes_after: int | None = None
    perf_write_syscalls: int | None = None  # perf's count around the load (--counter perf)
    # Inside the server's socket calls / TLS record work (null unless its write timing
    # was on through the whole run: /stats write_timing).
    write_send_ns: int | None = None
    write_tls_ns: int | None = None

    def round_record(self) -> dict[str, Any]:
        """The row's ``rounds`` entry for this run (contract: ROW.rounds)."""
        return {
            "round": self.round, "started": self.started, "worker": self.worker,
            "requests": self.requests,
            "failures": self.failures, "req_per_s": self.req_per_s,
            "mbytes_per_s": self.mbytes_per_s, "latency_ms_p50": self.latency_ms_p50,
            "latency_ms_p99": self.latency_ms_p99, "cpu_s_per_request": self.cpu_s_per_request,
            "rss_delta_bytes": self.rss_delta_bytes,
            "live_heap_delta_bytes": self.live_heap_delta_bytes,
            "rss_bytes_before": self.rss_bytes_before,
            "rss_bytes_after": self.server_rss_bytes_after,
            "live_heap_bytes_before": self.live_heap_bytes_before,
            "live_heap_bytes_after": self.live_heap_bytes_after,
            "perf_write_syscalls_per_response": per(self.perf_write_syscalls, self.responses),
        }


@dataclass
class CountingSample:
    """One traced counting run: the server under strace, calls counted from its log."""

    responses: int
    write_syscalls: int  # all calls, EAGAIN included (what the process paid for)
    write_bytes: int
    syscalls: dict[str, int]
    server_syscalls: dict[str, int] | None
    self_count_matches_strace: bool | None
    unparsed_lines: int
    failed_write_syscalls: int = 0  # of write_syscalls, the ones that returned -1 (EAGAIN)
    # The server's TLS probe over the run (membio; null for h2c and stdlib).
    tls_records: int | None = None
    tls_record_bytes: int | None = None
    tls_ssl_writes: int | None = None
    tls_plaintext_bytes: int | None = None
    # A server that is not writeshape's: its segments, read from outside (sock_diag).
    tcp_data_segments: int | None = None




@dataclass
class ResultRow:
    """One cell (a server, a transport, a body size): medians over its timing runs."""

    strategy: str | None  # None for a server that is not writeshape's
    transport: str
    body_bytes: int
    requests: int | None = None  # None: no timing run finished (the cell failed early)
    failures: int | None = None
    req_per_s: float | None = figure("req/s", "req/s", fmt="{:,.0f}", better="higher",
                                     ratio=True, description="throughput", group="speed")
    mbytes_per_s: float | None = figure("MB/s", "MB/s", fmt="{:,.0f}", better="higher",
                                        description="body throughput", group="speed")
    latency_ms_p50: float | None = figure("p50 ms", "ms", better="lower",
                                          description="p50 latency", group="speed")
    latency_ms_p90: float | None = figure("p90 ms", "ms", better="lower",
                                          description="p90 latency")
    latency_ms_p99: float | None = figure("p99 ms", "ms", better="lower", ratio=True,
                                          description="p99 latency", group="speed")
    latency_ms_max: float | None = figure("max ms", "ms", better="lower",
                                          description="max latency")
    cpu_s_per_request: float | None = figure("CPU µs/req", "µs", fmt="{:.0f}", scale=1e6,
                                             better="lower", ratio=True,
                                             description="server CPU per request", group="speed")
    send_us_per_response: float | None = figure(
        "send µs/resp", "µs", fmt="{:.1f}", better="lower",
        description="µs inside the server's socket calls per response", group="speed")
    tls_us_per_response: float | None = figure(
        "TLS µs/resp", "µs", fmt="{:.1f}", better="lower",
        description="µs in the server's SSL_writes and record work per response",
        group="speed")
    rss_delta_bytes: int | None = figure("RSS Δ", "bytes", fmt="size",
                                         description="RSS growth over a run", group="memory")
    live_heap_delta_bytes: int | None = figure("heap Δ", "bytes", fmt="size",
                                               description="live heap growth over a run",
                                               group="memory")
    alloc_bytes_per_response: int | None = figure(
        "alloc/resp", "bytes", fmt="size", better="lower", ratio=True,
        description="peak allocation per response", group="memory")
    write_syscalls_per_response: float | None = figure(
        "writes/resp", "calls", fmt="{:.1f}", better="lower", ratio=True,
        description="write syscalls per response", group="shape")
    bytes_per_write_syscall: float | None = figure(
        "B/write", "bytes", fmt="{:,.0f}", description="bytes per write syscall", group="shape")
    syscalls: dict[str, float] | None = None  # name -> calls per response
    tls_records_per_response: float | None = figure(
        "TLS rec/resp", "records", fmt="{:.1f}", better="lower", ratio=True,
        description="TLS records per response", group="shape")
    tls_record_bytes_mean: float | None = figure(
        "B/record", "bytes", fmt="{:,.0f}", description="mean TLS record size", group="shape")
    tls_overhead_bytes_per_response: float | None = figure(
        "TLS ovh B/resp", "bytes", fmt="{:,.0f}", better="lower",
        description="TLS overhead per response", group="shape")
    tcp_data_segments_per_response: float | None = figure(
        "TCP segs/resp", "segments", fmt="{:.1f}", better="lower", ratio=True,
        description="TCP data segments per response", group="shape")
    self_count_matches_strace: bool | None = figure("self=strace", fmt="bool", group="shape")
    perf_write_syscalls_per_response: float | None = figure(
        "perf writes/resp", "calls", fmt="{:.1f}", better="lower",
        description="write syscalls per response, perf in the timing rounds (any fd)",
        group="shape")
    # Beyond the contract: identity, spread, provenance, cross-checks.
    label: str = ""  # unique per row: the strategy, "single#2", or a server's name
    server: str = "writeshape"
    driver: str = "builtin"
    repeat: int = 1
    req_per_s_min: float | None = None
    req_per_s_max: float | None = None
    tls_ssl_writes_per_response: float | None = figure(
        "SSL_writes/resp", "calls", fmt="{:.1f}", description="SSL_writes per response")
    tcp_bytes_per_response: float | None = figure(  # tcpi_bytes_sent: payload incl. TLS
        "TCP B/resp", "bytes", fmt="{:,.0f}", description="TCP payload bytes per response")
    tls_records_received_per_response: float | None = None
    server_write_syscalls: dict[str, int] | None = None
    strace_write_syscalls: dict[str, int] | None = None
    counting_responses: int | None = None
    strace_unparsed_lines: int | None = None
    threads: bool = False
    tls_mode: str | None = None
    timing_tls_probe: bool | None = None  # did the timing servers count TLS records?
    failures_by_cause: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    # Verdicts (toolkit/measure/verdicts.py): every timing round, paired ratios against the
    # baseline row with their intervals, verdicts, spread, memory over time.
    rounds: list[dict[str, Any]] = field(default_factory=list)
    ratios: dict[str, dict[str, float]] | None = None
    verdicts: dict[str, str] | None = None
    # Each judged figure's own median over the rounds and its 95% interval.
    intervals: dict[str, dict[str, float] | None] | None = None
    cv: dict[str, float | None] = field(default_factory=dict)
    memory: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.strategy or self.server

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultRow:
        """A row from its JSON; a value of the wrong type is a ValueError naming the field
        (a results file may have been edited, cut or made by something else)."""
        hints = typing.get_type_hints(cls)
        names = {f.name for f in fields(cls)}
        for name in ("strategy", "transport", "body_bytes"):
            if name not in data:
                raise ValueError(f"no {name!r}")
        values = {k: v for k, v in data.items() if k in names}
        for name, value in values.items():
            if not _conforms(value, hints[name]):
                raise ValueError(f"{name!r} is {type(value).__name__}, not "
                                 f"{_type_name(hints[name])}")
        _check_nested(values)
        return cls(**values)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.label, self.transport, self.body_bytes)


FIGURES = figures_of(ResultRow)


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field's annotation (shallow: the outer type)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    base = origin or hint
    return isinstance(value, base)


def _type_name(hint: Any) -> str:
    """'str', 'float or null', 'list': a field's annotation as a results file's reader says it."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "null"
    return getattr(typing.get_origin(hint) or hint, "__name__", str(hint))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_nested(values: dict[str, Any]) -> None:
    """The nested figures the reports read: rounds, ratios, verdicts, memory."""
    for i, rnd in enumerate(values.get("rounds") or []):
        if not isinstance(rnd, dict) or not isinstance(rnd.get("round"), int):
            raise ValueError(f"rounds[{i}] is not a round (an object with an int 'round')")
    for name, ratio in (values.get("ratios") or {}).items():
        if not isinstance(ratio, dict) or not all(
                _is_number(ratio.get(k)) for k in ("median", "ci_low", "ci_high")):
            raise ValueError(f"ratios[{name!r}] lacks a numeric median, ci_low and ci_high")
    for name, verdict in (values.get("verdicts") or {}).items():
        if not isinstance(verdict, str):
            raise ValueError(f"verdicts[{name!r}] is not a string")
    for name, cv in (values.get("cv") or {}).items():
        if cv is not None and not _is_number(cv):
            raise ValueError(f"cv[{name!r}] is not a number")
    mem = values.get("memory")
    if mem is not None:
        slope = mem.get("rss_slope_bytes_per_krequest")
        series, responses = mem.get("series") or [], mem.get("responses") or []
        if slope is not None and not (isinstance(slope, dict) and _is_number(
                slope.get("median"))):
            raise ValueError("memory.rss_slope_bytes_per_krequest has no numeric median")
        if not isinstance(series, list) or not isinstance(responses, list) or not all(
                isinstance(s, list) and len(s) >= 2 and all(_is_number(x) for x in s[:2])
                for s in series) or not all(_is_number(n) for n in responses):
            raise ValueError("memory.series is not a list of [s, rss_bytes, heap_bytes]")
    if not all(isinstance(w, str) for w in values.get("warnings") or []):
        raise ValueError("warnings are not strings")


def median_or_none(values: list[float | int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def per(total: int | float | None, count: int | float | None) -> float | None:
    if total is None or not count:
        return None
    return total / count


def counting_figures(c: CountingSample) -> dict[str, Any]:
    """The row fields a counting run gives, per response (compare and pytest plugin)."""
    return {
        "write_syscalls_per_response": per(c.write_syscalls, c.responses),
        # Bytes per call that wrote something: EAGAIN calls cost a syscall, carry nothing.
        "bytes_per_write_syscall": per(c.write_bytes, c.write_syscalls - c.failed_write_syscalls),
        "syscalls": {k: v / c.responses for k, v in c.syscalls.items()}
        if c.responses else None,
        "self_count_matches_strace": c.self_count_matches_strace,
        "server_write_syscalls": c.server_syscalls,
        "strace_write_syscalls": c.syscalls,
        "counting_responses": c.responses,
        "strace_unparsed_lines": c.unparsed_lines,
        **({"tcp_data_segments_per_response": per(c.tcp_data_segments, c.responses)}
           if c.tcp_data_segments is not None else {}),
        **tls_figures(c.tls_records, c.tls_record_bytes, c.tls_plaintext_bytes,
                      c.tls_ssl_writes, c.responses),
    }


def tls_figures(records: int | float | None, record_bytes: int | float | None,
                plaintext_bytes: int | float | None, ssl_writes: int | float | None,
                responses: int | float | None) -> dict[str, float | None]:
    """The TLS row fields from a run's totals (or from per-response medians, responses=1)."""
    return {
        "tls_records_per_response": per(records, responses),
        "tls_record_bytes_mean": per(record_bytes, records),
        "tls_overhead_bytes_per_response": per(record_bytes - plaintext_bytes, responses)
        if record_bytes is not None and plaintext_bytes is not None else None,
        "tls_ssl_writes_per_response": per(ssl_writes, responses),
    }


def write_timing_figures(samples: list[TimingSample]) -> dict[str, float | None]:
    """µs per response inside the server's socket calls and TLS record work: medians over
    the runs that had the server's write timing on (null if none did)."""

    def us(name: str) -> float | None:
        v = median_or_none([per(getattr(s, name), s.responses) for s in samples])
        return None if v is None else v / 1000

    return {"send_us_per_response": us("write_send_ns"),
            "tls_us_per_response": us("write_tls_ns")}


def timing_figures(timing: list[TimingSample]) -> dict[str, Any]:
    """The row fields the timing runs of one cell give: medians over the runs."""

    def med(name: str) -> float | None:
        return median_or_none([getattr(s, name) for s in timing])

    def med_per_response(name: str) -> float | None:
        return median_or_none([per(getattr(s, name), s.responses) for s in timing])

    def as_int(v: float | None) -> int | None:
        return None if v is None else round(v)

    rps = [s.req_per_s for s in timing if s.req_per_s is not None]
    probes = {s.server_tls_probe for s in timing}
    causes: dict[str, int] = {}
    for s in timing:
        for k, v in s.failures_by_cause.items():
            causes[k] = causes.get(k, 0) + v
    out: dict[str, Any] = {
        "requests": sum(s.requests for s in timing) if timing else None,
        "failures": sum(s.failures for s in timing) if timing else None,
        **{name: med(name) for name in (
            "req_per_s", "mbytes_per_s", "latency_ms_p50", "latency_ms_p90",
            "latency_ms_p99", "latency_ms_max", "cpu_s_per_request")},
        "rss_delta_bytes": as_int(med("rss_delta_bytes")),
        "live_heap_delta_bytes": as_int(med("live_heap_delta_bytes")),
        "tcp_data_segments_per_response": med_per_response("tcp_data_segments"),
        "tcp_bytes_per_response": med_per_response("tcp_bytes_sent"),
        "perf_write_syscalls_per_response": med_per_response("perf_write_syscalls"),
        "tls_records_received_per_response": med_per_response("tls_records_received_client"),
        "repeat": len(timing),
        "req_per_s_min": min(rps) if rps else None,
        "req_per_s_max": max(rps) if rps else None,
        "failures_by_cause": causes,
        "timing_tls_probe": probes.pop() if len(probes) == 1 else None,
        "rounds": [s.round_record() for s in timing],
        **write_timing_figures(timing),
    }
    # TLS figures: from the timing runs if they ran the probe (no counting run), else
    # from the counting run.
    out.update(tls_figures(med_per_response("tls_records"), med_per_response("tls_record_bytes"),
                           med_per_response("tls_plaintext_bytes"),
                           med_per_response("tls_ssl_writes"), 1))
    return out


def build_row(*, strategy: str | None, transport: str, body_bytes: int, driver: str,
              timing: list[TimingSample], counting: CountingSample | None,
              alloc_bytes_per_response: int | None, label: str = "",
              server: str = "writeshape", threads: bool = False,
              tls_mode: str | None = None, error: str | None = None,
              write_timing: TimingSample | None = None) -> ResultRow:
    """Fold the samples of one cell into its row (medians over repeats). ``write_timing``:
    a run with the server's write timing on, when the timing runs had it off."""
    row = ResultRow(strategy=strategy, transport=transport, body_bytes=body_bytes,
                    label=label, server=server, driver=driver, threads=threads,
                    tls_mode=tls_mode, error=error,
                    alloc_bytes_per_response=alloc_bytes_per_response)
    for name, value in timing_figures(timing).items():
        setattr(row, name, value)
    if counting is not None:
        for name, value in counting_figures(counting).items():
            if name.startswith("tls_") and value is None:
                continue  # keep what the timing runs measured, if anything
            setattr(row, name, value)
    if write_timing is not None:
        for name, value in write_timing_figures([write_timing]).items():
            setattr(row, name, value)
    return row
