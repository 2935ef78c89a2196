"""h2 without the per-request work that protects nothing here.

h2 keeps every protocol state machine and flow-control window; what is cut is work that
gives the same answer every time for the same input, or that nobody reads:

- **Logging.** h2 calls ``config.logger.debug/trace`` on every frame and state change
  (some with an eager ``repr(frame)``), hpack a real ``logging.Logger.debug`` about 20
  times per request. :class:`SilentLogger` is a C no-op, `_receive_frame` drops the
  eager repr, and :func:`silence_hpack_logging` (called by the server process) swaps
  hpack's module loggers for the same no-op.
- **HPACK decoding of repeated request blocks.** A client sends the same header block
  bytes for the same request once its dynamic table holds the fields
  (`MemoDecoder`): a block whose decoding left the table as it was decodes the same way
  until the table changes, so its result is reused until then.
- **Header validation of repeated header lists.** h2's own ``validate_headers`` (every
  RFC 9113 8.2/8.3 rule: illegal characters, empty names, uppercase, connection-specific
  fields, pseudo-header rules) still runs on every header list a peer sends, but once
  per distinct list (`validate_inbound`): it is a pure function of the list and
  whether it is a trailer block. Inbound normalization (joining ``cookie`` crumbs) is
  off: the server reads only ``:method`` and ``:path``.
- **Response HEADERS encoding.** The block for a status, length and content type is
  always the same: it is encoded once, context-free (static-table indexes and literals
  without indexing, so the peer's dynamic table is never touched), and sent with h2's
  stream state changed exactly as ``send_headers`` changes it (`send_encoded_headers`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.utilities
import hpack
import hpack.hpack
import hpack.table
from h2.connection import ConnectionInputs
from h2.stream import StreamInputs
from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame

from toolkit.server.zero_copy import ZeroCopyH2Connection

# Memo sizes: a well-behaved client repeats a handful of blocks; a hostile one that sends
# new ones every time only empties the memo (and pays the decode it would pay anyway).
MEMO_ENTRIES = 64
# Only small blocks and lists are kept (a repeated request block is a few index bytes), so
# a memo holds at most ~64 x 512 bytes per connection and 64 x 4 KiB in all, whatever a
# client sends within --max-header-list-size.
MEMO_MAX_BLOCK_BYTES = 512
MEMO_MAX_LIST_BYTES = 4096


class SilentLogger:
    """h2's logger interface at the cost of one C call: ``str.format`` of an empty string
    takes any arguments and ignores them."""

    debug = trace = "".format


def silence_hpack_logging() -> None:
    """hpack logs through module-level ``logging`` loggers, whose ``debug`` is a Python
    call chain even when disabled. For the server process only: nothing reads them."""
    silent = SilentLogger()
    hpack.hpack.log = silent  # type: ignore[assignment]
    hpack.table.log = silent  # type: ignore[assignment]


def lean_h2_config() -> h2.config.H2Configuration:
    # Inbound headers are validated by LeanH2Connection (memoized), outbound ones are ours
    # and fixed: h2's own passes would only repeat work per request.
    return h2.config.H2Configuration(client_side=False, header_encoding=None,
                                     validate_inbound_headers=False,
                                     normalize_inbound_headers=False,
                                     validate_outbound_headers=False,
                                     normalize_outbound_headers=False,
                                     logger=SilentLogger())  # type: ignore[arg-type]


class MemoDecoder(hpack.Decoder):
    """An hpack decoder that reuses the result of a block it decoded before, as long as the
    dynamic table is as it was then.

    A block's decoding depends only on its bytes, the dynamic table and the limits. Only
    blocks whose decoding left the table unchanged (indexed fields, literals without
    indexing) are kept; any decoding that changes the table, and any change of a limit,
    empties the memo. hpack's errors are raised by the full decode, never cached."""

    def __init__(self, max_header_list_size: int = hpack.hpack.DEFAULT_MAX_HEADER_LIST_SIZE
                 ) -> None:
        self._memo: dict[bytes, Any] = {}
        super().__init__(max_header_list_size)

    def __setattr__(self, name: str, value: Any) -> None:
        # max_header_list_size and max_allowed_table_size are plain attributes that h2
        # sets on a SETTINGS change: a limit changed, the memo's answers may be wrong.
        if name in ("max_header_list_size", "max_allowed_table_size"):
            self.__dict__.get("_memo", {}).clear()
        object.__setattr__(self, name, value)

    def _table_state(self) -> tuple[int, int, object]:
        # The first entry itself, not a copy: every addition puts a new tuple first, and
        # holding this one keeps its identity from being reused.
        table = self.header_table
        entries = table.dynamic_entries
        return (table.maxsize, len(entries), entries[0] if entries else None)

    def _table_changed(self, before: tuple[int, int, object]) -> bool:
        after = self._table_state()
        return before[:2] != after[:2] or before[2] is not after[2]

    def decode(self, data: bytes, raw: bool = False) -> Any:
        key = bytes(data)
        hit = self._memo.get(key) if raw else None
        if hit is not None:
            return hit
        before = self._table_state()
        headers = super().decode(data, raw)
        if not raw:
            return headers
        if self._table_changed(before):
            self._memo.clear()  # every kept answer was decoded against the old table
        elif len(key) <= MEMO_MAX_BLOCK_BYTES:
            if len(self._memo) >= MEMO_ENTRIES:
                self._memo.clear()
            headers = tuple(headers)
            self._memo[key] = headers
        return headers


_REQUEST_FLAGS = h2.utilities.HeaderValidationFlags(
    is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False)
_TRAILER_FLAGS = _REQUEST_FLAGS._replace(is_trailer=True)
_validated: dict[tuple[bool, tuple[Any, ...]], None] = {}


def validate_inbound(headers: Iterable[Any], is_trailer: bool) -> None:
    """h2's own validation of a header list a client sent (raises h2's ProtocolError),
    once per distinct list: its verdict depends on nothing else."""
    key = (is_trailer, tuple(headers))
    if key in _validated:
        return
    for _ in h2.utilities.validate_headers(key[1], _TRAILER_FLAGS if is_trailer
                                           else _REQUEST_FLAGS):
        pass
    if sum(len(n) + len(v) for n, v in key[1]) > MEMO_MAX_LIST_BYTES:
        return
    if len(_validated) >= MEMO_ENTRIES:
        _validated.clear()
    _validated[key] = None


# RFC 7541 Appendix A: static-table indexes of the names a response carries.
_STATIC_NAME_INDEX = {b"content-length": 28, b"content-type": 31, b"server": 54}
_STATIC_STATUS_INDEX = {200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14}


def _literal_without_indexing(name: bytes, value: bytes) -> bytes:
    index = hpack.hpack.encode_integer(_STATIC_NAME_INDEX[name], 4)  # 0000xxxx: no indexing
    length = hpack.hpack.encode_integer(len(value), 7)  # H=0: the value as it is
    return bytes(index) + bytes(length) + value


@functools.lru_cache(maxsize=256)
def response_header_block(status: int, content_length: int, content_type: bytes) -> bytes:
    """The HPACK block of a response: the same bytes for the same status, length and type,
    and context-free (no dynamic-table entry is added or referenced)."""
    code = _STATIC_STATUS_INDEX.get(status)
    if code is not None:
        first = bytes([0x80 | code])  # indexed field
    else:  # :status has index 8 as a name; literal without indexing
        value = str(status).encode()
        first = bytes(hpack.hpack.encode_integer(8, 4)) + bytes([len(value)]) + value
    return (first + _literal_without_indexing(b"content-length", str(content_length).encode())
            + _literal_without_indexing(b"content-type", content_type)
            + _literal_without_indexing(b"server", b"writeshape"))


_END_HEADERS, _END_STREAM = 0x4, 0x1


class LeanH2Connection(ZeroCopyH2Connection):
    """An h2 server connection with the lean request path described in the module doc."""

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config)
        self.decoder = MemoDecoder()

    def _receive_frame(self, frame: Frame) -> list[h2.events.Event]:
        # h2's own, without ``logger.trace("Received frame: %s", repr(frame))``: the repr
        # is built on every frame (about 1 us for a HEADERS frame) and never read.
        events: list[h2.events.Event]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except h2.exceptions.StreamClosedError as e:
            if not self._stream_is_closed_by_reset(e.stream_id):
                raise
            f = RstStreamFrame(e.stream_id)
            f.error_code = e.error_code
            self._prepare_for_sending([f])
            events = e._events
        except h2.exceptions.StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = h2.errors.ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise h2.exceptions.StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events

    def _receive_headers_frame(self, frame: HeadersFrame) -> Any:
        frames, events = super()._receive_headers_frame(frame)
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                validate_inbound(ev.headers or (), False)
            elif isinstance(ev, h2.events.TrailersReceived):
                validate_inbound(ev.headers or (), True)
        return frames, events

    def send_encoded_headers(self, stream_id: int, block: bytes, end_stream: bool) -> None:
        """``send_headers`` of a final response whose HPACK block is already encoded: the
        same connection and stream state changes, in the same order, then one HEADERS
        frame. Raises what ``send_headers`` raises for a stream the peer has reset."""
        self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        stream = self._get_stream_by_id(stream_id)
        stream.state_machine.process_input(StreamInputs.SEND_HEADERS)
        if end_stream:
            stream.state_machine.process_input(StreamInputs.SEND_END_STREAM)
        encoder = self.encoder
        if encoder.table_size_changes:
            # The peer lowered SETTINGS_HEADER_TABLE_SIZE: HPACK owes it a size update at
            # the start of the next block (RFC 7541 4.2), whatever that block holds.
            block = encoder._encode_table_size_change() + block
        if len(block) > self.max_outbound_frame_size:
            raise ValueError("a response header block never exceeds the smallest frame size")
        flags = _END_HEADERS | (_END_STREAM if end_stream else 0)
        self._queue_frame_bytes(len(block).to_bytes(3, "big") + b"\x01"
                                + flags.to_bytes(1, "big") + stream_id.to_bytes(4, "big")
                                + block)

    def _queue_frame_bytes(self, frame: bytes) -> None:
        """Append one serialized frame to what h2 will send (subclasses count it)."""
        self._data_to_send += frame
