"""Measurement rows: plain data with units in the names. Nothing is measured here.

A figure that was not measured in a run is ``None`` (null in JSON), never 0.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TimingSample:
    """One untraced timing pass of one cell (one fresh server process)."""

    requests: int
    failures: int
    req_per_s: float
    mbytes_per_s: float | None
    latency_ms_p50: float | None
    latency_ms_p90: float | None
    latency_ms_p99: float | None
    latency_ms_max: float | None
    cpu_s_per_request: float | None
    rss_delta_bytes: int | None
    live_heap_delta_bytes: int | None
    responses: int
    tls_records: int | None
    tls_record_bytes: int | None
    tls_ssl_writes: int | None
    tls_plaintext_bytes: int | None
    tls_records_received_client: int | None
    tcp_data_segments: int | None
    tcp_bytes_sent: int | None
    server_rss_bytes_after: int | None
    failures_by_cause: dict[str, int] = field(default_factory=dict)
    server_tls_probe: bool | None = None  # the server's /stats "tls_probe" (membio only)


@dataclass
class CountingSample:
    """One traced counting pass: the server under strace, calls counted from its log."""

    responses: int
    write_syscalls: int  # all calls, EAGAIN included (what the process paid for)
    write_bytes: int
    syscalls: dict[str, int]
    server_syscalls: dict[str, int] | None
    self_count_matches_strace: bool | None
    unparsed_lines: int
    failed_write_syscalls: int = 0  # of write_syscalls, the ones that returned -1 (EAGAIN)
    strace_log: str | None = None
    # The server's TLS probe over the run (membio; null for h2c and stdlib).
    tls_records: int | None = None
    tls_record_bytes: int | None = None
    tls_ssl_writes: int | None = None
    tls_plaintext_bytes: int | None = None


@dataclass
class ResultRow:
    """One (strategy, transport, body size) cell: medians over the repeats."""

    strategy: str
    transport: str
    body_bytes: int
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
    alloc_bytes_per_response: int | None
    write_syscalls_per_response: float | None
    bytes_per_write_syscall: float | None
    syscalls: dict[str, float] | None
    tls_records_per_response: float | None
    tls_record_bytes_mean: float | None
    tls_overhead_bytes_per_response: float | None
    tcp_data_segments_per_response: float | None
    self_count_matches_strace: bool | None
    # Beyond the contract: spread, provenance, cross-checks.
    driver: str = "builtin"
    repeat: int = 1
    req_per_s_min: float | None = None
    req_per_s_max: float | None = None
    tls_ssl_writes_per_response: float | None = None
    tcp_bytes_per_response: float | None = None  # tcpi_bytes_sent: payload incl. TLS
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultRow:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.strategy, self.transport, self.body_bytes)


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


def build_row(*, strategy: str, transport: str, body_bytes: int, driver: str,
              timing: list[TimingSample], counting: CountingSample | None,
              alloc_bytes_per_response: int | None, threads: bool = False,
              tls_mode: str | None = None, error: str | None = None) -> ResultRow:
    """Fold the samples of one cell into its row (medians over repeats)."""

    def med(name: str) -> float | None:
        return median_or_none([getattr(s, name) for s in timing])

    def med_per_response(name: str) -> float | None:
        return median_or_none([per(getattr(s, name), s.responses) for s in timing])

    def as_int(v: float | None) -> int | None:
        return None if v is None else round(v)

    rps = [s.req_per_s for s in timing]
    probes = {s.server_tls_probe for s in timing}
    # TLS figures: from the timing runs if they ran the probe (no counting run), else
    # from the counting run below.
    tls = tls_figures(med_per_response("tls_records"), med_per_response("tls_record_bytes"),
                      med_per_response("tls_plaintext_bytes"),
                      med_per_response("tls_ssl_writes"), 1)
    causes: dict[str, int] = {}
    for s in timing:
        for k, v in s.failures_by_cause.items():
            causes[k] = causes.get(k, 0) + v
    row = ResultRow(
        strategy=strategy, transport=transport, body_bytes=body_bytes,
        requests=sum(s.requests for s in timing), failures=sum(s.failures for s in timing),
        req_per_s=med("req_per_s"), mbytes_per_s=med("mbytes_per_s"),
        latency_ms_p50=med("latency_ms_p50"), latency_ms_p90=med("latency_ms_p90"),
        latency_ms_p99=med("latency_ms_p99"), latency_ms_max=med("latency_ms_max"),
        cpu_s_per_request=med("cpu_s_per_request"),
        rss_delta_bytes=as_int(med("rss_delta_bytes")),
        live_heap_delta_bytes=as_int(med("live_heap_delta_bytes")),
        alloc_bytes_per_response=alloc_bytes_per_response,
        write_syscalls_per_response=None, bytes_per_write_syscall=None, syscalls=None,
        tls_records_per_response=tls["tls_records_per_response"],
        tls_record_bytes_mean=tls["tls_record_bytes_mean"],
        tls_overhead_bytes_per_response=tls["tls_overhead_bytes_per_response"],
        tcp_data_segments_per_response=med_per_response("tcp_data_segments"),
        self_count_matches_strace=None,
        driver=driver, repeat=len(timing),
        req_per_s_min=min(rps) if rps else None, req_per_s_max=max(rps) if rps else None,
        tls_ssl_writes_per_response=tls["tls_ssl_writes_per_response"],
        tcp_bytes_per_response=med_per_response("tcp_bytes_sent"),
        tls_records_received_per_response=med_per_response("tls_records_received_client"),
        threads=threads, tls_mode=tls_mode, failures_by_cause=causes, error=error,
        timing_tls_probe=probes.pop() if len(probes) == 1 else None,
    )
    if counting is not None:
        for name, value in counting_figures(counting).items():
            if name.startswith("tls_") and value is None:
                continue  # keep what the timing runs measured, if anything
            setattr(row, name, value)
    return row
