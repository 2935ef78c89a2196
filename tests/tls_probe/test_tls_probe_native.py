"""The probe's C part (tls_probe/_recordwalk.c) against the pure-Python reference.

RecordTally may count a chunk only when it is exactly a run of valid TLS records, and
must leave everything as it was otherwise; CountingWrite and CountingTake count what
they pass through and nothing else. References are not leaked either way."""

from __future__ import annotations

import gc
import shutil
import struct
import sys
import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tls_probe.bio import InstrumentedTLS, MemoryBioTLS
from tls_probe.certs import CertBundle, make_cert_bundle, make_client_context, make_server_context
from tls_probe.records import (
    APPLICATION_DATA,
    HANDSHAKE,
    MAX_PAYLOAD_BYTES,
    NATIVE_RECORD_TALLY,
    RecordCounter,
    header_problem,
)


def test_the_c_part_is_built_where_a_compiler_is() -> None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if shutil.which(compiler) is None or not headers.exists():
        pytest.skip(f"no C compiler ({compiler}) or no {headers}: the Python path runs alone")
    assert NATIVE_RECORD_TALLY, (
        "tls_probe._recordwalk is not importable although a compiler is installed: "
        "reinstall (`pip install -e .`) and read the build log"
    )
    assert RecordCounter().native


# Not a module-wide pytestmark: the test above must fail, not skip, when the build is missing.
native_only = pytest.mark.skipif(not NATIVE_RECORD_TALLY, reason="tls_probe._recordwalk not built")
BOTH_COUNTERS = pytest.mark.parametrize(
    "native", [pytest.param(True, marks=native_only, id="c"), pytest.param(False, id="py")])

if NATIVE_RECORD_TALLY:
    from tls_probe._recordwalk import CountingTake, CountingWrite, RecordTally


def rec(ctype: int, payload_len: int, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", ctype, version, payload_len) + b"\xab" * payload_len


def whole_records(chunk: bytes) -> list[tuple[int, int]] | None:
    """(content type, wire bytes) of each record when `chunk` is exactly a run of valid
    records, else None: an independent reading of what RecordTally may accept."""
    out, pos = [], 0
    while pos < len(chunk):
        if len(chunk) - pos < 5:
            return None
        ctype, version, length = struct.unpack_from("!BHH", chunk, pos)
        if header_problem(ctype, version, length) is not None or pos + 5 + length > len(chunk):
            return None
        out.append((ctype, length + 5))
        pos += 5 + length
    return out


def armed_tally() -> RecordTally:
    tally = RecordTally()
    tally.armed = True
    return tally


def drained(tally: RecordTally) -> tuple[int, int, dict[tuple[int, int], int]]:
    fed, chunks, records = tally.drain()
    return fed, chunks, {(t, w): n for t, w, n in records}


@native_only
def test_an_unarmed_tally_counts_nothing() -> None:
    tally = RecordTally()
    assert tally.feed(rec(APPLICATION_DATA, 10)) is False
    assert drained(tally) == (0, 0, {})


@native_only
def test_whole_records_are_counted_and_drained_once() -> None:
    tally = armed_tally()
    flush = rec(APPLICATION_DATA, 26) + rec(APPLICATION_DATA, 16401) * 3
    assert tally.feed(flush) is True
    assert tally.feed(memoryview(flush)) is True
    assert tally.feed(b"") is True  # nothing to count, nothing refused
    assert tally.pending
    assert drained(tally) == (2 * len(flush), 2, {(23, 31): 2, (23, 16406): 6})
    assert not tally.pending
    assert drained(tally) == (0, 0, {})


@native_only
@pytest.mark.parametrize(
    "chunk",
    [
        rec(APPLICATION_DATA, 100)[:50],  # ends inside a payload
        rec(APPLICATION_DATA, 10) + rec(APPLICATION_DATA, 10)[:3],  # ends inside a header
        rec(99, 10),  # not a content type
        rec(APPLICATION_DATA, 10, version=0x0203),  # not a TLS version
        rec(APPLICATION_DATA, MAX_PAYLOAD_BYTES + 1),  # too long
        b"GET / HTTP/1.1\r\n\r\n",
        (rec(HANDSHAKE, 1) + rec(APPLICATION_DATA, 1)) * 257,  # 514 runs: more than kept
    ],
    ids=["mid-payload", "mid-header", "type", "version", "length", "http", "many-runs"],
)
def test_anything_but_whole_valid_records_is_refused_and_changes_nothing(chunk: bytes) -> None:
    tally = armed_tally()
    assert tally.feed(rec(APPLICATION_DATA, 26)) is True
    assert tally.feed(chunk) is False
    assert drained(tally) == (31, 1, {(23, 31): 1})


@native_only
def test_a_non_contiguous_buffer_is_refused() -> None:
    tally = armed_tally()
    assert tally.feed(memoryview(rec(APPLICATION_DATA, 26) * 2)[::2]) is False
    assert drained(tally)[1] == 0


@native_only
@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(
        st.one_of(
            st.tuples(st.sampled_from([20, 21, 22, 23, 24, 25, 19]), st.integers(0, 600)),
            st.binary(max_size=8),
        ),
        max_size=12,
    )
)
def test_tally_accepts_exactly_what_a_reference_walk_calls_whole_records(
    pieces: list[tuple[int, int] | bytes],
) -> None:
    chunk = b"".join(rec(*p) if isinstance(p, tuple) else p for p in pieces)
    expected = whole_records(chunk)
    tally = armed_tally()
    accepted = tally.feed(chunk)
    fed, chunks, records = drained(tally)
    if expected is None:
        assert accepted is False and (fed, chunks, records) == (0, 0, {})
        return
    assert accepted is True
    want: dict[tuple[int, int], int] = {}
    for key in expected:
        want[key] = want.get(key, 0) + 1
    assert (fed, chunks if chunk else 1, records) == (len(chunk), 1, want)


@native_only
def test_table_of_sizes_starts_afresh_after_many_distinct_sizes() -> None:
    tally = armed_tally()
    for size in range(2000):  # a peer sending every size: 2000 keys, then a fresh table
        assert tally.feed(rec(APPLICATION_DATA, size))
    assert sum(n for _, _, n in tally.drain()[2]) == 2000
    assert tally.feed(rec(APPLICATION_DATA, 7))
    assert drained(tally)[2] == {(23, 12): 1}


@native_only
def test_counting_write_counts_calls_and_returned_bytes_only() -> None:
    calls: list[bytes] = []

    def write(buf: bytes) -> int:
        if buf == b"fail":
            raise OSError("refused")
        calls.append(buf)
        return len(buf)

    counting = CountingWrite(write)
    assert counting(b"abc") == 3
    assert counting(buf=b"hello") == 5
    with pytest.raises(OSError):
        counting(b"fail")  # a failed SSL_write wrote nothing
    assert (counting.calls, counting.total) == (2, 8)
    assert calls == [b"abc", b"hello"]
    with pytest.raises(TypeError):
        CountingWrite(lambda buf: "not an int")(b"x")


@native_only
def test_counting_take_counts_whole_records_and_hands_the_rest_to_the_fallback() -> None:
    chunks = [b"", rec(APPLICATION_DATA, 26), rec(APPLICATION_DATA, 26)[:7]]
    refused: list[bytes] = []
    tally = armed_tally()
    take = CountingTake(chunks.pop, tally, refused.append)
    assert take() == rec(APPLICATION_DATA, 26)[:7]
    assert take() == rec(APPLICATION_DATA, 26)
    assert take() == b""
    assert refused == [rec(APPLICATION_DATA, 26)[:7]]
    assert drained(tally) == (31, 1, {(23, 31): 1})
    with pytest.raises(TypeError):
        take(1)

    def broken(data: bytes) -> None:
        raise ValueError("fallback failed")

    with pytest.raises(ValueError, match="fallback failed"):
        CountingTake(lambda: b"x", tally, broken)()


@native_only
def test_no_reference_is_leaked_per_call() -> None:
    flush = rec(APPLICATION_DATA, 16401)
    result = 16384
    tally = armed_tally()
    take = CountingTake(lambda: flush, tally, lambda data: None)
    write = CountingWrite(lambda buf: result)
    before = sys.getrefcount(flush), sys.getrefcount(result)
    for _ in range(10_000):
        take()
        write(flush)
        tally.feed(flush)
        tally.feed(flush[:9])
    assert (sys.getrefcount(flush), sys.getrefcount(result)) == before
    assert drained(tally)[1] == 20_000


def established_pair(bundle: CertBundle, native: bool) -> tuple[InstrumentedTLS, MemoryBioTLS]:
    server = InstrumentedTLS(make_server_context(bundle=bundle)[0], server_side=True,
                             native=native)
    client = MemoryBioTLS(make_client_context(bundle.ca_pem_path), server_side=False,
                          server_hostname="localhost")
    for _ in range(10):
        done = client.do_handshake() & server.do_handshake()
        client.feed_ciphertext(server.take_ciphertext())
        server.feed_ciphertext(client.take_ciphertext())
        if done:
            break
    return server, client


@native_only
def test_c_and_python_paths_count_a_real_connection_alike() -> None:
    """split-like flushes (9-byte header, 16 KiB body), whole 1 MiB flushes, odd sizes."""
    stats = {}
    bundle = make_cert_bundle()  # one certificate: the handshakes are the same size
    for native in (True, False):
        server, client = established_pair(bundle, native)
        assert server.sent.native is native
        body = memoryview(bytes(1 << 20))
        for size in (1, 9, 16384, 16385, 100_000):
            for off in range(0, len(body), 1 << 18):
                server.write_plaintext(body[off : off + size])
                client.feed_ciphertext(server.take_ciphertext())
        for _ in range(3):
            for off in range(0, len(body), 16384):
                server.write_plaintext(body[off : off + 16384])
            client.feed_ciphertext(server.take_ciphertext())
        received = 0
        while chunk := client.read_plaintext(1 << 20):
            received += len(chunk)
        assert received == server.plaintext_bytes
        st = server.stats
        # Handshakes differ by a byte or two (an ECDSA signature's DER length varies).
        stats[native] = (
            st.ssl_writes, st.plaintext_bytes, st.ciphertext_flushes, st.handshake_records,
            st.application_records, st.application_record_bytes,
            st.ciphertext_bytes - st.handshake_record_bytes, st.records_by_type,
            {size: n for size, n in st.record_sizes.items() if size < 90 or size > 2000},
        )
    bundle.cleanup()
    assert stats[True] == stats[False]
    assert stats[True][-1][16384 + 22] > 0 and stats[True][-1][9 + 22] > 0


@BOTH_COUNTERS
def test_counters_and_connections_are_freed_without_the_cycle_collector(native: bool) -> None:
    # A counter or connection in a reference cycle lives until the collector runs, which
    # benchmarks switch off (--benchmark-disable-gc): thousands of connections would pile up.
    bundle = make_cert_bundle()
    ctx = make_server_context(bundle=bundle)[0]
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            counter = RecordCounter(native=native)
            counter.mark_application_phase(0)
            counter.feed(rec(APPLICATION_DATA, 26))
            InstrumentedTLS(ctx, server_side=True, native=native)
        del counter
        unreachable = gc.collect()
    finally:
        gc.enable()
        bundle.cleanup()
    assert unreachable == 0


@BOTH_COUNTERS
def test_memoryviews_of_any_item_size_count_in_bytes(native: bool) -> None:
    stream = rec(APPLICATION_DATA, 26) * 8  # 248 bytes
    counter = RecordCounter(native=native)
    counter.mark_application_phase(0)
    counter.feed(memoryview(stream[:120]).cast("I"))  # 30 items of 4 bytes, ends mid-record
    counter.feed(memoryview(stream[120:240]).cast("B", (2, 60)))  # 2 rows of 60 bytes
    counter.feed(memoryview(stream[240:]).cast("H"))
    counter.feed(memoryview(stream[:124]).cast("I"))  # whole records (the C tally's case)
    assert counter.bytes_fed == 248 + 124
    assert counter.sizes == {31: 12} and not counter.in_record
