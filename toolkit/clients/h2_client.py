"""One connection of the built-in load generator (toolkit/clients/builtin.py), and its run state.

It runs on the same 2-core machine as the server it measures, so the hot path is lean:

* python-hyper/h2 owns the protocol state (SETTINGS, HEADERS, HPACK, stream states,
  RST_STREAM, GOAWAY). DATA frames of streams whose response headers h2 has already
  delivered take a fast path: the payload is checked in place in the receive buffer
  (a memcmp against a precomputed pattern slice) and counted, never copied into an
  h2 event. h2 sees a zero-length DATA frame carrying END_STREAM instead, so its stream
  state machine still closes the stream. (h2 copies and hex-dumps every DATA payload
  it parses, about 30 us per 16 KiB frame: that would make the client the bottleneck.)
* Flow control: SETTINGS_INITIAL_WINDOW_SIZE 2^30-1 and a connection WINDOW_UPDATE to
  2^30-1 at start; consumed bytes are returned with WINDOW_UPDATE once a quarter of a
  window is used, so the server is never window-starved.
* Receiving uses asyncio.BufferedProtocol (recv_into a reusable buffer). Writes are
  batched: one transport.write per received chunk.

TLS goes through memory BIOs (tls_probe.InstrumentedTLS) so that the
client also counts the TLS records it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from tls_probe.errors import TlsProbeError
from toolkit.clients.latency import LatencyHistogram
from toolkit.clients.target import Target
from toolkit.protocol.body import matches_pattern
from toolkit.protocol.frames import (
    END_STREAM,
    FRAME_HEADER_BYTES,
    PADDED,
    FrameType,
    unpack_header,
    window_update_frame,
)

if TYPE_CHECKING:
    from toolkit.clients.builtin import LoadConfig

INITIAL_WINDOW = 2**30 - 1
_WINDOW_UPDATE_THRESHOLD = INITIAL_WINDOW // 4
_DATA = int(FrameType.DATA)
_RECV_CHUNK = 256 * 1024

FAILURE_CAUSES = (
    "connect", "tls", "reset", "goaway", "status", "length", "pattern", "timeout", "protocol",
)  # fmt: skip


# --- TLS adapter ------------------------------------------------------------------------


def make_tls(ctx: ssl.SSLContext, server_hostname: str) -> Any:
    from tls_probe import InstrumentedTLS

    return InstrumentedTLS(ctx, server_side=False, server_hostname=server_hostname)


def make_client_context(cfg: LoadConfig) -> ssl.SSLContext:
    from tls_probe import make_client_context as probe_ctx

    return probe_ctx(cfg.ca_pem_path, insecure=cfg.insecure, alpn=("h2",))



# --- shared run state ---------------------------------------------------------------------


@dataclass
class StreamState:
    started: float
    measured: bool
    status: int | None = None
    content_length: int | None = None
    ttfb: float | None = None
    received: int = 0
    unacked: int = 0  # stream-level flow-controlled bytes not yet returned
    pattern_ok: bool = True


@dataclass
class RunState:
    cfg: LoadConfig
    target: Target
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    ttfb: LatencyHistogram = field(default_factory=LatencyHistogram)
    ok: int = 0
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_CAUSES, 0))
    body_bytes: int = 0
    warmup_left: int = 0
    measured_left: int | None = None  # None: duration mode
    deadline: float | None = None
    stop_issuing: bool = False
    last_progress_s: float = field(default_factory=time.perf_counter)
    measuring: bool = False
    in_flight: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    clients: list[H2LoadConnection] = field(default_factory=list)

    def take_ticket(self) -> bool | None:
        """None: no more requests; else whether the request is measured."""
        if self.stop_issuing:
            return None
        if self.warmup_left > 0:
            self.warmup_left -= 1
            return False
        if not self.measuring:
            return None  # warm-up drained, measurement not started yet
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return None
        if self.measured_left is not None:
            if self.measured_left <= 0:
                return None
            self.measured_left -= 1
        return True

    def tickets_done(self) -> bool:
        """True when no request will be issued any more in this phase."""
        if self.stop_issuing:
            return True
        if self.warmup_left > 0:
            return False
        if not self.measuring:
            return True
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return True
        return self.measured_left is not None and self.measured_left <= 0

    def fail(self, cause: str, measured: bool = True) -> None:
        if measured:
            self.failures[cause] = self.failures.get(cause, 0) + 1


class ConnectionFailed(Exception):
    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause



# --- one connection ---------------------------------------------------------------------


class H2LoadConnection(asyncio.BufferedProtocol):
    def __init__(self, run: RunState, tls: Any | None) -> None:
        self.run = run
        self.tls: Any = tls
        self.transport: asyncio.Transport | None = None
        cfg = h2.config.H2Configuration(
            client_side=True, header_encoding=None,
            # Header linting costs ~40 us per request; a load generator measures, it
            # does not lint (our request headers are constant, the response is checked
            # for status, content-length and body below).
            validate_outbound_headers=False, normalize_outbound_headers=False,
            validate_inbound_headers=False, normalize_inbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(cfg)
        settings = {
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: INITIAL_WINDOW,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        }
        if run.cfg.max_frame_size:
            settings[h2.settings.SettingCodes.MAX_FRAME_SIZE] = run.cfg.max_frame_size
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.max_frame = self.h2.local_settings.max_frame_size
        self.streams: dict[int, StreamState] = {}
        # Receive buffer: room for one maximal frame plus one socket read.
        self.buf = bytearray(self.max_frame + FRAME_HEADER_BYTES + 2 * _RECV_CHUNK)
        self.start = 0
        self.end = 0
        self.cipher_buf = bytearray(_RECV_CHUNK)
        self.out: list[bytes] = []
        self.conn_unacked = 0
        self.fast_path = True
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.dead_cause: str | None = None
        self.handshaken = False
        self.request_headers = [
            (b":method", b"GET"),
            (b":scheme", b"https" if run.target.tls else b"http"),
            (b":authority", run.target.authority.encode()),
            (b":path", run.target.path.encode()),
        ]

    # asyncio callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is None:
            self._start_h2()
        else:
            self._tls_handshake()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.tls is not None:
            return memoryview(self.cipher_buf)
        self._make_room()
        return memoryview(self.buf)[self.end:]

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self.tls is not None:
                self.tls.feed_ciphertext(bytes(self.cipher_buf[:nbytes]))
                if not self.handshaken and not self._tls_handshake():
                    return
                # One read returns at most one buffer's worth: drain everything fed, or
                # plaintext would sit in OpenSSL with no socket event to fetch it.
                while plain := self.tls.read_plaintext():
                    self._append(plain)
            else:
                self.end += nbytes
            self._parse()
        except h2.exceptions.ProtocolError as exc:
            self._die("protocol", str(exc))
        except (ssl.SSLError, TlsProbeError) as exc:
            self._die("tls", str(exc))
        self._flush()

    def eof_received(self) -> bool | None:
        self._die("reset", "server closed the connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._die("reset", str(exc) if exc else "connection closed")
        if not self.closed.done():
            self.closed.set_result(None)

    # TLS -------------------------------------------------------------------------------
    def _tls_handshake(self) -> bool:
        try:
            done = self.tls.do_handshake()
        except ssl.SSLError as exc:
            self._die("tls", f"TLS handshake failed: {exc}")
            return False
        self._write_raw(self.tls.take_ciphertext())
        if done:
            self.handshaken = True
            if self.tls.alpn_protocol != "h2":
                self._die("tls", f"server did not negotiate h2 via ALPN "
                                 f"(got {self.tls.alpn_protocol!r})")
                return False
            self._start_h2()
        return done

    def _write_raw(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # HTTP/2 ------------------------------------------------------------------------------
    def _start_h2(self) -> None:
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(INITIAL_WINDOW - 65535)
        self._flush()

    def _make_room(self) -> None:
        if len(self.buf) - self.end >= _RECV_CHUNK:
            return
        n = self.end - self.start
        self.buf[:n] = self.buf[self.start:self.end]
        self.start, self.end = 0, n

    def _append(self, data: bytes) -> None:
        if not data:
            return
        if len(self.buf) - self.end < len(data):
            n = self.end - self.start
            self.buf[:n] = self.buf[self.start:self.end]
            self.start, self.end = 0, n
            if len(self.buf) - n < len(data):
                self.buf.extend(bytes(len(data) - (len(self.buf) - n)))
        self.buf[self.end:self.end + len(data)] = data
        self.end += len(data)

    def _parse(self) -> None:
        """Walks whole frames: DATA of known streams in place, the rest through h2."""
        buf, pos, end = self.buf, self.start, self.end
        pending_from = pos  # start of a run of frames still to hand to h2
        streams = self.streams
        while end - pos >= FRAME_HEADER_BYTES:
            length, ftype, flags, sid = unpack_header(buf, pos)
            if end - pos < FRAME_HEADER_BYTES + length:
                break
            if ftype != _DATA or sid not in streams or not self.fast_path:
                pos += FRAME_HEADER_BYTES + length
                continue
            if pending_from < pos:
                # Let h2 see what came before (this stream's HEADERS, usually) first.
                self._feed_h2(bytes(buf[pending_from:pos]))
                pending_from = pos
            st = streams.get(sid)
            if st is None or st.status is None or length > self.max_frame:
                pos += FRAME_HEADER_BYTES + length
                continue
            self._fast_data(st, sid, flags, pos + FRAME_HEADER_BYTES, length)
            pos += FRAME_HEADER_BYTES + length
            pending_from = pos
        if pending_from < pos:
            self._feed_h2(bytes(buf[pending_from:pos]))
        self.start = pos
        if self.start == self.end:
            self.start = self.end = 0

    def _fast_data(self, st: StreamState, sid: int, flags: int, at: int, length: int) -> None:
        n = length
        if flags & PADDED and length:
            pad = self.buf[at]
            at += 1
            n = length - 1 - pad
        if n > 0:
            if self.run.cfg.verify_body and st.pattern_ok:
                st.pattern_ok = matches_pattern(self.buf, at, n, st.received)
            st.received += n
        self._consumed(st, sid, length)
        if flags & END_STREAM:
            # h2 must still see END_STREAM; the body length is checked by us, not by h2
            # (it never saw the payload), so its own content-length tracking is cleared.
            h2_stream = self.h2.streams.get(sid)
            if h2_stream is not None and hasattr(h2_stream, "_expected_content_length"):
                h2_stream._expected_content_length = None
                self._feed_h2(b"\x00\x00\x00\x00\x01" + sid.to_bytes(4, "big"))
            else:  # an h2 without that attribute: stop bypassing it for good
                self.fast_path = False
                self._finish(sid, st)

    def _consumed(self, st: StreamState | None, sid: int, flow_len: int) -> None:
        self.conn_unacked += flow_len
        if self.conn_unacked >= _WINDOW_UPDATE_THRESHOLD:
            self.out.append(window_update_frame(0, self.conn_unacked))
            self.conn_unacked = 0
        if st is not None:
            st.unacked += flow_len
            if st.unacked >= _WINDOW_UPDATE_THRESHOLD:
                self.out.append(window_update_frame(sid, st.unacked))
                st.unacked = 0

    def _feed_h2(self, data: bytes) -> None:
        for ev in self.h2.receive_data(data):
            self._on_event(ev)

    def _on_event(self, ev: h2.events.Event) -> None:
        if isinstance(ev, h2.events.ResponseReceived):
            st = self.streams.get(ev.stream_id)
            if st is None:
                return
            st.ttfb = time.perf_counter()
            for name, value in ev.headers:
                if name == b":status":
                    st.status = int(value)
                elif name == b"content-length":
                    st.content_length = int(value)
        elif isinstance(ev, h2.events.DataReceived):
            # Slow path (DATA before we knew the stream, or fast path off).
            st = self.streams.get(ev.stream_id)
            data = ev.data or b""
            if st is not None:
                if self.run.cfg.verify_body and st.pattern_ok and data:
                    st.pattern_ok = matches_pattern(data, 0, len(data), st.received)
                st.received += len(data)
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                self._finish(ev.stream_id, st)
        elif isinstance(ev, h2.events.StreamReset):
            st = self.streams.pop(ev.stream_id, None)
            if st is not None:
                self._fail_stream(st, "reset")
        elif isinstance(ev, h2.events.ConnectionTerminated):
            last = ev.last_stream_id if ev.last_stream_id is not None else 0
            for sid in [s for s in self.streams if s > last]:
                self._fail_stream(self.streams.pop(sid), "goaway")
            self._die("goaway", f"server sent GOAWAY ({ev.error_code!r})")
        elif isinstance(ev, h2.events.RemoteSettingsChanged) and not self.ready.done():
            self.ready.set_result(None)

    # requests ----------------------------------------------------------------------------
    def fill(self) -> None:
        """Keeps M requests in flight while tickets remain."""
        run = self.run
        while (self.dead_cause is None and len(self.streams) < run.cfg.streams
               and self.h2.open_outbound_streams < self.h2.remote_settings.max_concurrent_streams):
            measured = run.take_ticket()
            if measured is None:
                break
            sid = self.h2.get_next_available_stream_id()
            self.h2.send_headers(sid, self.request_headers, end_stream=True)
            self.streams[sid] = StreamState(started=time.perf_counter(), measured=measured)
            run.in_flight += 1

    def _finish(self, sid: int, st: StreamState) -> None:
        self.streams.pop(sid, None)
        run = self.run
        run.in_flight -= 1
        now = time.perf_counter()
        run.last_progress_s = now
        if st.status != 200:
            run.fail("status", st.measured)
        elif st.content_length is None or st.content_length != st.received:
            run.fail("length", st.measured)
        elif not st.pattern_ok:
            run.fail("pattern", st.measured)
        elif st.measured and (run.deadline is None or now <= run.deadline):
            run.ok += 1
            run.body_bytes += st.received
            run.latency.record_s(now - st.started)
            if st.ttfb is not None:
                run.ttfb.record_s(st.ttfb - st.started)
        run.changed.set()
        self.fill()

    def _fail_stream(self, st: StreamState, cause: str) -> None:
        self.run.in_flight -= 1
        self.run.fail(cause, st.measured)
        self.run.changed.set()

    def expire(self, now: float, timeout_s: float) -> None:
        for sid, st in list(self.streams.items()):
            if now - st.started > timeout_s:
                del self.streams[sid]
                self._fail_stream(st, "timeout")
                with contextlib.suppress(h2.exceptions.H2Error):
                    self.h2.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        self.fill()
        self._flush()

    def _die(self, cause: str, detail: str) -> None:
        if self.dead_cause is not None:
            return
        self.dead_cause = cause
        if not self.ready.done():
            self.ready.set_exception(ConnectionFailed(cause, detail))
        for st in self.streams.values():
            self._fail_stream(st, "reset" if cause in ("protocol", "tls") else cause)
        self.streams.clear()
        self.run.changed.set()
        if self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if self.out:
            data = data + b"".join(self.out)
            self.out.clear()
        if not data or self.transport is None or self.transport.is_closing():
            return
        if self.tls is not None:
            self.tls.write_plaintext(data)
            data = self.tls.take_ciphertext()
        self.transport.write(data)

    async def wait_idle_or_dead(self) -> None:
        """Returns when the connection died, or it has nothing in flight and no tickets."""
        run = self.run
        while self.dead_cause is None:
            if not self.streams:
                self.fill()
                self._flush()
                if not self.streams and run.tickets_done():
                    return
            waiter: asyncio.Future[Any] = asyncio.ensure_future(run.changed.wait())
            await asyncio.wait({waiter, self.closed}, timeout=0.25,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            run.changed.clear()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(Exception):
                self.h2.close_connection()
                self._flush()
            self.transport.close()


