"""The sans-I/O server core, driven with byte strings (as h2's own tests are): requests in,
the flush's segments out, each strategy's plan of them checked byte for byte; the guard's
limits and the timers answer with verdicts. No socket, thread or TLS object anywhere."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame

from toolkit.protocol.body import BodyStore, expected_chunk
from toolkit.protocol.frames import PREFACE
from toolkit.server.config import ServerConfig
from toolkit.server.core import H2ServerCore
from toolkit.server.routes import Router
from toolkit.server.stats import ProtocolCounters
from toolkit.strategies import make_strategy, strategy_names, wire_bytes

BODY = 100_000


def _core(now_s: float = 0.0, **cfg: Any) -> tuple[H2ServerCore, ProtocolCounters]:
    config = ServerConfig(body_bytes=BODY, **cfg)
    counters = ProtocolCounters()
    router = Router(BodyStore(BODY), BODY, config.max_bytes_endpoint,
                    mem=lambda q: {"rss_bytes": 1}, stats=lambda q: {"responses": 0})
    core = H2ServerCore(config, router, counters, now_s)
    core.initiate()
    return core, counters


class Client:
    """An h2 client connection: what it sends is bytes, what it gets back is events."""

    def __init__(self, window: int = (1 << 30)) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.h2.increment_flow_control_window(window)
        self.bodies: dict[int, bytearray] = {}
        self.status: dict[int, int] = {}
        self.ended: set[int] = set()
        self.goaway: ErrorCodes | None = None

    def request(self, path: str = "/", method: str = "GET") -> int:
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [(":method", method), (":path", path), (":scheme", "http"),
                                   (":authority", "x")], end_stream=True)
        return sid

    def outgoing(self) -> bytes:
        return self.h2.data_to_send()

    def receive(self, wire: bytes) -> None:
        for ev in self.h2.receive_data(wire):
            if isinstance(ev, h2.events.ResponseReceived):
                self.status[ev.stream_id] = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                self.bodies.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev.error_code


def _drain(core: H2ServerCore, client: Client, strategy: str) -> int:
    """Hand every flush through the strategy's plan to the client; returns the flushes."""
    plan = make_strategy(strategy, tls=False)
    flushes = 0
    while segments := core.next_flush():
        flushes += 1
        client.receive(wire_bytes(list(plan.plan(segments))))
        ack = client.outgoing()
        if ack:
            assert core.receive(ack, 0.0).close is None
    return flushes


def _exchange(strategy: str, paths: list[str], **cfg: Any) -> tuple[Client, H2ServerCore]:
    core, _ = _core(**cfg)
    client = Client()
    sids = [client.request(p) for p in paths]
    outcome = core.receive(client.outgoing(), 0.0)
    assert outcome.close is None
    assert [r.stream_id for r in outcome.started] == [s for s, p in zip(sids, paths,
                                                                       strict=True)
                                                      if not p.endswith("/0")]
    _drain(core, client, strategy)
    return client, core


@pytest.mark.parametrize("strategy", strategy_names("h2c"))
def test_every_strategy_puts_each_body_on_the_wire_intact(strategy: str) -> None:
    paths = ["/", "/bytes/0", "/bytes/1", "/bytes/16385", "/bytes/300000"]
    client, core = _exchange(strategy, paths)
    sizes = [BODY, 0, 1, 16385, 300000]
    for i, n in enumerate(sizes):
        sid = 1 + 2 * i
        assert client.status[sid] == 200 and sid in client.ended
        assert bytes(client.bodies.get(sid, b"")) == expected_chunk(0, n), (strategy, n)
    assert core.counters.responses == len(paths) and not core.responses


def _data_order(flush: list[Any]) -> list[tuple[int, int]]:
    """(stream, payload bytes) of each DATA frame header in a flush, in wire order."""
    return [(int.from_bytes(bytes(s[5:9]), "big"), int.from_bytes(bytes(s[0:3]), "big"))
            for s in flush if isinstance(s, bytes) and len(s) == 9 and s[3] == 0]


def _turns(order: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Consecutive frames of one stream merged: (stream, bytes) per turn."""
    turns: list[tuple[int, int]] = []
    for sid, n in order:
        if turns and turns[-1][0] == sid:
            turns[-1] = (sid, turns[-1][1] + n)
        else:
            turns.append((sid, n))
    return turns


def test_flushes_are_bounded_by_flush_bytes_and_streams_take_turns() -> None:
    # Default turn (1 MiB): one response after another, as RFC 9218's default priority
    # (non-incremental) asks and nghttpd does; the flush budget still bounds the flush.
    core, _ = _core(flush_bytes=512 << 10)
    client = Client()
    for _ in range(2):
        client.request("/bytes/400000")
    core.receive(client.outgoing(), 0.0)
    first = core.next_flush()
    assert sum(len(s) for s in first if isinstance(s, memoryview)) == 512 << 10
    assert _turns(_data_order(first)) == [(1, 400000), (3, (512 << 10) - 400000)]
    # Turns of 64 KiB interleave the two streams within a flush.
    core, _ = _core(flush_bytes=512 << 10, stream_turn_bytes=64 << 10)
    client = Client()
    for _ in range(2):
        client.request("/bytes/400000")
    core.receive(client.outgoing(), 0.0)
    turns = _turns(_data_order(core.next_flush()))
    assert turns == [(1, 64 << 10), (3, 64 << 10)] * 4


def test_flow_control_stops_a_flush_at_the_peers_window() -> None:
    core, _ = _core()
    client = Client(window=65535)
    sid = client.request("/bytes/200000")
    core.receive(client.outgoing(), 0.0)
    segments = core.next_flush()
    assert sum(len(s) for s in segments if isinstance(s, memoryview)) == 65535
    assert core.next_flush() == []  # window shut: nothing more to send
    assert core.stream_state(core.responses[sid]) == "blocked"
    client.receive(b"".join(bytes(s) for s in segments))
    outcome = core.receive(client.outgoing(), 0.0)  # the client's WINDOW_UPDATEs
    assert outcome.windows_opened and core.stream_state(core.responses[sid]) == "ready"


def test_head_gets_the_length_and_no_body_and_bad_paths_get_4xx() -> None:
    core, _ = _core()
    client = Client()
    head = client.request("/", method="HEAD")
    odd = client.request("//[x")  # urlsplit would raise on it; it is just a path here
    big = client.request("/bytes/99999999999")
    post = client.request("/", method="POST")
    core.receive(client.outgoing(), 0.0)
    _drain(core, client, "writev")
    assert client.status == {head: 200, odd: 404, big: 400, post: 405}
    assert head not in client.bodies and head in client.ended


def test_a_reset_stream_is_dropped_from_the_flush() -> None:
    core, _ = _core()
    client = Client(window=65535)
    sid = client.request("/bytes/200000")
    core.receive(client.outgoing(), 0.0)
    core.next_flush()
    core.receive(RstStreamFrame(sid, error_code=8).serialize(), 0.0)
    assert core.responses == {}
    assert core.next_flush() == []


def test_garbage_after_the_preface_is_a_protocol_error() -> None:
    core, counters = _core()
    verdict = core.receive(PREFACE + SettingsFrame(0).serialize() + b"\x00\x00\x04\x08"
                           + b"\x00" * 20, 0.0).close
    assert verdict is not None and verdict.goaway == ErrorCodes.PROTOCOL_ERROR
    assert counters.protocol_errors == 1
    assert b"\x07" in core.goaway(verdict.goaway)  # a GOAWAY frame is queued


def test_the_guard_refuses_a_ping_flood_before_h2_answers_it() -> None:
    core, counters = _core(control_frames_burst=10)
    start = PREFACE + SettingsFrame(0).serialize()
    assert core.receive(start + PingFrame(0).serialize() * 10, 0.0).close is None
    verdict = core.receive(PingFrame(0).serialize(), 0.0).close
    assert verdict is not None and verdict.goaway == ErrorCodes.ENHANCE_YOUR_CALM
    assert "ping flood" in (verdict.reason or "") and counters.refused == 1


def test_a_continuation_flood_is_refused() -> None:
    core, _ = _core(max_continuations=2)
    head = HeadersFrame(1, data=b"\x82", flags=[]).serialize()
    cont = b"\x00\x00\x01\x09\x00\x00\x00\x00\x01\x84"  # CONTINUATION without END_HEADERS
    verdict = core.receive(PREFACE + SettingsFrame(0).serialize() + head + cont * 3, 0.0).close
    assert verdict is not None and "CONTINUATION flood" in (verdict.reason or "")


def test_unread_replies_are_bounded_after_a_write() -> None:
    core, _ = _core(max_control_frames_queued=5, control_frames_burst=1000)
    core.receive(PREFACE + SettingsFrame(0).serialize() + PingFrame(0).serialize() * 20, 0.0)
    verdict = core.after_write(0.0)  # nothing was written: 20 PING ACKs wait for the peer
    assert verdict is not None and "frames queued" in (verdict.reason or "")


def test_timers_close_a_slow_start_an_idle_peer_and_a_stalled_one() -> None:
    core, _ = _core(start_timeout_s=1.0, idle_timeout_s=10.0)
    assert core.check_timers(0.5, False, None) is None
    verdict = core.check_timers(1.5, False, None)
    assert verdict is not None and "start timeout" in (verdict.reason or "")

    core, _ = _core(idle_timeout_s=2.0)
    client = Client(window=65535)
    core.receive(client.outgoing(), 0.0)
    assert core.check_timers(1.0, False, None) is None
    verdict = core.check_timers(2.5, False, None)
    assert verdict is not None and verdict.reason == "idle timeout"

    core, counters = _core(idle_timeout_s=2.0)
    client = Client(window=65535)
    client.request("/bytes/200000")
    core.receive(client.outgoing(), 0.0)
    core.next_flush()  # the window is used up: the response cannot move
    assert core.check_timers(0.5, True, 100) is None
    assert core.check_timers(1.5, True, 100) is None
    verdict = core.check_timers(2.6, True, 100)
    assert verdict is not None and "stalled" in (verdict.reason or "") and counters.stalled == 1


def test_a_peer_goaway_closes_quietly() -> None:
    core, _ = _core()
    client = Client()
    core.receive(client.outgoing(), 0.0)
    client.h2.close_connection()
    verdict = core.receive(client.outgoing(), 0.0).close
    assert verdict is not None and verdict.goaway is None and verdict.reason is None


@pytest.mark.parametrize("strategy", strategy_names("h2"))
def test_every_tls_plan_writes_each_flush_as_plaintext_in_order(strategy: str) -> None:
    """Under TLS a plan is SSL_writes and ciphertext flushes: the SSL_writes, in order,
    carry exactly the flush (checked here without OpenSSL, by the client parsing them)."""
    from toolkit.strategies import CipherFlush, SslWrite

    core, _ = _core(tls=True)
    client = Client()
    paths = ["/", "/bytes/1", "/bytes/70000"]
    for p in paths:
        client.request(p)
    core.receive(client.outgoing(), 0.0)
    plan = make_strategy(strategy, tls=True)
    while segments := core.next_flush():
        plaintext, last = bytearray(), None
        for last in plan.plan_tls(segments):
            if isinstance(last, SslWrite):  # copied now: coalesce reuses its scratch buffer
                plaintext += last.plaintext
        assert isinstance(last, CipherFlush), "a flush ends with its ciphertext sent"
        client.receive(bytes(plaintext))
        core.receive(client.outgoing(), 0.0)
    for sid, n in zip((1, 3, 5), (BODY, 1, 70000), strict=True):
        assert bytes(client.bodies[sid]) == expected_chunk(0, n)
