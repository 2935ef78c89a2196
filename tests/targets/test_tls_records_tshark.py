"""TLS records of reference servers counted on the client side (the built-in load client reads
every record), against tshark on a loopback capture of the same run: count, bytes and the
size mix. The one thing the client cannot see is what a server sends after the client has
closed: a close_notify alert (24 bytes on the wire in TLS 1.3, where an alert travels as an
encrypted application_data record), at most one per connection. h2o and nghttpd send it,
nginx does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tls_probe.tshark import (
    CaptureRecords,
    LoopbackCapture,
    count_lost_segments,
    count_tls_records,
)
from toolkit.clients.builtin import LoadConfig, run_load
from toolkit.clients.summary import LoadSummary
from toolkit.probes.tcp_segments import wait_server_closed
from toolkit.targets import ReferenceServer

CONNECTIONS = 2
REQUESTS = 40
CLOSE_NOTIFY_WIRE = 24  # 5-byte header, 2-byte alert, 1 content type, 16-byte AEAD tag


def _captured_run(tmp_path: Path, name: str, attempt: int
                  ) -> tuple[CaptureRecords, LoadSummary, bool]:
    pcap = tmp_path / f"{name}{attempt}.pcapng"
    with ReferenceServer(name, transport="h2", body_bytes=100_000) as srv:
        assert srv.target is not None
        port = srv.target.port
        with LoopbackCapture(port, pcap) as capture:
            load = run_load(LoadConfig(url=srv.url, requests=REQUESTS, connections=CONNECTIONS,
                                       streams=4, insecure=True))
            assert wait_server_closed(port)
    clean = capture.dropped_packets == 0 and count_lost_segments(pcap, port) == 0
    return count_tls_records(pcap, port), load, clean


@pytest.mark.parametrize("name", ["nginx", "h2o", "nghttpd"])
def test_client_side_records_equal_tsharks(tmp_path: Path, name: str) -> None:
    for attempt in (1, 2, 3):  # a capture that dropped packets cannot count exactly
        wire, load, clean = _captured_run(tmp_path, name, attempt)
        if clean:
            break
    assert clean and (load.requests, load.failures) == (REQUESTS, 0)
    seen = wire.server_to_client
    client = load.tls_record_sizes_received
    assert client is not None and load.tls_records_received == sum(client.values())
    after_close = seen.sizes.get(CLOSE_NOTIFY_WIRE, 0) - client.get(CLOSE_NOTIFY_WIRE, 0)
    assert 0 <= after_close <= CONNECTIONS
    differ = {size: (n, client.get(size, 0)) for size, n in seen.sizes.items()
              if size != CLOSE_NOTIFY_WIRE and client.get(size, 0) != n}
    assert not differ and set(client) <= set(seen.sizes), differ
    assert seen.records - after_close == load.tls_records_received
    assert seen.record_bytes - after_close * CLOSE_NOTIFY_WIRE == load.tls_record_bytes_received
    assert load.tls_handshake_records_received and \
        load.tls_handshake_records_received < load.tls_records_received
