"""Oracle: tshark on a real loopback capture counts the records InstrumentedTLS reports.

Server side: an InstrumentedTLS server over a loopback socket answers real clients
(curl, Python's ssl socket = OpenSSL's socket BIO). Client side: an InstrumentedTLS
client fetches over HTTP/2 from nghttpd. tshark reassembles TCP itself; its per
direction record counts must equal ours exactly.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from tls_probe import (
    CertBundle,
    InstrumentedTLS,
    TlsStats,
    make_cert_bundle,
    make_client_context,
    make_server_context,
)
from tls_probe.tshark import CaptureRecords, LoopbackCapture, count_tls_records
from toolkit.protocol.body import BodyStore, expected_chunk

BODY_BYTES = 3 * 16384 + 1000


@pytest.fixture(scope="module")
def bundle() -> Iterator[CertBundle]:
    b = make_cert_bundle()
    yield b
    b.cleanup()


def serve_once(listener: socket.socket, ctx: ssl.SSLContext, result: dict[str, object]) -> None:
    """Accept one HTTP/1.1 request and answer it with SSL_writes of chosen shapes."""
    conn, _ = listener.accept()
    conn.settimeout(20)
    tls = InstrumentedTLS(ctx, server_side=True)

    def flush() -> None:
        if data := tls.take_ciphertext():
            conn.sendall(data)

    def pump() -> bool:
        chunk = conn.recv(65536)
        if not chunk:
            tls.feed_eof()
            return False
        tls.feed_ciphertext(chunk)
        return True

    try:
        while not tls.do_handshake():
            flush()
            pump()
        flush()
        request = b""
        while b"\r\n\r\n" not in request:
            data = tls.read_plaintext()
            flush()
            if data:
                request += data
            elif not pump():
                raise AssertionError("client closed before sending a request")
        body = BodyStore(BODY_BYTES).view(BODY_BYTES)
        tls.write_plaintext(
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % BODY_BYTES
        )
        flush()
        tls.write_plaintext(body[:9])  # one 9-byte SSL_write, flushed alone
        flush()
        for off in range(9, BODY_BYTES, 16384):  # then 16 KiB SSL_writes, two per flush
            tls.write_plaintext(body[off : off + 16384])
            if (off // 16384) % 2:
                flush()
        flush()
        tls.close_notify()
        flush()
        conn.shutdown(socket.SHUT_WR)
        while pump():  # count every record the client sends until it closes
            pass
        result["stats"] = tls.stats
        result["version"] = tls.version
    except BaseException as exc:  # surfaced by the test thread
        result["error"] = exc
    finally:
        conn.close()


def run_with_capture(
    ctx: ssl.SSLContext, client: Callable[[int], None], tmp_path: Path
) -> tuple[TlsStats, CaptureRecords, str]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    result: dict[str, object] = {}
    with LoopbackCapture(port, tmp_path / "tls.pcap"):
        server = threading.Thread(target=serve_once, args=(listener, ctx, result))
        server.start()
        client(port)
        server.join(30)
    listener.close()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    stats = result["stats"]
    assert isinstance(stats, TlsStats)
    return stats, count_tls_records(tmp_path / "tls.pcap", port), str(result["version"])


def curl_client(bundle: CertBundle, tls_version: str) -> Callable[[int], None]:
    def run(port: int) -> None:
        proc = subprocess.run(
            [
                *(shutil.which("curl") or "curl", "--silent", "--show-error", "--http1.1"),
                *("--cacert", bundle.ca_pem_path, f"--tlsv{tls_version}"),
                *("--tls-max", tls_version, f"https://localhost:{port}/"),
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == expected_chunk(0, BODY_BYTES)

    return run


def python_ssl_client(bundle: CertBundle) -> Callable[[int], None]:
    def run(port: int) -> None:
        ctx = make_client_context(bundle.ca_pem_path, alpn=("http/1.1",))
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as s,
        ):
            s.sendall(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            s.unwrap()  # send our close_notify too
        assert data.endswith(expected_chunk(0, BODY_BYTES))

    return run


def assert_counts_match(stats: TlsStats, capture: CaptureRecords) -> None:
    s2c, c2s = capture.server_to_client, capture.client_to_server
    assert stats.records == s2c.records
    assert stats.record_bytes == s2c.record_bytes
    assert stats.record_sizes == s2c.sizes
    assert stats.received_records == c2s.records
    assert stats.received_record_bytes == c2s.record_bytes
    assert stats.received_record_sizes == c2s.sizes


@pytest.mark.parametrize("tls_version", ["1.3", "1.2"])
def test_tshark_counts_what_the_server_wrote_and_received_curl(
    bundle: CertBundle, tls_version: str, tmp_path: Path
) -> None:
    ctx, _ = make_server_context(tls_version=tls_version, alpn=("h2", "http/1.1"), bundle=bundle)
    stats, capture, version = run_with_capture(ctx, curl_client(bundle, tls_version), tmp_path)
    assert version == f"TLSv{tls_version}"
    assert_counts_match(stats, capture)
    assert stats.ssl_writes == 1 + 1 + 4  # headers, 9 bytes, four writes of up to 16 KiB
    if tls_version == "1.3":
        # The lone 9-byte SSL_write, measured on the wire by tshark: 9 + 1 + 16 + 5 bytes.
        assert capture.server_to_client.sizes.get(31) == 1
        assert stats.record_sizes.get(31) == 1


def test_tshark_counts_match_with_a_python_ssl_socket_client(
    bundle: CertBundle, tmp_path: Path
) -> None:
    ctx, _ = make_server_context(alpn=("h2", "http/1.1"), bundle=bundle)
    stats, capture, _ = run_with_capture(ctx, python_ssl_client(bundle), tmp_path)
    assert_counts_match(stats, capture)
    assert capture.client_to_server.records >= 4  # hello, ccs, finished, request, close


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def h2_get(port: int, ca_pem_path: str, path: str) -> tuple[InstrumentedTLS, bytes]:
    """GET over HTTP/2 with an InstrumentedTLS client; read until the server closes."""
    tls = InstrumentedTLS(
        make_client_context(ca_pem_path), server_side=False, server_hostname="localhost"
    )
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    body = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:

        def flush() -> None:
            if out := conn.data_to_send():
                tls.write_plaintext(out)
            if data := tls.take_ciphertext():
                sock.sendall(data)

        def recv() -> bool:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return False
            if chunk:
                tls.feed_ciphertext(chunk)
            return bool(chunk)

        while not tls.do_handshake():
            flush()
            recv()
        assert tls.alpn_protocol == "h2"
        conn.initiate_connection()
        headers = [(":method", "GET"), (":path", path), (":scheme", "https")]
        conn.send_headers(1, [*headers, (":authority", f"localhost:{port}")], end_stream=True)
        flush()
        done = False
        while not done:
            assert recv(), "server closed before the response ended"
            while data := tls.read_plaintext():
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, 1)
                    done = done or isinstance(event, h2.events.StreamEnded)
            flush()
        conn.close_connection()
        flush()
        tls.close_notify()
        flush()
        with contextlib.suppress(OSError):  # nghttpd may have closed after our GOAWAY
            sock.shutdown(socket.SHUT_WR)
        while recv():  # count every record the server sends until it closes
            pass
    return tls, bytes(body)


def test_tshark_counts_what_a_client_received_from_nghttpd(
    bundle: CertBundle, tmp_path: Path
) -> None:
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    size = 200_000
    (docroot / "body").write_bytes(expected_chunk(0, size))
    port = free_port()
    nghttpd = subprocess.Popen(
        [
            *(shutil.which("nghttpd") or "nghttpd", "-d", str(docroot), str(port)),
            *(bundle.key_pem_path, bundle.cert_pem_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        with LoopbackCapture(port, tmp_path / "nghttpd.pcap"):
            tls, body = h2_get(port, bundle.ca_pem_path, "/body")
    finally:
        nghttpd.terminate()
        nghttpd.wait(10)
    assert body == expected_chunk(0, size)
    capture = count_tls_records(tmp_path / "nghttpd.pcap", port)
    stats = tls.stats
    # The probe's own connection checks (wait_for_port) carry no TLS records.
    assert stats.received_records == capture.server_to_client.records
    assert stats.received_record_bytes == capture.server_to_client.record_bytes
    assert stats.received_record_sizes == capture.server_to_client.sizes
    assert stats.records == capture.client_to_server.records
    assert stats.record_sizes == capture.client_to_server.sizes
    assert stats.received_application_records > size // 16384
