"""HTTP/2 frame headers and the connection preface (RFC 9113 3.4 and 4.1): the one codec.

Pure. The server's guard, the load client, the hostile clients and the zero-copy DATA path
all read or write the 9-byte frame header through here. Whole frames (HEADERS with HPACK,
SETTINGS payloads, ...) are hyperframe's and h2's business; this module only knows the
envelope: 24-bit length, type, flags, reserved bit + 31-bit stream id.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_BYTES = 9
SETTINGS_ENTRY_BYTES = 6
MAX_WINDOW = (1 << 31) - 1
STREAM_ID_MASK = 0x7FFFFFFF

# The 24-bit length as 8 + 16 bits: struct has no 3-byte integer.
HEADER = struct.Struct(">BHBBL")
_WINDOW_UPDATE = struct.Struct(">BHBBLL")
_GOAWAY_CODE = struct.Struct(">LL")


class FrameType(IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


# Flags (their meaning depends on the type, their bits do not collide within one).
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8


class FrameHead(NamedTuple):
    """A frame's envelope; ``payload`` only for types a scanner was asked to keep."""

    type: int
    flags: int
    stream_id: int
    length: int
    payload: bytes | None = None


def pack_header(length: int, ftype: int, flags: int, stream_id: int) -> bytes:
    return HEADER.pack(length >> 16, length & 0xFFFF, ftype, flags, stream_id)


def unpack_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int, int, int]:
    """(length, type, flags, stream id) of the header at ``buf[pos:pos+9]``."""
    hi, lo, ftype, flags, sid = HEADER.unpack_from(buf, pos)
    return (hi << 16) | lo, ftype, flags, sid & STREAM_ID_MASK


def data_frame_header(length: int, stream_id: int, end_stream: bool) -> bytes:
    return pack_header(length, FrameType.DATA, END_STREAM if end_stream else 0, stream_id)


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return _WINDOW_UPDATE.pack(0, 4, FrameType.WINDOW_UPDATE, 0, stream_id, increment)


def goaway_error_code(payload: bytes) -> int | None:
    """The error code of a GOAWAY payload (last stream id, code, debug data)."""
    if len(payload) < _GOAWAY_CODE.size:
        return None
    return int(_GOAWAY_CODE.unpack_from(payload)[1])


class FrameScanner:
    """Splits an inbound byte stream into frame envelopes without keeping payloads.

    At most one partial 9-byte header is buffered between calls; a payload still in
    flight is skipped by count, except for the types in ``keep_types`` (a GOAWAY's error
    code, say), whose payloads are collected and returned with their head once whole.
    With ``expect_preface`` (the server side) the client preface comes first: if it does
    not match, scanning stops and ``broken`` is set (h2 reports the protocol error).
    """

    __slots__ = ("_keep", "_keep_types", "_kept_head", "_partial", "_preface_left", "_skip",
                 "broken")

    def __init__(self, expect_preface: bool = True, keep_types: frozenset[int] = frozenset()
                 ) -> None:
        self._preface_left = PREFACE if expect_preface else b""
        self._partial = b""
        self._skip = 0
        self._keep_types = keep_types
        self._keep = bytearray()
        self._kept_head: FrameHead | None = None
        self.broken = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[FrameHead]:
        if self.broken:
            return []
        pos = 0
        if self._preface_left:
            n = min(len(self._preface_left), len(data))
            if bytes(data[:n]) != self._preface_left[:n]:
                self.broken = True
                return []
            self._preface_left = self._preface_left[n:]
            pos = n
        heads: list[FrameHead] = []
        end = len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                if self._kept_head is not None:
                    self._keep += data[pos:pos + step]
                    if not self._skip:
                        heads.append(self._kept_head._replace(payload=bytes(self._keep)))
                        self._kept_head = None
                pos += step
                continue
            if self._partial:
                need = FRAME_HEADER_BYTES - len(self._partial)
                self._partial += bytes(data[pos:pos + need])
                pos += need
                if len(self._partial) < FRAME_HEADER_BYTES:
                    break
                raw, self._partial = self._partial, b""
                length, ftype, flags, sid = unpack_header(raw)
            elif end - pos >= FRAME_HEADER_BYTES:
                length, ftype, flags, sid = unpack_header(data, pos)
                pos += FRAME_HEADER_BYTES
            else:
                self._partial = bytes(data[pos:end])
                break
            head = FrameHead(ftype, flags, sid, length)
            if ftype in self._keep_types:
                if length == 0:
                    heads.append(head._replace(payload=b""))
                else:
                    self._kept_head = head
                    self._keep.clear()
            else:
                heads.append(head)
            self._skip = length
        return heads
