"""Under real strace, each strategy makes the calls it promises, and the server's own
counts equal strace's."""

from __future__ import annotations

import pytest

from toolkit.clients.fetch import H2Fetcher
from toolkit.probes.strace import count_tcp_writes, strace_wrapper

BODY = 1 << 20
FRAMES = BODY // 16384
RESPONSES = 8


@pytest.mark.parametrize("strategy", ["single", "split", "writev", "cork", "chain"])
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
    if strategy in ("split", "cork"):
        # A 9-byte header and a payload per DATA frame, plus HEADERS.
        assert 2 * FRAMES <= per_response <= 2 * FRAMES * 1.1 + 4, per_response
        assert set(counts.calls) == {"sendto"}
    else:
        # One call per flush (a 1 MiB flush is one response), a few more for partial writes.
        assert 1 <= per_response <= 4, per_response
        assert set(counts.calls) == ({"sendto"} if strategy == "single" else {"sendmsg"})
    assert counts.bytes == srv.final_stats["bytes_sent"]
