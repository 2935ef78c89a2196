"""The TLS record layer, parsed incrementally over arbitrary byte chunks (pure, no I/O).

Every TLS record (1.0 to 1.3) starts with a 5-byte header: content type (1 byte),
legacy version (2 bytes, major 3) and payload length (2 bytes). The parser walks
headers only and never copies a payload: a record split across chunks is carried
over as "bytes still to skip".

Phases: TLS 1.2 shows handshake records as type 22, but TLS 1.3 encrypts the rest of
the handshake under the outer type 23 (application_data), so the wire alone cannot
tell where the handshake ends. `RecordCounter.mark_application_phase` is told the
stream offset by whoever runs the handshake (see tls_probe.bio).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, NamedTuple

from tls_probe.errors import TlsProbeError

try:  # the C tally (tls_probe/_recordwalk.c), built when a compiler was at hand
    from tls_probe._recordwalk import RecordTally as _NativeTally
except ImportError:  # pragma: no cover - the pure-Python path counts alone
    _NativeTally = None
# Whether RecordCounter counts whole-record chunks in C (the default when built).
NATIVE_RECORD_TALLY = _NativeTally is not None
RECORD_COUNTER = "c" if NATIVE_RECORD_TALLY else "python"  # as /stats and compare's meta say

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24
CONTENT_TYPE_NAMES = {
    CHANGE_CIPHER_SPEC: "change_cipher_spec",
    ALERT: "alert",
    HANDSHAKE: "handshake",
    APPLICATION_DATA: "application_data",
    HEARTBEAT: "heartbeat",
}
HEADER_BYTES = 5
# TLSCiphertext.length may reach 2^14 + 2048 in TLS 1.2 (2^14 + 256 in TLS 1.3).
MAX_PAYLOAD_BYTES = 16384 + 2048
Buffer = bytes | bytearray | memoryview
# Records kept individually until the phase boundary is known (see RecordCounter).
_MAX_UNCLASSIFIED = 1024
# Largest flush (in records) whose shape RecordCounter remembers for its fast path, and
# how many shapes it keeps (a server's flushes come in a few sizes; see RecordCounter).
_MAX_SHAPE_RECORDS = 256
_MAX_SHAPES = 64


class RecordLayerError(TlsProbeError, ValueError):
    """The byte stream is not a TLS record stream (a bad header was found)."""


class Record(NamedTuple):
    """One TLS record header. `length` is the payload length; on the wire it is length + 5."""

    content_type: int
    version: int
    length: int

    @property
    def wire_bytes(self) -> int:
        return self.length + HEADER_BYTES

    @property
    def type_name(self) -> str:
        return CONTENT_TYPE_NAMES.get(self.content_type, f"unknown({self.content_type})")


def header_problem(content_type: int, version: int, length: int) -> str | None:
    """Why a header cannot start a TLS record, or None when it can."""
    if content_type not in CONTENT_TYPE_NAMES:
        return f"content type {content_type} is not a TLS content type (20..24)"
    if version >> 8 != 3:
        return f"version 0x{version:04x} is not a TLS record version (0x03xx)"
    if length > MAX_PAYLOAD_BYTES:
        return f"record length {length} exceeds the TLS maximum {MAX_PAYLOAD_BYTES}"
    return None


def as_bytes_view(chunk: Buffer) -> Buffer:
    """`chunk` with len() in bytes: a memoryview of wider items or of several dimensions is
    cast to bytes (the C tally reads any contiguous buffer as bytes too)."""
    if isinstance(chunk, memoryview) and (chunk.format != "B" or chunk.ndim != 1):
        return chunk.cast("B")
    return chunk


class RecordParser:
    """Incremental record-header walker.

    `feed` never raises: at the first invalid header the parser stops (`error` says why)
    and counts every later byte as `unparsed_bytes`, so that a server can feed it
    whatever a client sent. Every byte fed is accounted for::

        bytes_fed == sum(wire bytes of records) + buffered_bytes + unparsed_bytes
    """

    __slots__ = ("_header", "_open", "_remaining", "bytes_fed", "error", "unparsed_bytes")

    def __init__(self) -> None:
        self._header = b""  # the first 1..4 bytes of a header split across chunks
        self._open: Record | None = None  # record whose payload is still arriving
        self._remaining = 0  # payload bytes of `_open` not seen yet
        self.bytes_fed = 0
        self.unparsed_bytes = 0
        self.error: str | None = None

    @property
    def in_record(self) -> bool:
        """True when the stream so far ends inside a record (header or payload)."""
        return self._open is not None or bool(self._header)

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the incomplete record at the end of the stream."""
        if self._open is not None:
            return self._open.wire_bytes - self._remaining
        return len(self._header)

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise RecordLayerError(f"not a TLS record stream: {self.error}")

    def feed(self, chunk: Buffer) -> list[Record]:
        """Complete records whose last byte is in `chunk`, in stream order."""
        out: list[Record] = []
        for record, count in self.feed_runs(chunk):
            out.extend([record] * count)
        return out

    def feed_runs(self, chunk: Buffer) -> list[tuple[Record, int]]:
        """Like `feed`, run-length encoded: (record, how many identical records in a row)."""
        data = as_bytes_view(chunk)
        n = len(data)
        if not n:
            return []
        self.bytes_fed += n
        if self.error is not None:
            self.unparsed_bytes += n
            return []
        runs: list[tuple[Record, int]] = []
        pos = 0
        if self._open is not None:
            if self._remaining > n:
                self._remaining -= n
                return runs
            pos = self._remaining
            runs.append((self._open, 1))
            self._open = None
            self._remaining = 0
        elif self._header:
            need = HEADER_BYTES - len(self._header)
            if n < need:
                self._header += bytes(data)
                return runs
            head = self._header + data[:need]
            self._header = b""
            pos = self._start_record(head, 0, need - HEADER_BYTES, n, runs)
            if pos < 0:
                return runs
        while pos < n:
            if n - pos < HEADER_BYTES:
                self._header = bytes(data[pos:])
                break
            pos = self._start_record(data, pos, pos, n, runs)
            if pos < 0:
                break
        return runs

    def _start_record(
        self, src: Buffer, hpos: int, stream_pos: int, n: int, runs: list[tuple[Record, int]]
    ) -> int:
        """Read the header at src[hpos:hpos+5]; the record starts at `stream_pos` of the chunk
        (negative when the header began in an earlier chunk). Returns the chunk position
        after the record, or -1 when the chunk ends inside it or the header is invalid."""
        ctype = src[hpos]
        version = src[hpos + 1] << 8 | src[hpos + 2]
        length = src[hpos + 3] << 8 | src[hpos + 4]
        problem = header_problem(ctype, version, length)
        if problem is not None:
            self.error = f"{problem} at stream offset {self.bytes_fed - n + stream_pos}"
            self.unparsed_bytes += n - stream_pos
            return -1
        record = Record(ctype, version, length)
        wire = length + HEADER_BYTES
        end = stream_pos + wire
        if end > n:
            self._open = record
            self._remaining = end - n
            return -1
        count = 1
        if stream_pos >= 0 and end + wire <= n:
            count = _identical_run(src, stream_pos, wire, n)
            end = stream_pos + count * wire
        if runs and runs[-1][0] == record:
            runs[-1] = (record, runs[-1][1] + count)
        else:
            runs.append((record, count))
        return end


def _identical_run(data: Buffer, pos: int, wire: int, n: int) -> int:
    """How many records identical to the one at `pos` follow back to back (at least 1).

    A flush of many full-size records is checked with strided slices (a few C-level
    operations) instead of one Python loop turn per record: the rest of the chunk first
    (the common case), then a gallop (4, 8, 16, ...) so the cost follows the run found."""
    k_max = (n - pos) // wire
    if k_max < 2 or data[pos + wire : pos + wire + HEADER_BYTES] != data[pos : pos + HEADER_BYTES]:
        return 1
    if _same_headers(data, pos, wire, k_max):
        return k_max
    good = 2
    while good * 2 < k_max and _same_headers(data, pos, wire, good * 2):
        good *= 2
    return good


def _same_headers(data: Buffer, pos: int, wire: int, k: int) -> bool:
    """Whether the k records of `wire` bytes from `pos` all carry the header at `pos`."""
    stop = pos + k * wire
    for i in range(HEADER_BYTES):
        column = bytes(data[pos + i : stop : wire])  # byte i of each header (k bytes)
        if column.count(column[:1]) != k:
            return False
    return True


class FlushShape:
    """The records of one remembered flush: a later chunk of `len` bytes whose header bytes
    (`headers_of(chunk)`, one C-level itemgetter call) equal `headers` has the same records."""

    __slots__ = ("headers", "headers_of", "hits", "tally", "wire_bytes")

    def __init__(self, headers_of: Callable[[Buffer], object], headers: object,
                 tally: list[tuple[tuple[int, int], int]], wire_bytes: int) -> None:
        self.headers_of = headers_of
        self.headers = headers
        self.tally = tally  # its records by (content type, wire bytes)
        self.wire_bytes = wire_bytes
        self.hits = 0  # chunks of this shape seen since the last fold


class RecordCounter:
    """Aggregates a record stream: counts, wire bytes, sizes by content type and phase.

    Records that start before the application-phase boundary (see
    `mark_application_phase`) count as handshake records; until it is marked, every
    record is in the handshake phase.

    The sending side of tls_probe.bio feeds one chunk per flush, and after the handshake
    each flush is a run of whole records. Two fast paths count such a chunk without the
    parser:
    - native (`NATIVE_RECORD_TALLY`, the default when built): the C `RecordTally` walks
      the headers of any chunk of whole records in a few instructions per record;
    - Python: a server's flushes repeat (a 31-byte record for a frame header, a 16 KiB
      record, a whole 1 MiB flush), often alternating, so the counter remembers up to
      `_MAX_SHAPES` of them by length (`shapes`); a chunk whose length is known and whose
      header bytes match has the same records, which a dict lookup, one itemgetter call
      and a comparison establish.
    Either applies only between records in the application phase (the parser handles
    the rest), and is folded into the totals whenever those are read.
    """

    __slots__ = (
        "_boundary",
        "_by_key",
        "_handshake_bytes",
        "_handshake_records",
        "_offset",
        "_parser",
        "_tally",
        "_unclassified",
        "chunks",
        "shapes",
    )

    def __init__(self, *, native: bool | None = None) -> None:
        """`native`: count whole-record chunks in C (default: when it was built)."""
        if native and _NativeTally is None:
            raise RuntimeError("tls_probe._recordwalk was not built (no C compiler at install)")
        self._parser = RecordParser()
        self._by_key: dict[tuple[int, int], int] = {}  # (content type, wire bytes) -> records
        self._offset = 0  # stream offset where the next record starts
        self._boundary: int | None = None  # stream offset where the application phase starts
        self._handshake_records = 0
        self._handshake_bytes = 0
        self._unclassified: list[tuple[int, int]] = []  # (start, wire bytes) before the mark
        # Fast path (application phase, between records only): chunk length -> its shape.
        self.shapes: dict[int, FlushShape] = {}
        self.chunks = 0  # non-empty chunks fed (a flush on the sending side)
        use_native = NATIVE_RECORD_TALLY if native is None else native
        self._tally = _NativeTally() if use_native and _NativeTally is not None else None

    @property
    def native(self) -> bool:
        """Whether whole-record chunks are counted in C."""
        return self._tally is not None

    @property
    def tally(self) -> Any:
        """The C RecordTally of the native fast path (None on the Python path)."""
        return self._tally

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, chunk: Buffer) -> None:
        chunk = as_bytes_view(chunk)
        tally = self._tally
        if tally is not None:
            if tally.feed(chunk):
                return
        else:
            shape = self.shapes.get(len(chunk))
            if shape is not None and shape.headers_of(chunk) == shape.headers:
                shape.hits += 1
                return
        if not len(chunk):
            return
        self._fold()
        self.chunks += 1
        parser = self._parser
        shape_ok = self._between_application_records()
        start = self._offset
        runs = parser.feed_runs(chunk)
        for record, count in runs:
            self._add(record.content_type, record.wire_bytes, count)
        if tally is not None:
            tally.armed = self._between_application_records()
        elif parser.in_record or parser.error is not None:
            # Shapes assume that a chunk starts at a record header: not the next one.
            self.shapes.clear()
        elif shape_ok:
            self._remember_shape(chunk, start, runs)

    def _between_application_records(self) -> bool:
        """The next chunk starts at a record header in the application phase (what a fast
        path assumes: its records are all application records)."""
        parser = self._parser
        return (
            parser.error is None
            and not parser.in_record
            and self._boundary is not None
            and self._offset >= self._boundary
        )

    def _remember_shape(self, chunk: Buffer, start: int, runs: list[tuple[Record, int]]) -> None:
        if sum(count for _, count in runs) > _MAX_SHAPE_RECORDS:
            return
        slices: list[slice] = []
        tally: dict[tuple[int, int], int] = {}
        pos = 0
        for record, count in runs:
            key = (record.content_type, record.wire_bytes)
            tally[key] = tally.get(key, 0) + count
            for _ in range(count):
                slices.append(slice(pos, pos + HEADER_BYTES))
                pos += record.wire_bytes
        assert pos == len(chunk) == self._offset - start
        getter = operator.itemgetter(*slices)
        headers = getter(chunk)
        # Keep bytes, not views: a view would pin the caller's buffer.
        headers = tuple(bytes(h) for h in headers) if isinstance(headers, tuple) else bytes(headers)
        if len(self.shapes) >= _MAX_SHAPES:
            self.shapes.clear()  # hits were folded by feed; an odd workload relearns
        self.shapes[len(chunk)] = FlushShape(getter, headers, list(tally.items()), len(chunk))

    def _fold(self) -> None:
        """Add what the fast path counted to the totals."""
        tally = self._tally
        if tally is not None:
            if tally.pending:
                fed, chunks, records = tally.drain()
                by_key = self._by_key
                for ctype, wire, count in records:
                    by_key[(ctype, wire)] = by_key.get((ctype, wire), 0) + count
                self._offset += fed
                self._parser.bytes_fed += fed
                self.chunks += chunks
            return
        for shape in self.shapes.values():
            hits = shape.hits
            if hits:
                # Every hit started after the boundary: all application-phase records.
                for key, count in shape.tally:
                    self._by_key[key] = self._by_key.get(key, 0) + count * hits
                fed = shape.wire_bytes * hits
                self._offset += fed
                self._parser.bytes_fed += fed
                self.chunks += hits
                shape.hits = 0

    def _add(self, content_type: int, wire: int, count: int) -> None:
        key = (content_type, wire)
        self._by_key[key] = self._by_key.get(key, 0) + count
        start = self._offset
        self._offset += wire * count
        boundary = self._boundary
        if boundary is None:
            unclassified = self._unclassified
            unclassified.extend((start + i * wire, wire) for i in range(count))
            if len(unclassified) > _MAX_UNCLASSIFIED:
                # Far behind any boundary a handshake can mark: settle the older half now.
                half = len(unclassified) // 2
                self._handshake_records += half
                self._handshake_bytes += sum(w for _, w in unclassified[:half])
                del unclassified[:half]
        elif start < boundary:
            early = min(count, -(-(boundary - start) // wire))
            self._handshake_records += early
            self._handshake_bytes += early * wire

    def mark_application_phase(self, at_offset: int | None = None) -> None:
        """Records starting at `at_offset` (default: the end of what was fed) or later are
        application-phase records. Only the first call counts."""
        if self._boundary is not None:
            return
        self._fold()
        boundary = self.bytes_fed if at_offset is None else max(0, at_offset)
        self._boundary = boundary
        for start, wire in self._unclassified:
            if start < boundary:
                self._handshake_records += 1
                self._handshake_bytes += wire
        self._unclassified = []
        if self._tally is not None:
            self._tally.armed = self._between_application_records()

    # -- reading ---------------------------------------------------------------------------

    @property
    def parser(self) -> RecordParser:
        self._fold()
        return self._parser

    @property
    def bytes_fed(self) -> int:
        return self.parser.bytes_fed

    @property
    def application_phase(self) -> bool:
        return self._boundary is not None

    @property
    def records(self) -> int:
        self._fold()
        return sum(self._by_key.values())

    @property
    def record_bytes(self) -> int:
        """Wire bytes of complete records, 5-byte headers included."""
        self._fold()
        return sum(wire * count for (_, wire), count in self._by_key.items())

    @property
    def by_type(self) -> dict[int, int]:
        self._fold()
        out: dict[int, int] = {}
        for (ctype, _), count in self._by_key.items():
            out[ctype] = out.get(ctype, 0) + count
        return out

    @property
    def sizes(self) -> dict[int, int]:
        """Histogram of record wire sizes: size -> records (at most 18,437 distinct keys)."""
        self._fold()
        out: dict[int, int] = {}
        for (_, wire), count in self._by_key.items():
            out[wire] = out.get(wire, 0) + count
        return dict(sorted(out.items()))

    @property
    def by_type_and_size(self) -> dict[tuple[int, int], int]:
        self._fold()
        return dict(self._by_key)

    @property
    def handshake_records(self) -> int:
        self._fold()
        return self._handshake_records + len(self._unclassified)

    @property
    def handshake_record_bytes(self) -> int:
        self._fold()
        return self._handshake_bytes + sum(wire for _, wire in self._unclassified)

    @property
    def application_records(self) -> int:
        return self.records - self.handshake_records

    @property
    def application_record_bytes(self) -> int:
        return self.record_bytes - self.handshake_record_bytes

    @property
    def in_record(self) -> bool:
        return self.parser.in_record

    @property
    def error(self) -> str | None:
        return self.parser.error
