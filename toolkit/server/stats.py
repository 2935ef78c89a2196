"""The server's own counts, as `GET /stats` reports them (contract: docs of `/stats`).

Plain data: the protocol core adds requests and responses, the socket writer its calls,
the shell connections and TLS; nothing here does I/O but for reading the TCP counter
reader's totals when asked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from toolkit.server.socket_writer import SendCounters

if TYPE_CHECKING:
    from toolkit.server.tcp_reader import ClosingSocketReader


@dataclass
class ProtocolCounters:
    """What the HTTP/2 cores of all connections counted."""

    requests: int = 0
    responses: int = 0
    protocol_errors: int = 0
    refused: int = 0  # connections closed by a guard limit (toolkit/server/guard.py)
    stalled: int = 0  # connections closed for making no progress


@dataclass
class ServerStats:
    strategy: str
    transport: str
    tls_mode: str | None
    tls_probe: bool = True
    connections_accepted: int = 0
    connections_closed: int = 0
    protocol: ProtocolCounters = field(default_factory=ProtocolCounters)
    counters: SendCounters = field(default_factory=SendCounters)
    tls_closed: Any = None  # tls_probe.TlsStats of closed connections, summed
    tcp_reader: ClosingSocketReader | None = None

    def _record_counter(self) -> str | None:
        """Which record counter the probe runs: "c" or "python" (None: no probe)."""
        if self.transport != "h2" or self.tls_mode != "membio" or not self.tls_probe:
            return None
        from tls_probe.records import RECORD_COUNTER

        return RECORD_COUNTER

    def add_closed_tls(self, st: Any) -> None:
        self.tls_closed = st if self.tls_closed is None else self.tls_closed + st

    def _tls_dict(self, live_tls: list[Any]) -> dict[str, Any] | None:
        if self.transport != "h2":
            return None
        if self.tls_mode == "membio" and self.tls_probe:
            from tls_probe import TlsStats

            total = self.tls_closed or TlsStats.empty()
            for st in live_tls:
                total = total + st
            return dict(total.to_dict())
        if self.tls_mode == "membio":  # --no-tls-probe: nothing counted, nothing shown
            return {"records": None, "record_bytes": None, "ssl_writes": None}
        # OpenSSL's socket BIO writes the records: only the SSL_writes are ours.
        return {"records": None, "record_bytes": None,
                "ssl_writes": self.counters.calls["ssl_write"]}

    def _write_timing_dict(self) -> dict[str, Any]:
        """Nanoseconds inside the write path's own calls while the timing was ``on``:
        ``send_ns``, the socket calls (under --tls-mode stdlib each is an SSL_write and
        its syscall, which cannot be told apart: ``tls_ns`` is null there); ``tls_ns``,
        the TLS plan's steps between socket calls (the strategy's steps, SSL_writes into
        the memory BIO, taking and, with the probe, counting the records). Deltas are
        per response only over a load that ran with the timing on throughout."""
        c = self.counters
        return {"on": c.timed, "send_ns": c.send_ns,
                "tls_ns": c.tls_ns if self.transport == "h2" and self.tls_mode == "membio"
                else None}

    def to_dict(self, live_tls: list[Any]) -> dict[str, Any]:
        p = self.protocol
        return {
            "strategy": self.strategy,
            "transport": self.transport,
            "tls_mode": self.tls_mode,
            "tls_probe": self.tls_probe if self.tls_mode == "membio" else None,
            "tls_record_counter": self._record_counter(),
            "responses": p.responses,
            "requests": p.requests,
            "bytes_sent": self.counters.bytes_sent,
            "send_calls": self.counters.to_dict(),
            "send_calls_eagain": {"send": self.counters.eagain["send"],
                                  "sendmsg": self.counters.eagain["sendmsg"]},
            "syscalls": (self.counters.by_syscall()
                         if self.tls_mode != "stdlib" else None),
            "connections_accepted": self.connections_accepted,
            "connections_closed": self.connections_closed,
            "protocol_errors": p.protocol_errors,
            "connections_refused": p.refused,
            "connections_stalled": p.stalled,
            "tls": self._tls_dict(live_tls),
            "tcp": self.tcp_reader.snapshot() if self.tcp_reader else None,
            # The process's CPU time (all threads), in ns: finer than the 10 ms ticks an
            # outside reader (psutil) sees, which quantise a short round's CPU per request.
            "process_cpu_ns": time.process_time_ns(),
            "write_timing": self._write_timing_dict(),
        }
