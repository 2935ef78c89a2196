"""Under real strace, each registered strategy makes the calls its shape declares, and the
server's own counts equal strace's."""

from __future__ import annotations

import pytest

from toolkit.clients.fetch import H2Fetcher
from toolkit.probes.strace import count_tcp_writes, strace_wrapper
from toolkit.strategies import STRATEGIES, strategy_names

BODY = 1 << 20
FRAMES = BODY // 16384
RESPONSES = 8


@pytest.mark.parametrize("strategy", strategy_names("h2c"))
def test_socket_calls_per_response_under_strace(start_server, tmp_path, strategy):
    log = str(tmp_path / "server.strace")
    srv = start_server(wrapper=tuple(strace_wrapper(log)), strategy=strategy, body_bytes=BODY)
    with H2Fetcher(srv.url) as f:  # one connection, a 1 GiB window: never window-bound
        for _ in range(RESPONSES):
            assert len(f.get("/").body) == BODY
    srv.stop()
    counts = count_tcp_writes(log)
    assert counts.unparsed_lines == 0
    server = srv.final_stats["syscalls"]
    assert server == counts.calls, "the server's own counts must equal strace's"
    per_response = counts.total_calls / RESPONSES
    shape = STRATEGIES[strategy].shape
    if shape.calls_per_frame:
        # So many calls per DATA frame (split: a 9-byte header and a payload), plus HEADERS.
        n = shape.calls_per_frame * FRAMES
        assert n <= per_response <= n * 1.1 + 4, per_response
    else:
        # One call per flush (a 1 MiB flush is one response), a few more for partial writes.
        assert 1 <= per_response <= 4, per_response
    assert set(counts.calls) == shape.syscalls
    assert counts.bytes == srv.final_stats["bytes_sent"]
