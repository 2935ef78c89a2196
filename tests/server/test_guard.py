"""The guard's pure accounting: token buckets, floods, header blocks, stalls."""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from toolkit.protocol.frames import PREFACE
from toolkit.server.guard import ConnectionGuard, GuardLimits, StallDetector, TokenBucket


def _wire(*frames: object) -> bytes:
    return b"".join(f.serialize() for f in frames)  # type: ignore[attr-defined]


def test_token_bucket_allows_the_burst_then_the_rate():
    bucket = TokenBucket(rate_per_s=10, burst=5, now_s=0.0)
    assert all(bucket.take(0.0) for _ in range(5))
    assert not bucket.take(0.0)
    assert bucket.take(0.1) and not bucket.take(0.1)  # 0.1 s at 10/s: one token back
    assert sum(bucket.take(100.0) for _ in range(10)) == 5  # never more than the burst


def _feed(guard: ConnectionGuard, frames: list[object], now_s: float = 0.0):
    return guard.on_receive(_wire(*frames), now_s)


@pytest.mark.parametrize(("frame", "words"), [
    (PingFrame(0), "ping flood"),
    (SettingsFrame(0), "settings flood"),
    (RstStreamFrame(1), "rapid reset"),
    (DataFrame(1, data=b""), "empty frames"),
])
def test_guard_refuses_a_flood_after_the_burst(frame, words):
    limits = GuardLimits(control_frames_burst=20, reset_burst=20)
    guard = ConnectionGuard(limits, 0.0)
    assert guard.on_receive(PREFACE, 0.0) is None
    assert _feed(guard, [frame] * 20) is None
    verdict = _feed(guard, [frame])
    assert verdict is not None and verdict.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert words in verdict.reason


def test_guard_lets_a_steady_slow_peer_through():
    guard = ConnectionGuard(GuardLimits(control_frames_burst=5, max_control_frames_per_s=10), 0.0)
    guard.on_receive(PREFACE, 0.0)
    # 1000 PINGs over 200 s: 5 per second, under the 10/s rate.
    assert all(_feed(guard, [PingFrame(0)], i * 0.2) is None for i in range(1000))


def test_guard_lets_a_long_lived_connection_send_many_requests():
    """One-frame requests, each a new block: 50,000 of them (3 MB of headers) are fine."""
    guard = ConnectionGuard(GuardLimits(max_header_block_bytes=1000), 0.0)
    guard.on_receive(PREFACE, 0.0)
    request = HeadersFrame(1, data=b"h" * 60, flags=["END_HEADERS", "END_STREAM"])
    wire = _wire(*[request] * 1000)
    assert all(guard.on_receive(wire, 0.0) is None for _ in range(50))


def test_guard_counts_continuations_and_header_block_bytes():
    guard = ConnectionGuard(GuardLimits(max_continuations=3, max_header_block_bytes=1000), 0.0)
    guard.on_receive(PREFACE, 0.0)
    assert _feed(guard, [HeadersFrame(1, data=b"h" * 10)]
                 + [ContinuationFrame(1, data=b"c")] * 3) is None
    verdict = _feed(guard, [ContinuationFrame(1, data=b"c")])
    assert verdict is not None and "CONTINUATION flood" in verdict.reason
    guard = ConnectionGuard(GuardLimits(max_header_block_bytes=1000), 0.0)
    guard.on_receive(PREFACE, 0.0)
    verdict = _feed(guard, [HeadersFrame(1, data=b"h" * 600),
                            ContinuationFrame(1, data=b"c" * 600)])
    assert verdict is not None and "header block over 1000" in verdict.reason
    # A finished block resets the count: many ordinary requests are fine.
    guard = ConnectionGuard(GuardLimits(max_continuations=1), 0.0)
    guard.on_receive(PREFACE, 0.0)
    block = [HeadersFrame(1, data=b"h"), ContinuationFrame(1, data=b"c", flags=["END_HEADERS"])]
    assert all(_feed(guard, block) is None for _ in range(100))


def test_guard_refuses_settings_with_too_many_entries():
    guard = ConnectionGuard(GuardLimits(max_settings_entries=2), 0.0)
    guard.on_receive(PREFACE, 0.0)
    assert _feed(guard, [SettingsFrame(0, settings={1: 1, 3: 3})]) is None
    verdict = _feed(guard, [SettingsFrame(0, settings={1: 1, 3: 3, 4: 4})])
    assert verdict is not None and "3 entries" in verdict.reason


def test_guard_bounds_queued_replies_and_provoked_resets():
    guard = ConnectionGuard(GuardLimits(max_control_frames_queued=100, reset_burst=10), 0.0)
    assert guard.on_replies(100, 0, 0.0) is None
    verdict = guard.on_replies(101, 0, 0.0)
    assert verdict is not None and "does not read" in verdict.reason
    assert guard.on_replies(0, 10, 0.0) is None
    verdict = guard.on_replies(0, 1, 0.0)
    assert verdict is not None and "reset flood" in verdict.reason


def test_stall_detector_needs_pending_work_and_an_unchanged_token():
    stall = StallDetector(timeout_s=2.0)
    assert not stall.observe("a", True, 0.0)
    assert not stall.observe("a", True, 1.9)
    assert stall.observe("a", True, 2.0)
    assert not stall.observe("b", True, 3.0)  # progress restarts the clock
    assert not stall.observe("b", False, 10.0)  # nothing pending: not stalled
    assert not stall.observe("b", True, 10.5)


