"""Every strategy puts the same bytes on the wire; only the shape of the calls differs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.server.socket_writer import remainder_after
from toolkit.strategies import (
    CHAIN_THRESHOLD_BYTES,
    IOV_MAX,
    MSG_MORE,
    STRATEGIES,
    TLS_MAX_RECORD_PLAINTEXT_BYTES,
    CipherFlush,
    Coalesce,
    SocketCall,
    SslWrite,
    make_strategy,
    strategy_names,
    wire_bytes,
)

# A flush: server-owned bytes (headers, control frames) and payload views of a body.
segment = st.one_of(
    st.binary(min_size=1, max_size=64),
    st.binary(min_size=1, max_size=40000).map(memoryview),
)
flushes = st.lists(segment, min_size=0, max_size=40)
# Many small frames: more SSL_writes in one flush than one sendmsg can gather.
many_frames = st.integers(IOV_MAX // 2, IOV_MAX * 2).map(
    lambda n: [b"h" * 9, memoryview(b"p" * 300)] * n)


def _joined(segments: list) -> bytes:
    return b"".join(bytes(s) for s in segments)


def _through_partial_writes(calls: list[SocketCall], cuts: list[int]) -> bytes:
    """What a kernel that accepts only part of each call would receive, in order."""
    out = bytearray()
    it = iter(cuts)
    for call in calls:
        pending: SocketCall | None = call
        while pending is not None:
            n = min(next(it, pending.nbytes), pending.nbytes)
            if n == 0 and pending.nbytes:
                n = 1  # a write of nothing would not advance; the kernel returns >= 1
            sent = bytearray()
            for b in pending.buffers:
                sent += bytes(b)
            out += sent[:n]
            pending = remainder_after(pending, n)
    return bytes(out)


@pytest.mark.parametrize("name", strategy_names("h2c"))
@settings(max_examples=150, deadline=None)
@given(segments=flushes, cuts=st.lists(st.integers(0, 50000), max_size=60))
def test_every_strategy_writes_the_flush_bytes_in_order(name, segments, cuts):
    calls = list(make_strategy(name, tls=False).plan(segments))
    assert wire_bytes(calls) == _joined(segments)
    assert _through_partial_writes(calls, cuts) == _joined(segments)


@pytest.mark.parametrize("name", strategy_names("h2"))
@settings(max_examples=150, deadline=None)
@given(segments=st.one_of(flushes, many_frames), dynamic=st.booleans(),
       per_send=st.integers(1, 5))
def test_every_tls_plan_ssl_writes_the_flush_bytes_in_order(name, segments, dynamic, per_send):
    strategy = make_strategy(name, tls=True, options={"dynamic_records": dynamic,
                                                      "records_per_send": per_send})
    plaintext = bytearray()
    unflushed = 0
    for step in strategy.plan_tls(segments):
        if isinstance(step, SslWrite):
            plaintext += bytes(step.plaintext)  # copy now: coalesce reuses its scratch
            unflushed += 1
        else:
            assert isinstance(step, CipherFlush)
            unflushed = 0
        assert unflushed <= IOV_MAX, "a gathered flush must fit one sendmsg"
    assert bytes(plaintext) == _joined(segments)
    assert unflushed == 0, "every SSL_write must be followed by a flush"


def test_shapes_of_the_calls():
    hdr, payload = b"h" * 9, memoryview(b"p" * 16384)
    segments = [b"HEADERS", hdr, payload, hdr, payload]
    assert [c.method for c in STRATEGIES["single"]().plan(segments)] == ["send"]
    assert len(list(STRATEGIES["split"]().plan(segments))) == 5
    cork = list(STRATEGIES["cork"]().plan(segments))
    assert [c.flags for c in cork] == [MSG_MORE] * 4 + [0]
    writev = list(STRATEGIES["writev"]().plan(segments))
    assert [(c.method, len(c.buffers)) for c in writev] == [("sendmsg", 5)]
    # chain: HEADERS and the 9-byte header are copied together, the payload is chained.
    chain = list(STRATEGIES["chain"]().plan(segments))
    assert len(chain) == 1 and chain[0].method == "sendmsg"
    assert [len(b) for b in chain[0].buffers] == [7 + 9, 16384, 9, 16384]


def test_writev_never_exceeds_iov_max():
    segments = [memoryview(b"x")] * (IOV_MAX * 2 + 3)
    calls = list(STRATEGIES["writev"]().plan(segments))
    assert [len(c.buffers) for c in calls] == [IOV_MAX, IOV_MAX, 3]


def test_chain_copies_small_payloads_behind_their_header():
    small = memoryview(b"s" * (CHAIN_THRESHOLD_BYTES - 1))
    large = memoryview(b"L" * CHAIN_THRESHOLD_BYTES)
    calls = list(STRATEGIES["chain"]().plan([b"h" * 9, small, b"h" * 9, large]))
    sizes = [len(b) for b in calls[0].buffers]
    assert sizes == [9 + CHAIN_THRESHOLD_BYTES - 1 + 9, CHAIN_THRESHOLD_BYTES]
    assert calls[0].buffers[1] is large  # by reference, not copied


@pytest.mark.parametrize("name", [n for n in strategy_names("h2c")
                                  if not STRATEGIES[n].shape.copies_flush])
def test_zero_copy_strategies_pass_payloads_by_reference(name):
    payload = memoryview(b"z" * 100000)
    bufs = [b for c in make_strategy(name, tls=False).plan([b"h" * 9, payload])
            for b in c.buffers]
    assert any(b is payload for b in bufs), name


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 70000), min_size=1, max_size=12))
def test_coalesce_writes_the_fewest_full_records(payload_sizes):
    segments = []
    for n in payload_sizes:
        segments += [b"h" * 9, memoryview(bytes(n))]
    total = sum(len(s) for s in segments)
    writes = [len(s.plaintext) for s in Coalesce().plan_tls(segments) if isinstance(s, SslWrite)]
    assert len(writes) == math.ceil(total / TLS_MAX_RECORD_PLAINTEXT_BYTES)
    assert all(w == TLS_MAX_RECORD_PLAINTEXT_BYTES for w in writes[:-1])


def test_coalesce_dynamic_records_start_small_then_grow():
    strategy = Coalesce(dynamic_records=True)
    body = [b"h" * 9, memoryview(bytes(1 << 20))]
    writes = [len(s.plaintext) for s in strategy.plan_tls(body) if isinstance(s, SslWrite)]
    assert writes[0] == Coalesce.small_record_bytes
    assert writes[-2] == TLS_MAX_RECORD_PLAINTEXT_BYTES
    small = [w for w in writes if w == Coalesce.small_record_bytes]
    assert len(small) * Coalesce.small_record_bytes >= Coalesce.small_record_window_bytes
    strategy.on_idle()
    again = [len(s.plaintext) for s in strategy.plan_tls(body) if isinstance(s, SslWrite)]
    assert again[0] == Coalesce.small_record_bytes


def test_coalesce_needs_tls():
    import pytest

    from toolkit.errors import UsageError

    with pytest.raises(UsageError, match="needs TLS"):
        make_strategy("coalesce", tls=False)
    with pytest.raises(UsageError, match="unknown strategy"):
        make_strategy("sendfile", tls=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 70000), min_size=1, max_size=12), st.integers(1, 8))
def test_coalesce_gathers_records_per_send_without_changing_the_records(payload_sizes, per_send):
    segments = []
    for n in payload_sizes:
        segments += [b"h" * 9, memoryview(bytes(n))]
    one = [len(s.plaintext) for s in Coalesce().plan_tls(segments) if isinstance(s, SslWrite)]
    steps = list(Coalesce(records_per_send=per_send).plan_tls(segments))
    writes = [len(s.plaintext) for s in steps if isinstance(s, SslWrite)]
    flushes = [s for s in steps if isinstance(s, CipherFlush)]
    assert writes == one  # the same records
    assert len(flushes) == math.ceil(len(writes) / per_send)
    assert all(f.method == ("send" if per_send == 1 else "sendmsg") for f in flushes)
    assert isinstance(steps[-1], CipherFlush)
