"""TLS over two memory BIOs, so the caller decides every SSL_write and every socket write.

`MemoryBioTLS` is `ssl.SSLObject` over an incoming and an outgoing `ssl.MemoryBIO`:
ciphertext from the socket goes in with `feed_ciphertext`, ciphertext for the socket
comes out of `take_ciphertext`. `InstrumentedTLS` is the same object counting every
SSL_write, every flush and every record, in both directions, by walking the record
headers of the ciphertext it hands out or is given (no payload is copied).

Failures are typed (all are `TlsError`, a `TlsProbeError`), so a server can catch
them per connection, log one line and keep serving:

- `TlsHandshakeError`: the handshake failed: garbage instead of a ClientHello, an
  alert from the peer, no common version/cipher/ALPN, or the peer closed before it
  completed (`cut_off=True`). `take_ciphertext` may still hold an alert worth sending.
- `TlsClosedError`: the peer ended the stream after the handshake: `clean=True` for a
  close_notify, otherwise a bare EOF (`mid_record` tells whether it cut a record).
- `TlsProtocolError`: corrupt records after the handshake (bad MAC, not TLS).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from tls_probe.errors import TlsProbeError
from tls_probe.records import (
    CONTENT_TYPE_NAMES,
    NATIVE_RECORD_TALLY,
    Buffer,
    RecordCounter,
)


class TlsError(TlsProbeError):
    """A TLS connection failed; the connection is unusable, the server is not."""


class TlsHandshakeError(TlsError):
    def __init__(self, message: str, *, cut_off: bool = False) -> None:
        super().__init__(message)
        self.cut_off = cut_off


class TlsClosedError(TlsError):
    def __init__(self, message: str, *, clean: bool, mid_record: bool | None = None) -> None:
        super().__init__(message)
        self.clean = clean
        self.mid_record = mid_record


class TlsProtocolError(TlsError):
    """The peer sent records that do not decrypt or are not TLS."""


def _reason(exc: ssl.SSLError) -> str:
    if exc.reason:  # an OpenSSL reason code such as WRONG_VERSION_NUMBER
        return str(exc.reason).lower().replace("_", " ")
    return str(exc.strerror or exc)


class MemoryBioTLS:
    """One TLS connection over memory BIOs, uninstrumented (the baseline)."""

    __slots__ = ("_in", "_out", "_ssl", "_ssl_write", "handshake_done", "server_side",
                 "take_ciphertext")

    # Drain the outgoing BIO: the bytes to send (b"" when there are none). An attribute, not
    # a method: the BIO's own read (no Python frame per flush); InstrumentedTLS puts its
    # counting read here.
    take_ciphertext: Callable[[], bytes]

    def __init__(
        self, ctx: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None
    ) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._ssl = ctx.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=server_hostname
        )
        # SSL_write itself: ssl.SSLObject.write is a Python wrapper around the C method of
        # its `_sslobj`; one Python frame less per SSL_write, with or without the probe.
        self._ssl_write: Callable[[Buffer], int] = getattr(self._ssl, "_sslobj", self._ssl).write
        self.take_ciphertext = self._out.read
        self.server_side = server_side
        self.handshake_done = False

    # -- incoming ----------------------------------------------------------------------------

    def feed_ciphertext(self, data: Buffer) -> None:
        """Bytes received from the socket."""
        self._in.write(data)

    def feed_eof(self) -> None:
        """The socket returned EOF: the peer sends nothing more."""
        if not self._in.eof:
            self._in.write_eof()

    def do_handshake(self) -> bool:
        """Advance the handshake with what was fed; True once it is complete.

        Send `take_ciphertext()` after every call, whatever it returned."""
        if self.handshake_done:
            return True
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            if self._in.eof:
                raise self._cut_off() from None
            return False
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            raise self._cut_off() from exc
        except ssl.SSLError as exc:
            raise TlsHandshakeError(
                f"TLS handshake failed: {_reason(exc)} (the peer is not a TLS client with a "
                "common version, cipher and ALPN protocol; check what connects to this port)"
            ) from exc
        self.handshake_done = True
        self._handshake_completed()
        return True

    def _cut_off(self) -> TlsHandshakeError:
        return TlsHandshakeError(
            "TLS handshake cut off: the peer closed the connection before the handshake "
            "completed (a client that gave up, timed out or rejected the certificate)",
            cut_off=True,
        )

    def _handshake_completed(self) -> None:
        """Hook for subclasses, called once when the handshake completes."""

    def read_plaintext(self, max_bytes: int = 65536) -> bytes:
        """Decrypted bytes, b"" when more ciphertext is needed.

        Raises TlsClosedError when the peer has closed (cleanly or not), TlsProtocolError
        on corrupt records. Reading may queue ciphertext (alerts, key updates): take it."""
        if not self.handshake_done and not self.do_handshake():
            return b""
        try:
            data = self._ssl.read(max_bytes)
        except ssl.SSLWantReadError:
            if self._in.eof:
                raise self._unclean_close() from None
            return b""
        except ssl.SSLZeroReturnError as exc:
            raise TlsClosedError("peer sent close_notify", clean=True) from exc
        except ssl.SSLEOFError as exc:
            raise self._unclean_close() from exc
        except ssl.SSLError as exc:
            raise TlsProtocolError(
                f"corrupt TLS stream from the peer: {_reason(exc)}; the connection must be closed"
            ) from exc
        if not data and max_bytes > 0:
            # SSLObject.read returns b"" (rather than raising) once close_notify arrived.
            raise TlsClosedError("peer sent close_notify", clean=True)
        return data

    def _mid_record(self) -> bool | None:
        return None  # unknown without a record parser; InstrumentedTLS knows

    def _unclean_close(self) -> TlsClosedError:
        mid = self._mid_record()
        where = "" if mid is None else " in the middle of a record" if mid else " between records"
        return TlsClosedError(
            f"peer closed the connection without close_notify{where}", clean=False, mid_record=mid
        )

    # -- outgoing ----------------------------------------------------------------------------

    def write_plaintext(self, buf: Buffer) -> int:
        """Exactly one SSL_write of `buf` (OpenSSL cuts records of at most 16 KiB)."""
        try:
            return self._ssl_write(buf)
        except ssl.SSLError as exc:
            raise self._write_error(exc) from exc

    def _write_error(self, exc: ssl.SSLError) -> TlsError:
        if not self.handshake_done:
            return TlsError("write before the TLS handshake completed: call do_handshake first")
        if isinstance(exc, ssl.SSLZeroReturnError):
            return TlsClosedError("write after the TLS connection was closed", clean=True)
        if isinstance(exc, ssl.SSLEOFError):
            return TlsClosedError("write after the peer closed the connection", clean=False)
        return TlsProtocolError(f"SSL_write failed: {_reason(exc)}; close the connection")

    @property
    def pending_ciphertext_bytes(self) -> int:
        return self._out.pending

    def close_notify(self) -> None:
        """Queue our close_notify alert (send it with `take_ciphertext`)."""
        if not self.handshake_done:
            return
        queued_before = self._out.pending
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # ours is queued; the peer's close_notify has not arrived (it need not)
        except ssl.SSLError as exc:
            # unwrap() calls SSL_shutdown twice; the second one reads the peer's close_notify
            # and fails on unread application data. Ours is queued all the same.
            if self._out.pending <= queued_before:
                raise TlsClosedError(f"close_notify failed: {_reason(exc)}", clean=False) from exc

    unwrap = close_notify

    # -- negotiated parameters -----------------------------------------------------------

    @property
    def alpn_protocol(self) -> str | None:
        return self._ssl.selected_alpn_protocol()

    @property
    def version(self) -> str | None:
        """The negotiated version ("TLSv1.3", "TLSv1.2") once the handshake is done."""
        return self._ssl.version() if self.handshake_done else None

    @property
    def cipher(self) -> str | None:
        c = self._ssl.cipher()
        return c[0] if c else None


@dataclass(slots=True)
class TlsStats:
    """TLS counters of one connection, or of many added together (plain data).

    `records`/`record_bytes` are records the local side wrote (handshake included),
    `received_*` records it was sent; `record_bytes` are wire bytes with 5-byte headers."""

    connections: int = 1
    ssl_writes: int = 0
    plaintext_bytes: int = 0
    ciphertext_bytes: int = 0
    ciphertext_flushes: int = 0
    records: int = 0
    record_bytes: int = 0
    handshake_records: int = 0
    handshake_record_bytes: int = 0
    application_records: int = 0
    application_record_bytes: int = 0
    records_by_type: dict[int, int] = field(default_factory=dict)
    record_sizes: dict[int, int] = field(default_factory=dict)
    received_records: int = 0
    received_record_bytes: int = 0
    received_handshake_records: int = 0
    received_application_records: int = 0
    received_record_sizes: dict[int, int] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> TlsStats:
        return cls(connections=0)

    def __add__(self, other: TlsStats) -> TlsStats:
        values: dict[str, Any] = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, dict):
                merged = dict(a)
                for k, v in b.items():
                    merged[k] = merged.get(k, 0) + v
                values[f.name] = dict(sorted(merged.items()))
            else:
                values[f.name] = a + b
        return TlsStats(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the /stats "tls" object ({"records", "record_bytes", "ssl_writes", ...})."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("by_type"):
                value = {CONTENT_TYPE_NAMES.get(k, str(k)): v for k, v in value.items()}
            elif isinstance(value, dict):
                value = {str(k): v for k, v in value.items()}
            out[f.name] = value
        return out


if NATIVE_RECORD_TALLY:
    from tls_probe._recordwalk import CountingTake, CountingWrite


class _PyCountingWrite:
    """CountingWrite (tls_probe/_recordwalk.c) for an install without the C part."""

    __slots__ = ("calls", "total", "write")

    def __init__(self, write: Callable[[Buffer], int]) -> None:
        self.write = write
        self.calls = 0
        self.total = 0

    def counted_write(self, buf: Buffer) -> int:
        n = self.write(buf)
        self.calls += 1
        self.total += n
        return n


class _PyCountingTake:
    """CountingTake (tls_probe/_recordwalk.c) for an install without the C part: the
    counter's shape check inlined (RecordCounter), the parser for the rest."""

    __slots__ = ("feed", "read", "shapes_get")

    def __init__(self, read: Callable[[], bytes], counter: RecordCounter) -> None:
        self.read = read
        self.shapes_get = counter.shapes.get  # the dict is kept, never replaced
        self.feed = counter.feed

    def counted_read(self) -> bytes:
        data = self.read()
        shape = self.shapes_get(len(data))
        if shape is not None and shape.headers_of(data) == shape.headers:
            shape.hits += 1
        elif data:
            self.feed(data)
        return data


class InstrumentedTLS(MemoryBioTLS):
    """MemoryBioTLS that counts SSL_writes, flushes and records in both directions.

    `sent` counts what `take_ciphertext` hands out, `received` what `feed_ciphertext`
    is given; the handshake/application boundary is set when the handshake completes
    (bytes still queued at that moment belong to the handshake, e.g. TLS 1.3 session
    tickets on the server; on a client those tickets arrive later and count as
    application-phase records)."""

    __slots__ = ("_counting_write", "received", "sent")

    def __init__(
        self,
        ctx: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        native: bool | None = None,
    ) -> None:
        """`native`: count records in C (default: when tls_probe._recordwalk was built)."""
        super().__init__(ctx, server_side=server_side, server_hostname=server_hostname)
        self.sent = RecordCounter(native=native)
        self.received = RecordCounter(native=native)
        # The hot path of a server: every SSL_write and every take of ciphertext is counted
        # inside one call, in C when built (the Python twins below do the same, slower).
        self._counting_write: CountingWrite | _PyCountingWrite
        if self.sent.native:
            self._counting_write = CountingWrite(self._ssl_write)
            self._ssl_write = self._counting_write
            self.take_ciphertext = CountingTake(self._out.read, self.sent.tally, self.sent.feed)
        else:
            self._counting_write = _PyCountingWrite(self._ssl_write)
            self._ssl_write = self._counting_write.counted_write
            self.take_ciphertext = _PyCountingTake(self._out.read, self.sent).counted_read

    def feed_ciphertext(self, data: Buffer) -> None:
        self._in.write(data)
        self.received.feed(data)

    def _handshake_completed(self) -> None:
        # Whatever is still queued out was written by the handshake; whatever is fed but
        # not yet consumed by OpenSSL came after the peer's last handshake record.
        self.sent.mark_application_phase(self.sent.bytes_fed + self._out.pending)
        self.received.mark_application_phase(self.received.bytes_fed - self._in.pending)

    def _mid_record(self) -> bool | None:
        return self.received.in_record

    @property
    def ssl_writes(self) -> int:
        return self._counting_write.calls

    @property
    def plaintext_bytes(self) -> int:
        return self._counting_write.total

    @property
    def stats(self) -> TlsStats:
        """A snapshot of this connection's counters."""
        sent, received = self.sent, self.received
        return TlsStats(
            connections=1,
            ssl_writes=self.ssl_writes,
            plaintext_bytes=self.plaintext_bytes,
            ciphertext_bytes=sent.bytes_fed,
            ciphertext_flushes=sent.chunks,
            records=sent.records,
            record_bytes=sent.record_bytes,
            handshake_records=sent.handshake_records,
            handshake_record_bytes=sent.handshake_record_bytes,
            application_records=sent.application_records,
            application_record_bytes=sent.application_record_bytes,
            records_by_type=sent.by_type,
            record_sizes=sent.sizes,
            received_records=received.records,
            received_record_bytes=received.record_bytes,
            received_handshake_records=received.handshake_records,
            received_application_records=received.application_records,
            received_record_sizes=received.sizes,
        )
