"""TCP segments per response read from outside the server (sock_diag of its side of the load's
connections, just before the client closes them), against the tcp_info writeshape's own
server reads of its connections when they close."""

from __future__ import annotations

import pytest

from toolkit.clients.builtin import LoadConfig, run_load
from toolkit.measure.snapshot import take_snapshot
from toolkit.probes.tcp_segments import ServerSegments, TcpSegmentsProbe
from toolkit.targets import ReferenceServer

REQUESTS = 300
CONNECTIONS = 2


def _load(url: str, port: int, streams: int = 1) -> tuple[ServerSegments, int]:
    probe = TcpSegmentsProbe(port)
    load = run_load(LoadConfig(url=url, requests=REQUESTS, connections=CONNECTIONS,
                               streams=streams, insecure=True, on_open=probe.on_open,
                               before_close=probe.before_close))
    assert (load.requests, load.failures) == (REQUESTS, 0)
    result = probe.result()
    assert isinstance(result, ServerSegments), result
    return result, load.requests


@pytest.mark.parametrize(("strategy", "per_response"), [("writev", 1.0), ("split", 3.0)])
def test_segments_match_the_servers_own_tcp_info(start_server, strategy: str,
                                                 per_response: float) -> None:
    srv = start_server(strategy=strategy, body_bytes=16384)
    before = take_snapshot(srv)
    segs, responses = _load(f"{srv.url}/", srv.port)
    after = take_snapshot(srv, after_load=True)
    assert after.settled
    own = after.stats["tcp"]["data_segs_out"] - before.stats["tcp"]["data_segs_out"]
    assert after.stats["tcp"]["connections"] - before.stats["tcp"]["connections"] == CONNECTIONS
    # The server's reading covers each connection's whole life: SETTINGS before the
    # probe's first reading, GOAWAY after its last; a few segments per connection.
    assert 0 < own - segs.data_segs_out <= 3 * CONNECTIONS, (own, segs)
    assert segs.client_data_segs_in == segs.data_segs_out  # loopback: sent is received
    assert segs.connections == CONNECTIONS and not segs.notes
    # One request at a time: writev puts HEADERS and DATA in one segment; split sends the
    # HEADERS, the 9-byte DATA header and the payload as three (TCP_NODELAY).
    assert segs.per_response(responses) == pytest.approx(per_response, abs=0.05)


def test_segments_of_nginx_from_outside() -> None:
    with ReferenceServer("nginx", transport="h2", body_bytes=16384) as srv:
        assert srv.target is not None
        segs, responses = _load(srv.url, srv.target.port, streams=4)
    assert segs.client_data_segs_in == segs.data_segs_out
    assert 1 <= segs.per_response(responses) <= 4  # type: ignore[operator]
    assert segs.bytes_sent >= REQUESTS * 16384


def test_a_probe_without_connections_says_why() -> None:
    probe = TcpSegmentsProbe(9)
    probe.on_open([])
    probe.before_close([])
    assert "no connection to port 9" in str(probe.result())
