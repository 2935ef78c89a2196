"""The writeshape HTTP/2 server: h2 for the protocol, a strategy for the DATA write shape.

The I/O shell. One asyncio loop drives readiness of raw non-blocking sockets
(``add_reader``/``add_writer``); no asyncio transport stands between a strategy and the
kernel, since ``transport.write`` copies and ``writelines`` joins. Each connection:

    recv -> [TLS] -> h2.receive_data -> events -> responses
    responses -> flush (segments, bounded by flush_bytes) -> strategy plan
              -> [TLS: SSL_writes + ciphertext] -> SocketWriter (exact syscalls)

With ``threads=True`` every stream gets its own thread that builds and writes its DATA
flushes under the connection lock, as the review's server spawns a task per stream: the
body-sized buffer of ``single`` is then allocated by many threads (glibc arenas).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import select
import signal
import socket
import ssl
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import RstStreamFrame

from toolkit.errors import UsageError, WriteshapeError
from toolkit.protocol.body import BodyStore
from toolkit.server.guard import ConnectionGuard, GuardLimits, StallDetector, Verdict
from toolkit.server.memory import memory_report
from toolkit.server.socket_writer import SendCounters, SocketWriter
from toolkit.server.tcp_reader import ClosingSocketReader
from toolkit.server.tls_plan import tls_socket_calls
from toolkit.server.zero_copy import ZeroCopyH2Connection
from toolkit.strategies import (
    IOV_MAX,
    STRATEGIES,
    Buffer,
    Coalesce,
    SocketCall,
    SslWrite,
    Strategy,
    TlsStep,
    make_strategy,
)

log = logging.getLogger("writeshape.server")

RECV_BYTES = 256 * 1024
TLS_READ_BYTES = 16 * 1024  # one record's plaintext at most
MAX_BYTES_ENDPOINT = 1 << 30  # /bytes/N refuses more than 1 GiB
DYN_RECORD_IDLE_S = 1.0  # --dynamic-records: small records again after this long unwritten


@dataclass
class ServerConfig:
    strategy: str = "single"
    tls: bool = False
    host: str = "127.0.0.1"
    port: int = 8443
    body_bytes: int = 1 << 20
    threads: bool = False
    max_frame_bytes: int = 16384
    tls_mode: str = "membio"
    # membio without tls_probe's counters: the baseline that measures the probe's cost.
    tls_probe: bool = True
    tls_version: str = "1.3"
    flush_bytes: int = 1 << 20
    dynamic_records: bool = False
    coalesce_records_per_send: int = 1
    tracemalloc: bool = False
    stats_json: str | None = None
    # Protection limits (defaults close to nghttp2's; docs/limits.md, toolkit/guard.py).
    max_concurrent_streams: int = 100
    max_header_list_bytes: int = 65536
    idle_timeout_s: float = 120.0
    # A connection must have finished its TLS handshake and HTTP/2 preface by then: a
    # client that dribbles its start a byte at a time never looks idle (slowloris).
    start_timeout_s: float = 10.0
    max_control_frames_queued: int = GuardLimits.max_control_frames_queued
    max_control_frames_per_s: float = GuardLimits.max_control_frames_per_s
    control_frames_burst: int = GuardLimits.control_frames_burst
    max_resets_per_s: float = GuardLimits.max_resets_per_s
    reset_burst: int = GuardLimits.reset_burst
    max_settings_entries: int = GuardLimits.max_settings_entries
    max_continuations: int = GuardLimits.max_continuations
    max_bytes_endpoint: int = MAX_BYTES_ENDPOINT

    @property
    def transport(self) -> str:
        return "h2" if self.tls else "h2c"

    def ignored_options(self) -> list[str]:
        """Options that are valid but do nothing for this strategy (compare's
        --server-args passes the same ones to every server), one line each."""
        given = [name for name, on in (
            ("--dynamic-records", self.dynamic_records),
            ("--coalesce-records-per-send", self.coalesce_records_per_send != 1)) if on]
        if not given or self.strategy == "coalesce":
            return []
        return [f"{' and '.join(given)}: coalesce only; strategy {self.strategy} ignores it"]

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UsageError(
                f"unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}")
        make_strategy(self.strategy, tls=self.tls)  # raises for coalesce without TLS
        if not 1 <= self.max_frame_bytes <= (1 << 24) - 1:
            raise UsageError("--max-frame-size must be 1..16777215 (it caps DATA payloads)")
        if self.tls_mode not in ("membio", "stdlib"):
            raise UsageError("--tls-mode must be membio or stdlib")
        if not self.tls_probe and not (self.tls and self.tls_mode == "membio"):
            raise UsageError("--no-tls-probe applies to --tls with --tls-mode membio")
        if self.tls_version not in ("1.2", "1.3"):
            raise UsageError("--tls-version must be 1.2 or 1.3")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port must be 0..65535, not {self.port}")
        if not 1 <= self.coalesce_records_per_send <= IOV_MAX:
            raise UsageError("--coalesce-records-per-send must be 1..1024 (IOV_MAX)")
        if self.dynamic_records and not self.tls:
            raise UsageError("--dynamic-records sizes TLS records: it needs --tls")
        if self.flush_bytes < 1:
            raise UsageError("--flush-bytes must be at least 1")
        if self.max_concurrent_streams < 1:
            raise UsageError("--max-concurrent-streams must be at least 1")
        if self.max_header_list_bytes < 1:
            raise UsageError("--max-header-list-size must be at least 1")
        if not 0 <= self.max_bytes_endpoint <= MAX_BYTES_ENDPOINT:
            raise UsageError(f"--max-bytes-endpoint must be 0..{MAX_BYTES_ENDPOINT}")
        if not self.idle_timeout_s > 0:
            raise UsageError("--idle-timeout must be more than 0 seconds")
        if not self.start_timeout_s > 0:
            raise UsageError("--start-timeout must be more than 0 seconds")
        self.guard_limits().validate()

    def guard_limits(self) -> GuardLimits:
        return GuardLimits(
            max_control_frames_queued=self.max_control_frames_queued,
            max_control_frames_per_s=self.max_control_frames_per_s,
            control_frames_burst=self.control_frames_burst,
            max_resets_per_s=self.max_resets_per_s, reset_burst=self.reset_burst,
            max_settings_entries=self.max_settings_entries,
            max_continuations=self.max_continuations,
            max_header_block_bytes=self.max_header_list_bytes)


@dataclass
class ServerStats:
    strategy: str
    transport: str
    tls_mode: str | None
    tls_probe: bool = True
    responses: int = 0
    requests: int = 0
    connections_accepted: int = 0
    connections_closed: int = 0
    protocol_errors: int = 0
    refused: int = 0  # connections closed by a guard limit (toolkit/guard.py)
    stalled: int = 0  # connections closed for making no progress
    counters: SendCounters = field(default_factory=SendCounters)
    tls_closed: Any = None  # tls_probe.TlsStats of closed connections, summed
    tcp_reader: ClosingSocketReader | None = None

    def _record_counter(self) -> str | None:
        """Which record counter the probe runs: "c" or "python" (None: no probe)."""
        if self.transport != "h2" or self.tls_mode != "membio" or not self.tls_probe:
            return None
        from tls_probe.records import RECORD_COUNTER

        return RECORD_COUNTER

    def to_dict(self, live_tls: list[Any]) -> dict[str, Any]:
        tls: dict[str, Any] | None = None
        if self.transport == "h2":
            if self.tls_mode == "membio" and self.tls_probe:
                from tls_probe import TlsStats

                total = self.tls_closed or TlsStats.empty()
                for st in live_tls:
                    total = total + st
                tls = total.to_dict()
            elif self.tls_mode == "membio":  # --no-tls-probe: nothing counted, nothing shown
                tls = {"records": None, "record_bytes": None, "ssl_writes": None}
            else:  # OpenSSL's socket BIO writes the records: only the SSL_writes are ours.
                tls = {"records": None, "record_bytes": None,
                       "ssl_writes": self.counters.calls["ssl_write"]}
        return {
            "strategy": self.strategy,
            "transport": self.transport,
            "tls_mode": self.tls_mode,
            "tls_probe": self.tls_probe if self.tls_mode == "membio" else None,
            "tls_record_counter": self._record_counter(),
            "responses": self.responses,
            "requests": self.requests,
            "bytes_sent": self.counters.bytes_sent,
            "send_calls": self.counters.to_dict(),
            "send_calls_eagain": {"send": self.counters.eagain["send"],
                                  "sendmsg": self.counters.eagain["sendmsg"]},
            "syscalls": (self.counters.by_syscall()
                         if self.tls_mode != "stdlib" else None),
            "connections_accepted": self.connections_accepted,
            "connections_closed": self.connections_closed,
            "protocol_errors": self.protocol_errors,
            "connections_refused": self.refused,
            "connections_stalled": self.stalled,
            "tls": tls,
            "tcp": self.tcp_reader.snapshot() if self.tcp_reader else None,
        }


@dataclass
class Response:
    stream_id: int
    body: memoryview
    offset: int = 0

    @property
    def remaining(self) -> int:
        return len(self.body) - self.offset


def _h2_config() -> h2.config.H2Configuration:
    # Inbound headers are validated (clients may be hostile); outbound ones are ours and
    # fixed, so their validation and normalization would only cost time per response.
    return h2.config.H2Configuration(client_side=False, header_encoding=None,
                                     validate_inbound_headers=True,
                                     validate_outbound_headers=False,
                                     normalize_outbound_headers=False)


class _CountingH2Connection(ZeroCopyH2Connection):
    """Counts the frames h2 queues in ``data_to_send`` (ACKs, RST_STREAMs, HEADERS): what
    the connection owes a peer that may not be reading. DATA runs are captured by reference
    and never queued, so they are not counted."""

    queued_frames = 0
    resets_queued = 0

    def _prepare_for_sending(self, frames: list[Any]) -> None:
        if self._captured is None:
            self.queued_frames += len(frames)
            for frame in frames:
                if isinstance(frame, RstStreamFrame):
                    self.resets_queued += 1
        super()._prepare_for_sending(frames)


class Connection:
    """One client connection: h2 state, pending responses, the write pipeline."""

    def __init__(self, server: Server, sock: socket.socket, peer: str) -> None:
        self.server = server
        self.cfg = server.cfg
        self.sock = sock
        self.peer = peer
        self.loop = server.loop
        self.h2 = _CountingH2Connection(_h2_config())
        self.strategy: Strategy = make_strategy(self.cfg.strategy, tls=self.cfg.tls,
                                                dynamic_records=self.cfg.dynamic_records,
                                                coalesce_records_per_send=(
                                                    self.cfg.coalesce_records_per_send))
        self.writer = SocketWriter(sock, server.stats.counters)
        self.responses: dict[int, Response] = {}
        self.plan: Iterator[SocketCall] | None = None
        self.closed = False
        self.closing = False
        self.writing_registered = False
        self.last_activity_s = self.accepted_s = self.last_flush_s = time.monotonic()
        self.preface_done = False  # the client's preface and first SETTINGS arrived
        self.lock: threading.RLock | contextlib.nullcontext[None] = (
            threading.RLock() if self.cfg.threads else contextlib.nullcontext())
        self.window_open = threading.Condition(threading.Lock()) if self.cfg.threads else None
        self.tls: Any = None
        self.tls_stdlib: ssl.SSLSocket | None = None
        self.handshake_done = not self.cfg.tls
        self.guard = ConnectionGuard(server.guard_limits, self.last_activity_s)
        self.stall = StallDetector(self.cfg.idle_timeout_s)

    # ---- start -------------------------------------------------------------------
    def start(self) -> None:
        if self.cfg.tls and self.cfg.tls_mode == "membio":
            from tls_probe import InstrumentedTLS, MemoryBioTLS

            assert self.server.ssl_context is not None
            tls_class = InstrumentedTLS if self.cfg.tls_probe else MemoryBioTLS
            self.tls = tls_class(self.server.ssl_context, server_side=True)
        elif self.cfg.tls:
            assert self.server.ssl_context is not None
            # wrap_socket detaches the plain socket: from here on the SSLSocket is the socket.
            self.tls_stdlib = self.server.ssl_context.wrap_socket(
                self.sock, server_side=True, do_handshake_on_connect=False)
            self.sock = self.tls_stdlib
            self.writer = SocketWriter(self.tls_stdlib, self.server.stats.counters)
        if not self.cfg.tls:
            self._start_h2()
        self.loop.add_reader(self.sock.fileno(), self.on_readable)
        if self.tls_stdlib is not None:
            self._stdlib_handshake()

    def _start_h2(self) -> None:
        with self.lock:
            self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.cfg.max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.cfg.max_header_list_bytes,
            })
            self.h2.initiate_connection()
        self.pump()

    # ---- reading -----------------------------------------------------------------
    def on_readable(self) -> None:
        if self.closed:
            return
        if self.tls_stdlib is not None and not self.handshake_done:
            self._stdlib_handshake()  # recv() now would run the handshake implicitly
            return
        try:
            if self.tls_stdlib is None:
                # One reused receive buffer per server: recv(256 KiB) would allocate (and
                # count against every response) a 256 KiB object per read.
                buf = self.server.recv_buffer
                n = self.sock.recv_into(buf)
                data = bytes(buf[:n])
            else:
                data = self.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return
        except ssl.SSLWantWriteError:
            return
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            self.close(f"read failed: {exc.__class__.__name__}: {exc}")
            return
        if not data:
            self.close(None if not self.responses else "client closed mid-response")
            return
        self.last_activity_s = time.monotonic()
        if self.tls is not None:
            with self.lock:  # stream threads write through the same SSL object
                plaintext = self._tls_receive(data)
            if plaintext is None:
                return
            data = plaintext
        if data:
            try:
                self._h2_receive(data)
            except Exception as exc:  # one hostile peer must not leave a half-dead loop
                self.close(f"internal error: {exc.__class__.__name__}: {exc}")

    def _tls_receive(self, data: bytes) -> bytes | None:
        from tls_probe import TlsClosedError, TlsError

        tls = self.tls
        try:
            tls.feed_ciphertext(data)
            if not self.handshake_done:
                done = tls.do_handshake()
                out = tls.take_ciphertext()
                if out:
                    self._send_raw(out)
                if not done:
                    return None
                self.handshake_done = True
                if tls.alpn_protocol != "h2":
                    self.close(f"ALPN {tls.alpn_protocol!r} is not h2")
                    return None
                self._start_h2()
            chunks = []
            try:
                while True:
                    chunk = tls.read_plaintext(TLS_READ_BYTES)
                    if not chunk:
                        break
                    chunks.append(chunk)
            except TlsClosedError as exc:
                if not exc.clean:
                    raise
                # close_notify: hand h2 what came before it, then close quietly.
                self.loop.call_soon(self.close, None)
            return b"".join(chunks)
        except (TlsError, ssl.SSLError) as exc:
            self.close(f"TLS error: {exc}")
            return None
        except OSError as exc:  # the handshake reply could not be sent: peer gone
            self.close(f"write failed during the TLS handshake: {exc}")
            return None

    def _stdlib_handshake(self) -> None:
        assert self.tls_stdlib is not None
        try:
            self.tls_stdlib.do_handshake()
        except ssl.SSLWantReadError:
            return
        except ssl.SSLWantWriteError:
            self.loop.call_later(0.001, self._stdlib_handshake)
            return
        except (ssl.SSLError, OSError) as exc:
            self.close(f"TLS error: {exc}")
            return
        self.handshake_done = True
        if self.tls_stdlib.selected_alpn_protocol() != "h2":
            self.close(f"ALPN {self.tls_stdlib.selected_alpn_protocol()!r} is not h2")
            return
        self._start_h2()
        # The client's preface may have arrived with its Finished and sit in OpenSSL's
        # buffer, where the socket will not signal it as readable.
        self.loop.call_soon(self.on_readable)

    def _h2_receive(self, data: bytes) -> None:
        with self.lock:
            # The guard reads the frame headers first: a flood is refused before h2 does
            # (and queues replies for) any of it.
            verdict = self.guard.on_receive(data, self.last_activity_s)
            if verdict is not None:
                self._refuse(verdict)
                return
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                self.server.stats.protocol_errors += 1
                self._goaway_and_close(f"protocol error: {exc}", exc)
                return
            for ev in events:
                self._handle_event(ev)
                if self.closing:
                    return
        self.pump()
        # What the pump could not hand to the socket stays queued in h2: bounded.
        verdict = self.guard.on_replies(self.h2.queued_frames, self.h2.resets_queued,
                                        self.last_activity_s)
        self.h2.resets_queued = 0
        if verdict is not None and not self.closed:
            self._refuse(verdict)

    def _refuse(self, verdict: Verdict) -> None:
        self.server.stats.refused += 1
        self._goaway_and_close(f"{verdict.error_code.name}: {verdict.reason}",
                               verdict.error_code)

    def _handle_event(self, ev: h2.events.Event) -> None:
        if isinstance(ev, h2.events.RequestReceived):
            self._on_request(ev)
        elif isinstance(ev, h2.events.DataReceived):
            # Request bodies are not used; give the window back so clients never stall.
            if ev.flow_controlled_length and ev.stream_id in self.h2.streams:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            # The rate of resets (Rapid Reset) is the guard's: it counts RST_STREAM frames.
            self.responses.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.preface_done = True  # h2 reports the first SETTINGS after the preface
            if self.window_open is not None:
                with self.window_open:
                    self.window_open.notify_all()
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.closing = True
            self.loop.call_soon(self.close, None)

    # ---- requests ----------------------------------------------------------------
    def _on_request(self, ev: h2.events.RequestReceived) -> None:
        headers = {k: v for k, v in (ev.headers or [])}
        method = headers.get(b":method", b"")
        path = headers.get(b":path", b"/").decode("latin-1")
        self.server.stats.requests += 1
        status, body, ctype = self.server.route(method, path)
        sid = ev.stream_id
        resp_headers = [(b":status", str(status).encode()),
                        (b"content-length", str(len(body)).encode()),
                        (b"content-type", ctype), (b"server", b"writeshape")]
        if method == b"HEAD":  # the length of the body, and no body (RFC 9110 9.3.2)
            body = body[:0]
        try:
            self.h2.send_headers(sid, resp_headers, end_stream=len(body) == 0)
        except (h2.exceptions.StreamClosedError, h2.exceptions.StreamIDTooLowError):
            # Reset by the peer later in the same read (Rapid Reset): h2 has already
            # forgotten the stream. Nothing to answer.
            return
        if len(body) == 0:
            self.server.stats.responses += 1
            return
        resp = Response(sid, body)
        # In threads mode the stream's thread writes it; listed here all the same, so the
        # idle sweep's stall rule sees its progress as in event-loop mode.
        self.responses[sid] = resp
        if self.cfg.threads:
            threading.Thread(target=self._stream_thread, args=(resp,), daemon=True,
                             name=f"stream-{sid}").start()

    # ---- writing -----------------------------------------------------------------
    def build_flush(self, only: Response | None = None) -> list[Buffer]:
        """The segments of the next flush: h2's queued frames, then DATA frames taken
        round-robin from the responses while windows and the flush budget allow."""
        segs: list[Buffer] = []
        queued = self.h2.data_to_send()
        if queued:
            segs.append(queued)
            self.h2.queued_frames = 0
        budget = self.cfg.flush_bytes
        frame_max = min(self.h2.max_outbound_frame_size, self.cfg.max_frame_bytes)
        active = [only] if only is not None else list(self.responses.values())
        # Round-robin in slices of `quantum` frames: fair between streams, and one h2
        # call per slice instead of one per frame.
        quantum = frame_max * 16
        while budget > 0 and active:
            still = []
            for resp in active:
                sid = resp.stream_id
                stream = self.h2.streams.get(sid)
                if stream is None or stream.closed:  # reset by the peer: nothing to send
                    self.responses.pop(sid, None)
                    continue
                window = self.h2.local_flow_control_window(sid)
                if window <= 0:
                    continue
                n = min(resp.remaining, window, quantum, budget)
                end = n == resp.remaining
                self.h2.send_data_run(
                    sid, resp.body[resp.offset:resp.offset + n], frame_max, end, segs)
                resp.offset += n
                budget -= n
                if end:
                    self.server.stats.responses += 1
                    self.responses.pop(sid, None)
                else:
                    still.append(resp)
                if budget <= 0:
                    break
            active = still
        return segs

    def _plan(self, segs: list[Buffer]) -> Iterator[SocketCall]:
        if (self.cfg.dynamic_records and isinstance(self.strategy, Coalesce)
                and time.monotonic() - self.last_flush_s > DYN_RECORD_IDLE_S):
            # After a pause the congestion window has shrunk again (RFC 7661): start
            # over with small records, as nghttpx (tls-dyn-rec-idle-timeout) and h2o do.
            self.strategy.reset_idle()
        if self.tls is not None:
            return tls_socket_calls(self.tls, self.strategy.plan_tls(segs))
        if self.tls_stdlib is not None:
            return self._stdlib_calls(self.strategy.plan_tls(segs))
        return self.strategy.plan(segs)

    def _stdlib_calls(self, steps: Iterator[TlsStep]) -> Iterator[SocketCall]:
        # SSLSocket.send is one SSL_write; OpenSSL's socket BIO decides records and syscalls.
        for step in steps:
            if isinstance(step, SslWrite):
                yield SocketCall("send", (step.plaintext,))

    def _drive(self) -> bool:
        """Continue the current plan; True when it is complete, False if blocked."""
        try:
            if self.writer.busy and not self.writer.write_pending():
                return False
            plan = self.plan
            while plan is not None:
                call = next(plan, None)
                if call is None:
                    self.plan = None
                    self.last_flush_s = time.monotonic()  # writes idle from here
                    break
                if self.tls_stdlib is not None:
                    self.server.stats.counters.calls["ssl_write"] += 1
                if not self.writer.submit(call):
                    return False
        except ssl.SSLWantWriteError:
            return False
        return True

    def pump(self) -> None:
        """Write until the socket blocks or nothing is left (event-loop mode)."""
        if self.closed or not self.handshake_done:
            return
        with self.lock:
            try:
                for _ in range(64):  # then yield to the loop so reads are not starved
                    if not self._drive():
                        self._want_write(True)
                        return
                    segs = self.build_flush() if not self.cfg.threads else self._control_only()
                    if not segs:
                        self._want_write(False)
                        return
                    self.plan = self._plan(segs)
                self.loop.call_soon(self.pump)
            except (ConnectionError, OSError, ssl.SSLError) as exc:
                self.close(f"write failed: {exc.__class__.__name__}: {exc}")

    def _control_only(self) -> list[Buffer]:
        queued = self.h2.data_to_send()
        self.h2.queued_frames = 0
        return [queued] if queued else []

    def _want_write(self, on: bool) -> None:
        if on == self.writing_registered or self.closed:
            return
        fd = self.sock.fileno()
        if on:
            self.loop.add_writer(fd, self.pump)
        else:
            self.loop.remove_writer(fd)
        self.writing_registered = on

    def _send_raw(self, data: bytes) -> None:
        """Handshake ciphertext: not part of any strategy's shape, but counted."""
        while self.plan is not None or self.writer.busy:
            if not self._drive():
                self._wait_writable_blocking()
        if not self.writer.submit(SocketCall("send", (data,))):
            while not self._drive():
                self._wait_writable_blocking()

    def _wait_writable_blocking(self, timeout_s: float = 1.0) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLOUT | select.POLLERR | select.POLLHUP)
        poller.poll(timeout_s * 1000)

    # ---- thread per stream ----------------------------------------------------------
    def _stream_thread(self, resp: Response) -> None:
        """Write one response from its own thread, one flush at a time.

        The lock is held only to build a flush and to push the connection's current plan
        as far as the socket takes it; waits (writability, window) happen without it, so
        a slow reader stalls its own streams, never the event loop. Whoever holds the
        lock continues the one current plan, so flushes never interleave on the wire.
        """
        sid = resp.stream_id
        try:
            # No deadline of its own: a stream that stops moving (zero window, a peer that
            # stopped reading) is closed by the idle sweep's stall rule, as in loop mode.
            while not self.closed:
                blocked = window_shut = False
                with self.lock:
                    if self.plan is not None or self.writer.busy:
                        blocked = not self._drive()  # finish the current flush first
                    else:
                        stream = self.h2.streams.get(sid)
                        if resp.remaining == 0 or stream is None or stream.closed:
                            return  # sent, or reset by the peer
                        if self.h2.local_flow_control_window(sid) > 0:
                            self.plan = self._plan(self.build_flush(only=resp))
                            blocked = not self._drive()
                        else:
                            window_shut = True
                if blocked:
                    self._wait_writable_blocking(0.05)
                elif window_shut:
                    assert self.window_open is not None
                    with self.window_open:
                        self.window_open.wait(0.05)
        except h2.exceptions.StreamClosedError:
            return  # this stream only; the connection carries on
        except (ConnectionError, OSError, ssl.SSLError, h2.exceptions.ProtocolError) as exc:
            self.loop.call_soon_threadsafe(
                self.close, f"write failed: {exc.__class__.__name__}: {exc} (stream thread)")
        finally:
            if self.responses.get(sid) is resp:
                self.responses.pop(sid, None)

    # ---- closing -------------------------------------------------------------------
    def _goaway_and_close(self, reason: str, exc_or_code: Any = None) -> None:
        code = h2.errors.ErrorCodes.PROTOCOL_ERROR
        if isinstance(exc_or_code, h2.errors.ErrorCodes):
            code = exc_or_code
        elif isinstance(exc_or_code, h2.exceptions.ProtocolError):
            code = getattr(exc_or_code, "error_code", code)
        with contextlib.suppress(Exception):
            self.h2.close_connection(error_code=code)
        self.closing = True
        self.responses.clear()
        self._flush_best_effort()
        self.close(reason)

    def _flush_best_effort(self) -> None:
        """Send what h2 queued (GOAWAY) without blocking; drop it if the peer is gone."""
        with contextlib.suppress(Exception):
            queued = self.h2.data_to_send()
            if not queued or self.writer.busy or self.plan is not None:
                return
            if self.tls is not None:
                self.tls.write_plaintext(queued)
                queued = self.tls.take_ciphertext()
            self.writer.submit(SocketCall("send", (queued,)))

    def shutdown(self) -> None:
        """Server stopping: GOAWAY(NO_ERROR), then close."""
        with contextlib.suppress(Exception):
            self.h2.close_connection()
        self._flush_best_effort()
        self.close(None)

    def tls_stats(self) -> Any:
        """This connection's tls_probe.TlsStats, None without the probe. Under the lock: in
        --threads mode a stream thread may be writing through the same counters."""
        if self.tls is None or not self.cfg.tls_probe:
            return None
        with self.lock:
            return self.tls.stats

    def close(self, reason: str | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.responses.clear()
        stats = self.server.stats
        stats.connections_closed += 1
        if reason:
            log.warning("connection %s closed: %s", self.peer, reason)
        fd = self.sock.fileno()
        if fd >= 0:
            self.loop.remove_reader(fd)
            if self.writing_registered:
                self.loop.remove_writer(fd)
        st = self.tls_stats()
        if st is not None:
            stats.tls_closed = st if stats.tls_closed is None else stats.tls_closed + st
        self.server.connections.discard(self)
        if self.window_open is not None:
            with self.window_open:
                self.window_open.notify_all()
        # Counters are read from the kernel (sock_diag) before the socket is closed, off
        # the event loop; the reader closes it.
        self.server.tcp_reader.read_and_close(self.sock)


class Server:
    def __init__(self, cfg: ServerConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.loop = loop
        self.stats = ServerStats(cfg.strategy, cfg.transport,
                                 cfg.tls_mode if cfg.tls else None, cfg.tls_probe)
        self.bodies = BodyStore(cfg.body_bytes)
        self.default_body = self.bodies.view(cfg.body_bytes)
        self.connections: set[Connection] = set()
        self.ssl_context: ssl.SSLContext | None = None
        self.cert_bundle: Any = None
        self.listener: socket.socket | None = None
        self.recv_buffer = memoryview(bytearray(RECV_BYTES))  # reads happen on the loop only
        self.guard_limits = cfg.guard_limits()
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
                        self._sweep_one(conn, now)
                except Exception as exc:  # one bad connection must not end the sweeps
                    log.warning("idle sweep of %s failed: %s: %s", conn.peer,
                                exc.__class__.__name__, exc)
        finally:
            self.loop.call_later(self._sweep_interval_s(), self._idle_sweep)

    def _sweep_one(self, conn: Connection, now: float) -> None:
        if conn.closed:
            return
        if not conn.preface_done and now - conn.accepted_s > self.cfg.start_timeout_s:
            what = "TLS handshake and HTTP/2 preface" if self.cfg.tls else "HTTP/2 preface"
            conn._goaway_and_close(
                f"start timeout: {what} not complete after {self.cfg.start_timeout_s:g} s",
                h2.errors.ErrorCodes.NO_ERROR)
            return
        if now - conn.last_activity_s > self.cfg.idle_timeout_s and not conn.responses:
            conn._goaway_and_close("idle timeout", h2.errors.ErrorCodes.NO_ERROR)
            return
        if conn.stall.observe(_progress_token(conn), bool(conn.responses), now):
            # Zero windows or a peer that stopped reading: its responses would hold
            # their stream slots (and, under TLS, a flush of ciphertext) forever.
            self.stats.stalled += 1
            conn._goaway_and_close(
                f"stalled: no response progress for {self.cfg.idle_timeout_s:g} s "
                "(zero window or peer not reading)", h2.errors.ErrorCodes.NO_ERROR)
            return

    def _sweep_interval_s(self) -> float:
        # A stall is two sweeps with the same progress token idle_timeout apart: sweeping
        # four times per timeout closes a stalled connection within 1.25 timeouts.
        return min(5.0, max(0.05, min(self.cfg.idle_timeout_s, self.cfg.start_timeout_s) / 4))

    # ---- endpoints -----------------------------------------------------------------
    def route(self, method: bytes, target: str) -> tuple[int, memoryview, bytes]:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        if method not in (b"GET", b"HEAD"):
            return 405, memoryview(b"method not allowed\n"), b"text/plain"
        if path == "/":
            return 200, self.default_body, b"application/octet-stream"
        if path.startswith("/bytes/"):
            text = path[len("/bytes/"):]
            # isascii: str.isdigit() also accepts digits that int() refuses ('²').
            if not (text.isascii() and text.isdigit()) or \
                    int(text) > self.cfg.max_bytes_endpoint:
                # The body store grows to the largest body asked for: this caps its RSS.
                return 400, memoryview(
                    f"/bytes/N takes 0 <= N <= {self.cfg.max_bytes_endpoint}\n".encode()
                ), b"text/plain"
            return 200, self.bodies.view(int(text)), b"application/octet-stream"
        if path == "/mem":
            if query.get("tracemalloc") == ["start"] and not tracemalloc.is_tracing():
                tracemalloc.start()
            elif query.get("tracemalloc") == ["stop"] and tracemalloc.is_tracing():
                tracemalloc.stop()
            reset_peak = query.get("reset_peak") == ["1"]
            if reset_peak:
                self.tcp_reader.wait_idle()
            report = memory_report(reset_peak=reset_peak)
            return 200, memoryview(json.dumps(report).encode()), b"application/json"
        if path == "/stats":
            return 200, memoryview(json.dumps(self.stats_dict()).encode()), b"application/json"
        return 404, memoryview(b"not found\n"), b"text/plain"

    def stats_dict(self) -> dict[str, Any]:
        live = [st for c in list(self.connections) if (st := c.tls_stats()) is not None]
        return self.stats.to_dict(live)

    def shutdown(self) -> None:
        if self.listener is not None:
            self.loop.remove_reader(self.listener.fileno())
            self.listener.close()
            self.listener = None
        for conn in list(self.connections):
            conn.shutdown()
        self.tcp_reader.stop()  # the last connections' counters belong in the final stats
        if self.cfg.stats_json:
            with open(self.cfg.stats_json, "w") as fh:
                json.dump(self.stats_dict(), fh)


_TCP_INFO_BYTES = 232
_TCPI_BYTES_ACKED = struct.Struct("=Q")  # struct tcp_info.tcpi_bytes_acked, offset 120
_TCPI_BYTES_ACKED_OFFSET = 120


def _bytes_acked(sock: socket.socket) -> int | None:
    """Bytes the peer has acknowledged on ``sock`` (TCP_INFO), None if unavailable."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except OSError:
        return None
    if len(raw) < _TCPI_BYTES_ACKED_OFFSET + 8:
        return None
    return int(_TCPI_BYTES_ACKED.unpack_from(raw, _TCPI_BYTES_ACKED_OFFSET)[0])


def _progress_token(conn: Connection) -> object:
    """Changes whenever a connection's responses move: a new flush was built (offsets), or
    a flush in progress drains (the peer acknowledged bytes). Read every sweep, not per write.
    Acknowledged bytes count only while a flush is in progress, so PING ACKs cannot keep a
    zero-window connection looking alive."""
    offsets = tuple((sid, r.offset) for sid, r in conn.responses.items())
    writing = conn.plan is not None or conn.writer.busy
    return offsets, _bytes_acked(conn.sock) if writing and not conn.closed else None


def run_server(cfg: ServerConfig, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then close connections and return (exit 0)."""
    logging.basicConfig(level=logging.WARNING, format="writeshape: %(message)s")
    if cfg.tracemalloc:
        tracemalloc.start()
    loop = asyncio.new_event_loop()
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
