"""Bad clients get GOAWAY or a clean close; the server logs one line and keeps serving."""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe.frame import Frame, GoAwayFrame

from toolkit.clients.fetch import fetch
from toolkit.protocol.body import expected_chunk
from toolkit.strategies import strategy_names

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _read_all(sock: socket.socket, timeout_s: float = 5.0) -> bytes:
    sock.settimeout(timeout_s)
    out = bytearray()
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return bytes(out)


def _frames(data: bytes) -> list[Frame]:
    frames, pos = [], 0
    while pos + 9 <= len(data):
        frame, length = Frame.parse_frame_header(memoryview(data[pos:pos + 9]))
        frame.parse_body(memoryview(data[pos + 9:pos + 9 + length]))
        frames.append(frame)
        pos += 9 + length
    return frames


def _still_serves(srv) -> None:
    resp = fetch(srv.url, "/bytes/70000")
    assert resp.status == 200 and resp.body == expected_chunk(0, 70000)


@pytest.mark.parametrize("strategy", strategy_names("h2c"))
def test_garbage_instead_of_preface_gets_goaway(start_server, strategy):
    srv = start_server(strategy=strategy, body_bytes=1000)
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x00garbage" * 10)
        data = _read_all(sock)
    goaways = [f for f in _frames(data) if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[0].error_code == 1  # PROTOCOL_ERROR
    lines = srv.wait_for_log("protocol error")
    assert len(lines) == 1, srv.log_lines()
    _still_serves(srv)


def test_invalid_frame_gets_goaway(start_server):
    srv = start_server(strategy="writev", body_bytes=1000)
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        # A DATA frame on stream 0 is a connection error (RFC 9113 6.1).
        bad = b"\x00\x00\x04\x00\x00\x00\x00\x00\x00abcd"
        sock.sendall(PREFACE + settings + bad)
        data = _read_all(sock)
    goaways = [f for f in _frames(data) if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[-1].error_code == 1
    assert len(srv.wait_for_log("protocol error")) == 1
    _still_serves(srv)


@pytest.mark.parametrize("strategy", strategy_names("h2c"))
def test_client_closing_mid_response_is_a_clean_close(start_server, strategy):
    srv = start_server(strategy=strategy, body_bytes=16 << 20)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.increment_flow_control_window(1 << 30)
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 30) - 1})
    conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                          (":authority", "x")], end_stream=True)
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(conn.data_to_send())
    got = 0
    while got < 100000:
        got += len(sock.recv(65536))
    # Reset the connection with 16 MiB still to send.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    lines = srv.wait_for_log("closed")
    assert len(lines) == 1, srv.log_lines()
    _still_serves(srv)
    assert srv.proc.poll() is None
