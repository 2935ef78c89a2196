"""A fuzzed server: random valid-but-odd HTTP/2 requests and random bytes, answered as
HTTP/2 says.

Two levels. The protocol core (sans I/O) takes hundreds of drawn exchanges fast: every
request gets a proper answer on its stream (a response, 2xx to 4xx, or RST_STREAM) or the
connection gets GOAWAY with an error code that fits; a connection without GOAWAY still
serves a well-formed request afterwards; the core never raises. Then a real server
process takes drawn byte strings after a valid preface while a well-behaved client loads
it on another connection: that client sees no failure, the server stays up, and its log
holds no traceback and no "internal error".
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import hpack
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from toolkit.clients.builtin import LoadConfig, run_load
from toolkit.protocol.body import BodyStore
from toolkit.protocol.frames import PREFACE
from toolkit.server.config import ServerConfig
from toolkit.server.core import H2ServerCore
from toolkit.server.routes import Router
from toolkit.server.stats import ProtocolCounters

# GOAWAY codes a misbehaving peer may earn (RFC 9113 section 7) and the guard's.
CONNECTION_ERRORS = {ErrorCodes.PROTOCOL_ERROR, ErrorCodes.FRAME_SIZE_ERROR,
                     ErrorCodes.COMPRESSION_ERROR, ErrorCodes.FLOW_CONTROL_ERROR,
                     ErrorCodes.STREAM_CLOSED, ErrorCodes.ENHANCE_YOUR_CALM,
                     ErrorCodes.NO_ERROR}

METHODS = st.sampled_from([b"GET"] * 6 + [b"HEAD", b"POST", b"PUT", b"DELETE", b"get", b"",
                                        b"G E T", b"OPTIONS", b"\xff"])
PATHS = st.one_of(
    st.sampled_from([b"/", b"/bytes/0", b"/bytes/1", b"/bytes/70000", b"/bytes/-1",
                     b"/bytes/99999999999999", b"//[x", b"/%00", b"", b"*", b"/mem",
                     b"/stats", b"/mem/series", b"/nope", b"/?a=b", b"/bytes/\xb2",
                     b"/" + b"a" * 5000]),
    st.binary(max_size=40))
HEADER_NAMES = st.one_of(
    st.sampled_from([b"accept", b"user-agent", b"Upper", b"connection", b"te",
                     b"transfer-encoding", b":method", b":path", b":unknown", b"",
                     b"content-length", b"host", b"x\x00y", b"keep-alive"]),
    st.binary(min_size=1, max_size=12))
HEADER_VALUES = st.one_of(st.sampled_from([b"", b"trailers", b"1", b"x" * 2000,
                                           b"a\r\nb", b" lead", b"\x00"]),
                          st.binary(max_size=30))


def _core() -> H2ServerCore:
    cfg = ServerConfig(body_bytes=1000)
    router = Router(BodyStore(1000), 1000, cfg.max_bytes_endpoint,
                    mem=lambda q: {"rss_bytes": 1}, stats=lambda: {"responses": 0})
    core = H2ServerCore(cfg, router, ProtocolCounters(), 0.0)
    core.initiate()
    return core


@st.composite
def requests(draw: Any) -> tuple[list[tuple[bytes, bytes]], bool, list[bytes]]:
    """One request's header list (pseudo-headers first, or not), whether HEADERS ends the
    stream, and DATA payloads that may follow."""
    headers = [(b":method", draw(METHODS)), (b":path", draw(PATHS)),
               (b":scheme", draw(st.sampled_from([b"http"] * 4 + [b"https", b"ftp"]))),
               (b":authority", b"x")]
    # Mostly well-formed, so that the odd values reach the server's own handling; now and
    # then malformed (pseudo-headers out of order or missing, odd header names).
    if draw(st.integers(0, 5)) == 0:
        headers = draw(st.permutations(headers))
    if draw(st.integers(0, 5)) == 0:
        headers = headers[:draw(st.integers(0, 3))]
    if draw(st.integers(0, 2)) == 0:
        headers += draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=3))
    end_stream = draw(st.booleans())
    bodies = [] if end_stream else draw(st.lists(st.binary(max_size=100), max_size=3))
    return headers, end_stream, bodies


@st.composite
def exchanges(draw: Any) -> list[bytes]:
    """A client's bytes after the preface: requests on ascending streams, split across
    CONTINUATION or not, mixed with control frames in any order."""
    enc = hpack.Encoder()
    frames: list[Frame] = [SettingsFrame(0)]
    sid = 1
    for headers, end_stream, bodies in draw(st.lists(requests(), min_size=1, max_size=4)):
        block = enc.encode(headers)
        flags = {"END_STREAM"} if end_stream and not bodies else set()
        if draw(st.booleans()) and len(block) > 2:
            cut = draw(st.integers(1, len(block) - 1))
            frames += [HeadersFrame(sid, data=block[:cut], flags=flags),
                       ContinuationFrame(sid, data=block[cut:], flags={"END_HEADERS"})]
        else:
            frames.append(HeadersFrame(sid, data=block, flags=flags | {"END_HEADERS"}))
        for i, body in enumerate(bodies):
            frames.append(DataFrame(sid, data=body,
                                    flags={"END_STREAM"} if i == len(bodies) - 1 else set()))
        sid += draw(st.sampled_from([2] * 8 + [0, 4]))  # now and then reused or skipped
    extras = draw(st.lists(st.sampled_from([
        PingFrame(0, opaque_data=b"12345678"), PriorityFrame(3, depends_on=1),
        WindowUpdateFrame(0, window_increment=1000), WindowUpdateFrame(1, window_increment=0),
        RstStreamFrame(1, error_code=8), SettingsFrame(0, settings={4: 1 << 20}),
        DataFrame(99, data=b"z"), GoAwayFrame(0, last_stream_id=0)]), max_size=2))
    for extra in extras:
        frames.insert(draw(st.integers(1, len(frames))), extra)
    return [f.serialize() for f in frames]


class ServerView:
    """Parses what the core sent: responses and resets per stream, the GOAWAY."""

    def __init__(self) -> None:
        self.decoder = hpack.Decoder()
        self.buf = b""
        self.status: dict[int, int] = {}
        self.reset: dict[int, int] = {}
        self.goaway: int | None = None

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
            if isinstance(frame, HeadersFrame):
                headers = dict(self.decoder.decode(frame.data, raw=True))
                self.status[frame.stream_id] = int(headers[b":status"])
            elif isinstance(frame, RstStreamFrame):
                self.reset[frame.stream_id] = frame.error_code
            elif isinstance(frame, GoAwayFrame):
                self.goaway = frame.error_code


def _drain(core: H2ServerCore, view: ServerView) -> None:
    for _ in range(1000):
        segments = core.next_flush()
        if not segments:
            return
        view.feed(b"".join(bytes(s) for s in segments))


@settings(max_examples=300, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(wire=exchanges(), cut=st.integers(1, 64))
def test_the_core_answers_every_request_or_says_goaway(wire: list[bytes], cut: int) -> None:
    core = _core()
    view = ServerView()
    data = PREFACE + b"".join(wire)
    closed = None
    for i in range(0, len(data), cut):  # however the bytes arrive
        outcome = core.receive(data[i:i + cut], 0.0)
        _drain(core, view)
        if outcome.close is not None:
            closed = outcome.close
            if closed.goaway is not None:
                view.feed(core.goaway(closed.goaway))
            break
    if closed is not None and closed.goaway is not None:
        event(f"GOAWAY {ErrorCodes(view.goaway).name if view.goaway is not None else None}")
        assert view.goaway in CONNECTION_ERRORS, (closed, view.goaway)
        return
    if closed is not None:  # the peer's own GOAWAY: a quiet close
        return
    # Every stream the client opened got a response or a reset (HEAD of / included).
    for sid, status in view.status.items():
        assert 200 <= status < 500, (sid, status)
        event(f"status {status}")
    for code in view.reset.values():
        event(f"RST_STREAM {ErrorCodes(code).name}")
    # The connection is still HTTP/2: a well-formed request is served on a new stream.
    last = max([*view.status, *view.reset, *core.h2.streams, 1])
    sid = last + 2 if last % 2 else last + 1
    req = HeadersFrame(sid, data=hpack.Encoder().encode(
        [(b":method", b"GET"), (b":path", b"/bytes/5"), (b":scheme", b"http"),
         (b":authority", b"x")]), flags={"END_STREAM", "END_HEADERS"}).serialize()
    outcome = core.receive(req, 0.0)
    _drain(core, view)
    if outcome.close is None and view.goaway is None:
        assert view.status.get(sid) == 200 or sid in view.reset, (sid, view.status)


def _good_client_load(url: str, stop: threading.Event, results: list[Any]) -> None:
    while not stop.is_set():
        results.append(run_load(LoadConfig(url=f"{url}/bytes/20000", requests=20,
                                           connections=1, streams=2, timeout_s=10)))


@settings(max_examples=40, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(garbage=st.lists(st.one_of(st.binary(min_size=1, max_size=300),
                                  exchanges().map(b"".join)), min_size=1, max_size=4))
def _fuzz_one(srv: Any, garbage: list[bytes]) -> None:  # driven by the test below
    with socket.create_connection(("127.0.0.1", srv.port), timeout=2) as sock:
        try:
            sock.sendall(PREFACE + SettingsFrame(0).serialize())
            for chunk in garbage:
                sock.sendall(chunk)
            sock.settimeout(0.3)
            while sock.recv(65536):
                pass
        except OSError:
            pass  # closed by the server (GOAWAY, then close): as HTTP/2 says it may


@pytest.mark.parametrize("tls", [False], ids=["h2c"])
def test_a_real_server_survives_drawn_bytes_and_others_see_nothing(start_server, tls):
    srv = start_server(strategy="writev", body_bytes=20000, tls=tls)
    stop, results = threading.Event(), []
    good = threading.Thread(target=_good_client_load, args=(srv.url, stop, results))
    good.start()
    try:
        _fuzz_one(srv)
    finally:
        stop.set()
        good.join(60)
    assert results and all(r.failures == 0 for r in results), \
        [r.failures_by_cause for r in results if r.failures]
    assert srv.proc.poll() is None, "the server died"
    log = srv.log_lines()
    assert not [ln for ln in log if "Traceback" in ln or "internal error" in ln], log[-20:]
    # Every line the server logged is one closed connection, with its reason.
    assert all("closed" in ln for ln in log if ln.strip()), [ln for ln in log if "closed" not in ln]
