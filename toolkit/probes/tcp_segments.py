"""TCP segments a server sent on the load's connections, read from outside the server.

Any server's sockets can be read through sock_diag (toolkit.probes.tcpinfo), but only
while they exist: once the client closes, the server's socket goes, and its counters
with it. So the built-in load client calls back twice (LoadConfig.on_open and
before_close): once all its connections are open and again once the last response has
arrived, both times with the connections open and nothing in flight. The probe reads the
server's side of exactly those connections (local port = the server's, remote port = a
client's) each time; the difference is what the measured requests cost on the wire,
without the handshakes and the closing GOAWAY. The client's side is read in the same
netlink dump: on loopback, what the server sent (data_segs_out) is what the client
received (data_segs_in), a cross-check.

    probe = TcpSegmentsProbe(server_port)
    run_load(LoadConfig(url, ..., on_open=probe.on_open, before_close=probe.before_close))
    probe.result()   # ServerSegments, or a reason it could not be measured
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from toolkit.probes.tcpinfo import TcpConnCounters, TcpInfoUnavailable, read_tcp_connections

_COUNTERS = ("data_segs_out", "segs_out", "bytes_sent", "bytes_retrans", "retrans")


@dataclass
class ServerSegments:
    """Growth of the server's counters over the measured phase, summed over connections."""

    connections: int
    data_segs_out: int  # segments with data (MSS units: a TSO burst counts its segments)
    segs_out: int  # pure ACKs included
    bytes_sent: int
    bytes_retrans: int
    retrans: int
    snd_mss: int  # of the first connection
    client_data_segs_in: int | None  # the client's view of the same connections
    notes: list[str] = field(default_factory=list)

    def per_response(self, responses: int) -> float | None:
        return self.data_segs_out / responses if responses > 0 else None


class TcpSegmentsProbe:
    """Reads the server's side of the load client's connections at on_open and at
    before_close (pass both methods to LoadConfig)."""

    def __init__(self, server_port: int, *, netns: str | None = None) -> None:
        self.server_port = server_port
        self.netns = netns
        self._before: dict[int, TcpConnCounters] = {}
        self._after: dict[int, TcpConnCounters] = {}
        self._client_in: dict[int, tuple[int, int]] = {}  # client port -> (before, after)
        self.error: str | None = None

    def _read(self, addrs: list[tuple[str, int]]) -> tuple[dict[int, TcpConnCounters],
                                                            dict[int, TcpConnCounters]]:
        """Server sockets by client port, and the client's sockets by port (when the client
        lives in this namespace), read until nothing is in flight between them: every byte
        the server sent once has been received (up to 0.2 s)."""
        ports = {port for _, port in addrs}
        deadline = time.monotonic() + 0.2
        while True:
            rows = read_tcp_connections(local_port=self.server_port, netns=self.netns)
            server = {r.remote_port: r for r in rows if r.remote_port in ports}
            client: dict[int, TcpConnCounters] = {}
            if self.netns is None:
                client = {r.local_port: r for r in
                          read_tcp_connections(remote_port=self.server_port)
                          if r.local_port in ports}
            in_flight = [p for p, s in server.items() if p in client
                         and s.bytes_sent - s.bytes_retrans != client[p].bytes_received]
            if not in_flight or time.monotonic() > deadline:
                return server, client
            time.sleep(0.005)

    def on_open(self, addrs: list[tuple[str, int]]) -> None:
        try:
            self._before, client = self._read(addrs)
        except TcpInfoUnavailable as exc:
            self.error = str(exc)
            return
        self._client_in = {p: (c.data_segs_in, c.data_segs_in) for p, c in client.items()}

    def before_close(self, addrs: list[tuple[str, int]]) -> None:
        if self.error is not None:
            return
        try:
            self._after, client = self._read(addrs)
        except TcpInfoUnavailable as exc:
            self.error = str(exc)
            return
        self._client_in = {p: (self._client_in.get(p, (0, 0))[0], c.data_segs_in)
                           for p, c in client.items()}

    def result(self) -> ServerSegments | str:
        """The counters' growth, or why there is none (one line)."""
        if self.error is not None:
            return self.error
        if not self._after:
            return (f"no connection to port {self.server_port} was open at the end of the "
                    "load (is the server's port right, was before_close passed?)")
        notes = []
        total = dict.fromkeys(_COUNTERS, 0)
        for port, after in self._after.items():
            before = self._before.get(port)
            if before is None:  # opened during the load (a reconnect): all of it counts
                notes.append(f"connection from port {port} opened during the load")
            for name in _COUNTERS:
                total[name] += getattr(after, name) - (getattr(before, name) if before else 0)
        lost = set(self._before) - set(self._after)
        if lost:
            notes.append(f"{len(lost)} connection(s) closed during the load: not counted")
        client_in = None
        if self._client_in and set(self._client_in) >= set(self._after):
            client_in = sum(a - b for p, (b, a) in self._client_in.items() if p in self._after)
        first = next(iter(self._after.values()))
        return ServerSegments(connections=len(self._after), snd_mss=first.snd_mss,
                              client_data_segs_in=client_in, notes=notes, **total)


def server_connections(server_port: int, *, netns: str | None = None) -> list[TcpConnCounters]:
    """The server's connected sockets on its port (states other than LISTEN/TIME_WAIT)."""
    return read_tcp_connections(local_port=server_port, netns=netns)


def wait_server_closed(server_port: int, *, timeout_s: float = 5.0,
                       netns: str | None = None) -> bool:
    """Wait until the server has closed its side of every connection on its port (what
    it writes while closing, a GOAWAY or a TLS close_notify, is then written); False if
    some are still open at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        open_states = [c for c in server_connections(server_port, netns=netns)
                       if c.state in ("ESTABLISHED", "CLOSE_WAIT", "SYN_RECV")]
        if not open_states:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
