"""MemoryBioTLS / InstrumentedTLS between two real OpenSSL endpoints over memory BIOs."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from tls_probe import (
    CertBundle,
    InstrumentedTLS,
    MemoryBioTLS,
    TlsClosedError,
    TlsError,
    TlsHandshakeError,
    TlsProtocolError,
    TlsStats,
    make_cert_bundle,
    make_client_context,
    make_server_context,
)
from tls_probe.errors import TlsProbeError
from tls_probe.records import HANDSHAKE, RecordParser


@pytest.fixture(scope="module")
def bundle() -> Iterator[CertBundle]:
    b = make_cert_bundle()
    yield b
    b.cleanup()


def connect(
    bundle: CertBundle, tls_version: str = "1.3", cls: type[MemoryBioTLS] = InstrumentedTLS
) -> tuple[InstrumentedTLS, InstrumentedTLS]:
    sctx, _ = make_server_context(tls_version=tls_version, bundle=bundle)
    server = cls(sctx, server_side=True)
    client = InstrumentedTLS(
        make_client_context(bundle.ca_pem_path), server_side=False, server_hostname="localhost"
    )
    for _ in range(10):
        done = client.do_handshake() & server.do_handshake()
        pump(server, client)
        if done:
            return server, client  # type: ignore[return-value]
    raise AssertionError("handshake did not complete")


def pump(server: MemoryBioTLS, client: MemoryBioTLS) -> None:
    client.feed_ciphertext(server.take_ciphertext())
    server.feed_ciphertext(client.take_ciphertext())


def read_all(tls: MemoryBioTLS) -> bytes:
    out = b""
    while chunk := tls.read_plaintext():
        out += chunk
    return out


# -- handshake and shape ----------------------------------------------------------------------


@pytest.mark.parametrize("tls_version", ["1.3", "1.2"])
def test_handshake_negotiates_version_and_alpn(bundle: CertBundle, tls_version: str) -> None:
    server, client = connect(bundle, tls_version)
    assert server.handshake_done and client.handshake_done
    assert server.version == client.version == f"TLSv{tls_version}"
    assert server.alpn_protocol == client.alpn_protocol == "h2"
    assert server.stats.handshake_records >= 2
    assert server.stats.application_records == 0
    assert server.stats.ssl_writes == 0


def test_nine_byte_ssl_write_is_one_31_byte_record_in_tls13(bundle: CertBundle) -> None:
    server, client = connect(bundle)
    before = server.stats
    assert server.write_plaintext(b"\x00\x00\x10\x00\x00\x00\x00\x00\x01") == 9
    wire = server.take_ciphertext()
    after = server.stats
    new_sizes = {
        size: n - before.record_sizes.get(size, 0)
        for size, n in after.record_sizes.items()
        if n != before.record_sizes.get(size, 0)
    }
    # 9 plaintext + 1 inner content type + 16 AEAD tag + 5 header.
    assert new_sizes == {31: 1}
    assert len(wire) == 31
    assert after.records - before.records == 1
    assert after.application_records == 1
    assert (after.ssl_writes, after.plaintext_bytes) == (1, 9)
    client.feed_ciphertext(wire)
    assert client.read_plaintext() == b"\x00\x00\x10\x00\x00\x00\x00\x00\x01"
    assert client.stats.received_application_records >= 1


def test_nine_byte_ssl_write_in_tls12_is_one_record_sized_by_the_cipher(bundle: CertBundle) -> None:
    server, _ = connect(bundle, "1.2")
    server.write_plaintext(b"123456789")
    [record] = RecordParser().feed(server.take_ciphertext())
    cipher = server.cipher or ""
    # AES-GCM carries an 8-byte explicit nonce; both AEADs add a 16-byte tag.
    overhead = 8 + 16 if "GCM" in cipher else 16
    assert record.wire_bytes == 9 + overhead + 5
    assert server.stats.application_record_bytes == record.wire_bytes


def test_one_ssl_write_of_1mib_is_64_full_records(bundle: CertBundle) -> None:
    server, client = connect(bundle)
    body = bytes(range(256)) * 4096
    assert server.write_plaintext(memoryview(body)) == len(body)
    wire = server.take_ciphertext()
    stats = server.stats
    assert stats.ssl_writes == 1
    assert stats.application_records == 64
    assert stats.record_sizes[16384 + 22] == 64
    assert stats.application_record_bytes == len(wire)
    for i in range(0, len(wire), 5000):  # arbitrary TCP-like delivery
        client.feed_ciphertext(wire[i : i + 5000])
    assert read_all(client) == body


@pytest.mark.parametrize("tls_version", ["1.3", "1.2"])
def test_what_one_side_writes_the_other_receives(bundle: CertBundle, tls_version: str) -> None:
    server, client = connect(bundle, tls_version)
    for size in (9, 16384, 9, 3000, 40000):
        server.write_plaintext(bytes(size))
    client.write_plaintext(b"request")
    pump(server, client)
    read_all(client)
    assert read_all(server) == b"request"
    server.close_notify()
    client.close_notify()
    pump(server, client)
    s, c = server.stats, client.stats
    assert (s.records, s.record_bytes, s.record_sizes) == (
        c.received_records,
        c.received_record_bytes,
        c.received_record_sizes,
    )
    assert (c.records, c.record_bytes, c.record_sizes) == (
        s.received_records,
        s.received_record_bytes,
        s.received_record_sizes,
    )
    assert s.ciphertext_bytes == s.record_bytes
    assert s.ssl_writes == 5 and s.plaintext_bytes == 9 + 16384 + 9 + 3000 + 40000


def test_phases_seen_from_both_sides(bundle: CertBundle) -> None:
    server, client = connect(bundle, "1.2")
    assert server.stats.handshake_records == client.stats.received_handshake_records
    assert client.stats.handshake_records == server.stats.received_handshake_records
    server13, client13 = connect(bundle, "1.3")
    # TLS 1.3 session tickets leave the server within its handshake but reach the client
    # after its own handshake completed: there they count as application-phase records.
    tickets = server13.stats.handshake_records - client13.stats.received_handshake_records
    sctx, _ = make_server_context(bundle=bundle)
    assert tickets == sctx.num_tickets
    assert client13.stats.received_application_records == tickets


def test_stats_add_up_over_connections_and_serialise(bundle: CertBundle) -> None:
    a, _ = connect(bundle)
    b, _ = connect(bundle)
    a.write_plaintext(b"x" * 9)
    a.take_ciphertext()
    total = TlsStats.empty() + a.stats + b.stats
    assert total.connections == 2
    assert total.records == a.stats.records + b.stats.records
    assert total.record_sizes[31] == a.stats.record_sizes[31] + b.stats.record_sizes.get(31, 0)
    d = total.to_dict()
    assert {"records", "record_bytes", "ssl_writes"} <= d.keys()
    assert d["records_by_type"]["handshake"] >= 2
    assert all(isinstance(k, str) for k in d["record_sizes"])


def test_uninstrumented_connection_behaves_the_same(bundle: CertBundle) -> None:
    server, client = connect(bundle, cls=MemoryBioTLS)
    assert type(server) is MemoryBioTLS
    assert server.write_plaintext(b"hello") == 5
    assert server.pending_ciphertext_bytes == 5 + 22
    pump(server, client)
    assert read_all(client) == b"hello"


def test_empty_write_makes_no_record(bundle: CertBundle) -> None:
    server, _ = connect(bundle)
    records = server.stats.records
    assert server.write_plaintext(b"") == 0
    assert server.take_ciphertext() == b""
    assert server.stats.records == records


# -- bad input: typed, catchable errors ------------------------------------------------------


def test_garbage_instead_of_a_client_hello_is_a_handshake_error(bundle: CertBundle) -> None:
    server = InstrumentedTLS(make_server_context(bundle=bundle)[0], server_side=True)
    server.feed_ciphertext(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    with pytest.raises(TlsHandshakeError) as info:
        server.do_handshake()
    assert isinstance(info.value, TlsError) and isinstance(info.value, TlsProbeError)
    assert not info.value.cut_off
    assert "http request" in str(info.value)
    assert server.received.error is not None  # the counter saw no TLS records either


def test_random_bytes_shaped_like_a_record_are_a_handshake_error(bundle: CertBundle) -> None:
    server = InstrumentedTLS(make_server_context(bundle=bundle)[0], server_side=True)
    server.feed_ciphertext(bytes([HANDSHAKE, 3, 1, 0, 40]) + b"\xee" * 40)
    with pytest.raises(TlsHandshakeError):
        server.do_handshake()


def test_handshake_cut_off_is_a_handshake_error(bundle: CertBundle) -> None:
    server = InstrumentedTLS(make_server_context(bundle=bundle)[0], server_side=True)
    client = InstrumentedTLS(make_client_context(bundle.ca_pem_path), server_side=False)
    client.do_handshake()
    hello = client.take_ciphertext()
    server.feed_ciphertext(hello[:100])
    assert server.do_handshake() is False
    server.feed_eof()
    with pytest.raises(TlsHandshakeError) as info:
        server.do_handshake()
    assert info.value.cut_off
    assert server.received.in_record


def test_client_rejecting_the_certificate_fails_both_sides(bundle: CertBundle) -> None:
    other_ca = make_cert_bundle()
    server = InstrumentedTLS(make_server_context(bundle=bundle)[0], server_side=True)
    client = InstrumentedTLS(
        make_client_context(other_ca.ca_pem_path), server_side=False, server_hostname="localhost"
    )
    client.do_handshake()
    pump(server, client)
    server.do_handshake()
    pump(server, client)
    with pytest.raises(TlsHandshakeError, match="certificate verify failed"):
        client.do_handshake()
    server.feed_ciphertext(client.take_ciphertext())  # the client's alert
    with pytest.raises(TlsHandshakeError):
        server.do_handshake()
    other_ca.cleanup()


def test_close_mid_record_is_an_unclean_close(bundle: CertBundle) -> None:
    server, client = connect(bundle)
    client.write_plaintext(b"x" * 100)
    record = client.take_ciphertext()
    server.feed_ciphertext(record[:50])
    assert server.read_plaintext() == b""
    server.feed_eof()
    with pytest.raises(TlsClosedError) as info:
        server.read_plaintext()
    assert (info.value.clean, info.value.mid_record) == (False, True)


def test_eof_between_records_is_unclean_but_not_mid_record(bundle: CertBundle) -> None:
    server, _ = connect(bundle)
    server.feed_eof()
    with pytest.raises(TlsClosedError) as info:
        server.read_plaintext()
    assert (info.value.clean, info.value.mid_record) == (False, False)


def test_close_notify_is_a_clean_close(bundle: CertBundle) -> None:
    server, client = connect(bundle)
    client.close_notify()
    server.feed_ciphertext(client.take_ciphertext())
    with pytest.raises(TlsClosedError) as info:
        server.read_plaintext()
    assert info.value.clean
    server.close_notify()
    assert RecordParser().feed(server.take_ciphertext())[0].content_type == 23  # TLS 1.3 alert


def test_corrupt_record_after_the_handshake_is_a_protocol_error(bundle: CertBundle) -> None:
    server, _ = connect(bundle)
    server.feed_ciphertext(bytes([23, 3, 3, 0, 32]) + b"z" * 32)
    with pytest.raises(TlsProtocolError, match="bad record mac"):
        server.read_plaintext()


def test_write_before_the_handshake_is_a_tls_error(bundle: CertBundle) -> None:
    server = InstrumentedTLS(make_server_context(bundle=bundle)[0], server_side=True)
    with pytest.raises(TlsError, match="handshake"):
        server.write_plaintext(b"too early")


def test_server_without_common_alpn_completes_without_a_protocol(bundle: CertBundle) -> None:
    sctx, _ = make_server_context(bundle=bundle)
    server = InstrumentedTLS(sctx, server_side=True)
    cctx = make_client_context(bundle.ca_pem_path, alpn=("http/1.1",))
    client = InstrumentedTLS(cctx, server_side=False, server_hostname="localhost")
    for _ in range(5):
        client.do_handshake()
        server.do_handshake()
        pump(server, client)
    # OpenSSL lets it through: a server speaking only h2 must check alpn_protocol itself.
    assert server.handshake_done and server.alpn_protocol is None


def test_ssl_errors_do_not_leak_past_the_typed_errors(bundle: CertBundle) -> None:
    server, _ = connect(bundle)
    server.feed_ciphertext(b"\x00" * 64)
    with pytest.raises(TlsError) as info:
        server.read_plaintext()
    assert not isinstance(info.value, ssl.SSLError)
