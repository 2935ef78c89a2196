"""A server's counters before and after a timing run, and what the run added.

The comparison runner and the pytest plugin both measure a timing run this way:

    before = take_snapshot(server)      # settled: closed connections read, /mem, /stats, CPU
    ... load ...
    after = take_snapshot(server)
    sample = timing_sample(summary, before, after)

``server`` is anything with ``stats()``, ``mem()`` and ``server_pid`` (a
:class:`~toolkit.server.process.ServerProcess`). Control requests (/stats, /mem) are
counted in the deltas like any response: a handful against hundreds or thousands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from toolkit.clients.summary import LoadSummary
from toolkit.measure.rows import TimingSample


class ControlledServer(Protocol):
    server_pid: int | None

    def stats(self) -> dict[str, Any]: ...

    def mem(self) -> dict[str, Any]: ...


@dataclass
class Snapshot:
    stats: dict[str, Any]
    mem: dict[str, Any]
    cpu_s: float | None
    # Every connection the load closed was closed by the server and its tcp_info read.
    settled: bool


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process, None if it cannot be read."""
    if pid is None:
        return None
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(t.user + t.system)


def _settled_stats(srv: ControlledServer, timeout_s: float) -> tuple[dict[str, Any], bool]:
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


def _cpu_s(srv: ControlledServer, stats: dict[str, Any]) -> float | None:
    """The server's CPU time as it reports it (ns), else as psutil sees it (10 ms ticks)."""
    ns = stats.get("process_cpu_ns")
    if isinstance(ns, int):
        return ns / 1e9
    return process_cpu_s(srv.server_pid)


def take_snapshot(srv: ControlledServer, *, after_load: bool = False,
                  timeout_s: float = 10.0) -> Snapshot:
    """The server's counters, memory and CPU time, read next to the load: before it, /mem
    (which collects garbage) first and /stats last; after it, /stats first. The control
    requests' own work stays outside the delta."""
    if after_load:
        stats, settled = _settled_stats(srv, timeout_s)
        mem = srv.mem()
    else:
        mem = srv.mem()
        stats, settled = _settled_stats(srv, timeout_s)
    return Snapshot(stats=stats, mem=mem, cpu_s=_cpu_s(srv, stats), settled=settled)


def refreshed(srv: ControlledServer, last: Snapshot) -> Snapshot:
    """The previous round's closing snapshot made current again for the next round: the
    server was idle since, so its memory stands; its counters and CPU time are read anew
    (one /stats, next to the load)."""
    stats = srv.stats()
    return Snapshot(stats=stats, mem=last.mem, cpu_s=_cpu_s(srv, stats), settled=last.settled)


def dig(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def delta(before: Snapshot, after: Snapshot, *path: str) -> int | None:
    """after - before of one /stats counter; None if either side lacks it."""
    a, b = dig(before.stats, *path), dig(after.stats, *path)
    return None if a is None or b is None else b - a


def _minus(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


def timing_sample(load: LoadSummary, before: Snapshot, after: Snapshot) -> TimingSample:
    """One timing run: what the load client saw, and what the server's counters added."""
    cpu_s = _minus(after.cpu_s, before.cpu_s)  # type: ignore[arg-type]
    # tcp_info is read when a connection closes: a figure only if every connection the
    # load closed was read (one unreadable connection would undercount).
    tcp_ok = (before.settled and after.settled and bool(delta(before, after, "tcp", "connections"))
              and not delta(before, after, "tcp", "failed"))
    # Write timing counts only if it was on at both ends (it is switched, never paused).
    timed = bool(dig(before.stats, "write_timing", "on") and dig(after.stats, "write_timing", "on"))
    return TimingSample(
        requests=load.requests, failures=load.failures,
        req_per_s=load.req_per_s, mbytes_per_s=load.mbytes_per_s,
        latency_ms_p50=load.latency_ms_p50, latency_ms_p90=load.latency_ms_p90,
        latency_ms_p99=load.latency_ms_p99, latency_ms_max=load.latency_ms_max,
        cpu_s_per_request=cpu_s / load.requests if cpu_s is not None and load.requests
        else None,
        rss_delta_bytes=_minus(dig(after.mem, "rss_bytes"), dig(before.mem, "rss_bytes")),
        live_heap_delta_bytes=_minus(dig(after.mem, "live_heap_bytes"),
                                     dig(before.mem, "live_heap_bytes")),
        responses=delta(before, after, "responses"),
        # Application records only: handshakes are per connection, not per response.
        tls_records=delta(before, after, "tls", "application_records"),
        tls_record_bytes=delta(before, after, "tls", "application_record_bytes"),
        tls_ssl_writes=delta(before, after, "tls", "ssl_writes"),
        tls_plaintext_bytes=delta(before, after, "tls", "plaintext_bytes"),
        tls_records_received_client=load.tls_records_received,
        tcp_data_segments=delta(before, after, "tcp", "data_segs_out") if tcp_ok else None,
        tcp_bytes_sent=delta(before, after, "tcp", "bytes_sent") if tcp_ok else None,
        server_rss_bytes_after=dig(after.mem, "rss_bytes"),
        rss_bytes_before=dig(before.mem, "rss_bytes"),
        live_heap_bytes_before=dig(before.mem, "live_heap_bytes"),
        live_heap_bytes_after=dig(after.mem, "live_heap_bytes"),
        failures_by_cause=dict(load.failures_by_cause),
        server_tls_probe=after.stats.get("tls_probe"),
        write_send_ns=delta(before, after, "write_timing", "send_ns") if timed else None,
        write_tls_ns=delta(before, after, "write_timing", "tls_ns") if timed else None,
    )
