"""One connection's HTTP/2 server, sans I/O: bytes and the time in, segments and verdicts out.

    core = H2ServerCore(cfg, router, counters, now_s)
    core.initiate()                      # our SETTINGS, queued
    outcome = core.receive(data, now_s)  # the guard, h2, requests routed to responses
    segments = core.next_flush()         # what to write next, in wire order
    verdict = core.after_write(now_s)    # replies piling up for a peer that does not read
    verdict = core.check_timers(now_s, writing, acked_bytes)

No socket, thread or TLS object is inside: the shell (toolkit/server/shell.py) reads the
socket, decrypts, hands the plaintext here, turns segments into socket calls through the
strategy, and acts on verdicts (GOAWAY with the verdict's code, then close). h2 keeps the
protocol state and the flow-control windows; DATA payloads leave as views of the body
(toolkit/server/zero_copy.py). Everything here is testable with byte strings.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import RstStreamFrame

from toolkit.server.config import ServerConfig
from toolkit.server.guard import ConnectionGuard, StallDetector, Verdict
from toolkit.server.lean_h2 import LeanH2Connection, lean_h2_config, response_header_block
from toolkit.server.routes import Router
from toolkit.server.stats import ProtocolCounters
from toolkit.strategies import Buffer


@dataclass(frozen=True)
class Close:
    """Close the connection: GOAWAY with ``goaway`` first (None: no GOAWAY, the peer has
    gone or said goodbye itself); ``reason`` is logged (None: a quiet close)."""

    reason: str | None
    goaway: ErrorCodes | None = None


@dataclass
class Response:
    """A response whose body is still (partly) to send."""

    stream_id: int
    body: memoryview
    offset: int = 0

    @property
    def remaining(self) -> int:
        return len(self.body) - self.offset


@dataclass
class Outcome:
    """What one `receive` did: a verdict, responses started, windows that grew."""

    close: Close | None = None
    started: list[Response] = field(default_factory=list)
    windows_opened: bool = False


class CountingH2Connection(LeanH2Connection):
    """Counts the frames h2 queues in ``data_to_send`` (ACKs, RST_STREAMs, HEADERS): what
    the connection owes a peer that may not be reading. DATA runs go by reference and are
    never queued, so they are not counted."""

    queued_frames = 0
    resets_queued = 0

    def _prepare_for_sending(self, frames: list[Any]) -> None:
        self.queued_frames += len(frames)
        for frame in frames:
            if isinstance(frame, RstStreamFrame):
                self.resets_queued += 1
        super()._prepare_for_sending(frames)

    def _queue_frame_bytes(self, frame: bytes) -> None:
        self.queued_frames += 1
        super()._queue_frame_bytes(frame)


def _refusal(verdict: Verdict) -> Close:
    return Close(f"{verdict.error_code.name}: {verdict.reason}", verdict.error_code)


class H2ServerCore:
    """Request handling, routing, flush scheduling and flow control of one connection."""

    def __init__(self, cfg: ServerConfig, route: Router, counters: ProtocolCounters,
                 now_s: float) -> None:
        self.cfg = cfg
        self.route = route
        self.counters = counters
        self.h2 = CountingH2Connection(lean_h2_config())
        self.responses: dict[int, Response] = {}
        self.guard = ConnectionGuard(cfg.guard_limits(), now_s)
        self.stall = StallDetector(cfg.idle_timeout_s)
        self.accepted_s = self.last_activity_s = now_s
        self.preface_done = False  # the client's preface and first SETTINGS arrived
        self.initiated = False

    # ---- receiving ---------------------------------------------------------------------
    def initiate(self) -> None:
        """Queue the server preface (SETTINGS): at accept for h2c, after the handshake for TLS."""
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.cfg.max_concurrent_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.cfg.max_header_list_bytes,
        })
        self.h2.initiate_connection()
        self.initiated = True

    def bytes_arrived(self, now_s: float) -> None:
        """The peer sent something (TLS handshake bytes too): it is not idle."""
        self.last_activity_s = now_s

    def receive(self, data: bytes, now_s: float) -> Outcome:
        """Handle what the peer sent. The guard reads the frame headers first: a flood is
        refused before h2 does (and queues replies for) any of it."""
        self.last_activity_s = now_s
        out = Outcome()
        verdict = self.guard.on_receive(data, now_s)
        if verdict is not None:
            self.counters.refused += 1
            out.close = _refusal(verdict)
            return out
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.counters.protocol_errors += 1
            code = getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR)
            out.close = Close(f"protocol error: {exc}", code)
            return out
        for ev in events:
            self._handle_event(ev, out)
            if out.close is not None:
                break
        return out

    def _handle_event(self, ev: h2.events.Event, out: Outcome) -> None:
        if isinstance(ev, h2.events.RequestReceived):
            resp = self._on_request(ev)
            if resp is not None:
                out.started.append(resp)
        elif isinstance(ev, h2.events.DataReceived):
            # Request bodies are not used; give the window back so clients never stall.
            if ev.flow_controlled_length and ev.stream_id in self.h2.streams:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            # The rate of resets (Rapid Reset) is the guard's: it counts RST_STREAM frames.
            self.responses.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.preface_done = True  # h2 reports the first SETTINGS after the preface
            out.windows_opened = True
        elif isinstance(ev, h2.events.ConnectionTerminated):
            out.close = Close(None)  # the peer said goodbye: no GOAWAY back

    def _on_request(self, ev: h2.events.RequestReceived) -> Response | None:
        headers = dict(ev.headers or [])
        method = headers.get(b":method", b"")
        path = headers.get(b":path", b"/").decode("latin-1")
        self.counters.requests += 1
        status, body, ctype = self.route(method, path)
        sid = ev.stream_id
        block = response_header_block(status, len(body), ctype)
        if method == b"HEAD":  # the length of the body, and no body (RFC 9110 9.3.2)
            body = body[:0]
        try:
            self.h2.send_encoded_headers(sid, block, end_stream=len(body) == 0)
        except (h2.exceptions.StreamClosedError, h2.exceptions.StreamIDTooLowError):
            # Reset by the peer later in the same read (Rapid Reset): h2 has already
            # forgotten the stream. Nothing to answer.
            return None
        except h2.exceptions.ProtocolError:
            # The peer's GOAWAY in the same read closed the connection: h2 sends nothing
            # more (a request after it is one the peer said it would not wait for).
            return None
        if len(body) == 0:
            self.counters.responses += 1
            return None
        resp = Response(sid, body)
        self.responses[sid] = resp
        return resp

    # ---- sending -----------------------------------------------------------------------
    def control_flush(self) -> list[Buffer]:
        """Only what h2 queued (SETTINGS, ACKs, HEADERS, GOAWAY): no DATA."""
        queued = self.h2.data_to_send()
        self.h2.queued_frames = 0
        return [queued] if queued else []

    def next_flush(self, only: Response | None = None) -> list[Buffer]:
        """The segments of the next flush: h2's queued frames, then DATA frames taken
        round-robin from the responses while windows and the flush budget allow."""
        segs = self.control_flush()
        budget = self.cfg.flush_bytes
        h2c = self.h2
        frame_max = min(h2c.max_outbound_frame_size, self.cfg.max_frame_bytes)
        active = [only] if only is not None else list(self.responses.values())
        # Streams take turns of `stream_turn_bytes` (one h2 call per turn, not per frame).
        quantum = self.cfg.stream_turn_bytes
        while budget > 0 and active:
            still = []
            for resp in active:
                sid = resp.stream_id
                stream = h2c.streams.get(sid)
                if stream is None or stream.closed:  # reset by the peer: nothing to send
                    self.responses.pop(sid, None)
                    continue
                window = h2c.local_flow_control_window(sid)
                if window <= 0:
                    continue
                n = min(resp.remaining, window, quantum, budget)
                end = n == resp.remaining
                h2c.send_data_run(sid, resp.body[resp.offset:resp.offset + n], frame_max, end,
                                  segs)
                resp.offset += n
                budget -= n
                if end:
                    self.counters.responses += 1
                    self.responses.pop(sid, None)
                else:
                    still.append(resp)
                if budget <= 0:
                    break
            active = still
        return segs

    def stream_state(self, resp: Response) -> str:
        """For a thread that writes one response: "done" (sent, or reset by the peer),
        "blocked" (its flow-control window is shut) or "ready"."""
        stream = self.h2.streams.get(resp.stream_id)
        if resp.remaining == 0 or stream is None or stream.closed:
            return "done"
        return "ready" if self.h2.local_flow_control_window(resp.stream_id) > 0 else "blocked"

    def goaway(self, code: ErrorCodes = ErrorCodes.NO_ERROR) -> bytes:
        """Queue GOAWAY(code), forget the responses; returns every byte h2 has queued."""
        with contextlib.suppress(h2.exceptions.ProtocolError):  # already closed
            self.h2.close_connection(error_code=code)
        self.responses.clear()
        return self.h2.data_to_send()

    # ---- limits ------------------------------------------------------------------------
    def after_write(self, now_s: float) -> Close | None:
        """After the shell wrote what the socket took: frames h2 still holds for this peer
        (ACKs, RST_STREAMs) are bounded, and the RST_STREAMs it was provoked into count
        against the reset budget."""
        verdict = self.guard.on_replies(self.h2.queued_frames, self.h2.resets_queued, now_s)
        self.h2.resets_queued = 0
        if verdict is None:
            return None
        self.counters.refused += 1
        return _refusal(verdict)

    def check_timers(self, now_s: float, writing: bool, acked_bytes: int | None
                     ) -> Close | None:
        """The start, idle and stall timeouts (called a few times per timeout).

        ``writing``: a flush is in progress; ``acked_bytes``: what the peer acknowledged
        so far (TCP_INFO), so that a slow reader that still drains is not stalled."""
        cfg = self.cfg
        if not self.preface_done and now_s - self.accepted_s > cfg.start_timeout_s:
            what = "TLS handshake and HTTP/2 preface" if cfg.tls else "HTTP/2 preface"
            return Close(f"start timeout: {what} not complete after {cfg.start_timeout_s:g} s",
                         ErrorCodes.NO_ERROR)
        if now_s - self.last_activity_s > cfg.idle_timeout_s and not self.responses:
            return Close("idle timeout", ErrorCodes.NO_ERROR)
        # A progress token changes whenever responses move: a new flush was built (offsets)
        # or a flush in progress drains (acknowledged bytes count only then, so PING ACKs
        # cannot keep a zero-window connection looking alive).
        token = (tuple((sid, r.offset) for sid, r in self.responses.items()),
                 acked_bytes if writing else None)
        if self.stall.observe(token, bool(self.responses), now_s):
            # Zero windows or a peer that stopped reading: its responses would hold
            # their stream slots (and, under TLS, a flush of ciphertext) forever.
            self.counters.stalled += 1
            return Close(f"stalled: no response progress for {cfg.idle_timeout_s:g} s "
                         "(zero window or peer not reading)", ErrorCodes.NO_ERROR)
        return None
