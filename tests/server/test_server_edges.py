"""Edges found in review: thread-per-stream under slow or cancelling clients, HEAD,
odd paths, tiny frames over TLS, and a long-lived connection."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import h2.config
import h2.connection
import h2.events
import pytest

from toolkit.clients.fetch import fetch
from toolkit.protocol.body import expected_chunk


def _client(port: int, window: int = (1 << 30) - 1):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    conn.increment_flow_control_window(1 << 30)
    sock = socket.create_connection(("127.0.0.1", port))
    return conn, sock


def _get(conn, sid: int, path: str, method: str = "GET") -> None:
    conn.send_headers(sid, [(":method", method), (":path", path), (":scheme", "http"),
                            (":authority", "x")], end_stream=True)


def test_threads_a_reader_that_stops_reading_does_not_freeze_the_server(start_server):
    srv = start_server(strategy="single", threads=True, body_bytes=1024)
    conn, sock = _client(srv.port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    _get(conn, 1, f"/bytes/{64 << 20}")
    sock.sendall(conn.data_to_send())
    time.sleep(0.5)
    conn.ping(b"12345678")  # a read on the stuck connection while its thread is blocked
    sock.sendall(conn.data_to_send())
    t0 = time.monotonic()
    resp = fetch(srv.url, "/bytes/10", timeout_s=10)
    assert resp.status == 200 and time.monotonic() - t0 < 3
    sock.close()


def test_threads_a_cancelled_stream_leaves_the_connection_up(start_server):
    srv = start_server(strategy="writev", threads=True, body_bytes=1024)
    conn, sock = _client(srv.port)
    _get(conn, 1, f"/bytes/{8 << 20}")
    sock.sendall(conn.data_to_send())
    got = 0
    while got < 200000:  # part of the 8 MiB body, through h2 so its framing stays in step
        data = sock.recv(65536)
        got += len(data)
        conn.receive_data(data)
    conn.reset_stream(1)
    _get(conn, 3, "/bytes/70000")
    sock.sendall(conn.data_to_send())
    body = bytearray()
    sock.settimeout(10)
    done = False
    while not done:
        data = sock.recv(1 << 20)
        assert data, "the server closed the connection"
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived) and ev.stream_id == 3:
                body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, 3)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == 3:
                done = True
            assert not isinstance(ev, h2.events.ConnectionTerminated)
        sock.sendall(conn.data_to_send())
    assert bytes(body) == expected_chunk(0, 70000)
    sock.close()
    assert not [ln for ln in srv.log_lines() if "stream thread" in ln]


@pytest.mark.parametrize("threads", [False, True], ids=["loop", "threads"])
def test_head_gets_the_length_and_no_body(start_server, threads):
    srv = start_server(strategy="split", threads=threads, body_bytes=5000)
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-I", f"{srv.url}/"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    assert "content-length: 5000" in out.lower()
    time.sleep(0.2)
    assert not [ln for ln in srv.log_lines() if "failed" in ln]


def test_a_non_ascii_digit_is_a_400_not_a_crash(start_server):
    srv = start_server(strategy="writev", body_bytes=10)
    conn, sock = _client(srv.port)
    # b"\xb2" is '²' in latin-1: str.isdigit() says yes, int() says no.
    conn.send_headers(1, [(b":method", b"GET"), (b":path", b"/bytes/\xb2"),
                          (b":scheme", b"http"), (b":authority", b"x")], end_stream=True)
    sock.sendall(conn.data_to_send())
    status = None
    sock.settimeout(5)
    while status is None:
        for ev in conn.receive_data(sock.recv(65536)):
            if isinstance(ev, h2.events.ResponseReceived):
                status = dict(ev.headers)[b":status"]
    assert status == b"400"
    sock.close()


def test_chain_over_tls_with_tiny_frames_stays_within_iov_max(start_server):
    srv = start_server(strategy="chain", tls=True, body_bytes=1 << 20,
                       max_frame_bytes=512)
    # A 1 GiB window: the whole 1 MiB is one flush of 2048 frames, over 1024 iovecs.
    resp = fetch(srv.url, "/", timeout_s=60)
    assert resp.status == 200 and resp.body == expected_chunk(0, 1 << 20)


def test_twenty_thousand_requests_on_one_connection(start_server):
    srv = start_server(strategy="writev", body_bytes=16)
    out = subprocess.run(["h2load", "-n", "20000", "-c", "1", "-m", "16", f"{srv.url}/"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    m = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", out)
    assert m and m.groups() == ("20000", "0", "0"), out
