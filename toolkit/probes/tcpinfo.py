"""TCP counters of live connections (struct tcp_info) through sock_diag, via pyroute2.

What a write shape puts on the wire shows in ``tcpi_data_segs_out``: a split write with
TCP_NODELAY sends its 9-byte frame header as a segment of its own, MSG_MORE folds it into
the payload's segment. sock_diag answers per network namespace, so reading another
namespace's connections (the server's side of a netns lab) runs the query from a thread
that entered that namespace (see toolkit.lab.netlab.call_in_netns).

``counters_from_diag`` is the pure part (a decoded inet_diag message in, a row out); the
functions below it only open the netlink socket and filter.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any

from pyroute2 import DiagSocket
from pyroute2.netlink.diag import SS_CONN

from toolkit.errors import WriteshapeError

# idiag_ext is a bit mask of (1 << (INET_DIAG_x - 1)); INET_DIAG_INFO == 2.
INET_DIAG_INFO_EXT = 1 << (2 - 1)
SIOCGSKNS = 0x894C  # ioctl: an fd for the network namespace a socket belongs to

TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
}


class TcpInfoUnavailable(WriteshapeError):
    """The kernel could not report tcp_info for the connection asked about."""


@dataclass(frozen=True)
class TcpConnCounters:
    """Cumulative counters of one TCP connection, as the kernel keeps them.

    Segment counts are in MSS-sized units (a TSO/GSO super-packet counts as the segments
    it will be cut into). ``bytes_sent`` includes retransmitted bytes.
    """

    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int
    state: str
    data_segs_out: int  # segments carrying data, retransmissions included
    segs_out: int  # all segments sent, pure ACKs included
    data_segs_in: int
    segs_in: int
    bytes_sent: int
    bytes_acked: int
    bytes_received: int
    bytes_retrans: int
    retrans: int  # tcpi_total_retrans: segments retransmitted over the connection's life
    snd_mss: int  # bytes
    pmtu: int  # bytes
    snd_cwnd: int  # segments
    rtt_us: int
    notsent_bytes: int
    inode: int

    def delta(self, before: TcpConnCounters) -> dict[str, int]:
        """Counter growth since an earlier reading of the same connection."""
        names = (
            "data_segs_out", "segs_out", "data_segs_in", "segs_in", "bytes_sent",
            "bytes_acked", "bytes_received", "bytes_retrans", "retrans",
        )
        return {n: getattr(self, n) - getattr(before, n) for n in names}


def counters_from_diag(msg: Any) -> TcpConnCounters | None:
    """Turn one decoded inet_diag message into counters; None if it carries no tcp_info
    (e.g. a TIME_WAIT socket)."""
    info = msg.get_attr("INET_DIAG_INFO")
    if info is None:
        return None
    return TcpConnCounters(
        local_addr=_normal_addr(msg["idiag_src"]),
        local_port=msg["idiag_sport"],
        remote_addr=_normal_addr(msg["idiag_dst"]),
        remote_port=msg["idiag_dport"],
        state=TCP_STATES.get(msg["idiag_state"], str(msg["idiag_state"])),
        data_segs_out=info["tcpi_data_segs_out"],
        segs_out=info["tcpi_segs_out"],
        data_segs_in=info["tcpi_data_segs_in"],
        segs_in=info["tcpi_segs_in"],
        bytes_sent=info["tcpi_bytes_sent"],
        bytes_acked=info["tcpi_bytes_acked"],
        bytes_received=info["tcpi_bytes_received"],
        bytes_retrans=info["tcpi_bytes_retrans"],
        retrans=info["tcpi_total_retrans"],
        snd_mss=info["tcpi_snd_mss"],
        pmtu=info["tcpi_pmtu"],
        snd_cwnd=info["tcpi_snd_cwnd"],
        rtt_us=info["tcpi_rtt"],
        notsent_bytes=info["tcpi_notsent_bytes"],
        inode=msg["idiag_inode"],
    )


def _normal_addr(addr: str) -> str:
    """IPv4-mapped IPv6 (a dual-stack socket's view of an IPv4 peer) as plain IPv4."""
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


_BOTH_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def _dump(
    local_port: int | None,
    remote_port: int | None,
    families: tuple[socket.AddressFamily, ...] = _BOTH_FAMILIES,
) -> list[TcpConnCounters]:
    from toolkit.lab.netlab import outside_event_loop  # pyroute2's sync API vs a running loop

    return outside_event_loop(_dump_here, local_port, remote_port, families)


def _dump_here(
    local_port: int | None,
    remote_port: int | None,
    families: tuple[socket.AddressFamily, ...] = _BOTH_FAMILIES,
) -> list[TcpConnCounters]:
    rows = []
    try:
        with DiagSocket() as ds:
            ds.bind()
            for family in families:
                # The kernel itself skips sockets whose ports differ (0 means any).
                msgs = ds.get_sock_stats(
                    family=family, states=SS_CONN, extensions=INET_DIAG_INFO_EXT,
                    sport=local_port or 0, dport=remote_port or 0,
                )
                for msg in msgs:
                    row = counters_from_diag(msg)
                    if row is not None:
                        rows.append(row)
    except OSError as exc:
        raise TcpInfoUnavailable(
            f"sock_diag query failed ({exc}): the kernel needs CONFIG_INET_DIAG and "
            "CONFIG_INET_TCP_DIAG (module tcp_diag) for TCP segment counts"
        ) from exc
    # Ports are filtered by the kernel already; this keeps the contract exact anyway.
    return [
        r for r in rows
        if (local_port is None or r.local_port == local_port)
        and (remote_port is None or r.remote_port == remote_port)
    ]


def read_tcp_connections(
    *, local_port: int | None = None, remote_port: int | None = None, netns: str | None = None
) -> list[TcpConnCounters]:
    """Counters of every connected TCP socket (IPv4 and IPv6) matching the ports.

    ``netns`` names a network namespace (``ip netns`` style, e.g. NetLab.server_ns) to read
    instead of the caller's own. Listening and TIME_WAIT sockets are not reported.
    """
    if netns is None:
        return _dump(local_port, remote_port)
    from toolkit.lab.netlab import call_in_netns  # netlab pulls in the namespace machinery

    return call_in_netns(netns, _dump, local_port, remote_port)


def read_own_socket(sock: socket.socket) -> TcpConnCounters:
    """Counters of one connected socket of this process, found by its 4-tuple.

    Works whichever namespace the socket lives in: the kernel hands out the socket's own
    namespace (SIOCGSKNS) and the query runs there when that is not the caller's.
    """
    try:
        local = sock.getsockname()
        remote = sock.getpeername()
    except OSError as exc:
        raise TcpInfoUnavailable(f"socket is not connected ({exc}): no TCP counters") from exc
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise TcpInfoUnavailable("read_own_socket needs a connected TCP socket")
    want = (_normal_addr(local[0]), local[1], _normal_addr(remote[0]), remote[1])

    def matching() -> list[TcpConnCounters]:
        return [
            r for r in _dump(local[1], remote[1], (sock.family,))
            if (r.local_addr, r.local_port, r.remote_addr, r.remote_port) == want
        ]

    ns_fd = _socket_netns_fd(sock)
    try:
        if ns_fd is None or _same_netns(ns_fd):
            rows = matching()
        else:
            from toolkit.lab.netlab import call_in_netns

            rows = call_in_netns(ns_fd, matching)
    finally:
        if ns_fd is not None:
            os.close(ns_fd)
    if not rows:
        raise TcpInfoUnavailable(
            f"sock_diag does not know the connection {want[0]}:{want[1]} -> "
            f"{want[2]}:{want[3]} (already closed?): read it before closing"
        )
    return rows[0]


async def read_own_socket_async(sock: socket.socket) -> TcpConnCounters:
    """read_own_socket for asyncio code: the netlink round trip (about 2 ms, most of it
    opening the socket) runs on a worker thread instead of blocking the loop."""
    return await asyncio.to_thread(read_own_socket, sock)


def _socket_netns_fd(sock: socket.socket) -> int | None:
    with contextlib.suppress(OSError):
        return fcntl.ioctl(sock.fileno(), SIOCGSKNS, 0)
    return None  # old kernel: assume the caller's namespace


def _same_netns(fd: int) -> bool:
    theirs = os.fstat(fd)
    ours = os.stat("/proc/thread-self/ns/net")
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
