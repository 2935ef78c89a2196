"""The frame codec: envelopes in, envelopes out, however the bytes are cut."""

from __future__ import annotations

from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.protocol.frames import (
    PREFACE,
    FrameHead,
    FrameScanner,
    FrameType,
    data_frame_header,
    goaway_error_code,
    pack_header,
    unpack_header,
    window_update_frame,
)


def _wire(*frames: object) -> bytes:
    return b"".join(f.serialize() for f in frames)  # type: ignore[attr-defined]


def test_scanner_reads_frame_headers_and_skips_payloads():
    data = PREFACE + _wire(SettingsFrame(0), DataFrame(1, data=b"x" * 1000),
                           PingFrame(0, opaque_data=b"12345678"))
    heads = FrameScanner().feed(data)
    assert heads == [FrameHead(0x4, 0, 0, 0), FrameHead(0x0, 0, 1, 1000),
                     FrameHead(0x6, 0, 0, 8)]


def test_scanner_stops_at_a_wrong_preface():
    scanner = FrameScanner()
    assert scanner.feed(b"GET / HTTP/1.1\r\n" + _wire(PingFrame(0))) == []
    assert scanner.broken


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_scanner_is_indifferent_to_how_bytes_are_split(cuts):
    data = PREFACE + _wire(SettingsFrame(0, settings={3: 100}), HeadersFrame(1, data=b"h" * 40),
                           DataFrame(1, data=b"d" * 200), RstStreamFrame(1),
                           WindowUpdateFrame(0, window_increment=7))
    whole = FrameScanner().feed(data)
    scanner, heads, prev = FrameScanner(), [], 0
    for cut in sorted({*cuts, len(data)}):
        heads += scanner.feed(data[prev:cut])
        prev = max(prev, cut)
    assert heads == whole and len(whole) == 5



def test_kept_payloads_come_whole_with_their_head():
    scanner = FrameScanner(expect_preface=False, keep_types=frozenset({FrameType.GOAWAY}))
    data = _wire(DataFrame(1, data=b"d" * 50), GoAwayFrame(0, last_stream_id=7, error_code=11))
    heads = [h for i in range(len(data)) for h in scanner.feed(data[i:i + 1])]
    assert [h.type for h in heads] == [FrameType.DATA, FrameType.GOAWAY]
    assert heads[0].payload is None and goaway_error_code(heads[1].payload or b"") == 11


@settings(max_examples=200, deadline=None)
@given(length=st.integers(0, (1 << 24) - 1), ftype=st.integers(0, 255),
       flags=st.integers(0, 255), sid=st.integers(0, (1 << 31) - 1))
def test_headers_round_trip_as_hyperframe_reads_them(length, ftype, flags, sid):
    raw = pack_header(length, ftype, flags, sid)
    assert unpack_header(raw) == (length, ftype, flags, sid)
    assert len(raw) == 9


def test_data_and_window_update_frames_match_hyperframe():
    assert data_frame_header(16384, 1, False) == bytes([0, 0x40, 0, 0, 0, 0, 0, 0, 1])
    assert data_frame_header(5, 3, True) == bytes([0, 0, 5, 0, 1, 0, 0, 0, 3])
    assert data_frame_header(0x123456, 0x7FFFFFFF, True)[:3] == b"\x12\x34\x56"
    assert window_update_frame(3, 1000) == WindowUpdateFrame(3, window_increment=1000).serialize()
    head = HeadersFrame(5, data=b"xy", flags=["END_STREAM"]).serialize()
    assert unpack_header(head) == (2, FrameType.HEADERS, 1, 5)
    assert unpack_header(RstStreamFrame(9).serialize())[1] == FrameType.RST_STREAM
