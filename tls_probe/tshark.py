"""Adapter: capture loopback traffic of one port with dumpcap, count TLS records with tshark.

This is the independent oracle for tls_probe's own counters: Wireshark reassembles TCP
and finds record boundaries itself, so its count per direction must equal the records
InstrumentedTLS reports written (server to client) and received (client to server).
The parsing of tshark's field output is pure (`parse_record_fields`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tls_probe.errors import CapturePermissionError, TlsProbeError, ToolMissingError
from tls_probe.records import HEADER_BYTES

_SEPARATOR = "\t"


class CaptureError(TlsProbeError):
    """dumpcap or tshark failed."""


def require_tool(name: str, package: str = "tshark") -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(name, package)
    return path


@dataclass
class DirectionRecords:
    """TLS records seen in one direction of a capture."""

    records: int = 0
    record_bytes: int = 0  # wire bytes, 5-byte headers included
    by_type: dict[int, int] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)  # wire size -> records

    def add(self, content_type: int | None, length: int) -> None:
        wire = length + HEADER_BYTES
        self.records += 1
        self.record_bytes += wire
        if content_type is not None:
            self.by_type[content_type] = self.by_type.get(content_type, 0) + 1
        self.sizes[wire] = self.sizes.get(wire, 0) + 1


@dataclass
class CaptureRecords:
    server_to_client: DirectionRecords
    client_to_server: DirectionRecords
    frames_with_records: int


def _ints(text: str) -> list[int]:
    return [int(v, 0) for v in text.split(",") if v.strip()]


def parse_record_fields(text: str, server_port: int) -> CaptureRecords:
    """Parse `tshark -T fields -e tcp.srcport -e tcp.dstport -e tls.record.content_type
    -e tls.record.opaque_type -e tls.record.length` output (one line per frame, values of
    several records in a frame comma-separated).

    Each record has one length. Its type is `content_type`, or `opaque_type` for a TLS 1.3
    encrypted record; when a frame mixes both, the types are counted but cannot be paired
    with lengths, so `by_type` is exact and `sizes` ignores type."""
    s2c, c2s = DirectionRecords(), DirectionRecords()
    frames = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        cols = line.split(_SEPARATOR)
        if len(cols) != 5:
            raise CaptureError(f"unexpected tshark output line: {line!r}")
        src, dst = int(cols[0]), int(cols[1])
        lengths = _ints(cols[4])
        if not lengths:
            continue
        types = _ints(cols[2]) + _ints(cols[3])
        if src == server_port:
            direction = s2c
        elif dst == server_port:
            direction = c2s
        else:
            continue
        frames += 1
        paired = len(types) == len(lengths) and (not cols[2] or not cols[3])
        for i, length in enumerate(lengths):
            direction.add(types[i] if paired else None, length)
        if not paired:
            for t in types:
                direction.by_type[t] = direction.by_type.get(t, 0) + 1
    return CaptureRecords(server_to_client=s2c, client_to_server=c2s, frames_with_records=frames)


def count_tls_records(pcap_path: str | Path, server_port: int) -> CaptureRecords:
    """Count TLS records per direction in a capture, decoding `server_port` as TLS."""
    tshark = require_tool("tshark")
    cmd = [
        tshark, "-n", "-r", str(pcap_path),
        "-d", f"tcp.port=={server_port},tls",
        "-o", "tcp.desegment_tcp_streams:TRUE",
        "-o", "tls.desegment_ssl_records:TRUE",
        "-Y", "tls.record.length",
        "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
        "-e", "tcp.srcport", "-e", "tcp.dstport",
        "-e", "tls.record.content_type", "-e", "tls.record.opaque_type",
        "-e", "tls.record.length",
    ]  # fmt: skip
    return parse_record_fields(_tshark_fields(cmd, pcap_path), server_port)


def _tshark_fields(cmd: list[str], pcap_path: str | Path) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise CaptureError(f"tshark failed on {pcap_path}: {proc.stderr.strip()[:500]}")
    return proc.stdout


_DROPPED = re.compile(r"Packets received/dropped on interface .*?: (\d+)/(\d+)")


def dumpcap_dropped_packets(stderr_text: str) -> int | None:
    """Dropped packets from dumpcap's exit report, summed over interfaces (None: no report)."""
    found = _DROPPED.findall(stderr_text)
    return sum(int(dropped) for _, dropped in found) if found else None


def count_lost_segments(pcap_path: str | Path, server_port: int) -> int:
    """TCP segments tshark sees missing from the capture ("previous segment not captured"):
    a capture with any cannot be an exact record count, whatever the server did."""
    tshark = require_tool("tshark")
    cmd = [tshark, "-n", "-r", str(pcap_path), "-Y",
           f"tcp.port=={server_port} && (tcp.analysis.lost_segment || "
           "tcp.analysis.ack_lost_segment)", "-T", "fields", "-e", "frame.number"]
    return sum(1 for line in _tshark_fields(cmd, pcap_path).splitlines() if line.strip())


class LoopbackCapture:
    """Capture TCP traffic of one port on the loopback interface into a pcap file.

    dumpcap reports "Capturing on" before its capture is live and writes packets to the
    file in batches, so both ends are synchronised with marker datagrams: UDP to the same
    port (nobody listens; tshark's TLS count ignores them) carrying a unique token. The
    capture is live once a start marker is in the file, and complete once an end marker,
    sent after the traffic, is. Needs root or CAP_NET_RAW."""

    def __init__(self, port: int, pcap_path: str | Path, *, interface: str = "lo") -> None:
        self.port = port
        self.pcap_path = Path(pcap_path)
        self.interface = interface
        self._proc: subprocess.Popen[bytes] | None = None
        self._read_offset = 0
        # Packets the kernel or dumpcap dropped, from dumpcap's report at exit (None: unknown).
        self.dropped_packets: int | None = None

    def start(self, timeout_s: float = 15.0) -> None:
        dumpcap = require_tool("dumpcap", "tshark")
        cmd = [
            dumpcap, "-i", self.interface, "-f", f"tcp port {self.port} or udp port {self.port}",
            "-B", "64", "-P", "-w", str(self.pcap_path),
        ]  # fmt: skip
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._read_offset = 0
        if not self._wait_for_marker(b"start", timeout_s):
            proc, self._proc = self._proc, None
            proc.kill()  # if still running; then stderr ends and can be read whole
            proc.wait()
            assert proc.stderr is not None
            message = proc.stderr.read().decode(errors="replace").strip()
            proc.stderr.close()
            if "permission" in message.lower() or "not permitted" in message.lower():
                raise CapturePermissionError(
                    f"dumpcap cannot capture on {self.interface}: {message}; run as root "
                    "or give dumpcap CAP_NET_RAW"
                )
            raise CaptureError(f"dumpcap did not start capturing: {message[:500]}")

    def stop(self, timeout_s: float = 15.0) -> None:
        proc = self._proc
        if proc is None:
            return
        complete = self._wait_for_marker(b"end", timeout_s)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._kill()
            raise CaptureError("dumpcap did not stop on SIGINT") from None
        finally:
            if proc.stderr is not None:
                proc.stderr.close()
            self._proc = None
        self.dropped_packets = dumpcap_dropped_packets(err.decode(errors="replace"))
        if not complete:
            raise CaptureError(f"dumpcap did not write the end of the capture to {self.pcap_path}")

    def _wait_for_marker(self, kind: bytes, timeout_s: float) -> bool:
        """Send marker datagrams until one shows up in the file (or dumpcap exits)."""
        token = b"writeshape-capture-" + kind + b"-" + os.urandom(8).hex().encode()
        deadline = time.monotonic() + timeout_s
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            while time.monotonic() < deadline:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    return False
                udp.sendto(token, ("127.0.0.1", self.port))
                if self._file_contains(token):
                    return True
                time.sleep(0.05)
        return False

    def _file_contains(self, token: bytes) -> bool:
        try:
            with self.pcap_path.open("rb") as f:
                f.seek(max(0, self._read_offset - len(token)))
                data = f.read()
        except FileNotFoundError:
            return False
        self._read_offset = max(0, self._read_offset - len(token)) + len(data)
        return token in data

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            if self._proc.stderr is not None:
                self._proc.stderr.close()
            self._proc = None

    def __enter__(self) -> LoopbackCapture:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.stop()
        else:
            self._kill()
