"""The lean request path (toolkit/server/lean_h2.py): what it skips gives the same answers.

Driven with byte strings, as h2's own tests are; a stock h2 client decodes the replies."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe.frame import Frame

from toolkit.server.lean_h2 import LeanH2Connection, SilentLogger, lean_h2_config


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
