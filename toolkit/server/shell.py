"""The writeshape HTTP/2 server: h2 for the protocol, a strategy for the DATA write shape.

The I/O shell. One asyncio loop drives readiness of raw non-blocking sockets
(``add_reader``/``add_writer``); no asyncio transport stands between a strategy and the
kernel, since ``transport.write`` copies and ``writelines`` joins. The listener and the
idle sweep live here; each accepted socket is a :class:`~toolkit.server.connection.Connection`
around a sans-I/O :class:`~toolkit.server.core.H2ServerCore`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import ssl
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from toolkit.errors import UsageError, WriteshapeError
from toolkit.protocol.body import BodyStore
from toolkit.server.config import ServerConfig
from toolkit.server.connection import RECV_BYTES, Connection
from toolkit.server.lean_h2 import silence_hpack_logging
from toolkit.server.memory import MemorySampler, memory_report
from toolkit.server.routes import Router
from toolkit.server.stats import ServerStats
from toolkit.server.tcp_reader import ClosingSocketReader

log = logging.getLogger("writeshape.server")


class Server:
    def __init__(self, cfg: ServerConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.loop = loop
        self.stats = ServerStats(cfg.strategy, cfg.transport,
                                 cfg.tls_mode if cfg.tls else None, cfg.tls_probe)
        self.stats.counters.time_writes(cfg.write_timing)
        try:
            bodies = BodyStore(cfg.body_bytes)
        except MemoryError:
            raise WriteshapeError(f"cannot allocate a body of {cfg.body_bytes} bytes: "
                                  "not enough memory (pick a smaller --body-size)") from None
        self.sampler = (MemorySampler(cfg.memory_sample_ms / 1000,
                                      lambda: self.stats.protocol.responses)
                        if cfg.memory_sample_ms else None)
        self.router = Router(bodies, cfg.body_bytes, cfg.max_bytes_endpoint,
                             mem=self._mem, stats=self.stats_dict,
                             series=self.sampler.series if self.sampler else lambda: None)
        self.connections: set[Connection] = set()
        self.ssl_context: ssl.SSLContext | None = None
        self.cert_bundle: Any = None
        self.listener: socket.socket | None = None
        self.recv_buffer = memoryview(bytearray(RECV_BYTES))  # reads happen on the loop only
        self.tcp_reader = ClosingSocketReader()
        self.stats.tcp_reader = self.tcp_reader

    def start(self) -> str:
        if self.cfg.tls:
            from tls_probe import make_server_context

            self.ssl_context, self.cert_bundle = make_server_context(
                tls_version=self.cfg.tls_version, alpn=("h2",))
        try:
            infos = socket.getaddrinfo(self.cfg.host, self.cfg.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise UsageError(f"cannot resolve --host {self.cfg.host!r}: {exc}") from exc
        family, _, _, _, addr = infos[0]
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            lsock.bind(addr)
        except OSError as exc:
            lsock.close()
            raise WriteshapeError(
                f"cannot listen on {self.cfg.host}:{self.cfg.port}: {exc.strerror} "
                "(pick another --port, or --port 0 for a free one)") from exc
        lsock.listen(1024)
        lsock.setblocking(False)
        self.listener = lsock
        self.loop.add_reader(lsock.fileno(), self._accept)
        host, port = lsock.getsockname()[:2]
        scheme = "https" if self.cfg.tls else "http"
        shown = f"[{host}]" if ":" in host else host
        self.loop.call_later(self._sweep_interval_s(), self._idle_sweep)
        return f"listening on {scheme}://{shown}:{port}"

    def _accept(self) -> None:
        assert self.listener is not None
        for _ in range(64):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: keep serving the others
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stats.connections_accepted += 1
            conn = Connection(self, sock, f"{addr[0]}:{addr[1]}")
            self.connections.add(conn)
            try:
                conn.start()
            except (OSError, ssl.SSLError) as exc:
                conn.close(f"start failed: {exc}")

    def _idle_sweep(self) -> None:
        try:
            now = time.monotonic()
            for conn in list(self.connections):
                try:
                    # Under the connection's lock: in --threads mode stream threads change
                    # its responses, h2 and TLS state while the sweep reads and closes.
                    with conn.lock:
                        conn.sweep(now)
                except Exception as exc:  # one bad connection must not end the sweeps
                    log.warning("idle sweep of %s failed: %s: %s", conn.peer,
                                exc.__class__.__name__, exc)
        finally:
            self.loop.call_later(self._sweep_interval_s(), self._idle_sweep)

    def _sweep_interval_s(self) -> float:
        # A stall is two sweeps with the same progress token idle_timeout apart: sweeping
        # four times per timeout closes a stalled connection within 1.25 timeouts.
        return min(5.0, max(0.05, min(self.cfg.idle_timeout_s, self.cfg.start_timeout_s) / 4))

    # ---- what /mem and /stats report ----------------------------------------------------
    def _mem(self, query: dict[str, list[str]]) -> dict[str, Any]:
        if query.get("tracemalloc") == ["start"] and not tracemalloc.is_tracing():
            tracemalloc.start()
        elif query.get("tracemalloc") == ["stop"] and tracemalloc.is_tracing():
            tracemalloc.stop()
        reset_peak = query.get("reset_peak") == ["1"]
        if reset_peak:
            self.tcp_reader.wait_idle()
        return memory_report(reset_peak=reset_peak)

    def stats_dict(self, query: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """``?write_timing=on|off`` switches the write timing first (for every connection):
        timing runs keep it off, then one load is timed with it on."""
        switch = (query or {}).get("write_timing")
        if switch in (["on"], ["off"]):
            self.stats.counters.time_writes(switch == ["on"])
        live = [st for c in list(self.connections) if (st := c.tls_stats()) is not None]
        return self.stats.to_dict(live) | {"event_loop": self.cfg.event_loop}

    def shutdown(self) -> None:
        if self.listener is not None:
            self.loop.remove_reader(self.listener.fileno())
            self.listener.close()
            self.listener = None
        for conn in list(self.connections):
            conn.shutdown()
        self.tcp_reader.stop()  # the last connections' counters belong in the final stats
        if self.sampler is not None:
            self.sampler.stop()
        if self.cfg.stats_json:
            with open(self.cfg.stats_json, "w") as fh:
                json.dump(self.stats_dict(), fh)


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """asyncio's loop or uvloop's: the shell uses add_reader/add_writer, call_later and
    signal handlers only, which both implement."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_server(cfg: ServerConfig, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then close connections and return (exit 0)."""
    logging.basicConfig(level=logging.WARNING, format="writeshape: %(message)s")
    silence_hpack_logging()
    if cfg.tracemalloc:
        tracemalloc.start()
    loop = new_event_loop(cfg.event_loop)
    server = Server(cfg, loop)
    line = server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if announce:
        announce(line)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        server.shutdown()
        loop.close()
