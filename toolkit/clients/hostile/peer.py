"""The raw attacking connection behind every hostile client: frames out, GOAWAYs in.

Each attack (toolkit/clients/hostile/attacks.py) drives one or more of these peers,
bounded in frames and in seconds; they count what they sent and what the server did.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import hpack
from hyperframe.frame import (
    Frame,
    HeadersFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from toolkit.errors import WriteshapeError
from toolkit.protocol.frames import (
    PREFACE,
    FrameScanner,
    FrameType,
    goaway_error_code,
)

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


def require_loopback(host: str) -> None:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise HostileTargetError(f"cannot resolve {host!r}: {exc}") from exc
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            raise HostileTargetError(
                f"{host} is not a loopback address: hostile clients only attack 127.0.0.1/::1")


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # loopback test server with a throwaway certificate
    ctx.set_alpn_protocols(["h2"])
    return ctx


class _Inbound:
    """Client-side frame reader: counts DATA, keeps GOAWAY codes, never keeps payloads."""

    def __init__(self) -> None:
        self._scanner = FrameScanner(expect_preface=False,
                                     keep_types=frozenset({FrameType.GOAWAY}))
        self.goaways: list[int] = []
        self.data_bytes = 0

    def feed(self, data: bytes) -> None:
        for head in self._scanner.feed(data):
            if head.type == FrameType.DATA:
                self.data_bytes += head.length
            elif head.type == FrameType.GOAWAY and head.payload is not None:
                code = goaway_error_code(head.payload)
                if code is not None:
                    self.goaways.append(code)


class Peer:
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
            self.sock = client_context().wrap_socket(raw, server_hostname="localhost")

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


def run_attack(name: str, target: Target, body: Callable[[AttackResult], None]) -> AttackResult:
    require_loopback(target.host)
    result = AttackResult(name, target.transport)
    started = time.monotonic()
    try:
        body(result)
    except (ConnectionError, TimeoutError, ssl.SSLError) as exc:
        result.detail = result.detail or f"{exc.__class__.__name__}: {exc}"
        result.closed_by_server += 1
    result.duration_s = time.monotonic() - started
    return result


def flood(peer: Peer, frames: Iterator[bytes], count: int, duration_s: float) -> None:
    """Send ``count`` frames in batches until the server stops taking them or time is up."""
    deadline = time.monotonic() + duration_s
    sent = 0
    while sent < count and time.monotonic() < deadline:
        n = min(BATCH_FRAMES, count - sent)
        if not peer.send(b"".join(next(frames) for _ in range(n)), n):
            return
        sent += n


def repeat(frame: Frame) -> Iterator[bytes]:
    wire = frame.serialize()
    while True:
        yield wire


# ---- the 2019 classes ------------------------------------------------------------------


