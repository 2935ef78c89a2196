"""The lean request path (toolkit/server/lean_h2.py): what it skips gives the same answers.

Driven with byte strings, as h2's own tests are; a stock h2 client decodes the replies."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import Frame
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.server.lean_h2 import (
    LeanH2Connection,
    MemoDecoder,
    SilentLogger,
    lean_h2_config,
    response_header_block,
)


def _client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    return conn


def _request(client: h2.connection.H2Connection, path: str = "/") -> int:
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                              (":authority", "x")], end_stream=True)
    return sid


def _server() -> LeanH2Connection:
    server = LeanH2Connection(lean_h2_config())
    server.initiate_connection()
    return server


def test_the_silent_logger_takes_what_h2_passes_and_does_nothing() -> None:
    log = SilentLogger()
    log.debug("Send headers %s on %r", [(b"a", b"b")], object())
    log.trace("Received frame: %s", "x", extra={"k": 1})
    assert h2.config.H2Configuration(logger=log).logger is log  # type: ignore[arg-type]


def test_no_frame_is_turned_into_a_string_on_the_way_in(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    def refuse(self: Frame) -> str:
        raise AssertionError(f"repr of a {type(self).__name__} built")

    monkeypatch.setattr(Frame, "__repr__", refuse)
    client, server = _client(), _server()
    sid = _request(client)
    client.ping(b"12345678")
    events = server.receive_data(client.data_to_send())
    assert [type(e) for e in events if isinstance(e, h2.events.RequestReceived)] == [
        h2.events.RequestReceived]
    assert any(isinstance(e, h2.events.PingReceived) for e in events)
    assert server.streams[sid].open


_NAMES = [b"user-agent", b"accept", b"x-a", b"x-b", b":path", b"cookie"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(
    st.lists(st.tuples(st.sampled_from(_NAMES), st.sampled_from([b"", b"1", b"/", b"v" * 40])),
             max_size=6),
    st.sampled_from([None, 0, 64, 256, 4096])), max_size=30))
def test_the_memo_decoder_decodes_as_hpack_does(blocks: list[tuple[list[tuple[bytes, bytes]],
                                                                   int | None]]) -> None:
    """Any sequence of blocks, with table size changes and evictions, decodes exactly as a
    plain hpack decoder decodes it (each block is sent twice: the second time it is all
    indexes, and comes from the memo while the table stays the same)."""
    encoder, plain, memo = hpack.Encoder(), hpack.Decoder(), MemoDecoder()
    for headers, table_size in blocks:
        if table_size is not None:
            encoder.header_table_size = table_size
        for _ in range(2):
            block = encoder.encode(headers)
            assert list(memo.decode(block, raw=True)) == plain.decode(block, raw=True)
            assert list(memo.header_table.dynamic_entries) == list(
                plain.header_table.dynamic_entries)


def test_a_memo_hit_is_dropped_when_the_table_changes() -> None:
    encoder, memo = hpack.Encoder(), MemoDecoder()
    encoder.header_table_size = memo.header_table_size = 60  # room for one entry
    first = encoder.encode([(b"x-a", b"1")])  # literal, indexed: x-a is entry 62
    memo.decode(first, raw=True)
    indexed = encoder.encode([(b"x-a", b"1")])  # just the index now
    assert memo.decode(indexed, raw=True) == ((b"x-a", b"1"),)
    memo.decode(encoder.encode([(b"x-b", b"2")]), raw=True)  # evicts x-a: 62 is x-b now
    assert list(memo.decode(indexed, raw=True)) == [(b"x-b", b"2")]


def test_a_lower_header_list_limit_is_enforced_on_a_block_seen_before() -> None:
    encoder, memo = hpack.Encoder(), MemoDecoder()
    block = encoder.encode([(b"x-a", b"v" * 100)])
    memo.decode(block, raw=True)
    block = encoder.encode([(b"x-a", b"v" * 100)])
    memo.decode(block, raw=True)
    memo.max_header_list_size = 50
    with pytest.raises(hpack.OversizedHeaderListError):
        memo.decode(block, raw=True)


_GOOD = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"x")]
_BAD = {
    "uppercase name": [*_GOOD, (b"X-A", b"1")],
    "empty name": [*_GOOD, (b"", b"")],
    "newline in a value": [*_GOOD, (b"x-a", b"1\r\nx-b: 2")],
    "connection-specific field": [*_GOOD, (b"connection", b"close")],
    "te other than trailers": [*_GOOD, (b"te", b"gzip")],
    "pseudo-header after a field": [*_GOOD[:3], (b"x-a", b"1"), _GOOD[3]],
    "unknown pseudo-header": [*_GOOD, (b":foo", b"1")],
    "no :path": [h for h in _GOOD if h[0] != b":path"],
    "empty :path": [(b":path", b"") if h[0] == b":path" else h for h in _GOOD],
}


def _raw_request(client: h2.connection.H2Connection, headers: list[tuple[bytes, bytes]],
                 trailers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """Request bytes with h2's client-side checks off: what a hostile client can send."""
    client.config.validate_outbound_headers = False
    client.config.normalize_outbound_headers = False
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, headers, end_stream=trailers is None)
    if trailers is not None:
        client.send_headers(sid, trailers, end_stream=True)
    return client.data_to_send()


@pytest.mark.parametrize("case", sorted(_BAD))
def test_every_header_list_h2_refuses_is_refused_each_time(case: str) -> None:
    """h2's validation verdicts stand, after a good request and on every repeat: only
    lists that passed are remembered."""
    for _ in range(2):
        client, server = _client(), _server()
        server.receive_data(_raw_request(client, _GOOD))
        with pytest.raises(h2.exceptions.ProtocolError):
            server.receive_data(_raw_request(client, _BAD[case]))
        goaways = [e for e in client.receive_data(server.data_to_send())
                   if isinstance(e, h2.events.ConnectionTerminated)]
        assert [g.error_code for g in goaways] == [ErrorCodes.PROTOCOL_ERROR]  # h2's own


def test_trailers_are_validated_as_trailers() -> None:
    client, server = _client(), _server()
    with pytest.raises(h2.exceptions.ProtocolError):
        server.receive_data(_raw_request(client, _GOOD, trailers=[(b":path", b"/")]))
    client, server = _client(), _server()
    events = server.receive_data(_raw_request(client, _GOOD, trailers=[(b"x-sum", b"1")]))
    assert any(isinstance(e, h2.events.TrailersReceived) for e in events)


@pytest.mark.parametrize(("status", "length", "ctype"), [
    (200, 16384, b"application/octet-stream"), (404, 10, b"text/plain"),
    (405, 19, b"text/plain"), (200, 1 << 30, b"application/json")])
def test_a_response_block_decodes_alike_and_leaves_the_table_empty(
        status: int, length: int, ctype: bytes) -> None:
    decoder = hpack.Decoder()
    block = response_header_block(status, length, ctype)
    assert decoder.decode(block, raw=True) == [
        (b":status", str(status).encode()), (b"content-length", str(length).encode()),
        (b"content-type", ctype), (b"server", b"writeshape")]
    assert len(decoder.header_table.dynamic_entries) == 0


def _respond(server: LeanH2Connection, sid: int, end_stream: bool) -> None:
    server.send_encoded_headers(sid, response_header_block(200, 5, b"text/plain"), end_stream)
    if not end_stream:
        server.send_data(sid, b"hello", end_stream=True)


@pytest.mark.parametrize("end_stream", [True, False], ids=["headers-only", "with-data"])
def test_encoded_headers_move_h2s_stream_state_as_send_headers_does(end_stream: bool
                                                                    ) -> None:
    client, lean, stock = _client(), _server(), h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False))
    stock.initiate_connection()
    wire = client.data_to_send() + _raw_request(client, _GOOD)
    lean.receive_data(wire)
    stock.receive_data(wire)
    _respond(lean, 1, end_stream)
    stock.send_headers(1, [(b":status", b"200"), (b"content-length", b"5"),
                           (b"content-type", b"text/plain"), (b"server", b"writeshape")],
                       end_stream=end_stream)
    if not end_stream:
        stock.send_data(1, b"hello", end_stream=True)
    for conn in (lean, stock):
        assert conn.state_machine.state == lean.state_machine.state
        assert conn.streams[1].state_machine.state == lean.streams[1].state_machine.state
        assert conn.streams[1].closed
    events = client.receive_data(lean.data_to_send())
    response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
    assert dict(response.headers)[b":status"] == b"200"
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)


def test_a_smaller_peer_table_gets_its_size_update_first() -> None:
    """A client that lowers SETTINGS_HEADER_TABLE_SIZE must see a size update at the start
    of the next block (RFC 7541 4.2): nghttp2 answers its absence with COMPRESSION_ERROR."""
    client, server = _client(), _server()
    client.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0})
    server.receive_data(client.data_to_send() + _raw_request(client, _GOOD))
    _respond(server, 1, True)
    wire = server.data_to_send()
    assert b"\x20" + response_header_block(200, 5, b"text/plain") in wire
    events = client.receive_data(wire)
    assert any(isinstance(e, h2.events.ResponseReceived) for e in events)


def test_a_stream_the_peer_reset_gets_no_headers() -> None:
    client, server = _client(), _server()
    server.receive_data(_raw_request(client, _GOOD))
    client.reset_stream(1)
    server.receive_data(client.data_to_send())
    with pytest.raises(h2.exceptions.StreamClosedError):
        _respond(server, 1, True)


def test_large_blocks_and_lists_are_not_kept() -> None:
    """A memo holds small things only: a client cannot make it hold its header lists."""
    from toolkit.server import lean_h2

    encoder, memo = hpack.Encoder(), MemoDecoder()
    big = [(b"x-a", b"v" * 1000), (b"x-b", b"w" * 1000)]
    memo.decode(encoder.encode(big), raw=True)  # literals, indexed: the table changes
    indexed = encoder.encode(big)  # two index bytes: kept
    memo.decode(indexed, raw=True)
    assert list(memo._memo) == [indexed]
    memo.decode(encoder.encode([(b"x-c", b"1")]), raw=True)  # into the table
    many = encoder.encode([(b"x-c", b"1")] * 600)  # 600 index bytes: decoded, not kept
    assert len(memo.decode(many, raw=True)) == 600 and not memo._memo
    lean_h2._validated.clear()
    lean_h2.validate_inbound([*_GOOD, (b"x-a", b"v" * 5000)], False)
    lean_h2.validate_inbound(_GOOD, False)
    assert [len(k[1]) for k in lean_h2._validated] == [len(_GOOD)]
