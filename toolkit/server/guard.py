"""What a peer costs, per connection, and when to stop serving it.

Pure: the guard is fed the bytes a peer sent (it reads frame headers only, payloads are
skipped), timestamps and counts, and answers with a :class:`Verdict` (close the connection
with GOAWAY and this error code, for this reason) or ``None``. The server owns the sockets
and sends the GOAWAY. The limits and their defaults follow nghttp2 (lib/nghttp2_session.c,
nghttp2_option_set_*), which is what the 2019 HTTP/2 denial-of-service advisories and the
2023/2024 Rapid Reset and CONTINUATION fixes were measured against:

- flood of frames that cost work but carry none (PING, SETTINGS, PRIORITY, empty DATA,
  unknown types, RST_STREAM): a token bucket per kind, a burst of 1000 then 33 per second;
- replies queued for a peer that does not read (PING and SETTINGS ACKs, RST_STREAMs,
  response HEADERS): at most 1000 frames queued;
- RST_STREAMs, sent by the peer (Rapid Reset) or provoked by it (stream errors the server
  answers with RST_STREAM, the reset flood), share one bucket;
- header blocks: at most 8 CONTINUATION frames and ``max_header_block_bytes`` per block;
- SETTINGS frames: at most 32 entries each;
- connections that make no progress: see :class:`StallDetector`.
"""

from __future__ import annotations

from dataclasses import dataclass

from h2.errors import ErrorCodes

from toolkit.errors import UsageError
from toolkit.protocol.frames import (
    END_HEADERS,
    END_STREAM,
    SETTINGS_ENTRY_BYTES,
    FrameHead,
    FrameScanner,
    FrameType,
)

# Plain ints for the per-frame dispatch: comparing against IntEnum members costs more.
_DATA, _HEADERS, _PRIORITY = int(FrameType.DATA), int(FrameType.HEADERS), int(FrameType.PRIORITY)
_RST_STREAM, _SETTINGS, _PING = (int(FrameType.RST_STREAM), int(FrameType.SETTINGS),
                                 int(FrameType.PING))
_WINDOW_UPDATE, _CONTINUATION = int(FrameType.WINDOW_UPDATE), int(FrameType.CONTINUATION)


@dataclass(frozen=True)
class Verdict:
    """Close the connection: GOAWAY with ``error_code``, log ``reason``."""

    error_code: ErrorCodes
    reason: str


@dataclass(frozen=True)
class GuardLimits:
    """Per-connection limits; defaults close to nghttp2's (see the module docstring)."""

    max_control_frames_queued: int = 1000
    max_control_frames_per_s: float = 33.0
    control_frames_burst: int = 1000
    max_resets_per_s: float = 33.0
    reset_burst: int = 1000
    max_settings_entries: int = 32
    max_continuations: int = 8
    max_header_block_bytes: int = 65536

    def validate(self) -> None:
        for name in ("max_control_frames_queued", "control_frames_burst", "reset_burst"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_header_block_bytes < 1:  # set from --max-header-list-size
            raise UsageError("--max-header-list-size must be at least 1")
        for name in ("max_control_frames_per_s", "max_resets_per_s"):
            if not 0 <= getattr(self, name) <= 1e9:  # also refuses nan
                raise UsageError(f"--{name.replace('_', '-')} must be 0 .. 1e9")
        if self.max_settings_entries < 0 or self.max_continuations < 0:
            raise UsageError("--max-settings-entries and --max-continuations must be >= 0")


class TokenBucket:
    """``burst`` tokens, refilled at ``rate_per_s``; a frame that finds none is one too many.

    A bucket rather than a count per wall-clock second: a peer cannot double its budget by
    straddling a second boundary, and a long-lived, well-behaved connection never runs dry.
    """

    __slots__ = ("_last_s", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: int, now_s: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._last_s = now_s

    def take(self, now_s: float) -> bool:
        elapsed = now_s - self._last_s
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_s)
            self._last_s = now_s
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class ConnectionGuard:
    """The accounting of one connection. Feed it what the peer sent, before h2 sees it."""

    def __init__(self, limits: GuardLimits, now_s: float, server_side: bool = True) -> None:
        self.limits = limits
        self.scanner = FrameScanner(expect_preface=server_side)
        rate, burst = limits.max_control_frames_per_s, limits.control_frames_burst
        self._buckets: dict[str, TokenBucket] = {
            kind: TokenBucket(rate, burst, now_s)
            for kind in ("ping", "settings", "priority", "empty")
        }
        self._buckets["reset"] = TokenBucket(limits.max_resets_per_s, limits.reset_burst, now_s)
        self._block_stream: int | None = None  # stream of an unfinished header block
        self._block_frames = 0
        self._block_bytes = 0

    def on_receive(self, data: bytes, now_s: float) -> Verdict | None:
        for head in self.scanner.feed(data):
            verdict = self.on_frame(head, now_s)
            if verdict is not None:
                return verdict
        return None

    def on_frame(self, head: FrameHead, now_s: float) -> Verdict | None:
        ftype, flags, length = head.type, head.flags, head.length
        if ftype == _DATA:
            if length == 0 and not flags & END_STREAM:
                return self._spend("empty", now_s, "empty frames flood (empty DATA frames)")
        elif ftype == _HEADERS:
            # Every HEADERS frame starts a new header block: its byte and CONTINUATION
            # counts start from zero (a long-lived connection sends many blocks).
            self._block_frames = 0
            self._block_bytes = 0
            self._block_stream = None if flags & END_HEADERS else head.stream_id
            return self._header_bytes(length)
        elif ftype == _CONTINUATION:
            if self._block_stream is None:
                return None  # h2 answers a stray CONTINUATION with PROTOCOL_ERROR
            self._block_frames += 1
            if self._block_frames > self.limits.max_continuations:
                return Verdict(ErrorCodes.ENHANCE_YOUR_CALM,
                               f"CONTINUATION flood: more than {self.limits.max_continuations}"
                               " CONTINUATION frames in one header block")
            verdict = self._header_bytes(length)
            if flags & END_HEADERS:
                self._block_stream = None
            if verdict is None and length == 0 and not flags & END_HEADERS:
                return self._spend("empty", now_s, "empty frames flood (empty CONTINUATION)")
            return verdict
        elif ftype == _RST_STREAM:
            return self._spend("reset", now_s, "too many stream resets (rapid reset)",
                               self.limits.max_resets_per_s, self.limits.reset_burst)
        elif ftype == _SETTINGS:
            entries = length // SETTINGS_ENTRY_BYTES
            if entries > self.limits.max_settings_entries:
                return Verdict(ErrorCodes.ENHANCE_YOUR_CALM,
                               f"SETTINGS frame with {entries} entries "
                               f"(at most {self.limits.max_settings_entries})")
            return self._spend("settings", now_s, "settings flood")
        elif ftype == _PING:
            return self._spend("ping", now_s, "ping flood")
        elif ftype == _PRIORITY:
            return self._spend("priority", now_s, "priority churn (PRIORITY frames)")
        elif ftype == _WINDOW_UPDATE:
            return None  # as frequent as DATA in a healthy transfer
        else:  # GOAWAY, PUSH_PROMISE (h2 rejects it) and types nobody defined: ignored work
            return self._spend("empty", now_s, f"empty frames flood (frame type {ftype:#x})")
        return None

    def on_replies(self, frames_queued: int, resets_sent: int, now_s: float) -> Verdict | None:
        """After h2 handled a read. ``frames_queued``: frames h2 queued for this peer and the
        socket has not taken yet; ``resets_sent``: RST_STREAMs h2 answered this read with
        (stream errors the peer provoked, the reset flood), spent from the reset budget."""
        if frames_queued > self.limits.max_control_frames_queued:
            return Verdict(ErrorCodes.ENHANCE_YOUR_CALM,
                           f"{frames_queued} frames queued for a peer that does not read "
                           f"(at most {self.limits.max_control_frames_queued})")
        for _ in range(resets_sent):
            verdict = self._spend("reset", now_s, "reset flood (stream errors answered with "
                                  "RST_STREAM)", self.limits.max_resets_per_s,
                                  self.limits.reset_burst)
            if verdict is not None:
                return verdict
        return None

    def _header_bytes(self, length: int) -> Verdict | None:
        self._block_bytes += length
        if self._block_bytes > self.limits.max_header_block_bytes:
            # Encoded HPACK is never much larger than the header list it decodes to, so a
            # block over the list limit cannot be a request we would accept.
            return Verdict(ErrorCodes.ENHANCE_YOUR_CALM,
                           f"header block over {self.limits.max_header_block_bytes} bytes")
        return None

    def _spend(self, kind: str, now_s: float, what: str, rate: float | None = None,
               burst: int | None = None) -> Verdict | None:
        if self._buckets[kind].take(now_s):
            return None
        rate = self.limits.max_control_frames_per_s if rate is None else rate
        burst = self.limits.control_frames_burst if burst is None else burst
        return Verdict(ErrorCodes.ENHANCE_YOUR_CALM,
                       f"{what}: over {burst} at once or {rate:g} per second")


class StallDetector:
    """A connection with responses pending whose progress token has not changed for
    ``timeout_s`` is stalled: a zero flow-control window, or a peer that stopped reading.

    The token is whatever shows progress (response offsets, bytes the peer acknowledged);
    it is compared, never interpreted, so the rule stays pure.
    """

    __slots__ = ("_since_s", "_token", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._token: object = None
        self._since_s: float | None = None

    def observe(self, token: object, pending: bool, now_s: float) -> bool:
        """True if the connection is stalled now."""
        if not pending:
            self._since_s = None
            return False
        if self._since_s is None or token != self._token:
            self._token = token
            self._since_s = now_s
            return False
        return now_s - self._since_s >= self.timeout_s
