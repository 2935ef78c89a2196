"""DATA payloads by reference: h2's windows and states agree with what went on the wire."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.protocol.body import BodyStore, expected_chunk
from toolkit.server.zero_copy import ZeroCopyH2Connection


def _handshake(window: int, max_frame: int, conn_window_extra: int):
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
                            h2.settings.SettingCodes.MAX_FRAME_SIZE: max_frame})
    if conn_window_extra:
        client.increment_flow_control_window(conn_window_extra)
    preface = client.data_to_send()
    client.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                            (":authority", "x")], end_stream=True)
    request = client.data_to_send()
    servers = []
    for cls in (ZeroCopyH2Connection, h2.connection.H2Connection):
        srv = cls(h2.config.H2Configuration(client_side=False, header_encoding=None))
        srv.initiate_connection()
        srv.receive_data(preface + request)
        srv.send_headers(1, [(b":status", b"200")])
        servers.append(srv)
    return client, servers[0], servers[1]


@settings(max_examples=80, deadline=None)
@given(
    body_bytes=st.integers(0, 300000),
    window=st.integers(1, 400000),
    max_frame=st.integers(16384, 70000),
    conn_extra=st.integers(0, 400000),
    run_frames=st.integers(1, 40),
)
def test_runs_put_the_same_bytes_on_the_wire_as_h2_per_frame(
        body_bytes, window, max_frame, conn_extra, run_frames):
    client, zc, plain = _handshake(window, max_frame, conn_extra)
    body = BodyStore(body_bytes).view(body_bytes)
    frame_max = zc.max_outbound_frame_size
    assert frame_max == max_frame
    sent = 0
    wire: list = []
    plain_wire = bytearray()
    while True:
        budget = min(zc.local_flow_control_window(1), body_bytes - sent, frame_max * run_frames)
        assert budget == min(plain.local_flow_control_window(1), body_bytes - sent,
                             frame_max * run_frames)
        if budget <= 0 and body_bytes - sent > 0:
            break  # window exhausted: both sides stop at the same byte
        end = sent + budget == body_bytes
        zc.send_data_run(1, body[sent:sent + budget], frame_max, end, wire)
        # The reference: h2 builds and serializes every frame itself.
        off = sent
        while True:
            n = min(frame_max, sent + budget - off)
            last = end and off + n == sent + budget
            plain.send_data(1, bytes(body[off:off + n]), end_stream=last)
            off += n
            if off >= sent + budget:
                break
        plain_wire += plain.data_to_send()
        sent += budget
        if end:
            break
    zc_wire = b"".join(bytes(s) for s in wire)
    # Same frames, same bytes; HEADERS and SETTINGS came from data_to_send() in both.
    assert zc_wire == bytes(plain_wire)
    assert zc.outbound_flow_control_window == plain.outbound_flow_control_window
    assert zc.local_flow_control_window(1) == plain.local_flow_control_window(1)
    assert zc.streams[1].state_machine.state == plain.streams[1].state_machine.state
    # And a real h2 client decodes an intact body from the zero-copy stream. The server's
    # SETTINGS ACK goes first so the client applies its larger MAX_FRAME_SIZE.
    got = bytearray()
    events = client.receive_data(bytes(wire[0])) if wire else []
    events += client.receive_data(b"".join(bytes(s) for s in wire[1:]))
    for ev in events:
        if isinstance(ev, h2.events.DataReceived):
            got += ev.data
    assert bytes(got) == expected_chunk(0, sent)


def test_flow_control_is_enforced_by_h2():
    _, zc, _ = _handshake(1000, 16384, 0)
    body = BodyStore(5000).view(5000)
    with pytest.raises(h2.exceptions.FlowControlError):
        zc.send_data_run(1, body, 16384, True, [])
    with pytest.raises(ValueError):
        zc.send_data_run(1, body[:10], 1 << 20, False, [])

