"""The tshark adapter: pure parsing of its field output, and its failure modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tls_probe.tshark import CaptureError, LoopbackCapture, count_tls_records, parse_record_fields

PORT = 8443


def test_records_per_direction_with_several_records_per_frame() -> None:
    text = (
        "50000\t8443\t22\t\t512\n"  # ClientHello
        "8443\t50000\t22,20\t23,23\t122,1,23,4000\n"  # TLS 1.3 server flight
        "50000\t8443\t20\t23\t1,53\n"
        "8443\t50000\t\t23\t26\n"  # a 9-byte SSL_write in TLS 1.3
    )
    counts = parse_record_fields(text, PORT)
    s2c, c2s = counts.server_to_client, counts.client_to_server
    assert (s2c.records, s2c.record_bytes) == (5, 122 + 1 + 23 + 4000 + 26 + 25)
    assert s2c.by_type == {22: 1, 20: 1, 23: 3}
    assert s2c.sizes == {127: 1, 6: 1, 28: 1, 4005: 1, 31: 1}
    assert (c2s.records, c2s.by_type) == (3, {22: 1, 20: 1, 23: 1})
    assert counts.frames_with_records == 4


def test_frames_of_other_ports_and_frames_without_records_are_ignored() -> None:
    counts = parse_record_fields("1\t2\t23\t\t10\n8443\t50000\t\t\t\n\n", PORT)
    assert counts.server_to_client.records == counts.client_to_server.records == 0


def test_malformed_tshark_output_is_a_capture_error() -> None:
    with pytest.raises(CaptureError, match="unexpected tshark output"):
        parse_record_fields("8443\t1\t23\n", PORT)


def test_unreadable_pcap_is_a_capture_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a pcap")
    with pytest.raises(CaptureError, match="tshark failed"):
        count_tls_records(bad, PORT)


def test_capture_on_a_missing_interface_is_a_capture_error(tmp_path: Path) -> None:
    capture = LoopbackCapture(PORT, tmp_path / "x.pcap", interface="no-such-if0")
    with pytest.raises(CaptureError, match="dumpcap did not start"):
        capture.start(timeout_s=10)


def test_empty_capture_counts_nothing(tmp_path: Path) -> None:
    with LoopbackCapture(PORT, tmp_path / "empty.pcap") as capture:
        assert capture.pcap_path.exists()
    counts = count_tls_records(tmp_path / "empty.pcap", PORT)
    assert counts.server_to_client.records == counts.client_to_server.records == 0
