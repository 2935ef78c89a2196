"""The pure record layer: parser and counter over arbitrary chunks, real OpenSSL streams."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tls_probe.bio import InstrumentedTLS
from tls_probe.certs import make_cert_bundle, make_client_context, make_server_context
from tls_probe.errors import TlsProbeError
from tls_probe.records import (
    ALERT,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    MAX_PAYLOAD_BYTES,
    NATIVE_RECORD_TALLY,
    Record,
    RecordCounter,
    RecordLayerError,
    RecordParser,
)

# Every counter test runs on both paths: the C tally and the pure-Python one (the C one
# is built by `make test`; tests/test_tls_probe_native.py fails when it is not).
COUNTER_PATHS = pytest.mark.parametrize(
    "native", [False, *([True] if NATIVE_RECORD_TALLY else [])], ids=lambda n: "c" if n else "py"
)

HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def rec(ctype: int, payload_len: int, version: int = 0x0303, fill: int = 0xAB) -> bytes:
    return struct.pack("!BHH", ctype, version, payload_len) + bytes([fill]) * payload_len


def reference_records(stream: bytes) -> list[Record]:
    """An independent, whole-stream walk (no chunking) of a valid record stream."""
    out, pos = [], 0
    while pos + 5 <= len(stream):
        ctype, version, length = struct.unpack_from("!BHH", stream, pos)
        if pos + 5 + length > len(stream):
            break
        out.append(Record(ctype, version, length))
        pos += 5 + length
    return out


def feed_chunks(parser: RecordParser, stream: bytes, cuts: list[int]) -> list[Record]:
    out: list[Record] = []
    prev = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        out += parser.feed(stream[prev:cut])
        prev = cut
    return out


def openssl_streams(tls_version: str) -> tuple[bytes, bytes, int, int]:
    """A real TLS conversation between two OpenSSL endpoints over memory BIOs.

    Returns (server->client bytes, client->server bytes, offset where the server's
    application phase starts, number of server records before it)."""
    bundle = make_cert_bundle()
    sctx, _ = make_server_context(tls_version=tls_version, bundle=bundle)
    cctx = make_client_context(bundle.ca_pem_path)
    server = InstrumentedTLS(sctx, server_side=True)
    client = InstrumentedTLS(cctx, server_side=False, server_hostname="localhost")
    s2c, c2s = bytearray(), bytearray()

    def pump() -> None:
        out = server.take_ciphertext()
        s2c.extend(out)
        client.feed_ciphertext(out)
        out = client.take_ciphertext()
        c2s.extend(out)
        server.feed_ciphertext(out)

    for _ in range(10):
        done = server.do_handshake() & client.do_handshake()
        pump()
        if done:
            break
    boundary, handshake_records = len(s2c), server.sent.records
    for size in (9, 16384, 0, 1, 20000, 16393, 300, 65536):
        server.write_plaintext(bytes(size))
        if size % 2:
            pump()  # vary flush boundaries: some flushes carry several records
    client.write_plaintext(b"GET / HTTP/1.1\r\n\r\n")
    pump()
    server.close_notify()
    pump()
    bundle.cleanup()
    return bytes(s2c), bytes(c2s), boundary, handshake_records


@pytest.fixture(scope="module", params=["1.3", "1.2"])
def real_stream(request: pytest.FixtureRequest) -> tuple[bytes, bytes, int, int]:
    return openssl_streams(request.param)


# -- parser units ----------------------------------------------------------------------------


def test_whole_records_in_one_chunk() -> None:
    stream = rec(HANDSHAKE, 40, 0x0301) + rec(CHANGE_CIPHER_SPEC, 1) + rec(APPLICATION_DATA, 26)
    records = RecordParser().feed(stream)
    assert records == [
        Record(HANDSHAKE, 0x0301, 40),
        Record(CHANGE_CIPHER_SPEC, 0x0303, 1),
        Record(APPLICATION_DATA, 0x0303, 26),
    ]
    assert [r.wire_bytes for r in records] == [45, 6, 31]
    assert records[2].type_name == "application_data"


@pytest.mark.parametrize("cut", range(1, 36))
def test_record_split_at_every_offset_is_emitted_once_complete(cut: int) -> None:
    stream = rec(APPLICATION_DATA, 26) + rec(ALERT, 2)
    parser = RecordParser()
    first = parser.feed(stream[:cut])
    assert parser.in_record == (cut not in (31, 38))
    second = parser.feed(stream[cut:])
    assert first + second == [Record(APPLICATION_DATA, 0x0303, 26), Record(ALERT, 0x0303, 2)]
    assert first == ([Record(APPLICATION_DATA, 0x0303, 26)] if cut >= 31 else [])
    assert not parser.in_record


def test_one_byte_at_a_time() -> None:
    stream = rec(HANDSHAKE, 0) + rec(APPLICATION_DATA, 300) + rec(APPLICATION_DATA, 300)
    parser = RecordParser()
    records = [r for i in range(len(stream)) for r in parser.feed(stream[i : i + 1])]
    assert records == reference_records(stream)
    assert parser.bytes_fed == len(stream)


def test_buffered_bytes_of_an_incomplete_record() -> None:
    parser = RecordParser()
    parser.feed(rec(APPLICATION_DATA, 100)[:3])
    assert parser.buffered_bytes == 3
    parser.feed(rec(APPLICATION_DATA, 100)[3:60])
    assert parser.buffered_bytes == 60
    assert parser.in_record


def test_memoryview_and_bytearray_chunks_parse_like_bytes() -> None:
    stream = rec(APPLICATION_DATA, 16384) * 3 + rec(ALERT, 2)
    expected = RecordParser().feed(stream)
    assert RecordParser().feed(memoryview(stream)) == expected
    assert RecordParser().feed(bytearray(stream)) == expected
    parser = RecordParser()
    view = memoryview(stream)
    assert parser.feed(view[:7]) + parser.feed(view[7:]) == expected


def test_identical_records_are_reported_as_one_run() -> None:
    stream = rec(APPLICATION_DATA, 16401) * 6 + rec(APPLICATION_DATA, 16401, fill=1) * 2
    runs = RecordParser().feed_runs(stream + rec(APPLICATION_DATA, 10))
    assert runs == [(Record(APPLICATION_DATA, 0x0303, 16401), 8), (Record(23, 0x0303, 10), 1)]


def test_a_run_that_only_partly_repeats_is_still_exact() -> None:
    # Five equal records, then one whose header differs only in its length.
    same = rec(APPLICATION_DATA, 100)
    stream = same * 5 + rec(APPLICATION_DATA, 101) + same
    assert RecordParser().feed(stream) == reference_records(stream)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (b"\x47\x45\x54\x20\x2f", "content type 71"),  # "GET /"
        (b"\x16\x02\x01\x00\x10", "version 0x0201"),
        (b"\x17\x03\x03\xff\xff", "exceeds the TLS maximum"),
    ],
)
def test_invalid_header_stops_the_parser_and_accounts_for_the_rest(
    header: bytes, problem: str
) -> None:
    parser = RecordParser()
    good = rec(HANDSHAKE, 10)
    assert parser.feed(good + header + b"x" * 20) == [Record(HANDSHAKE, 0x0303, 10)]
    assert parser.error is not None and problem in parser.error
    assert "offset 15" in parser.error
    assert parser.feed(rec(HANDSHAKE, 10)) == []
    assert parser.unparsed_bytes == 25 + 15
    with pytest.raises(RecordLayerError) as info:
        parser.raise_for_error()
    assert isinstance(info.value, TlsProbeError)


def test_largest_legal_record_is_accepted() -> None:
    stream = rec(APPLICATION_DATA, MAX_PAYLOAD_BYTES)
    assert RecordParser().feed(stream) == [Record(APPLICATION_DATA, 0x0303, MAX_PAYLOAD_BYTES)]


# -- properties -------------------------------------------------------------------------------


@HYPOTHESIS
@given(data=st.data())
def test_any_chunking_of_a_real_openssl_stream_gives_the_same_records(
    real_stream: tuple[bytes, bytes, int, int], data: st.DataObject
) -> None:
    for stream in real_stream[:2]:
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40))
        parser = RecordParser()
        assert feed_chunks(parser, stream, cuts) == reference_records(stream)
        assert parser.error is None and not parser.in_record


@COUNTER_PATHS
@HYPOTHESIS
@given(data=st.data())
def test_counter_totals_do_not_depend_on_chunking(
    native: bool,
    real_stream: tuple[bytes, bytes, int, int], data: st.DataObject
) -> None:
    stream, _, boundary, handshake_records = real_stream
    expected = reference_records(stream)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=40))))
    mark_after = data.draw(st.integers(0, len(cuts)))  # told early, on time or late
    counter = RecordCounter(native=native)
    prev = 0
    for i, cut in enumerate([*cuts, len(stream)]):
        if i == mark_after:
            counter.mark_application_phase(boundary)
        counter.feed(stream[prev:cut])
        prev = cut
    assert counter.records == len(expected)
    assert counter.record_bytes == len(stream) == counter.bytes_fed
    assert counter.handshake_records == handshake_records
    assert counter.application_records == len(expected) - handshake_records
    sizes: dict[int, int] = {}
    for r in expected:
        sizes[r.wire_bytes] = sizes.get(r.wire_bytes, 0) + 1
    assert counter.sizes == sizes
    assert sum(counter.by_type.values()) == len(expected)


@COUNTER_PATHS
@HYPOTHESIS
@given(chunks=st.lists(st.binary(max_size=300), max_size=20))
def test_arbitrary_bytes_never_crash_and_every_byte_is_accounted(
    native: bool, chunks: list[bytes]
) -> None:
    parser = RecordParser()
    records = [r for chunk in chunks for r in parser.feed(chunk)]
    total = sum(len(c) for c in chunks)
    assert parser.bytes_fed == total
    parsed = sum(r.wire_bytes for r in records)
    assert parsed + parser.buffered_bytes + parser.unparsed_bytes == total
    counter = RecordCounter(native=native)
    for chunk in chunks:
        counter.feed(chunk)
    assert counter.records == len(records)
    assert counter.error == parser.error


@HYPOTHESIS
@given(
    body=st.lists(
        st.tuples(st.sampled_from([20, 21, 22, 23]), st.integers(0, 700)), min_size=1, max_size=30
    ),
    data=st.data(),
)
def test_generated_streams_with_repeats_parse_exactly(
    body: list[tuple[int, int]], data: st.DataObject
) -> None:
    # Repeated headers exercise the strided run detection, cuts the carry-over paths.
    stream = b"".join(rec(t, n) for t, n in body for _ in range(1 + n % 3))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    assert feed_chunks(RecordParser(), stream, cuts) == reference_records(stream)


# -- counter ---------------------------------------------------------------------------------


@COUNTER_PATHS
def test_counter_fast_path_matches_parsed_totals(native: bool) -> None:
    counter = RecordCounter(native=native)
    counter.feed(rec(HANDSHAKE, 50))
    counter.mark_application_phase()
    for _ in range(5):
        counter.feed(rec(APPLICATION_DATA, 16401))  # one-record flushes: the fast path
    counter.feed(rec(APPLICATION_DATA, 26) + rec(APPLICATION_DATA, 16401))
    counter.feed(rec(APPLICATION_DATA, 16401))
    assert counter.records == 9
    assert counter.sizes == {31: 1, 55: 1, 16406: 7}
    assert counter.by_type == {HANDSHAKE: 1, APPLICATION_DATA: 8}
    assert counter.by_type_and_size[(APPLICATION_DATA, 16406)] == 7
    assert (counter.handshake_records, counter.application_records) == (1, 8)
    assert counter.handshake_record_bytes == 55
    assert counter.chunks == 8
    assert counter.bytes_fed == counter.record_bytes == 55 + 31 + 7 * 16406


def test_alternating_flush_shapes_all_take_the_fast_path() -> None:
    """split over TLS: a 31-byte record (frame header), then a 16 KiB one, alternating."""
    counter = RecordCounter(native=False)  # the Python path's shape cache
    counter.mark_application_phase(0)
    small, big = rec(APPLICATION_DATA, 26), rec(APPLICATION_DATA, 16401)
    for _ in range(100):
        counter.feed(small)
        counter.feed(big)
    assert set(counter.shapes) == {31, 16406}
    assert sum(s.hits for s in counter.shapes.values()) == 198  # only the first two parsed
    assert counter.sizes == {31: 100, 16406: 100}
    assert counter.chunks == 200 and counter.bytes_fed == 100 * (31 + 16406)


def test_a_chunk_that_starts_mid_record_never_matches_a_shape() -> None:
    counter = RecordCounter(native=False)  # the Python path's shape cache
    counter.mark_application_phase(0)
    plain = rec(APPLICATION_DATA, 95)
    one = plain[:50] + plain[:5] + plain[55:]  # 100 bytes; its header repeats at offset 50
    counter.feed(one)
    assert 100 in counter.shapes
    counter.feed(one[:50])  # ends mid-record: shapes no longer apply
    assert not counter.shapes
    tricky = one[50:] + one[:50]  # 100 bytes, a header at 0, but inside a record
    assert tricky[:5] == one[:5]
    counter.feed(tricky)
    counter.feed(one[50:])
    assert counter.records == 3 and counter.record_bytes == counter.bytes_fed == 300


@COUNTER_PATHS
@HYPOTHESIS
@given(
    shapes=st.lists(st.lists(st.tuples(st.sampled_from([ALERT, HANDSHAKE, APPLICATION_DATA]),
                                       st.integers(0, 300)), min_size=1, max_size=3),
                    min_size=1, max_size=5),
    picks=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2)), max_size=60),
)
def test_fast_path_counts_equal_a_full_parse_for_any_sequence_of_flushes(
    native: bool,
    shapes: list[list[int]], picks: list[tuple[int, int]]
) -> None:
    # Flushes drawn from a few shapes (as a server's are), sometimes cut in two: the
    # counter's totals must equal a plain parse of the same stream, whatever hits.
    flushes = [b"".join(rec(t, n) for t, n in shape) for shape in shapes]
    counter = RecordCounter(native=native)
    counter.mark_application_phase(0)
    stream = b""
    fed = 0
    for which, cut in picks:
        flush = flushes[which % len(flushes)]
        parts = [flush] if cut == 0 else [flush[: len(flush) // (cut + 1)],
                                           flush[len(flush) // (cut + 1):]]
        for part in parts:
            counter.feed(part)
            stream += part
            fed += bool(part)
    expected = reference_records(stream)
    assert counter.records == len(expected) == counter.application_records
    assert counter.chunks == fed
    by_type: dict[int, int] = {}
    for r in expected:
        by_type[r.content_type] = by_type.get(r.content_type, 0) + 1
    assert counter.by_type == by_type
    assert counter.bytes_fed == len(stream) == counter.record_bytes
    sizes: dict[int, int] = {}
    for r in expected:
        sizes[r.wire_bytes] = sizes.get(r.wire_bytes, 0) + 1
    assert counter.sizes == sizes
    assert not counter.in_record


@COUNTER_PATHS
def test_mark_at_an_earlier_offset_reclassifies_records_already_counted(native: bool) -> None:
    # A client's BIO may hold bytes OpenSSL has not consumed when its handshake completes.
    counter = RecordCounter(native=native)
    counter.feed(rec(HANDSHAKE, 95) + rec(APPLICATION_DATA, 26) * 2)
    counter.mark_application_phase(100)
    assert (counter.handshake_records, counter.application_records) == (1, 2)


@COUNTER_PATHS
def test_mark_at_a_later_offset_keeps_queued_handshake_records_in_the_handshake(
    native: bool,
) -> None:
    # A server's outgoing BIO still holds its last handshake flight when the handshake ends.
    counter = RecordCounter(native=native)
    counter.mark_application_phase(100)
    counter.feed(rec(HANDSHAKE, 45) + rec(HANDSHAKE, 45) + rec(APPLICATION_DATA, 26))
    assert (counter.handshake_records, counter.application_records) == (2, 1)
    assert counter.application_record_bytes == 31


@COUNTER_PATHS
def test_unmarked_counter_keeps_every_record_in_the_handshake_phase_with_bounded_memory(
    native: bool,
) -> None:
    counter = RecordCounter(native=native)
    for _ in range(3000):
        counter.feed(rec(APPLICATION_DATA, 10))
    assert counter.handshake_records == 3000
    assert len(counter._unclassified) <= 1024
    counter.mark_application_phase(counter.bytes_fed - 45)  # the last 3 records
    assert (counter.handshake_records, counter.application_records) == (2997, 3)


@COUNTER_PATHS
def test_counter_on_garbage_reports_the_error_without_raising(native: bool) -> None:
    counter = RecordCounter(native=native)
    counter.feed(b"GET / HTTP/1.1\r\n\r\n")
    assert counter.records == 0
    assert counter.error is not None and "content type 71" in counter.error


def test_real_openssl_stream_has_the_expected_shape(
    real_stream: tuple[bytes, bytes, int, int],
) -> None:
    s2c, _, boundary, handshake_records = real_stream
    records = reference_records(s2c)
    assert sum(r.wire_bytes for r in records) == len(s2c)
    assert records[0].content_type == HANDSHAKE  # ServerHello
    assert RecordParser().feed(s2c[:boundary]) == records[:handshake_records]
